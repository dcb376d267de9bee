# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_syncer_global_optspecs
    string join \n config= backend= fanotify-unlimited-queue exclude= once status= metrics= fsync password-file= bwlimit= compress inplace streams= warm-clients= run-interval= rsync-timeout= strict max-delete= backup-dir= backup-keep= allow-source-change state-dir= jobs= batch-delay= max-batch= modify-quiet= modify-max-age= rescan-interval= max-links= v/verbose q/quiet h/help V/version
end

function __fish_syncer_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_syncer_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_syncer_using_subcommand
    set -l cmd (__fish_syncer_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c syncer -n "__fish_syncer_needs_command" -l config -d 'Read SOURCE, the targets and every option from a TOML file instead, with options per target (own excludes, bandwidth, password file, delete cap, streams); keys are spelled as the options without the leading dashes. Beside it only --once, --allow-source-change, -v and -q may be given. SIGHUP reads the file again: excludes and the per-run options of targets change in place, and the subtrees that became included are compared; a bad or unsupported change is refused whole and logged' -r -F
complete -c syncer -n "__fish_syncer_needs_command" -l backend -d 'Event backend' -r -f -a "auto\t'fanotify when it works for SOURCE\'s filesystem (root, fsid, file handles), else inotify'
inotify\t'One inotify watch per directory'
fanotify\t'One fanotify mark for SOURCE\'s whole filesystem (Linux 5.9+, root); exit 1 if unusable'"
complete -c syncer -n "__fish_syncer_needs_command" -l exclude -d 'Glob of paths (relative to SOURCE) not to replicate; repeatable. `*` stays within one component, `**` crosses them, a leading `/` anchors at SOURCE, a pattern without `/` matches names at any depth. Excluded directories are not watched' -r
complete -c syncer -n "__fish_syncer_needs_command" -l status -d 'Write JSON stats to FILE every second and at exit (atomically replaced)' -r -F
complete -c syncer -n "__fish_syncer_needs_command" -l metrics -d 'Serve the counters at http://ADDR/metrics in the Prometheus text format (per target: backlog, lag, last success, errors, retries, files and bytes sent; events, overflows, reconciles, watches, peak RSS). ADDR is HOST:PORT, e.g. 127.0.0.1:9185' -r
complete -c syncer -n "__fish_syncer_needs_command" -l password-file -d 'rsync targets: file holding the daemon password (mode 600, as rsync demands). Default: the RSYNC_PASSWORD environment variable' -r -F
complete -c syncer -n "__fish_syncer_needs_command" -l bwlimit -d 'Most bytes per second written to each target: KiB as rsync takes it, or with K, M or G (e.g. 500K, 10M). rsync targets split it over their --streams parallel runs (rsync --bwlimit); local targets share one token bucket across their copies (a clone, which moves no data, is not counted). Off by default' -r
complete -c syncer -n "__fish_syncer_needs_command" -l streams -d 'rsync targets: parallel rsync runs per batch (the daemon forks per connection, so streams use more of its cores)' -r
complete -c syncer -n "__fish_syncer_needs_command" -l warm-clients -d 'rsync targets: clients kept connected and authenticated ahead of need, so a batch skips the connection handshake (each is one daemon connection, used or not)' -r
complete -c syncer -n "__fish_syncer_needs_command" -l run-interval -d 'rsync targets: least time between the starts of two runs while changes keep coming (an idle syncer starts at once). Bounds the runs of a storm to 20 per second' -r
complete -c syncer -n "__fish_syncer_needs_command" -l rsync-timeout -d 'rsync targets: I/O timeout of each run in seconds (rsync --timeout); a run silent this long plus 5 s is killed and retried' -r
complete -c syncer -n "__fish_syncer_needs_command" -l max-delete -d 'Delete at most N replica entries per target within any 60 s (a directory with 500 entries below it is 501); past that the syncer stops, exit 3, and deletes nothing more. Off by default. rsync targets then run one stream without warm clients, so the cap is exact' -r
complete -c syncer -n "__fish_syncer_needs_command" -l backup-dir -d 'Keep what each target would lose: a replica entry deleted or replaced is moved to DIR/STAMP/its/path inside the replica instead (rsync --backup --backup-dir), STAMP being the UTC second of the batch. DIR is relative to the replica\'s root and excluded from syncing there (a SOURCE entry of that name is not replicated). Off by default' -r -F
complete -c syncer -n "__fish_syncer_needs_command" -l backup-keep -d 'With --backup-dir: remove backup folders older than DAYS (checked every ten minutes; rsync targets too, through the daemon). Default: keep them all' -r
complete -c syncer -n "__fish_syncer_needs_command" -l state-dir -d 'Directory of the checkpoint file [default: $SYNCER_STATE_DIR, /var/lib/syncer as root, else $XDG_STATE_HOME/syncer]. Must be outside SOURCE and TARGET' -r -F
complete -c syncer -n "__fish_syncer_needs_command" -l jobs -d 'Threads that copy file contents per target [default: number of CPUs]' -r
complete -c syncer -n "__fish_syncer_needs_command" -l batch-delay -d 'Tuning: hold each batch until its oldest change is this old (ms). 0 applies at once when idle and lets batches grow only while busy' -r
complete -c syncer -n "__fish_syncer_needs_command" -l max-batch -d 'Tuning: most paths per batch' -r
complete -c syncer -n "__fish_syncer_needs_command" -l modify-quiet -d 'A file written but not closed is copied after this quiet period (ms)...' -r
complete -c syncer -n "__fish_syncer_needs_command" -l modify-max-age -d '...or once it has been dirty this long (ms), whatever the writes' -r
complete -c syncer -n "__fish_syncer_needs_command" -l rescan-interval -d 'Seconds between full reconciles while part of the tree is not watched (watch limit) or the hard-link index is full (--max-links)' -r
complete -c syncer -n "__fish_syncer_needs_command" -l max-links -d 'Most names of multi-link files (hard links) the link index holds, about 120 bytes each. Past it further links are replicated as separate files and their other names are kept current by periodic reconciles' -r
complete -c syncer -n "__fish_syncer_needs_command" -l fanotify-unlimited-queue -d 'fanotify only: no queue limit (FAN_UNLIMITED_QUEUE), so no overflow and no reconcile. RISK: the queue is kernel memory that grows without bound while the reader lags behind a storm (on the order of 100-200 bytes per event: 10 million queued events pin 1-2 GiB), and it is not charged to any limit. Use only where a storm is bounded and memory is ample'
complete -c syncer -n "__fish_syncer_needs_command" -l once -d 'Make TARGET equal to SOURCE once, then exit 0'
complete -c syncer -n "__fish_syncer_needs_command" -l fsync -d 'fsync each file before it is renamed into place and its directory after: survives a power loss, at a large cost in throughput. Off by default'
complete -c syncer -n "__fish_syncer_needs_command" -l compress -d 'rsync targets: compress data in transit (worth it on slow links, not on loopback)'
complete -c syncer -n "__fish_syncer_needs_command" -l inplace -d 'rsync targets: the daemon writes changed files in place (rsync --inplace) instead of into a temporary file renamed over the old one: fewer syscalls and no directory lock per rename, but a reader of the replica can see a file half written, and a run cut short leaves it so until the retry. Off by default: only new files in big batches are written in place (their old replica copy, if any, is obsolete)'
complete -c syncer -n "__fish_syncer_needs_command" -l strict -d 'Exit non-zero when the inotify watch limit is hit, instead of covering the unwatched part by periodic reconciles'
complete -c syncer -n "__fish_syncer_needs_command" -l allow-source-change -d 'Start even though SOURCE is not the tree the replicas were made from (another filesystem or directory than at the last sync), or is empty while a replica is not. Without it the syncer refuses, exit code 3, and deletes nothing. Give it once, after checking that the change is intended: the new SOURCE is recorded from then on'
complete -c syncer -n "__fish_syncer_needs_command" -s v -l verbose -d 'More log output (-v: debug; -vv: trace, with the paths of every rsync run)'
complete -c syncer -n "__fish_syncer_needs_command" -s q -l quiet -d 'Only errors on stderr'
complete -c syncer -n "__fish_syncer_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c syncer -n "__fish_syncer_needs_command" -s V -l version -d 'Print version'
complete -c syncer -n "__fish_syncer_needs_command" -a "verify" -d 'Compare TARGET with SOURCE once, read-only, and say what differs'
complete -c syncer -n "__fish_syncer_needs_command" -a "wait" -d 'Wait until every change made in SOURCE before this call has reached every replica'
complete -c syncer -n "__fish_syncer_needs_command" -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c syncer -n "__fish_syncer_using_subcommand verify" -l exclude -d 'Paths not compared (as for a sync; give the same patterns)' -r
complete -c syncer -n "__fish_syncer_using_subcommand verify" -l password-file -d 'rsync targets: file holding the daemon password. Default: $RSYNC_PASSWORD' -r -F
complete -c syncer -n "__fish_syncer_using_subcommand verify" -l state-dir -d '--repair: the checkpoint directory (as for a sync)' -r -F
complete -c syncer -n "__fish_syncer_using_subcommand verify" -l backup-dir -d 'The target\'s backup directory (as for a sync): not compared, and --repair keeps what it replaces or deletes there' -r -F
complete -c syncer -n "__fish_syncer_using_subcommand verify" -l checksum -d 'Compare file contents too (local: both files read; rsync: rsync --checksum)'
complete -c syncer -n "__fish_syncer_using_subcommand verify" -l repair -d 'Make TARGET equal where it differs (one sync, as `syncer --once`), then compare again: exit 0 when it is equal then'
complete -c syncer -n "__fish_syncer_using_subcommand verify" -l all -d 'List every difference, not only the first 20'
complete -c syncer -n "__fish_syncer_using_subcommand verify" -l allow-source-change -d '--repair: start even though SOURCE is not the tree the replica was made from (as for a sync)'
complete -c syncer -n "__fish_syncer_using_subcommand verify" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c syncer -n "__fish_syncer_using_subcommand verify" -s V -l version -d 'Print version'
complete -c syncer -n "__fish_syncer_using_subcommand wait" -l timeout -d 'Give up after this many seconds (exit 1)' -r
complete -c syncer -n "__fish_syncer_using_subcommand wait" -l state-dir -d 'The running syncer\'s checkpoint directory, where it acknowledges the barrier [default: as for the syncer]' -r -F
complete -c syncer -n "__fish_syncer_using_subcommand wait" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c syncer -n "__fish_syncer_using_subcommand wait" -s V -l version -d 'Print version'
complete -c syncer -n "__fish_syncer_using_subcommand help; and not __fish_seen_subcommand_from verify wait help" -f -a "verify" -d 'Compare TARGET with SOURCE once, read-only, and say what differs'
complete -c syncer -n "__fish_syncer_using_subcommand help; and not __fish_seen_subcommand_from verify wait help" -f -a "wait" -d 'Wait until every change made in SOURCE before this call has reached every replica'
complete -c syncer -n "__fish_syncer_using_subcommand help; and not __fish_seen_subcommand_from verify wait help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
