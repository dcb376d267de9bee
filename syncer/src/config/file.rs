//! `--config FILE.toml`: the same settings as the command line, in a file, with options per
//! target. Every key is spelled as its command-line option without the dashes in front:
//!
//! ```toml
//! source = "/srv/www"
//! exclude = ["*.tmp", ".cache"]
//!
//! [[target]]
//! path = "/backup/www"
//!
//! [[target]]
//! url = "rsync://backup@mirror/www"
//! password-file = "/etc/syncer/mirror.secret"
//! exclude = ["/logs"]
//! bwlimit = "10M"
//! ```
//!
//! A bad file is refused whole, with its path, line, column, the key and what to write
//! instead; values are checked where they stand, so the position is the value's own.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Parser, ValueEnum};
use serde::Deserialize;
use toml::Spanned;

use super::{Config, TargetConfig, TargetSpec};
use crate::backend::{BackendChoice, BackendConfig};
use crate::cli::Args;
use crate::error::Error;
use crate::exclude::Excludes;
use crate::queue::pending::Timing;
use crate::replica::TargetOptions;
use crate::replica::rsync::RsyncOptions;

/// What only the command line gives, beside `--config` (one-off actions and log level).
#[derive(Debug, Clone, Copy, Default)]
pub struct CommandLine {
    pub once: bool,
    pub allow_source_change: bool,
    pub verbose: u8,
    pub quiet: bool,
}

/// The command-line options that may stand beside `--config` (clap ids).
pub const BESIDE_CONFIG: &[&str] = &["config", "once", "allow_source_change", "verbose", "quiet"];

/// The file's top level: the global options and the targets.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileKeys {
    source: Option<Spanned<String>>,
    #[serde(default)]
    target: Vec<Spanned<TargetKeys>>,
    backend: Option<Spanned<String>>,
    exclude: Option<Spanned<Vec<String>>>,
    state_dir: Option<Spanned<String>>,
    status: Option<Spanned<String>>,
    metrics: Option<Spanned<String>>,
    strict: Option<bool>,
    fanotify_unlimited_queue: Option<bool>,
    batch_delay: Option<u64>,
    max_batch: Option<Spanned<usize>>,
    modify_quiet: Option<u64>,
    modify_max_age: Option<u64>,
    rescan_interval: Option<u64>,
    max_links: Option<usize>,
}

/// One `[[target]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct TargetKeys {
    path: Option<Spanned<String>>,
    url: Option<Spanned<String>>,
    exclude: Option<Spanned<Vec<String>>>,
    bwlimit: Option<Spanned<Rate>>,
    max_delete: Option<u64>,
    fsync: Option<bool>,
    jobs: Option<Spanned<usize>>,
    password_file: Option<Spanned<String>>,
    compress: Option<bool>,
    inplace: Option<bool>,
    streams: Option<Spanned<usize>>,
    warm_clients: Option<usize>,
    run_interval: Option<u64>,
    rsync_timeout: Option<Spanned<u64>>,
    backup_dir: Option<Spanned<String>>,
    backup_keep: Option<u64>,
}

/// `bwlimit = "10M"` or `bwlimit = 500` (KiB, as rsync takes a bare number).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Rate {
    Text(String),
    Kib(u64),
}

/// The target options a key at the top level would belong to.
const TARGET_KEYS: &[&str] = &[
    "bwlimit",
    "max-delete",
    "fsync",
    "jobs",
    "password-file",
    "compress",
    "inplace",
    "streams",
    "warm-clients",
    "run-interval",
    "rsync-timeout",
    "backup-dir",
    "backup-keep",
    "path",
    "url",
];

/// A refusal: where in the file, which key, what is wrong and what to write instead.
struct Refusal {
    span: Range<usize>,
    key: String,
    message: String,
}

fn refuse(span: Range<usize>, key: impl Into<String>, message: impl Into<String>) -> Refusal {
    Refusal {
        span,
        key: key.into(),
        message: message.into(),
    }
}

