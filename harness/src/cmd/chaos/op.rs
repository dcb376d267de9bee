//! One random-storm operation: the `Op` type, its one-line text form (the op log, which is
//! also the replay and regression-test format) and its execution on real files. Paths are
//! bytes relative to SOURCE (or to OUTSIDE, the sibling folder moves go to and come from),
//! so names with spaces, newlines and invalid UTF-8 round-trip exactly.

use std::ffi::OsStr;
use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::AtFlags;
use nix::fcntl::{AT_FDCWD, OFlag, RenameFlags};
use nix::sys::stat::{Mode, UtimensatFlags};
use nix::sys::time::TimeSpec;

use super::fault::Fault;

/// A path relative to SOURCE or OUTSIDE, as raw bytes.
pub type Rel = Vec<u8>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Create (or truncate and rewrite) a regular file with `size` bytes of `seed`'s content.
    Create {
        path: Rel,
        size: u32,
        seed: u32,
    },
    /// Same size, new content, and mtime set `back_s` seconds before the old mtime: the
    /// rewrite a size+mtime quick check cannot see.
    Rewrite {
        path: Rel,
        seed: u32,
        back_s: u32,
    },
    Append {
        path: Rel,
        size: u32,
        seed: u32,
    },
    Truncate {
        path: Rel,
        size: u32,
    },
    Unlink {
        path: Rel,
    },
    Mkdir {
        path: Rel,
    },
    /// `rm -rf`.
    RemoveTree {
        path: Rel,
    },
    /// rename(2) inside SOURCE, replacing whatever `to` held (a file or an empty directory).
    Rename {
        from: Rel,
        to: Rel,
    },
    /// renameat2(RENAME_EXCHANGE): the two entries swap names atomically.
    Exchange {
        a: Rel,
        b: Rel,
    },
    /// Moved out of SOURCE to OUTSIDE/slot.
    MoveOut {
        path: Rel,
        slot: Rel,
    },
    /// Moved from OUTSIDE/slot into SOURCE.
    MoveIn {
        slot: Rel,
        path: Rel,
    },
    /// Moved out, and at once a new entry of the same kind made under the same name (a new
    /// directory gets one file): `mv current old && mkdir current`.
    MoveOutRecreate {
        path: Rel,
        slot: Rel,
        seed: u32,
    },
    /// A file becomes a directory (with one file in it) or a directory becomes a file.
    Swap {
        path: Rel,
        seed: u32,
    },
    Symlink {
        path: Rel,
        target: Rel,
    },
    /// Never through a symlink (it may point outside SOURCE).
    Chmod {
        path: Rel,
        mode: u32,
    },
    /// lchown; as root only.
    Chown {
        path: Rel,
        uid: u32,
        gid: u32,
    },
    /// mtime (and atime) set to a fixed moment in the past; never through a symlink.
    Touch {
        path: Rel,
        secs: i64,
        nsec: u32,
    },
    /// O_TMPFILE in the parent, written, then linkat(2) to its name.
    TmpfileLink {
        path: Rel,
        size: u32,
        seed: u32,
    },
    /// A hard link: linkat(2) of the existing file `from` (never through a symlink) to the
    /// new name `to`.
    Link {
        from: Rel,
        to: Rel,
    },
    /// A pause between operations, in microseconds.
    Sleep {
        us: u32,
    },
    /// A fault the case injects into the syncer or the daemon (fault.rs); no operation on the
    /// tree.
    Fault(Fault),
}

/// Where operations act.
#[derive(Debug, Clone, Copy)]
pub struct Roots<'a> {
    pub src: &'a Path,
    pub outside: &'a Path,
}

