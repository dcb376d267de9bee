//! The Prometheus text exposition format (version 0.0.4) of the syncer's counters: a
//! `Sample` list in, the page `GET /metrics` answers out. Pure, so the format is unit-tested.

use std::fmt::Write;

/// One metric family: name, help, type, and its samples (labels, value).
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    pub samples: Vec<(Option<String>, f64)>,
}

#[derive(Clone, Copy)]
pub enum Kind {
    Counter,
    Gauge,
}

impl Family {
    pub fn one(name: &'static str, help: &'static str, kind: Kind, value: f64) -> Self {
        Self {
            name,
            help,
            kind,
            samples: vec![(None, value)],
        }
    }

    /// One sample per target, labelled `target="NAME"`.
    pub fn per_target(
        name: &'static str,
        help: &'static str,
        kind: Kind,
        samples: impl Iterator<Item = (String, f64)>,
    ) -> Self {
        Self {
            name,
            help,
            kind,
            samples: samples.map(|(target, v)| (Some(target), v)).collect(),
        }
    }
}

/// A label value as the format wants it: backslash, double quote and newline escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

pub fn render(families: &[Family]) -> String {
    // Writing to a String cannot fail: the `let _ =` below drop an always-Ok result.
    let mut out = String::new();
    for family in families {
        let kind = match family.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        };
        let _ = writeln!(out, "# HELP {} {}", family.name, family.help);
        let _ = writeln!(out, "# TYPE {} {kind}", family.name);
        for (target, value) in &family.samples {
            match target {
                Some(t) => {
                    let _ = writeln!(out, "{}{{target=\"{}\"}} {value}", family.name, escape(t));
                }
                None => {
                    let _ = writeln!(out, "{} {value}", family.name);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_render_in_the_text_format() {
        let page = render(&[
            Family::one(
                "syncer_events_total",
                "Kernel events read.",
                Kind::Counter,
                12.0,
            ),
            Family::per_target(
                "syncer_target_backlog",
                "Paths waiting.",
                Kind::Gauge,
                [("/b".to_string(), 3.0), ("a\"b\\c\nd".to_string(), 0.5)].into_iter(),
            ),
        ]);
        assert_eq!(
            page,
            "# HELP syncer_events_total Kernel events read.\n# TYPE syncer_events_total counter\nsyncer_events_total 12\n\
             # HELP syncer_target_backlog Paths waiting.\n# TYPE syncer_target_backlog gauge\n\
             syncer_target_backlog{target=\"/b\"} 3\nsyncer_target_backlog{target=\"a\\\"b\\\\c\\nd\"} 0.5\n"
        );
    }
}