/// Reads and validates `path`; nothing is applied when it is refused.
pub fn load(path: &Path, command_line: CommandLine) -> Result<Config, Error> {
    let text = std::fs::read_to_string(path).map_err(|err| {
        Error::Usage(format!(
            "--config {}: {err}; give a readable TOML file",
            path.display()
        ))
    })?;
    let file = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    from_text(&text, path, &file, command_line)
}

/// Validates the text of `path` (named in errors); `file` is kept for SIGHUP.
fn from_text(
    text: &str,
    path: &Path,
    file: &Path,
    command_line: CommandLine,
) -> Result<Config, Error> {
    parse(text, file, command_line).map_err(|r| {
        let (line, column) = line_col(text, r.span.start);
        let key = if r.key.is_empty() {
            String::new()
        } else {
            format!("{}: ", r.key)
        };
        Error::Usage(format!(
            "{}:{line}:{column}: {key}{}",
            path.display(),
            r.message
        ))
    })
}

fn parse(text: &str, file: &Path, command_line: CommandLine) -> Result<Config, Refusal> {
    let keys: FileKeys = toml::from_str(text).map_err(|e| toml_refusal(text, &e))?;
    // The command line's defaults, so a key left out means what the option left out means.
    let defaults = Args::try_parse_from(["syncer", "--config", "-"])
        .expect("the defaults of the command line parse");
    let whole = 0..text.len().min(1);
    let source_key = keys.source.as_ref().ok_or_else(|| {
        refuse(
            whole.clone(),
            "source",
            "no source: write source = \"/the/directory/to/replicate\" at the top",
        )
    })?;
    let source = super::source_dir(Path::new(source_key.get_ref()))
        .map_err(|e| refuse(source_key.span(), "source", e))?;
    let excludes = match &keys.exclude {
        Some(list) => {
            Excludes::new(list.get_ref()).map_err(|e| refuse(list.span(), "exclude", e))?
        }
        None => Excludes::none(),
    };
    if keys.target.is_empty() {
        return Err(refuse(
            whole,
            "target",
            "no target: add a [[target]] table per replica, with path = \"/a/directory\" or \
             url = \"rsync://host/module\"",
        ));
    }
    let mut targets: Vec<TargetConfig> = Vec::new();
    for (index, table) in keys.target.iter().enumerate() {
        let target = target(index, table, &source, &excludes, &defaults)?;
        if targets.iter().any(|t| t.spec == target.spec) {
            return Err(refuse(
                table.span(),
                format!("target[{index}]"),
                format!("{} is given twice", target.spec.name()),
            ));
        }
        targets.push(target);
    }
    let specs: Vec<TargetSpec> = targets.iter().map(|t| t.spec.clone()).collect();
    let state_dir = super::state_dir(
        keys.state_dir.as_ref().map(|d| Path::new(d.get_ref())),
        &source,
        &specs,
    )
    .map_err(|e| {
        let span = keys.state_dir.as_ref().map_or(0..0, Spanned::span);
        refuse(span, "state-dir", e)
    })?;
    let choice = match &keys.backend {
        Some(name) => BackendChoice::from_str(name.get_ref(), true).map_err(|_| {
            refuse(
                name.span(),
                "backend",
                format!(
                    "{:?} is no backend: write \"auto\", \"inotify\" or \"fanotify\"",
                    name.get_ref()
                ),
            )
        })?,
        None => defaults.backend,
    };
    let max_batch = match &keys.max_batch {
        Some(n) if *n.get_ref() == 0 => {
            return Err(refuse(n.span(), "max-batch", "must be at least 1"));
        }
        Some(n) => *n.get_ref(),
        None => defaults.max_batch,
    };
    let ms = |key: Option<u64>, default: u64| super::ms(key.unwrap_or(default));
    Ok(Config {
        source,
        targets,
        backend: BackendConfig {
            choice,
            unlimited_queue: keys
                .fanotify_unlimited_queue
                .unwrap_or(defaults.fanotify_unlimited_queue),
        },
        excludes,
        once: command_line.once,
        status: keys.status.map(|s| PathBuf::from(s.into_inner())),
        metrics: keys.metrics.map(Spanned::into_inner),
        strict: keys.strict.unwrap_or(defaults.strict),
        allow_source_change: command_line.allow_source_change,
        state_dir,
        timing: Timing {
            quiet_ns: ms(keys.modify_quiet, defaults.modify_quiet),
            max_age_ns: ms(keys.modify_max_age, defaults.modify_max_age),
            batch_delay_ns: ms(keys.batch_delay, defaults.batch_delay),
            max_batch,
        },
        rescan_interval: Duration::from_secs(
            keys.rescan_interval
                .unwrap_or(defaults.rescan_interval)
                .max(1),
        ),
        max_links: keys.max_links.unwrap_or(defaults.max_links),
        log_level: super::log_level(command_line.quiet, command_line.verbose),
        file: Some(file.to_path_buf()),
    })
}

