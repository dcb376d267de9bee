#!/bin/bash
# The classic inotify.sh from the seed blog (chocolee.blog.51cto.com/8158455/1400596, section
# 5.1.4), kept exactly as written. Only the values in #para became parameters (environment
# variables, defaulting to the blog's values), and the daemon port was added, because the
# harness runs its rsync daemon on a free loopback port instead of 873:
#   SEED_HOST SEED_PORT SEED_SRC SEED_MODULE SEED_USER SEED_PASSWORD_FILE SEED_INOTIFY_HOME
# The harness measures this script as a baseline; do not "fix" it.
#para
host01=${SEED_HOST:-192.168.1.160}  #inotify-slave的ip地址
port=${SEED_PORT:-873}              #inotify-slave的rsync服务的端口
src=${SEED_SRC:-/backup/}           #本地监控的目录
dst=${SEED_MODULE:-backup}          #inotify-slave的rsync服务的模块名
user=${SEED_USER:-rsync_backup}     #inotify-slave的rsync服务的虚拟用户
rsync_passfile=${SEED_PASSWORD_FILE:-/etc/rsync.password}   #本地调用rsync服务的密码文件
inotify_home=${SEED_INOTIFY_HOME:-/usr/local/inotify-3.14}  #inotify的安装目录
#judge
if [ ! -e "$src" ] \
|| [ ! -e "${rsync_passfile}" ] \
|| [ ! -e "${inotify_home}/bin/inotifywait" ] \
|| [ ! -e "/usr/bin/rsync" ];
then
echo "Check File and Folder"
exit 9
fi
${inotify_home}/bin/inotifywait -mrq --timefmt '%d/%m/%y %H:%M' --format '%T %w%f' -e close_write,delete,create,attrib $src \
| while read file
do
# rsync -avzP --delete --timeout=100 --password-file=${rsync_passfile} $src $user@$host01::$dst >/dev/null 2>&1
cd $src && rsync -aruz -R --delete ./ --timeout=100 --port=$port $user@$host01::$dst --password-file=${rsync_passfile} >/dev/null 2>&1
done
exit 0
