//! `--record`: compared runs in, rows appended to results/history.csv out: each run's ratio
//! to the floor copy measured in the same run (a machine-normalised score), so trends stay
//! comparable across machines, beside the raw p99 and convergence.

use std::io::Write;
use std::path::Path;

use crate::gate::RunRecord;

const HEADER: &str = "date,host,cpu,scenario,sut,side,revision,repeat,outcome,storm_ops,\
                      floor_ratio,floor_ns,p99_ns,converge_ns,cpu_ns,peak_rss_kib\n";

fn field(s: &str) -> String {
    // CSV: quote fields that hold separators or quotes.
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// One CSV line per run, `side` naming where it came from (baseline / candidate).
pub fn rows(runs: &[RunRecord], side: &str, date: &str, host: &str, cpu: &str) -> String {
    let mut out = String::new();
    for r in runs {
        let v = &r.run;
        let n = |p: &str| v.pointer(p).map_or(String::new(), |x| x.to_string());
        let s = |p: &str| {
            v.pointer(p)
                .and_then(|x| x.as_str())
                .unwrap_or("")
                .to_string()
        };
        let cols = [
            date.to_string(),
            host.to_string(),
            cpu.to_string(),
            r.scenario.clone(),
            s("/sut"),
            side.to_string(),
            r.revision.clone(),
            n("/repeat"),
            s("/outcome"),
            n("/storm_ops"),
            v.pointer("/floor_ratio")
                .and_then(serde_json::Value::as_f64)
                .map_or(String::new(), |x| format!("{x:.4}")),
            n("/floor_ns"),
            n("/latency/p99_ns"),
            n("/converge_ns").replace("null", ""),
            n("/cpu_ns"),
            n("/peak_rss_kib"),
        ];
        let line: Vec<String> = cols.iter().map(|c| field(c)).collect();
        out.push_str(&line.join(","));
        out.push('\n');
    }
    out
}

/// Appends `text` (rows) to `path`, writing the header first when the file is new.
pub fn append(path: &Path, text: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let new = !path.exists();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    if new {
        f.write_all(HEADER.as_bytes())?;
    }
    f.write_all(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_match_the_header_and_append_keeps_one_header() {
        let run = RunRecord {
            scenario: "ci-create".into(),
            revision: "abc (dirty)".into(),
            run: serde_json::json!({"sut": "syncer", "repeat": 2, "outcome": "passed",
                "storm_ops": 2000, "floor_ratio": 2.5, "floor_ns": 10, "converge_ns": null,
                "latency": {"p99_ns": 7}, "cpu_ns": 3, "peak_rss_kib": 4}),
        };
        let text = rows(&[run], "candidate", "2026-01-01", "vm", "AMD, 2 cores");
        assert_eq!(
            text,
            "2026-01-01,vm,\"AMD, 2 cores\",ci-create,syncer,candidate,abc (dirty),2,passed,2000,2.5000,10,7,,3,4\n"
        );
        assert_eq!(text.split(',').count() - 1, HEADER.split(',').count()); // +1: quoted comma
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("results/history.csv");
        append(&path, &text).unwrap();
        append(&path, &text).unwrap();
        let all = std::fs::read_to_string(&path).unwrap();
        assert_eq!(all.lines().count(), 3, "{all}");
        assert!(all.starts_with("date,host,"));
    }
}