/// One `[[target]]` table, validated.
fn target(
    index: usize,
    table: &Spanned<TargetKeys>,
    source: &Path,
    global: &Excludes,
    defaults: &Args,
) -> Result<TargetConfig, Refusal> {
    let name = |key: &str| format!("target[{index}].{key}");
    let keys = table.get_ref();
    let spec = match (&keys.path, &keys.url) {
        (Some(path), None) => {
            if crate::replica::rsync_url::looks_like_rsync(path.get_ref()) {
                return Err(refuse(
                    path.span(),
                    name("path"),
                    format!(
                        "{:?} is an rsync address: write url = instead",
                        path.get_ref()
                    ),
                ));
            }
            super::target_spec(path.get_ref(), source)
                .map_err(|e| refuse(path.span(), name("path"), e))?
        }
        (None, Some(url)) => {
            if !crate::replica::rsync_url::looks_like_rsync(url.get_ref()) {
                return Err(refuse(
                    url.span(),
                    name("url"),
                    "not an rsync daemon address: write rsync://[USER@]HOST[:PORT]/MODULE[/PATH], \
                     or path = \"/dir\" for a local directory",
                ));
            }
            super::target_spec(url.get_ref(), source)
                .map_err(|e| refuse(url.span(), name("url"), e))?
        }
        (Some(_), Some(_)) => {
            return Err(refuse(
                table.span(),
                format!("target[{index}]"),
                "has both path and url: give one of them (one table per replica)",
            ));
        }
        (None, None) => {
            return Err(refuse(
                table.span(),
                format!("target[{index}]"),
                "has neither path nor url: write path = \"/a/directory\" or url = \"rsync://host/module\"",
            ));
        }
    };
    let own: Vec<String> = keys
        .exclude
        .as_ref()
        .map_or_else(Vec::new, |l| l.get_ref().clone());
    let backup_dir = match &keys.backup_dir {
        Some(dir) => {
            let path = PathBuf::from(dir.get_ref());
            crate::replica::backup::check_dir(&path)
                .map_err(|e| refuse(dir.span(), name("backup-dir"), e))?;
            Some(path)
        }
        None => None,
    };
    if keys.backup_keep.is_some() && backup_dir.is_none() {
        return Err(refuse(
            table.span(),
            name("backup-keep"),
            "is for backups: give backup-dir = \"DIR\" in the same table, or remove it",
        ));
    }
    let bwlimit = match &keys.bwlimit {
        Some(rate) => Some(
            match rate.get_ref() {
                Rate::Text(text) => crate::replica::bandwidth::parse_rate(text),
                Rate::Kib(kib) => crate::replica::bandwidth::parse_rate(&kib.to_string()),
            }
            .map_err(|e| refuse(rate.span(), name("bwlimit"), e))?,
        ),
        None => None,
    };
    let password_file = match &keys.password_file {
        Some(file) => {
            let path = PathBuf::from(file.get_ref());
            super::check_password_file(&path)
                .map_err(|e| refuse(file.span(), name("password-file"), e))?;
            Some(path)
        }
        None => None,
    };
    let at_least_one = |key: &str, value: &Option<Spanned<usize>>, default: usize| match value {
        Some(n) if *n.get_ref() == 0 => Err(refuse(n.span(), name(key), "must be at least 1")),
        Some(n) => Ok(*n.get_ref()),
        None => Ok(default),
    };
    let timeout = match &keys.rsync_timeout {
        Some(n) if *n.get_ref() == 0 => {
            return Err(refuse(
                n.span(),
                name("rsync-timeout"),
                "must be at least 1",
            ));
        }
        Some(n) => *n.get_ref(),
        None => defaults.rsync_timeout,
    };
    let options = TargetOptions {
        exclude: own,
        bwlimit,
        max_delete: keys.max_delete,
        fsync: keys.fsync.unwrap_or(defaults.fsync),
        jobs: at_least_one("jobs", &keys.jobs, super::default_jobs())?,
        backup_dir,
        backup_keep: keys.backup_keep,
        rsync: RsyncOptions {
            password_file,
            compress: keys.compress.unwrap_or(defaults.compress),
            inplace: keys.inplace.unwrap_or(defaults.inplace),
            timeout_secs: timeout,
            streams: at_least_one("streams", &keys.streams, defaults.streams)?,
            warm_clients: keys.warm_clients.unwrap_or(defaults.warm_clients),
            run_interval: Duration::from_millis(keys.run_interval.unwrap_or(defaults.run_interval)),
            bwlimit,
        },
    };
    let excludes = super::target_excludes(global, &options).map_err(|e| {
        let span = keys.exclude.as_ref().map_or(0..0, Spanned::span);
        refuse(span, name("exclude"), e)
    })?;
    Ok(TargetConfig {
        spec,
        options,
        excludes,
    })
}