/// Deterministic content: `size` bytes from `seed`, different for different seeds.
pub fn content(size: u32, seed: u32) -> Vec<u8> {
    let mut x = u64::from(seed).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn join(root: &Path, rel: &[u8]) -> PathBuf {
    root.join(OsStr::from_bytes(rel))
}

/// Refuses a path whose parent components include a symlink: the storm must never act
/// outside SOURCE, whatever an earlier operation left there (the tree is ours alone while
/// the storm runs, so checking first is not racy).
fn beneath(root: &Path, rel: &[u8]) -> io::Result<PathBuf> {
    let path = join(root, rel);
    let mut at = root.to_path_buf();
    let parent = Path::new(OsStr::from_bytes(rel))
        .parent()
        .unwrap_or(Path::new(""));
    for part in parent.components() {
        at.push(part);
        if fs::symlink_metadata(&at)?.file_type().is_symlink() {
            return Err(io::Error::other(format!(
                "{} is a symlink: not followed",
                at.display()
            )));
        }
    }
    Ok(path)
}

fn not_a_symlink(path: &Path) -> io::Result<fs::Metadata> {
    let meta = fs::symlink_metadata(path)?;
    if meta.file_type().is_symlink() {
        return Err(io::Error::other("a symlink: not followed"));
    }
    Ok(meta)
}

fn open_file(path: &Path, truncate: bool) -> io::Result<fs::File> {
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(truncate)
        .mode(0o644)
        .custom_flags(libc_o_nofollow())
        .open(path)
}

fn libc_o_nofollow() -> i32 {
    OFlag::O_NOFOLLOW.bits()
}

fn nix_io(e: nix::Error) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

fn write_file(path: &Path, size: u32, seed: u32) -> io::Result<()> {
    open_file(path, true)?.write_all(&content(size, seed))
}

impl Op {
    /// Applies the operation. An error means it did not apply (e.g. a shrunk op list removed
    /// what it acts on); callers count errors and go on.
    pub fn apply(&self, roots: Roots) -> io::Result<()> {
        let src = |rel: &[u8]| beneath(roots.src, rel);
        let out = |rel: &[u8]| beneath(roots.outside, rel);
        match self {
            Op::Create { path, size, seed } => write_file(&src(path)?, *size, *seed),
            Op::Rewrite { path, seed, back_s } => {
                let path = src(path)?;
                let meta = not_a_symlink(&path)?;
                let mut f = fs::OpenOptions::new().write(true).open(&path)?;
                f.write_all(&content(meta.len() as u32, *seed))?;
                let secs = meta.mtime() - i64::from(*back_s);
                let when = TimeSpec::new(secs, meta.mtime_nsec());
                nix::sys::stat::futimens(&f, &when, &when).map_err(nix_io)
            }
            Op::Append { path, size, seed } => {
                let path = src(path)?;
                not_a_symlink(&path)?;
                fs::OpenOptions::new()
                    .append(true)
                    .custom_flags(libc_o_nofollow())
                    .open(path)?
                    .write_all(&content(*size, *seed))
            }
            Op::Truncate { path, size } => {
                let path = src(path)?;
                not_a_symlink(&path)?;
                open_file(&path, false)?.set_len(u64::from(*size))
            }
            Op::Unlink { path } => fs::remove_file(src(path)?),
            Op::Mkdir { path } => fs::create_dir(src(path)?),
            Op::RemoveTree { path } => {
                let path = src(path)?;
                if fs::symlink_metadata(&path)?.is_dir() {
                    fs::remove_dir_all(path)
                } else {
                    fs::remove_file(path)
                }
            }
            Op::Rename { from, to } => fs::rename(src(from)?, src(to)?),
            Op::Exchange { a, b } => nix::fcntl::renameat2(
                AT_FDCWD,
                &src(a)?,
                AT_FDCWD,
                &src(b)?,
                RenameFlags::RENAME_EXCHANGE,
            )
            .map_err(nix_io),
            Op::MoveOut { path, slot } => fs::rename(src(path)?, out(slot)?),
            Op::MoveIn { slot, path } => fs::rename(out(slot)?, src(path)?),
            Op::MoveOutRecreate { path, slot, seed } => {
                let path = src(path)?;
                let was_dir = fs::symlink_metadata(&path)?.is_dir();
                fs::rename(&path, out(slot)?)?;
                if was_dir {
                    fs::create_dir(&path)?;
                    write_file(&path.join("new"), 16, *seed)
                } else {
                    write_file(&path, 16, *seed)
                }
            }
            Op::Swap { path, seed } => {
                let path = src(path)?;
                if fs::symlink_metadata(&path)?.is_dir() {
                    fs::remove_dir_all(&path)?;
                    write_file(&path, 8, *seed)
                } else {
                    fs::remove_file(&path)?;
                    fs::create_dir(&path)?;
                    write_file(&path.join("f0"), 8, *seed)
                }
            }
            Op::Symlink { path, target } => {
                std::os::unix::fs::symlink(OsStr::from_bytes(target), src(path)?)
            }
            Op::Chmod { path, mode } => {
                let path = src(path)?;
                not_a_symlink(&path)?;
                fs::set_permissions(path, fs::Permissions::from_mode(*mode))
            }
            Op::Chown { path, uid, gid } => {
                std::os::unix::fs::lchown(src(path)?, Some(*uid), Some(*gid))
            }
            Op::Touch { path, secs, nsec } => {
                let path = src(path)?;
                not_a_symlink(&path)?;
                let when = TimeSpec::new(*secs, i64::from(*nsec));
                nix::sys::stat::utimensat(
                    AT_FDCWD,
                    &path,
                    &when,
                    &when,
                    UtimensatFlags::NoFollowSymlink,
                )
                .map_err(nix_io)
            }
            Op::TmpfileLink { path, size, seed } => {
                let path = src(path)?;
                let dir = path.parent().unwrap_or(roots.src);
                let fd = nix::fcntl::open(
                    dir,
                    OFlag::O_TMPFILE | OFlag::O_WRONLY | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o644),
                )
                .map_err(nix_io)?;
                let mut file = fs::File::from(fd);
                file.write_all(&content(*size, *seed))?;
                let proc_path = format!("/proc/self/fd/{}", file.as_raw_fd());
                nix::unistd::linkat(
                    AT_FDCWD,
                    proc_path.as_str(),
                    AT_FDCWD,
                    &path,
                    AtFlags::AT_SYMLINK_FOLLOW,
                )
                .map_err(nix_io)
            }
            Op::Link { from, to } => {
                nix::unistd::linkat(AT_FDCWD, &src(from)?, AT_FDCWD, &src(to)?, AtFlags::empty())
                    .map_err(nix_io)
            }
            Op::Sleep { us } => {
                std::thread::sleep(std::time::Duration::from_micros(u64::from(*us)));
                Ok(())
            }
            // The case injects faults itself (inject.rs); on the tree alone they do nothing.
            Op::Fault(_) => Ok(()),
        }
    }

    /// The SOURCE paths this operation touches (for failure reports).
    pub fn paths(&self) -> Vec<&[u8]> {
        match self {
            Op::Create { path, .. }
            | Op::Rewrite { path, .. }
            | Op::Append { path, .. }
            | Op::Truncate { path, .. }
            | Op::Unlink { path }
            | Op::Mkdir { path }
            | Op::RemoveTree { path }
            | Op::MoveOut { path, .. }
            | Op::MoveIn { path, .. }
            | Op::MoveOutRecreate { path, .. }
            | Op::Swap { path, .. }
            | Op::Symlink { path, .. }
            | Op::Chmod { path, .. }
            | Op::Chown { path, .. }
            | Op::Touch { path, .. }
            | Op::TmpfileLink { path, .. } => vec![path],
            Op::Rename { from, to } | Op::Link { from, to } => vec![from, to],
            Op::Exchange { a, b } => vec![a, b],
            Op::Sleep { .. } | Op::Fault(_) => vec![],
        }
    }

    /// The verb of the text form, also the op kind's name in mixes and reports.
    pub fn verb(&self) -> &'static str {
        match self {
            Op::Create { .. } => "create",
            Op::Rewrite { .. } => "rewrite",
            Op::Append { .. } => "append",
            Op::Truncate { .. } => "truncate",
            Op::Unlink { .. } => "unlink",
            Op::Mkdir { .. } => "mkdir",
            Op::RemoveTree { .. } => "rmtree",
            Op::Rename { .. } => "rename",
            Op::Exchange { .. } => "exchange",
            Op::MoveOut { .. } => "moveout",
            Op::MoveIn { .. } => "movein",
            Op::MoveOutRecreate { .. } => "moveout-recreate",
            Op::Swap { .. } => "swap",
            Op::Symlink { .. } => "symlink",
            Op::Chmod { .. } => "chmod",
            Op::Chown { .. } => "chown",
            Op::Touch { .. } => "touch",
            Op::TmpfileLink { .. } => "tmpfile",
            Op::Link { .. } => "link",
            Op::Sleep { .. } => "sleep",
            Op::Fault(_) => "fault",
        }
    }
}

