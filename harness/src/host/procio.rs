//! I/O accounting from /proc/PID/io: live pids in, the summed read/write bytes and syscall
//! counts out. Measured from outside the syncer, so the CI gate can rest on it. A live
//! process's counters include the children it already waited for (the kernel adds a reaped
//! child's `ioac` to its parent's signal struct, kernel/exit.c), so summing live pids only
//! counts nothing twice.

use serde::Serialize;

/// Counters of proc(5) `/proc/PID/io`: bytes through read()/write()-family calls (page
/// cache included) and the number of those calls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ProcIo {
    pub rchar: u64,
    pub wchar: u64,
    pub syscr: u64,
    pub syscw: u64,
}

/// Parses the text of one `/proc/PID/io` file (unknown lines are ignored).
pub fn parse(text: &str) -> ProcIo {
    let mut io = ProcIo::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let Ok(n) = value.trim().parse::<u64>() else {
            continue;
        };
        match key {
            "rchar" => io.rchar = n,
            "wchar" => io.wchar = n,
            "syscr" => io.syscr = n,
            "syscw" => io.syscw = n,
            _ => {}
        }
    }
    io
}

/// Sums `/proc/PID/io` over `pids`; a pid that exited meanwhile counts as zero (its parent
/// picks its counters up when it reaps it).
pub fn read_tree(pids: &[i32]) -> ProcIo {
    let mut sum = ProcIo::default();
    for pid in pids {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/io")) else {
            continue;
        };
        let io = parse(&text);
        sum.rchar += io.rchar;
        sum.wchar += io.wchar;
        sum.syscr += io.syscr;
        sum.syscw += io.syscw;
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_proc_io_format() {
        let text = "rchar: 323934931\nwchar: 323929600\nsyscr: 632687\nsyscw: 632675\n\
                    read_bytes: 0\nwrite_bytes: 323932160\ncancelled_write_bytes: 0\n";
        assert_eq!(
            parse(text),
            ProcIo {
                rchar: 323_934_931,
                wchar: 323_929_600,
                syscr: 632_687,
                syscw: 632_675
            }
        );
    }

    #[test]
    fn reads_our_own_process() {
        let io = read_tree(&[std::process::id() as i32]);
        assert!(io.syscr > 0, "{io:?}");
    }
}
