//! Semantic checks of a parsed scenario (what serde cannot express): a `Scenario` in,
//! `Ok(())` or `(key, what is allowed)` out. Line and column are added by parse.rs.

use super::types::{CreateIn, OpKind, Phase, Scenario, SizeDist, SutKind};

type Problem = (String, String);

fn problem(key: impl Into<String>, message: impl Into<String>) -> Problem {
    (key.into(), message.into())
}

pub fn validate(s: &Scenario) -> Result<(), Problem> {
    if s.name.is_empty()
        || !s
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(problem(
            "name",
            "must be non-empty and use only letters, digits, '-' and '_' (it names the results folder)",
        ));
    }
    if s.repeats == 0 || s.repeats > 1000 {
        return Err(problem("repeats", "must be between 1 and 1000"));
    }
    if !(16..=1 << 20).contains(&s.replica_mib) {
        return Err(problem(
            "replica_mib",
            "must be between 16 and 1048576 MiB (mkfs.ext4 needs room; the image is sparse)",
        ));
    }
    if !(16..=1 << 22).contains(&s.workdir_mib) {
        return Err(problem(
            "workdir_mib",
            "must be between 16 and 4194304 MiB (mkfs.ext4 needs room; the image is sparse)",
        ));
    }
    check_size("tree.size", &s.tree.size)?;
    if s.tree.depth > 200 {
        return Err(problem(
            "tree.depth",
            "must be at most 200 (PATH_MAX limits deeper trees)",
        ));
    }
    if s.tree.dirs > 0 && s.tree.depth == 0 {
        return Err(problem(
            "tree.depth",
            "must be at least 1 when tree.dirs > 0",
        ));
    }
    if s.tree.dirs > 0 && s.tree.fanout == 0 {
        return Err(problem(
            "tree.fanout",
            "must be at least 1 when tree.dirs > 0",
        ));
    }
    if capacity(s.tree.fanout, s.tree.depth) < u64::from(s.tree.dirs) {
        return Err(problem(
            "tree.dirs",
            format!(
                "{} directories do not fit in depth {} with fanout {}: raise tree.depth or tree.fanout",
                s.tree.dirs, s.tree.depth, s.tree.fanout
            ),
        ));
    }
    if s.phases.is_empty() {
        return Err(problem(
            "phase",
            "at least one [[phase]] is needed: the storm",
        ));
    }
    for (i, phase) in s.phases.iter().enumerate() {
        check_phase(i, phase)?;
    }
    if s.suts.is_empty() {
        return Err(problem(
            "sut",
            "at least one [[sut]] is needed (kind = \"syncer\", \"seed-script\", \"lsyncd\" or \"command\")",
        ));
    }
    let mut labels = std::collections::BTreeSet::new();
    for (i, sut) in s.suts.iter().enumerate() {
        if sut.kind == SutKind::Command && sut.command.trim().is_empty() {
            return Err(problem(
                format!("sut[{i}].command"),
                "kind = \"command\" needs a command template using {src} {dst} {url} {password_file}",
            ));
        }
        if sut.delay_s < 0.0 || !sut.delay_s.is_finite() {
            return Err(problem(
                format!("sut[{i}].delay_s"),
                "must be a number of seconds >= 0",
            ));
        }
        if !labels.insert(sut.label()) {
            return Err(problem(
                format!("sut[{i}].name"),
                format!(
                    "two syncers are labelled `{}`: give each a distinct name",
                    sut.label()
                ),
            ));
        }
    }
    for (key, value) in [
        ("timeouts.ready_s", s.timeouts.ready_s),
        ("timeouts.storm_s", s.timeouts.storm_s),
        ("timeouts.converge_s", s.timeouts.converge_s),
        ("timeouts.idle_s", s.timeouts.idle_s),
    ] {
        if !(value > 0.0 && value.is_finite()) {
            return Err(problem(key, "must be a positive number of seconds"));
        }
    }
    for (key, value) in [
        ("kernel.max_user_watches", s.kernel.max_user_watches),
        ("kernel.max_queued_events", s.kernel.max_queued_events),
        ("kernel.max_user_instances", s.kernel.max_user_instances),
    ] {
        if value == Some(0) {
            return Err(problem(
                key,
                "must be at least 1 (leave it out to keep the machine's value)",
            ));
        }
    }
    Ok(())
}

fn check_size(key: &str, size: &SizeDist) -> Result<(), Problem> {
    if size.max_bytes < size.min_bytes {
        return Err(problem(format!("{key}.max_bytes"), "must be >= min_bytes"));
    }
    if size.max_bytes > 1 << 30 {
        return Err(problem(format!("{key}.max_bytes"), "must be at most 1 GiB"));
    }
    Ok(())
}