/// A path in the op log: in double quotes, printable ASCII as is, `"` and `\` escaped, every
/// other byte as `\xNN`.
pub fn quote(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() + 2);
    s.push('"');
    for &b in bytes {
        match b {
            b'"' => s.push_str("\\\""),
            b'\\' => s.push_str("\\\\"),
            0x20..=0x7e => s.push(b as char),
            _ => s.push_str(&format!("\\x{b:02x}")),
        }
    }
    s.push('"');
    s
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let q = |p: &[u8]| quote(p);
        write!(f, "{}", self.verb())?;
        match self {
            Op::Create { path, size, seed } | Op::Append { path, size, seed } => {
                write!(f, " {} {size} {seed}", q(path))
            }
            Op::TmpfileLink { path, size, seed } => write!(f, " {} {size} {seed}", q(path)),
            Op::Rewrite { path, seed, back_s } => write!(f, " {} {seed} {back_s}", q(path)),
            Op::Truncate { path, size } => write!(f, " {} {size}", q(path)),
            Op::Unlink { path } | Op::Mkdir { path } | Op::RemoveTree { path } => {
                write!(f, " {}", q(path))
            }
            Op::Rename { from, to } | Op::Link { from, to } => {
                write!(f, " {} {}", q(from), q(to))
            }
            Op::Exchange { a, b } => write!(f, " {} {}", q(a), q(b)),
            Op::MoveOut { path, slot } => write!(f, " {} {}", q(path), q(slot)),
            Op::MoveIn { slot, path } => write!(f, " {} {}", q(slot), q(path)),
            Op::MoveOutRecreate { path, slot, seed } => {
                write!(f, " {} {} {seed}", q(path), q(slot))
            }
            Op::Swap { path, seed } => write!(f, " {} {seed}", q(path)),
            Op::Symlink { path, target } => write!(f, " {} {}", q(path), q(target)),
            Op::Chmod { path, mode } => write!(f, " {} {mode:o}", q(path)),
            Op::Chown { path, uid, gid } => write!(f, " {} {uid} {gid}", q(path)),
            Op::Touch { path, secs, nsec } => write!(f, " {} {secs} {nsec}", q(path)),
            Op::Sleep { us } => write!(f, " {us}"),
            Op::Fault(fault) => write!(f, " {fault}"),
        }
    }
}