/// A parse or type error from the TOML reader, with the key it is about and a hint.
fn toml_refusal(text: &str, err: &toml::de::Error) -> Refusal {
    let span = err.span().unwrap_or(0..0);
    let key = key_at(text, span.clone());
    let message = err.message().trim().to_string();
    let hint = if key == "password" || key.ends_with(".password") {
        Some(
            "passwords are never read from the config file: put the password in a file only \
             its owner can read (chmod 600) and write password-file = \"/path/to/it\" in the \
             [[target]] table"
                .to_string(),
        )
    } else if message.starts_with("unknown field") && TARGET_KEYS.contains(&key.as_str()) {
        Some(format!(
            "{key} is an option of one target: write it in each [[target]] table it is for"
        ))
    } else if message.starts_with("unknown field") && (key == "targets" || key == "replica") {
        Some("write one [[target]] table per replica".to_string())
    } else if key.ends_with("exclude") && message.contains("expected a sequence") {
        Some(format!("{message}: write {key} = [\"PATTERN\", ...]"))
    } else {
        None
    };
    refuse(span, key, hint.unwrap_or(message))
}

/// The key a TOML error's span points at: an unknown key spans the key itself, a type error
/// spans the value, whose key stands before `=` on that line.
fn key_at(text: &str, span: Range<usize>) -> String {
    let start = boundary(text, span.start);
    let end = boundary(text, span.end).max(start);
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
    let line = &text[line_start..line_end];
    let spanned = text[start..end].trim();
    let before_eq = line.split('=').next().unwrap_or("").trim();
    if !spanned.is_empty() && spanned == before_eq {
        return spanned.trim_matches('"').to_string();
    }
    if line.contains('=') {
        return before_eq.trim_matches('"').to_string();
    }
    String::new()
}

