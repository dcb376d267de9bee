//! The compare of an rsync daemon replica: a dry run of the sync the syncer would make
//! (`rsync -n -a -H --delete -i`), with rsync's itemized changes read back as `Finding`s.
//! rsync reads the daemon's side itself, so this sees the replica as the daemon does
//! (munged symlinks included). `-c` compares contents instead of sizes and mtimes.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::report::Progress;
use super::{Finding, Options, Outcome};
use crate::error::Error;
use crate::replica::rsync_run::{self, daemon_error, explain};
use crate::replica::rsync_url::RsyncUrl;

/// A dry run makes no transfer, so this only bounds a daemon that stops answering.
const TIMEOUT_SECS: u64 = 60;

pub fn compare(source: &Path, url: &RsyncUrl, options: &Options) -> Result<Outcome, Error> {
    let mut args: Vec<OsString> = [
        "--dry-run",
        "-a",
        "-H",
        "--delete",
        "--itemize-changes",
        "--stats",
        // mtimes to the nanosecond, as the syncer's own runs compare them.
        "--modify-window=-1",
        "--sockopts=TCP_NODELAY",
    ]
    .map(OsString::from)
    .to_vec();
    args.push(format!("--timeout={TIMEOUT_SECS}").into());
    args.push("--contimeout=10".into());
    if options.checksum {
        args.push("--checksum".into());
    }
    for pattern in options.excludes.rsync_patterns() {
        args.push(format!("--exclude={pattern}").into());
    }
    if let Some(file) = &options.password_file {
        let mut arg = OsString::from("--password-file=");
        arg.push(file);
        args.push(arg);
    }
    let mut from = source.as_os_str().to_os_string();
    from.push("/");
    args.push(from);
    args.push(url.destination().into());
    let no_password =
        options.password_file.is_none() && std::env::var_os("RSYNC_PASSWORD").is_none();
    let progress = Progress::new(&format!("rsync dry run against {url}"));
    let stall = Duration::from_secs(TIMEOUT_SECS + 5);
    let result = rsync_run::run(&args, None, source, stall, no_password);
    progress.finish();
    let result = result.map_err(|err| Error::NotCompared(err.to_string()))?;
    match result.code {
        // 24: files vanished in SOURCE while the list was made (a live tree).
        Some(0 | 24) => {}
        code => {
            let why = daemon_error(&result.stderr)
                .map(str::to_string)
                .or_else(|| result.stderr.lines().last().map(str::to_string))
                .unwrap_or_default();
            let code = code.map_or("killed".to_string(), |c| {
                format!("exit {c}: {}", explain(c))
            });
            return Err(Error::NotCompared(format!(
                "the rsync dry run against {url} failed ({code}): {why}"
            )));
        }
    }
    let findings = result
        .stdout
        .lines()
        .filter_map(parse_line)
        .filter(|finding| !unreplicated(source, finding))
        .collect();
    Ok(Outcome {
        findings,
        // "Number of files" counts the top directory too.
        entries: Some(result.files_listed.saturating_sub(1)),
        ..Default::default()
    })
}

/// A socket or device node missing on the daemon: the syncer does not replicate those.
fn unreplicated(source: &Path, finding: &Finding) -> bool {
    let Finding::Missing(path) = finding else {
        return false;
    };
    std::fs::symlink_metadata(source.join(path)).is_ok_and(|m| {
        let t = m.file_type();
        t.is_socket() || t.is_block_device() || t.is_char_device()
    })
}