/// A parse error of one op-log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "op log line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for ParseError {}

/// What is wrong with one op-log line (`ParseError` adds the line number).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum LineError {
    #[error("unterminated quoted path")]
    UnterminatedPath,
    #[error("bad \\x escape (want two hex digits)")]
    BadHexEscape,
    #[error("bad escape (use \\\", \\\\ or \\xNN)")]
    BadEscape,
    #[error("expected a quoted path")]
    ExpectedPath,
    #[error("bad number {0:?}")]
    BadNumber(String),
    #[error("expected a number")]
    ExpectedNumber,
    #[error("bad octal mode {0:?}")]
    BadOctal(String),
    #[error("expected an octal mode")]
    ExpectedOctal,
    #[error("expected a verb")]
    ExpectedVerb,
    #[error("unknown operation {0:?}")]
    UnknownOperation(String),
    #[error("extra arguments")]
    ExtraArguments,
    #[error("expected a fault kind")]
    ExpectedFaultKind,
    #[error(
        "bad fault {0:?} (kill9 DOWN_MS, sigstop STOP_MS FLOOD, daemon-restart DOWN_MS, disk-full FULL_MS, read-only RO_MS, source-perm DENY_MS ENTRIES PICK or rewrite-during-copy REWRITE_MS FILES SIZE_KIB)"
    )]
    BadFault(String),
}

enum Token {
    Path(Vec<u8>),
    Word(String),
}

fn tokens(line: &str) -> Result<Vec<Token>, LineError> {
    let mut out = Vec::new();
    let bytes = line.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b' ' | b'\t' => i += 1,
            b'"' => {
                let mut path = Vec::new();
                i += 1;
                loop {
                    match bytes.get(i) {
                        None => return Err(LineError::UnterminatedPath),
                        Some(b'"') => break,
                        Some(b'\\') => match bytes.get(i + 1) {
                            Some(b'x') => {
                                let hex = line
                                    .get(i + 2..i + 4)
                                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                                    .ok_or(LineError::BadHexEscape)?;
                                path.push(hex);
                                i += 4;
                            }
                            Some(&c @ (b'"' | b'\\')) => {
                                path.push(c);
                                i += 2;
                            }
                            _ => return Err(LineError::BadEscape),
                        },
                        Some(&c) => {
                            path.push(c);
                            i += 1;
                        }
                    }
                }
                i += 1;
                out.push(Token::Path(path));
            }
            _ => {
                let start = i;
                while i < bytes.len() && bytes[i] != b' ' && bytes[i] != b'\t' {
                    i += 1;
                }
                out.push(Token::Word(line[start..i].to_string()));
            }
        }
    }
    Ok(out)
}

