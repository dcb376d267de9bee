//! What `syncer verify` prints: a progress spinner on stderr while it compares (hidden when
//! stderr is not a terminal), then a summary readable at a glance on stdout and the first
//! differences, one per line.

use std::path::Path;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{Finding, Options, Outcome};
use crate::config::TargetSpec;

/// Differences listed without `--all`.
const LISTED: usize = 20;

/// Entries compared so far, on stderr.
pub struct Progress(ProgressBar);

impl Progress {
    pub fn new(what: &str) -> Self {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template(
            "{spinner} {msg} {human_pos} entries ({per_sec}, {elapsed})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
        bar.set_style(style);
        bar.set_message(what.to_string());
        bar.enable_steady_tick(Duration::from_millis(120));
        Self(bar)
    }

    pub fn tick(&self) {
        self.0.inc(1);
    }

    pub fn finish(&self) {
        self.0.finish_and_clear();
    }
}

pub struct Printer {
    all: bool,
}

impl Printer {
    pub fn new(all: bool) -> Self {
        Self { all }
    }

    pub fn repairing(&self, target: &TargetSpec) {
        eprintln!(
            "syncer verify: repairing {} (one sync, as syncer --once)",
            target.name()
        );
    }

    pub fn outcome(
        &self,
        source: &Path,
        target: &TargetSpec,
        outcome: &Outcome,
        options: &Options,
    ) {
        print!("{}", self.render(source, target, outcome, options));
    }

    fn render(
        &self,
        source: &Path,
        target: &TargetSpec,
        outcome: &Outcome,
        options: &Options,
    ) -> String {
        let secs = outcome.took.as_secs_f64();
        let entries = outcome
            .entries
            .map(|n| format!(" among {} entries", thousands(n)))
            .unwrap_or_default();
        if outcome.findings.is_empty() {
            let mut extras = Vec::new();
            if outcome.link_groups > 0 {
                let groups = outcome.link_groups;
                let plural = if groups == 1 { "" } else { "s" };
                extras.push(format!("{} hard-link group{plural}", thousands(groups)));
            }
            if options.checksum {
                extras.push(match outcome.entries {
                    Some(_) => format!(
                        "contents compared ({} bytes read)",
                        thousands(outcome.content_bytes)
                    ),
                    None => "contents compared".to_string(),
                });
            }
            let extras = extras.iter().map(|e| format!(", {e}")).collect::<String>();
            return format!(
                "equal: {} is {}: no difference{entries}{extras} ({secs:.1} s)\n",
                target.name(),
                source.display()
            );
        }
        let count = |f: fn(&Finding) -> bool| outcome.findings.iter().filter(|x| f(x)).count();
        let parts = [
            (count(|f| matches!(f, Finding::Missing(_))), "missing"),
            (count(|f| matches!(f, Finding::Extra(_))), "extra"),
            (count(|f| matches!(f, Finding::Differs(..))), "different"),
            (
                count(|f| matches!(f, Finding::Unreadable(..))),
                "unreadable",
            ),
        ];
        let parts: Vec<String> = parts
            .iter()
            .filter(|(n, _)| *n > 0)
            .map(|(n, what)| format!("{} {what}", thousands(*n as u64)))
            .collect();
        let mut out = format!(
            "DIFFERENT: {} is not {}: {} difference{} ({}){entries} ({secs:.1} s)\n",
            target.name(),
            source.display(),
            thousands(outcome.findings.len() as u64),
            if outcome.findings.len() == 1 { "" } else { "s" },
            parts.join(", ")
        );
        let shown = if self.all {
            outcome.findings.len()
        } else {
            LISTED
        };
        for finding in outcome.findings.iter().take(shown) {
            out.push_str(&line(finding));
        }
        if outcome.findings.len() > shown {
            out.push_str(&format!(
                "  ... and {} more (--all lists every one)\n",
                thousands((outcome.findings.len() - shown) as u64)
            ));
        }
        out
    }
}

fn line(finding: &Finding) -> String {
    match finding {
        Finding::Missing(p) => format!("  missing     {p:?}\n"),
        Finding::Extra(p) => format!("  extra       {p:?}\n"),
        Finding::Differs(p, what) => format!("  different   {p:?}: {}\n", what.join(", ")),
        Finding::Unreadable(p, why) => format!("  unreadable  {p:?}: {why}\n"),
    }
}

/// 1234567 -> "1,234,567".
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exclude::Excludes;

    fn options() -> Options {
        Options {
            excludes: Excludes::none(),
            checksum: false,
            owners: true,
            password_file: None,
        }
    }

    #[test]
    fn summaries_say_equal_or_count_each_kind_and_list_the_first() {
        let target = TargetSpec::Local("/r".into());
        let equal = Outcome {
            entries: Some(1234),
            link_groups: 2,
            ..Default::default()
        };
        let text = Printer::new(false).render(Path::new("/s"), &target, &equal, &options());
        assert_eq!(
            text,
            "equal: /r is /s: no difference among 1,234 entries, 2 hard-link groups (0.0 s)\n"
        );
        let mut findings = vec![
            Finding::Missing("a".into()),
            Finding::Differs("b".into(), vec!["size 1 != 2".into()]),
        ];
        findings.extend((0..30).map(|i| Finding::Extra(format!("x{i}").into())));
        let differ = Outcome {
            findings,
            entries: Some(40),
            ..Default::default()
        };
        let text = Printer::new(false).render(Path::new("/s"), &target, &differ, &options());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "DIFFERENT: /r is not /s: 32 differences (1 missing, 30 extra, 1 different) among 40 entries (0.0 s)"
        );
        assert_eq!(lines[1], "  missing     \"a\"");
        assert_eq!(lines[2], "  different   \"b\": size 1 != 2");
        assert_eq!(lines.len(), 1 + LISTED + 1);
        assert_eq!(
            lines[LISTED + 1],
            "  ... and 12 more (--all lists every one)"
        );
        let all = Printer::new(true).render(Path::new("/s"), &target, &differ, &options());
        assert_eq!(all.lines().count(), 33);
    }
}
