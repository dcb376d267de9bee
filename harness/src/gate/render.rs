//! A comparison `Report` in, a markdown table a person reads in seconds (verdict first, then
//! one row per scenario and metric) and pretty JSON out.

use std::fmt::Write;

use super::Report;
use super::verdict::{Rule, Verdict};
use crate::export::table::Table;

pub fn num(x: Option<f64>) -> String {
    match x {
        None => "—".into(),
        Some(0.0) => "0".into(),
        Some(v) if v.abs() >= 100.0 => format!("{v:.0}"),
        Some(v) if v.abs() >= 1.0 => format!("{v:.2}"),
        Some(v) => format!("{v:.3}"),
    }
}

pub fn ratio(x: Option<f64>) -> String {
    x.map_or_else(|| "new".into(), |r| format!("{r:.2}"))
}

fn rule(r: Rule, unit: &str) -> String {
    match r {
        Rule::Zero => "must be 0".into(),
        Rule::Fixed { tolerance } => format!("±{:.0}%", tolerance * 100.0),
        Rule::Noisy {
            min_change,
            abs_floor,
        } => format!(
            ">{:.0}% & out of noise & >{} {unit}",
            min_change * 100.0,
            num(Some(abs_floor))
        ),
        Rule::Info => "self-report, not gated".into(),
    }
}

fn verdict(v: Verdict) -> &'static str {
    match v {
        Verdict::Better => "better",
        Verdict::Same => "same",
        Verdict::Worse => "**WORSE**",
        Verdict::Fail => "**FAIL**",
        Verdict::Info => "—",
    }
}

pub fn markdown(r: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## Regression gate: {} — A = {} vs B = {} ({}, {} run(s) per side and scenario)\n",
        if r.passed { "PASS" } else { "**FAIL**" },
        r.a,
        r.b,
        r.sut,
        r.repeats
    );
    for line in &r.regressions {
        let _ = writeln!(out, "- **regression**: {line}");
    }
    if !r.regressions.is_empty() {
        out.push('\n');
    }
    let mut table = Table::new([
        "scenario", "metric", "unit", "A median", "B median", "B/A", "noise", "p", "rule",
        "verdict",
    ]);
    for row in &r.rows {
        table.row([
            row.scenario.clone(),
            format!(
                "{}{}",
                if row.self_report { "self: " } else { "" },
                row.label
            ),
            row.unit.to_string(),
            num(row.judged.a_median),
            num(row.judged.b_median),
            ratio(row.judged.ratio),
            format!("{:.0}%", row.judged.noise * 100.0),
            row.judged.p_value.map_or("—".into(), |p| format!("{p:.3}")),
            rule(row.rule, row.unit),
            verdict(row.judged.verdict).to_string(),
        ]);
    }
    out.push_str(&table.render());
    if !r.notes.is_empty() {
        out.push('\n');
        for n in &r.notes {
            let _ = writeln!(out, "- {n}");
        }
    }
    out.push_str(
        "\nMedians over the runs; noise = the larger (max - min) / median of either side's runs; \
         p = one-sided Mann-Whitney rank test of the shift's direction (with 6+ runs a side, a \
         timing metric is out of noise at p <= 0.002; with fewer, when its change exceeds the \
         noise). \
         `self:` rows are the syncer's own status-file counters, shown but never gating.\n",
    );
    out
}

pub fn json(r: &Report) -> String {
    serde_json::to_string_pretty(r).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}")) + "\n"
}