struct Args {
    tokens: std::vec::IntoIter<Token>,
}

impl Args {
    fn path(&mut self) -> Result<Rel, LineError> {
        match self.tokens.next() {
            Some(Token::Path(p)) => Ok(p),
            _ => Err(LineError::ExpectedPath),
        }
    }

    fn num<T: std::str::FromStr>(&mut self) -> Result<T, LineError> {
        match self.tokens.next() {
            Some(Token::Word(w)) => w.parse().map_err(|_| LineError::BadNumber(w)),
            _ => Err(LineError::ExpectedNumber),
        }
    }

    fn octal(&mut self) -> Result<u32, LineError> {
        match self.tokens.next() {
            Some(Token::Word(w)) => u32::from_str_radix(&w, 8).map_err(|_| LineError::BadOctal(w)),
            _ => Err(LineError::ExpectedOctal),
        }
    }
}

fn parse_line(line: &str) -> Result<Op, LineError> {
    let mut all = tokens(line)?.into_iter();
    let verb = match all.next() {
        Some(Token::Word(w)) => w,
        _ => return Err(LineError::ExpectedVerb),
    };
    let mut a = Args { tokens: all };
    let op = match verb.as_str() {
        "create" => Op::Create {
            path: a.path()?,
            size: a.num()?,
            seed: a.num()?,
        },
        "rewrite" => Op::Rewrite {
            path: a.path()?,
            seed: a.num()?,
            back_s: a.num()?,
        },
        "append" => Op::Append {
            path: a.path()?,
            size: a.num()?,
            seed: a.num()?,
        },
        "truncate" => Op::Truncate {
            path: a.path()?,
            size: a.num()?,
        },
        "unlink" => Op::Unlink { path: a.path()? },
        "mkdir" => Op::Mkdir { path: a.path()? },
        "rmtree" => Op::RemoveTree { path: a.path()? },
        "rename" => Op::Rename {
            from: a.path()?,
            to: a.path()?,
        },
        "exchange" => Op::Exchange {
            a: a.path()?,
            b: a.path()?,
        },
        "moveout" => Op::MoveOut {
            path: a.path()?,
            slot: a.path()?,
        },
        "movein" => Op::MoveIn {
            slot: a.path()?,
            path: a.path()?,
        },
        "moveout-recreate" => Op::MoveOutRecreate {
            path: a.path()?,
            slot: a.path()?,
            seed: a.num()?,
        },
        "swap" => Op::Swap {
            path: a.path()?,
            seed: a.num()?,
        },
        "symlink" => Op::Symlink {
            path: a.path()?,
            target: a.path()?,
        },
        "chmod" => Op::Chmod {
            path: a.path()?,
            mode: a.octal()?,
        },
        "chown" => Op::Chown {
            path: a.path()?,
            uid: a.num()?,
            gid: a.num()?,
        },
        "touch" => Op::Touch {
            path: a.path()?,
            secs: a.num()?,
            nsec: a.num()?,
        },
        "tmpfile" => Op::TmpfileLink {
            path: a.path()?,
            size: a.num()?,
            seed: a.num()?,
        },
        "link" => Op::Link {
            from: a.path()?,
            to: a.path()?,
        },
        "sleep" => Op::Sleep { us: a.num()? },
        "fault" => {
            let kind = match a.tokens.next() {
                Some(Token::Word(w)) => w,
                _ => return Err(LineError::ExpectedFaultKind),
            };
            let mut params = Vec::new();
            while a.tokens.len() > 0 {
                params.push(a.num()?);
            }
            Op::Fault(Fault::from_parts(&kind, &params).ok_or(LineError::BadFault(kind))?)
        }
        other => return Err(LineError::UnknownOperation(other.into())),
    };
    if a.tokens.next().is_some() {
        return Err(LineError::ExtraArguments);
    }
    Ok(op)
}

/// An op list with the number of leading operations applied before the syncer starts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpLog {
    pub setup: usize,
    pub ops: Vec<Op>,
}

