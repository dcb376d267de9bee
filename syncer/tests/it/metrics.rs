//! `--metrics ADDR`: a real HTTP scrape of the running syncer, and an address in use refused
//! at start-up with nothing written.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::time::Duration;

use crate::common::*;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// GET /path over HTTP/1.0: the status line, the headers and the body.
fn get(port: u16, path: &str) -> (String, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    let (head, body) = reply.split_once("\r\n\r\n").unwrap_or((&reply, ""));
    (head.to_string(), body.to_string())
}

/// The value of the sample `line_start` (a metric name with its labels).
fn sample(body: &str, line_start: &str) -> Option<f64> {
    body.lines().find_map(|line| {
        line.strip_prefix(line_start)?
            .strip_prefix(' ')?
            .parse()
            .ok()
    })
}

#[test]
fn the_counters_are_scraped_over_http() {
    let _k = shared_kernel();
    let s = Scratch::new();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let syncer = s.syncer(&["--metrics", &addr]);
    for i in 0..5 {
        write(&s.src.join(format!("f{i}")), b"scraped\n");
    }
    assert_converges(&s.src, &s.dst, Duration::from_secs(20), &syncer);
    let target = format!("{{target=\"{}\"}}", s.dst.display());
    let mut body = String::new();
    let counted = wait_until(Duration::from_secs(10), || {
        body = get(port, "/metrics").1;
        sample(&body, &format!("syncer_target_files_sent_total{target}")).is_some_and(|n| n >= 5.0)
    });
    assert!(counted, "{body}");
    let (head, _) = get(port, "/metrics");
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{head}"
    );
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    assert_eq!(sample(&body, "syncer_ready"), Some(1.0), "{body}");
    assert_eq!(
        sample(&body, &format!("syncer_target_backlog{target}")),
        Some(0.0),
        "{body}"
    );
    assert_eq!(
        sample(&body, &format!("syncer_target_lag_seconds{target}")),
        Some(0.0),
        "{body}"
    );
    assert!(
        sample(&body, "syncer_events_total").is_some_and(|n| n > 0.0),
        "{body}"
    );
    assert!(
        sample(
            &body,
            &format!("syncer_target_last_success_timestamp_seconds{target}")
        )
        .is_some_and(|t| t > 1.7e9),
        "{body}"
    );
    assert!(
        body.contains("# TYPE syncer_target_bytes_sent_total counter"),
        "{body}"
    );
    let (head, _) = get(port, "/other");
    assert!(head.contains(" 404"), "{head}");
}

#[test]
fn an_address_in_use_is_refused_at_start_and_nothing_is_written() {
    let s = Scratch::new();
    write(&s.src.join("f"), b"x\n");
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = Command::new(syncer_bin())
        .arg("--state-dir")
        .arg(&s.state)
        .args(["--metrics", &addr])
        .arg(&s.src)
        .arg(&s.dst)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("--metrics {addr}: cannot listen there")),
        "{stderr}"
    );
    assert!(
        !s.dst.exists(),
        "nothing may be written before the endpoint is bound"
    );
}