fn check_phase(i: usize, p: &Phase) -> Result<(), Problem> {
    let key = |k: &str| format!("phase[{i}].{k}");
    if let Some(size) = &p.size {
        check_size(&key("size"), size)?;
    }
    if p.threads == 0 || p.threads > 256 {
        return Err(problem(key("threads"), "must be between 1 and 256"));
    }
    if p.rate < 0.0 || !p.rate.is_finite() {
        return Err(problem(
            key("rate"),
            "must be ops/s >= 0 (0 means as fast as possible)",
        ));
    }
    match (p.mix.is_empty(), p.sequence.is_empty()) {
        (true, true) => Err(problem(
            key("mix"),
            "a phase needs `mix` (weights per op) or `sequence` (ops applied to each of `files` files)",
        )),
        (false, false) => Err(problem(
            key("sequence"),
            "use either `mix` or `sequence`, not both",
        )),
        (false, true) => {
            if p.mix.values().all(|&w| w == 0) {
                return Err(problem(key("mix"), "at least one weight must be > 0"));
            }
            if p.ops == 0 && p.duration_ms == 0 {
                return Err(problem(
                    key("ops"),
                    "a mix phase needs `ops` (a count) or `duration_ms` with `rate`",
                ));
            }
            if p.ops > 0 && p.duration_ms > 0 {
                return Err(problem(
                    key("duration_ms"),
                    "give `ops` or `duration_ms`, not both",
                ));
            }
            if p.duration_ms > 0 && p.rate == 0.0 {
                return Err(problem(
                    key("duration_ms"),
                    "a duration needs a `rate` so the plan stays a pure function of the scenario",
                ));
            }
            Ok(())
        }
        (true, false) => {
            if p.files == 0 {
                return Err(problem(key("files"), "a sequence phase needs `files` > 0"));
            }
            if p.create_in == CreateIn::LastDir && p.sequence[0] != OpKind::Create {
                return Err(problem(
                    key("create_in"),
                    "`create_in` places new files: it needs a sequence that starts with `create`",
                ));
            }
            if p.sequence.iter().skip(1).any(|&op| op == OpKind::Create) {
                return Err(problem(
                    key("sequence"),
                    "`create` may only be the first op of a sequence",
                ));
            }
            if p.sequence
                .iter()
                .any(|op| matches!(op, OpKind::Mkdir | OpKind::Rmdir | OpKind::Symlink))
            {
                return Err(problem(
                    key("sequence"),
                    "sequences take file ops: create, write, append, overwrite, rename, delete, chmod",
                ));
            }
            if p.rounds == 0 {
                return Err(problem(key("rounds"), "must be at least 1"));
            }
            if p.via == crate::scenario::Via::TouchProcess && p.sequence != [OpKind::Create] {
                return Err(problem(
                    key("via"),
                    "\"touch-process\" only runs sequence = [\"create\"]",
                ));
            }
            Ok(())
        }
    }
}

/// How many directories fit in a breadth-first tree of this fanout and depth.
fn capacity(fanout: u32, depth: u32) -> u64 {
    let mut total: u64 = 0;
    let mut level: u64 = 1;
    for _ in 0..depth {
        level = level.saturating_mul(u64::from(fanout));
        total = total.saturating_add(level);
        if total > u64::from(u32::MAX) {
            break;
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use crate::scenario::parse;

    const OK: &str =
        "name = \"t\"\n[[phase]]\nmix = { create = 1 }\nops = 10\n[[sut]]\nkind = \"syncer\"\n";

    #[test]
    fn minimal_scenario_parses() {
        let s = parse(OK, "t.toml").expect("valid");
        assert_eq!(s.phases[0].ops, 10);
        assert_eq!(s.suts[0].label(), "syncer");
    }

    #[test]
    fn unknown_key_names_line_column_key_and_allowed_keys() {
        let text = OK.replace("ops = 10", "ops = 10\nthreds = 2");
        let err = parse(&text, "t.toml").expect_err("unknown key").to_string();
        assert!(err.starts_with("t.toml:5:1: key `threds`"), "{err}");
        assert!(err.contains("threads"), "lists allowed keys: {err}");
    }

    #[test]
    fn bad_enum_value_lists_allowed_values() {
        let text = OK.replace("\"syncer\"", "\"rsyncd\"");
        let err = parse(&text, "t.toml").expect_err("bad kind").to_string();
        assert!(err.contains("t.toml:6:"), "{err}");
        assert!(
            err.contains("seed-script") && err.contains("lsyncd"),
            "{err}"
        );
    }

    #[test]
    fn a_fresh_filesystem_per_run_is_a_top_level_key_with_a_bounded_size() {
        let s = parse(&format!("workdir_fs = \"loop-ext4\"\n{OK}"), "t.toml").expect("valid");
        assert_eq!(s.workdir_fs, crate::scenario::WorkdirFs::LoopExt4);
        assert_eq!(s.workdir_mib, 16_384);
        let err = parse(&format!("workdir_mib = 8\n{OK}"), "t.toml")
            .expect_err("too small")
            .to_string();
        assert!(err.contains("key `workdir_mib`"), "{err}");
    }

    #[test]
    fn semantic_error_points_at_the_key() {
        let text = OK.replace("ops = 10", "ops = 10\nthreads = 0");
        let err = parse(&text, "t.toml")
            .expect_err("zero threads")
            .to_string();
        assert!(
            err.starts_with("t.toml:5:1: key `phase[0].threads`"),
            "{err}"
        );
        assert!(err.contains("between 1 and 256"), "{err}");
    }

    #[test]
    fn wrong_type_is_reported_with_position() {
        let text = OK.replace("ops = 10", "ops = \"ten\"");
        let err = parse(&text, "t.toml")
            .expect_err("string for integer")
            .to_string();
        assert!(err.starts_with("t.toml:4:7"), "{err}");
    }

    #[test]
    fn tree_that_cannot_fit_is_rejected() {
        let text = OK.replacen(
            "[[phase]]",
            "[tree]\ndirs = 100\ndepth = 2\nfanout = 3\n[[phase]]",
            1,
        );
        let err = parse(&text, "t.toml")
            .expect_err("does not fit")
            .to_string();
        assert!(
            err.contains("tree.dirs") && err.contains("raise tree.depth"),
            "{err}"
        );
    }
}