impl OpLog {
    /// The op log file: a `# setup N` line, then one op per line; other `#` lines are
    /// comments.
    pub fn render(&self, header: &str) -> String {
        let mut text = String::new();
        for line in header.lines() {
            text.push_str(&format!("# {line}\n"));
        }
        text.push_str(&format!("# setup {}\n", self.setup));
        for (i, op) in self.ops.iter().enumerate() {
            if i == self.setup {
                text.push_str("# live\n");
            }
            text.push_str(&format!("{op}\n"));
        }
        text
    }

    pub fn parse(text: &str) -> Result<OpLog, ParseError> {
        let mut log = OpLog::default();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim_end();
            if let Some(rest) = line.strip_prefix("# setup ") {
                log.setup = rest.trim().parse().map_err(|_| ParseError {
                    line: n + 1,
                    message: format!("bad setup count {rest:?}"),
                })?;
                continue;
            }
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let op = parse_line(line).map_err(|e| ParseError {
                line: n + 1,
                message: e.to_string(),
            })?;
            log.ops.push(op);
        }
        log.setup = log.setup.min(log.ops.len());
        Ok(log)
    }

    /// The live part.
    pub fn live(&self) -> &[Op] {
        &self.ops[self.setup..]
    }

    /// Live operations, pauses not counted.
    pub fn live_operations(&self) -> usize {
        self.live()
            .iter()
            .filter(|op| !matches!(op, Op::Sleep { .. } | Op::Fault(_)))
            .count()
    }

    /// Faults among the live operations.
    pub fn faults(&self) -> usize {
        self.live()
            .iter()
            .filter(|op| matches!(op, Op::Fault(_)))
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_op_round_trips_through_its_text_form() {
        let odd = b"new\nline \xff\"q\\".to_vec();
        let ops = vec![
            Op::Create {
                path: odd.clone(),
                size: 7,
                seed: 3,
            },
            Op::Rewrite {
                path: b"a b".to_vec(),
                seed: 1,
                back_s: 2,
            },
            Op::Rename {
                from: b"d0".to_vec(),
                to: odd.clone(),
            },
            Op::Chmod {
                path: b"f".to_vec(),
                mode: 0o640,
            },
            Op::Link {
                from: b"d0/f".to_vec(),
                to: odd.clone(),
            },
            Op::Touch {
                path: b"f".to_vec(),
                secs: 1_000_000_000,
                nsec: 5,
            },
            Op::Sleep { us: 250 },
        ];
        let log = OpLog { setup: 1, ops };
        let text = log.render("seed 1");
        assert_eq!(OpLog::parse(&text), Ok(log));
    }

    #[test]
    fn bad_lines_say_where_and_why() {
        let err = OpLog::parse("create \"f\" 1 2\nfrobnicate \"x\"\n").unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err.message.contains("unknown operation"), "{err}");
        assert!(OpLog::parse("create \"f\" x 2").is_err());
        assert!(OpLog::parse("create \"f 1 2").is_err());
    }

    #[test]
    fn ops_never_act_through_a_symlinked_parent() {
        let root = tempfile::tempdir().expect("tempdir");
        let (src, outside) = (root.path().join("src"), root.path().join("out"));
        fs::create_dir_all(&src).expect("src");
        fs::create_dir_all(&outside).expect("out");
        std::os::unix::fs::symlink(&outside, src.join("l")).expect("symlink");
        let roots = Roots {
            src: &src,
            outside: &outside,
        };
        let op = Op::Create {
            path: b"l/escaped".to_vec(),
            size: 1,
            seed: 1,
        };
        assert!(op.apply(roots).is_err());
        assert!(!outside.join("escaped").exists());
        let op = Op::Chmod {
            path: b"l".to_vec(),
            mode: 0o700,
        };
        assert!(op.apply(roots).is_err());
    }

    mod prop {
        use proptest::collection::vec;
        use proptest::prelude::*;

        use super::super::*;

        fn rel() -> impl Strategy<Value = Rel> {
            vec(any::<u8>(), 0..12)
        }

        fn op() -> impl Strategy<Value = Op> {
            let (p, n) = (rel, any::<u32>);
            prop_oneof![
                (p(), n(), n()).prop_map(|(path, size, seed)| Op::Create { path, size, seed }),
                (p(), n(), n()).prop_map(|(path, seed, back_s)| Op::Rewrite { path, seed, back_s }),
                (p(), n(), n()).prop_map(|(path, size, seed)| Op::Append { path, size, seed }),
                (p(), n()).prop_map(|(path, size)| Op::Truncate { path, size }),
                p().prop_map(|path| Op::Unlink { path }),
                p().prop_map(|path| Op::Mkdir { path }),
                p().prop_map(|path| Op::RemoveTree { path }),
                (p(), p()).prop_map(|(from, to)| Op::Rename { from, to }),
                (p(), p()).prop_map(|(a, b)| Op::Exchange { a, b }),
                (p(), p()).prop_map(|(path, slot)| Op::MoveOut { path, slot }),
                (p(), p()).prop_map(|(slot, path)| Op::MoveIn { slot, path }),
                (p(), p(), n()).prop_map(|(path, slot, seed)| Op::MoveOutRecreate {
                    path,
                    slot,
                    seed
                }),
                (p(), n()).prop_map(|(path, seed)| Op::Swap { path, seed }),
                (p(), p()).prop_map(|(path, target)| Op::Symlink { path, target }),
                (p(), n()).prop_map(|(path, mode)| Op::Chmod { path, mode }),
                (p(), n(), n()).prop_map(|(path, uid, gid)| Op::Chown { path, uid, gid }),
                (p(), any::<i64>(), n()).prop_map(|(path, secs, nsec)| Op::Touch {
                    path,
                    secs,
                    nsec
                }),
                (p(), n(), n()).prop_map(|(path, size, seed)| Op::TmpfileLink { path, size, seed }),
                (p(), p()).prop_map(|(from, to)| Op::Link { from, to }),
                n().prop_map(|us| Op::Sleep { us }),
            ]
        }

        /// Lines shaped like the op log's: a verb, then quoted paths (with good and bad
        /// escapes) and words, so most cases get past the verb.
        fn line() -> impl Strategy<Value = String> {
            let verbs = proptest::sample::select(
                &[
                    "create",
                    "rewrite",
                    "append",
                    "truncate",
                    "unlink",
                    "mkdir",
                    "rmtree",
                    "rename",
                    "exchange",
                    "moveout",
                    "movein",
                    "moveout-recreate",
                    "swap",
                    "symlink",
                    "chmod",
                    "chown",
                    "touch",
                    "tmpfile",
                    "link",
                    "sleep",
                    "# setup",
                    "#",
                    "frobnicate",
                    "",
                ][..],
            );
            let token = prop_oneof![
                "\"([a-z ]|\\\\x[0-9a-fA-Fg]{0,2}|\\\\[\"\\\\n]|é|\\t)*\"?",
                "-?[0-9]{1,20}",
                "[0-7]{1,12}",
                "\\PC{0,6}",
                Just("\"\\x".to_string()),
                Just("\"\\".to_string()),
            ];
            (verbs, vec(token, 0..5))
                .prop_map(|(verb, tokens)| format!("{verb} {}", tokens.join(" ")))
        }

        fn placed(text: &str) -> Result<(), TestCaseError> {
            match OpLog::parse(text) {
                Ok(log) => prop_assert!(log.setup <= log.ops.len()),
                Err(e) => {
                    prop_assert!(e.line >= 1 && e.line <= text.lines().count(), "{}", e);
                    prop_assert!(!e.message.is_empty());
                }
            }
            Ok(())
        }

        proptest! {
            #![proptest_config(crate::prop::config(256))]

            #[test]
            fn prop_oplog_any_text_never_panics(text in any::<String>()) {
                placed(&text)?;
            }

            #[test]
            fn prop_oplog_shaped_lines_never_panic(lines in vec(line(), 0..8)) {
                placed(&lines.join("\n"))?;
            }

            /// What `render` writes, `parse` reads back: every op, any path bytes, any numbers.
            #[test]
            fn prop_oplog_render_then_parse_round_trips(
                ops in vec(op(), 0..12),
                setup in any::<proptest::sample::Index>(),
                header in "seed-[a-z0-9 (),:-]{0,30}(\n[0-9 ]{0,10}){0,2}",
            ) {
                let log = OpLog { setup: setup.index(ops.len() + 1), ops };
                prop_assert_eq!(OpLog::parse(&log.render(&header)), Ok(log));
            }
        }
    }
}