/// `at`, moved back to the end of the text or the start of its character: the reader's spans
/// are not ours to trust with a slice.
fn boundary(text: &str, at: usize) -> usize {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = boundary(text, offset);
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rfind('\n').map_or(offset, |i| offset - i - 1) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dirs() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("src");
        std::fs::create_dir(&source).unwrap();
        (dir, source)
    }

    fn refused(text: &str) -> String {
        let (dir, _) = dirs();
        let file = dir.path().join("syncer.toml");
        let text = text.replace("ROOT", &dir.path().display().to_string());
        std::fs::write(&file, text).unwrap();
        match load(&file, CommandLine::default()) {
            Err(Error::Usage(message)) => message.replacen(&file.display().to_string(), "FILE", 1),
            other => panic!("accepted: {other:?}"),
        }
    }

    #[test]
    fn a_file_gives_what_the_command_line_gives_and_options_per_target() {
        let (dir, source) = dirs();
        let file = dir.path().join("syncer.toml");
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "pw").unwrap();
        std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        let root = dir.path().display();
        std::fs::write(
            &file,
            format!(
                "source = \"{root}/src\"\nexclude = [\"*.tmp\"]\nstate-dir = \"{root}/state\"\n\
                 [[target]]\npath = \"{root}/a\"\nexclude = [\"/logs\"]\nbwlimit = \"2M\"\n\
                 [[target]]\nurl = \"rsync://u@127.0.0.1:8873/backup\"\nstreams = 3\n\
                 password-file = \"{root}/secret\"\nmax-delete = 10\n"
            ),
        )
        .unwrap();
        let config = load(&file, CommandLine::default()).unwrap();
        let args = Args::try_parse_from([
            "syncer",
            source.to_str().unwrap(),
            dir.path().join("a").to_str().unwrap(),
            "--exclude",
            "*.tmp",
        ])
        .unwrap();
        let cli = Config::from_args(args).unwrap();
        assert_eq!(config.source, cli.source);
        assert_eq!(config.timing, cli.timing);
        assert_eq!(config.backend, cli.backend);
        assert_eq!(config.targets.len(), 2);
        let (a, daemon) = (&config.targets[0], &config.targets[1]);
        assert_eq!(a.spec, cli.targets[0].spec);
        assert_eq!(a.options.bwlimit, Some(2 << 20));
        assert_eq!(
            a.options.rsync.streams,
            cli.targets[0].options.rsync.streams
        );
        assert!(a.excludes.covers(Path::new("logs/x")) && a.excludes.covers(Path::new("x.tmp")));
        assert!(!daemon.excludes.covers(Path::new("logs/x")));
        assert_eq!(daemon.options.rsync.streams, 3);
        assert_eq!(daemon.options.max_delete, Some(10));
        assert_eq!(
            daemon.options.rsync.password_file.as_deref(),
            Some(secret.as_path())
        );
    }

    #[test]
    fn a_bad_file_names_the_place_the_key_and_what_to_write() {
        let base = "source = \"ROOT/src\"\n[[target]]\npath = \"ROOT/a\"\n";
        let cases = [
            (
                format!("{base}bwlimit = \"fast\"\n"),
                "FILE:4:11: target[0].bwlimit: \"fast\": give bytes",
            ),
            (
                format!("{base}password = \"x\"\n"),
                "FILE:4:1: password: passwords are never read",
            ),
            (
                format!("bwlimit = 5\n{base}"),
                "FILE:1:1: bwlimit: bwlimit is an option of one target",
            ),
            (
                format!("{base}streams = 0\n"),
                "FILE:4:11: target[0].streams: must be at least 1",
            ),
            (
                format!("{base}exclude = \"*.tmp\"\n"),
                "exclude = [\"PATTERN\", ...]",
            ),
            (
                "[[target]]\npath = \"/x\"\n".to_string(),
                "FILE:1:1: source: no source: write source =",
            ),
            (
                "source = \"ROOT/src\"\n".to_string(),
                "no target: add a [[target]] table",
            ),
            (
                format!("{base}url = \"rsync://h/m\"\n"),
                "FILE:2:1: target[0]: has both path and url",
            ),
            (
                "source = \"ROOT/nope\"\n[[target]]\npath = \"ROOT/a\"\n".into(),
                "FILE:1:10: source: SOURCE",
            ),
            (
                format!("{base}[[target]]\npath = \"ROOT/src/in\"\n"),
                "FILE:5:8: target[1].path: TARGET",
            ),
            (
                format!("backend = \"kqueue\"\n{base}"),
                "FILE:1:11: backend: \"kqueue\" is no backend",
            ),
            (
                format!("{base}[[target]]\npath = \"rsync://h/m\"\n"),
                "write url = instead",
            ),
        ];
        for (text, expected) in cases {
            let message = refused(&text);
            assert!(
                message.contains(expected),
                "{text}\n-> {message}\nwanted {expected}"
            );
        }
    }

    /// The README's example, with its paths moved into a scratch directory, is a good file.
    #[test]
    fn the_readme_example_is_accepted() {
        let readme =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
        let section = &readme[readme.find("### Config file").unwrap()..];
        let start = section.find("```toml\n").unwrap() + 8;
        let example = &section[start..start + section[start..].find("```").unwrap()];
        let (dir, _) = dirs();
        let root = dir.path().display().to_string();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "pw").unwrap();
        std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        let text = example
            .replace("/srv/app", &format!("{root}/src"))
            .replace("/backup/app", &format!("{root}/a"))
            .replace("/etc/syncer/rsync.password", &secret.display().to_string())
            .replace("/var/lib/syncer", &format!("{root}/state"))
            .replace("/run/syncer", &root);
        let file = dir.path().join("syncer.toml");
        std::fs::write(&file, text).unwrap();
        let config = load(&file, CommandLine::default()).unwrap();
        assert_eq!(config.targets.len(), 2);
        assert_eq!(config.targets[1].options.max_delete, Some(10000));
        assert!(config.targets[1].excludes.covers(Path::new("logs/x")));
    }

    /// Found by `prop_config_error_position_never_panics`: a span inside a character panicked
    /// on slicing.
    #[test]
    fn a_span_inside_a_character_gives_a_position() {
        assert_eq!(line_col("é", 1), (1, 1));
        assert_eq!(key_at("x = é", 5..6), "x");
    }

    #[test]
    fn key_and_position_of_a_span() {
        let text = "a = 1\nbwlimit = \"x\"\n";
        assert_eq!(line_col(text, 16), (2, 11));
        assert_eq!(key_at(text, 16..19), "bwlimit");
        assert_eq!(key_at(text, 6..13), "bwlimit");
    }

    mod prop {
        use proptest::prelude::*;

        use super::*;

        fn refusal_is_placed(
            result: &Result<Config, Error>,
            text: &str,
        ) -> Result<(), TestCaseError> {
            match result {
                Ok(_) => {}
                Err(Error::Usage(message)) => {
                    let rest = message.strip_prefix("/cfg/syncer.toml:");
                    prop_assert!(rest.is_some(), "{}", message);
                    let line: usize = rest.unwrap().split(':').next().unwrap().parse().unwrap();
                    prop_assert!(line >= 1 && line <= text.lines().count() + 1, "{}", message);
                }
                Err(other) => prop_assert!(false, "not a usage error: {other:?}"),
            }
            Ok(())
        }

        const CFG: &str = "/cfg/syncer.toml";

        const KEYS: &[&str] = &[
            "source",
            "backend",
            "exclude",
            "state-dir",
            "status",
            "metrics",
            "strict",
            "fanotify-unlimited-queue",
            "batch-delay",
            "max-batch",
            "modify-quiet",
            "modify-max-age",
            "rescan-interval",
            "max-links",
            "path",
            "url",
            "bwlimit",
            "max-delete",
            "fsync",
            "jobs",
            "password-file",
            "compress",
            "inplace",
            "streams",
            "warm-clients",
            "run-interval",
            "rsync-timeout",
            "backup-dir",
            "backup-keep",
            "password",
            "targets",
            "bogus",
        ];

        const VALUES: &[&str] = &[
            "\"ROOT/src\"",
            "\"ROOT/a\"",
            "\"ROOT/src/in\"",
            "\"ROOT/secret\"",
            "\"ROOT/state\"",
            "\"rsync://u@127.0.0.1:8873/m\"",
            "\"h::m\"",
            "\"rsync://[::1]/m\"",
            "\"\"",
            "\"/\"",
            "\"..\"",
            "\".syncer-backup\"",
            "\"*.tmp\"",
            "[\"*.tmp\", \"/logs\"]",
            "[\"[\"]",
            "[]",
            "[1]",
            "0",
            "1",
            "-1",
            "9223372036854775807",
            "1.5",
            "nan",
            "inf",
            "true",
            "\"10M\"",
            "\"0.5K\"",
            "\"1e300G\"",
            "\"fast\"",
            "{}",
            "\"inotify\"",
            "\"kqueue\"",
            "\"\\u0000\"",
            "\"é\"",
        ];

        /// One edit of a good file: a line replaced by a key and value, a line removed, a
        /// table added, or the text cut (as a half-written file would be).
        #[derive(Debug, Clone)]
        enum Edit {
            Set(usize, &'static str, &'static str),
            Remove(usize),
            Table(usize, &'static str),
            Cut(usize),
        }

        fn edit() -> impl Strategy<Value = Edit> {
            let at = any::<usize>();
            prop_oneof![
                4 => (at, proptest::sample::select(KEYS), proptest::sample::select(VALUES))
                    .prop_map(|(i, k, v)| Edit::Set(i, k, v)),
                1 => at.prop_map(Edit::Remove),
                1 => (at, proptest::sample::select(&["[[target]]", "[target]", "[x]", "[["][..]))
                    .prop_map(|(i, t)| Edit::Table(i, t)),
                1 => at.prop_map(Edit::Cut),
            ]
        }

        const GOOD: &str = "source = \"ROOT/src\"\nstate-dir = \"ROOT/state\"\n[[target]]\n\
                            path = \"ROOT/a\"\n[[target]]\nurl = \"rsync://u@127.0.0.1:8873/m\"\n\
                            password-file = \"ROOT/secret\"\n";

        fn apply(text: &str, edits: &[Edit]) -> String {
            let mut lines: Vec<String> = text.lines().map(String::from).collect();
            for e in edits {
                let n = lines.len().max(1);
                match *e {
                    Edit::Set(i, k, v) if !lines.is_empty() => lines[i % n] = format!("{k} = {v}"),
                    Edit::Set(_, k, v) => lines.push(format!("{k} = {v}")),
                    Edit::Remove(i) if !lines.is_empty() => {
                        lines.remove(i % n);
                    }
                    Edit::Remove(_) => {}
                    Edit::Table(i, t) => lines.insert(i % (lines.len() + 1), t.to_string()),
                    Edit::Cut(i) => {
                        let joined = lines.join("\n");
                        let mut at = i % (joined.len() + 1);
                        while !joined.is_char_boundary(at) {
                            at -= 1;
                        }
                        lines = joined[..at].lines().map(String::from).collect();
                    }
                }
            }
            lines.join("\n")
        }

        proptest! {
            #![proptest_config(crate::prop::config(256))]

            #[test]
            fn prop_config_any_text_never_panics(text in any::<String>()) {
                let result = from_text(&text, CFG.as_ref(), CFG.as_ref(), CommandLine::default());
                refusal_is_placed(&result, &text)?;
            }

            /// A good file with a few edits: accepted, or refused with a line inside it.
            #[test]
            fn prop_config_edited_file_never_panics(
                edits in proptest::collection::vec(edit(), 1..5),
            ) {
                let (dir, _) = dirs();
                let secret = dir.path().join("secret");
                std::fs::write(&secret, "pw").unwrap();
                let private = std::os::unix::fs::PermissionsExt::from_mode(0o600);
                std::fs::set_permissions(&secret, private).unwrap();
                let text = apply(GOOD, &edits).replace("ROOT", &dir.path().display().to_string());
                let result = from_text(&text, CFG.as_ref(), CFG.as_ref(), CommandLine::default());
                refusal_is_placed(&result, &text)?;
            }

            /// The TOML reader's spans are taken as they come: any span, even one not on a
            /// character boundary or past the end, gives a position and a key.
            #[test]
            fn prop_config_error_position_never_panics(
                text in "\\PC{0,40}",
                a in 0usize..64,
                b in 0usize..64,
            ) {
                let (line, column) = line_col(&text, a);
                prop_assert!(line >= 1 && column >= 1);
                key_at(&text, a..b);
            }
        }
    }
}
