//! `harness report` on the committed fixture (tests/fixtures/report: a real smoke run plus
//! hand-made tune/sweep/watchcost/history files, see its README): the expected tables and
//! sysctl lines, one well-formed SVG per plot with its series drawn, sections left out with
//! the command that produces them, and clear errors for unreadable inputs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/report")
}

fn report(inputs: &[&Path], out: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_harness"))
        .arg("report")
        .args(inputs)
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .expect("run harness report")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The value column of the recommendations row whose first column starts with `what`.
fn row_value(md: &str, what: &str) -> String {
    let line = md
        .lines()
        .find(|l| l.starts_with(&format!("| {what}")))
        .unwrap_or_else(|| panic!("no row `{what}` in\n{md}"));
    line.split(" | ")
        .nth(1)
        .expect("a value column")
        .replace(['*', ','], "")
}

/// Parses an SVG and returns it (panics with the file name if it is not well-formed XML).
fn svg(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let doc = roxmltree::Document::parse(&text)
        .unwrap_or_else(|e| panic!("{} is not well-formed XML: {e}", path.display()));
    assert_eq!(
        doc.root_element().tag_name().name(),
        "svg",
        "{}",
        path.display()
    );
    text
}

fn count(doc: &str, tag: &str) -> usize {
    let d = roxmltree::Document::parse(doc).unwrap();
    d.descendants().filter(|n| n.has_tag_name(tag)).count()
}

/// Plotted lines: 2 px wide polylines of 3 or more points (axes, ticks, legend samples
/// and dash segments have 2).
fn series_lines(doc: &str) -> usize {
    let d = roxmltree::Document::parse(doc).unwrap();
    d.descendants()
        .filter(|n| n.has_tag_name("polyline") && n.attribute("stroke-width") == Some("2"))
        .filter(|n| {
            n.attribute("points")
                .unwrap_or("")
                .split_whitespace()
                .count()
                >= 3
        })
        .count()
}

fn texts(doc: &str) -> Vec<String> {
    let d = roxmltree::Document::parse(doc).unwrap();
    d.descendants()
        .filter(|n| n.has_tag_name("text"))
        .filter_map(|n| n.text().map(|t| t.trim().to_string()))
        .collect()
}

#[test]
fn fixture_report_has_the_expected_tables_and_valid_plots() {
    let out = tempfile::tempdir().expect("tempdir");
    let o = report(&[&fixture()], out.path(), &["--stall-budget-ms", "500"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let md = std::fs::read_to_string(out.path().join("report.md")).expect("report.md");

    // Recommendations: the tree's 9 directories (run.json), the calibration's busiest 500 ms
    // (the stall budget), its 156 events per 190 ops.
    assert_eq!(
        row_value(&md, "Directories of the measured tree (smoke)"),
        "9"
    );
    let in_use: u64 = row_value(&md, "Inotify watches already in use")
        .parse()
        .unwrap();
    assert_eq!(
        row_value(&md, "**Watches needed**"),
        (9 + in_use).to_string()
    );
    // watchcost.json: 1024 bytes per directory.
    let bytes = (9 + in_use) * 1024;
    let memory = if bytes >= 1 << 20 {
        format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
    } else {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    };
    assert_eq!(row_value(&md, "**Kernel memory for the watches**"), memory);
    // The busiest 500 ms (the stall budget) holds all 190 ops of the calibration: 380 ops/s.
    assert_eq!(row_value(&md, "Peak storm rate (smoke)"), "380 ops/s");
    assert_eq!(row_value(&md, "Kernel events per op"), "0.82");
    assert_eq!(row_value(&md, "Peak event rate"), "312 events/s");
    // A 500 ms stall at that moment finds the storm's 156 events queued.
    assert_eq!(row_value(&md, "**Queue needed**"), "156 events");
    assert!(
        md.contains(
            "| Smallest queue without overflow at 4000 ops/s (tune-queue, syncer) | 4,096 |"
        ),
        "{md}"
    );
    assert_eq!(
        row_value(
            &md,
            "**Sustainable ops/s at p99 ≤ 1000 ms**: syncer (mixed)"
        ),
        "990"
    );
    assert_eq!(
        row_value(
            &md,
            "**Sustainable ops/s at p99 ≤ 1000 ms**: lsyncd-delay0 (mixed)"
        ),
        "248"
    );
    // Every row names its source, relative to the report.
    assert!(md.contains("(../"), "links are relative: {md}");
    assert!(
        md.contains("2026-11-25-vm-smoke/calibration-r1-timeline.csv)"),
        "{md}"
    );
    assert!(md.contains("planning/watchcost.json)"), "{md}");
    // Ready-to-paste sysctl lines.
    assert!(
        md.contains("### /etc/sysctl.d/90-inotify.conf\n\n```\n"),
        "{md}"
    );
    let conf_queue = md
        .lines()
        .find_map(|l| l.strip_prefix("fs.inotify.max_queued_events = "))
        .expect("queue line");
    assert!(conf_queue.parse::<u64>().unwrap() >= 16_384, "{conf_queue}");
    assert!(
        md.lines()
            .any(|l| l.starts_with("fs.inotify.max_user_watches = ")),
        "{md}"
    );
    // The run table, straight from the real run.json.
    assert!(
        md.contains("| syncer r1 | passed | 190 | 918 | 4.46 | 8.40 | 8.48 | 0 | 139.80 |"),
        "{md}"
    );
    assert!(
        md.contains("| lsyncd-delay0 r1 | failed | 190 | 861 | 26.31 | 81.59 | 81.59 | 20 | — |"),
        "{md}"
    );
    // Tune, sweep, watch cost and history sections.
    assert!(
        md.contains("| 4096 | 4000 | 409.60 | 0.8 | 327.68 | false | yes | runs/stall-0.8 |"),
        "{md}"
    );
    assert!(
        md.contains(
            "- syncer: knee at 1000 ops/s offered; sustainable at the SLO (1000 ms): 990 ops/s"
        ),
        "{md}"
    );
    assert!(
        md.contains("| inotify watches | 10,000 | 10,000 | 9.8 MiB | 1024 |"),
        "{md}"
    );
    assert!(md.contains("8 rows from"), "{md}");
    assert!(
        !md.contains("Not in this report"),
        "every input is present: {md}"
    );

    // Every plot the report links exists and is a well-formed SVG with its series.
    let linked: Vec<&str> = md
        .lines()
        .filter_map(|l| l.strip_prefix("![")?.split("](").nth(1)?.strip_suffix(')'))
        .collect();
    assert_eq!(linked.len(), 7, "{linked:?}");
    for f in &linked {
        svg(&out.path().join(f));
    }
    let pct = svg(&out.path().join("percentiles-2026-11-25-vm-smoke.svg"));
    // 3 syncers as solid lines + the calibration dashed (many short segments).
    assert_eq!(series_lines(&pct), 3, "{pct}");
    let labels = texts(&pct);
    for want in [
        "90%",
        "99%",
        "syncer r1",
        "probe floor (calibration)",
        "seed-script r1",
    ] {
        assert!(
            labels.iter().any(|t| t == want),
            "no `{want}` in {labels:?}"
        );
    }
    assert!(
        labels
            .iter()
            .any(|t| t.contains("2026-11-25-vm-smoke/") && t.contains("syncer-r1.hgrm")),
        "{labels:?}"
    );
    let tl = svg(&out.path().join("timeline-latency-2026-11-25-vm-smoke.svg"));
    // Sparse bins are drawn as points: p99 dots and p50 rings for 2 filled bins x 4 runs.
    assert!(count(&tl, "circle") >= 16, "{tl}");
    let sweep = svg(&out.path().join("sweep-mixed-0.svg"));
    let labels = texts(&sweep);
    assert!(
        labels.iter().any(|t| t.contains("knee syncer 1000 ops/s")),
        "{labels:?}"
    );
    assert!(labels.iter().any(|t| t == "SLO p99 1000 ms"), "{labels:?}");
    let tune = svg(&out.path().join("tune-tune-queue-0.svg"));
    assert_eq!(series_lines(&tune), 2, "one line per rate: {tune}");
    svg(&out.path().join("history-ci-create-0-floor-ratio.svg"));
}

#[test]
fn absent_inputs_leave_their_sections_out_with_the_command_to_run() {
    let out = tempfile::tempdir().expect("tempdir");
    let o = report(&[&fixture().join("2026-11-25-vm-smoke")], out.path(), &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let md = std::fs::read_to_string(out.path().join("report.md")).expect("report.md");
    for line in [
        "No sweep.json among the inputs: `harness sweep SCENARIO` writes one.",
        "No tune.json among the inputs: `harness tune SCENARIO` writes one.",
        "No watchcost.json among the inputs: `harness watchcost` writes one.",
        "No history.csv among the inputs: `harness ci --record` appends to results/history.csv.",
        "- Not in this report: kernel memory per watch: `harness watchcost` writes watchcost.json.",
    ] {
        assert!(md.contains(line), "missing `{line}` in\n{md}");
    }
    assert!(!out.path().join("sweep-mixed-0.svg").exists());
}

#[test]
fn unreadable_inputs_are_clear_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("tune.json");
    std::fs::write(&bad, "{\"scenario\": 3}").unwrap();
    let o = report(&[&bad], &dir.path().join("out"), &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = text(&o);
    assert!(err.contains("tune.json is not a valid tune.json"), "{err}");
    assert!(err.contains("`harness tune SCENARIO`"), "{err}");

    let run = dir.path().join("run");
    std::fs::create_dir(&run).unwrap();
    std::fs::write(
        run.join("run.json"),
        "{\"runs\": [{\"sut\": \"syncer\", \"repeat\": 1, \"outcome\": \"passed\"}]}",
    )
    .unwrap();
    std::fs::write(run.join("syncer-r1.hgrm"), "Value Percentile\n1.0 0.5\n").unwrap();
    let o = report(&[&run], &dir.path().join("out"), &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("syncer-r1.hgrm line 2:"), "{}", text(&o));

    let o = report(
        &[&dir.path().join("nothing-here")],
        &dir.path().join("out"),
        &[],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("does not exist"), "{}", text(&o));
}