/// One line of `--itemize-changes` output (`%i %n%L`): `YXcstpoguax name`, or
/// `*deleting   name`. None for lines that are no difference (the top directory, a
/// directory whose mtime alone differs, stats and messages).
pub fn parse_line(line: &str) -> Option<Finding> {
    if let Some(rest) = line.strip_prefix("*deleting") {
        return Some(Finding::Extra(unescape(
            rest.trim_start().trim_end_matches('/'),
        )));
    }
    let code = line.get(..11)?.as_bytes();
    let name = line.get(11..)?.strip_prefix(' ')?;
    let (update, kind, flags) = (code[0], code[1], &code[2..]);
    if !b"<>ch.".contains(&update) || !b"fdLDS".contains(&kind) {
        return None;
    }
    let name = match (update, kind) {
        (b'h', _) => name.split(" => ").next()?,
        (_, b'L') => name.split(" -> ").next()?,
        _ => name,
    };
    let path = name.trim_end_matches('/');
    if path.is_empty() || path == "." {
        return None;
    }
    let path = unescape(path);
    if flags.iter().all(|&f| f == b'+') {
        return Some(Finding::Missing(path));
    }
    if update == b'h' {
        return Some(Finding::Differs(
            path,
            vec!["hard link: not linked in TARGET".into()],
        ));
    }
    let names: [(&str, &[u8]); 8] = [
        (
            if kind == b'L' {
                "link target"
            } else {
                "content"
            },
            b"c",
        ),
        ("size", b"s"),
        ("mtime", b"tT"),
        ("mode", b"p"),
        ("owner", b"o"),
        ("group", b"g"),
        ("acl", b"a"),
        ("xattr", b"x"),
    ];
    let positions = [0, 1, 2, 3, 4, 5, 7, 8];
    let what: Vec<String> = names
        .iter()
        .zip(positions)
        .filter(|((_, letters), at)| flags.get(*at).is_some_and(|f| letters.contains(f)))
        // Directory mtimes are not replicated (every entry written changes them).
        .filter(|((what, _), _)| !(kind == b'd' && *what == "mtime"))
        .map(|((what, _), _)| what.to_string())
        .collect();
    (!what.is_empty()).then_some(Finding::Differs(path, what))
}

/// rsync prints unprintable bytes of names as `\#ooo` (octal).
fn unescape(name: &str) -> PathBuf {
    let bytes = name.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 2..i + 5)
            .filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match (bytes[i], bytes.get(i + 1), octal) {
            (b'\\', Some(b'#'), Some(d)) => {
                out.push((d[0] - b'0') << 6 | (d[1] - b'0') << 3 | (d[2] - b'0'));
                i += 5;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    PathBuf::from(OsString::from_vec(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn differs(path: &str, what: &[&str]) -> Option<Finding> {
        Some(Finding::Differs(
            path.into(),
            what.iter().map(|s| s.to_string()).collect(),
        ))
    }

    #[test]
    fn itemized_lines_become_findings() {
        assert_eq!(
            parse_line(">f+++++++++ d/new"),
            Some(Finding::Missing("d/new".into()))
        );
        assert_eq!(
            parse_line("cd+++++++++ d/sub/"),
            Some(Finding::Missing("d/sub".into()))
        );
        assert_eq!(
            parse_line("cL+++++++++ l -> ../x"),
            Some(Finding::Missing("l".into()))
        );
        assert_eq!(
            parse_line("*deleting   old/file"),
            Some(Finding::Extra("old/file".into()))
        );
        assert_eq!(
            parse_line("*deleting   old/"),
            Some(Finding::Extra("old".into()))
        );
        assert_eq!(
            parse_line(">f.st...... f"),
            differs("f", &["size", "mtime"])
        );
        assert_eq!(
            parse_line(".f...po.... f"),
            differs("f", &["mode", "owner"])
        );
        assert_eq!(
            parse_line(">fc.T...... f"),
            differs("f", &["content", "mtime"])
        );
        assert_eq!(
            parse_line("cLc.T...... l -> y"),
            differs("l", &["link target", "mtime"])
        );
        assert_eq!(
            parse_line(".d..t...... d/"),
            None,
            "directory mtimes are not replicated"
        );
        assert_eq!(parse_line(".d...p..... d/"), differs("d", &["mode"]));
        assert_eq!(parse_line(".d..t...... ./"), None);
        assert_eq!(
            parse_line("hf+++++++++ b => a"),
            Some(Finding::Missing("b".into()))
        );
        assert_eq!(parse_line("Number of files: 3 (reg: 2, dir: 1)"), None);
        assert_eq!(parse_line("Total bytes sent: 120"), None);
        assert_eq!(
            parse_line(">f+++++++++ new\\#012line"),
            Some(Finding::Missing(PathBuf::from("new\nline")))
        );
    }
}
