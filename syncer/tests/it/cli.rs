//! Bad command lines: the documented message and exit code 2.

use std::process::Command;

use crate::common::*;

fn run(args: &[&std::ffi::OsStr]) -> (Option<i32>, String) {
    let out = Command::new(syncer_bin()).args(args).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_input_exits_2_with_a_clear_message() {
    let s = Scratch::new();
    let missing = s.dir.path().join("nope");
    let (code, err) = run(&[missing.as_os_str(), s.dst.as_os_str()]);
    assert_eq!(code, Some(2));
    assert!(err.contains("SOURCE") && err.contains("nope"), "{err}");

    let file = s.dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let (code, err) = run(&[file.as_os_str(), s.dst.as_os_str()]);
    assert_eq!(code, Some(2));
    assert!(err.contains("not a directory"), "{err}");

    let inside = s.src.join("replica");
    let (code, err) = run(&[s.src.as_os_str(), inside.as_os_str()]);
    assert_eq!(code, Some(2));
    assert!(err.contains("inside SOURCE"), "{err}");

    let (code, err) = run(&[s.src.as_os_str(), s.dir.path().as_os_str()]);
    assert_eq!(code, Some(2));
    assert!(err.contains("inside TARGET"), "{err}");

    let (code, err) = run(&[s.src.as_os_str(), s.src.as_os_str()]);
    assert_eq!(code, Some(2));
    assert!(err.contains("same directory"), "{err}");

    let (code, err) = run(&[
        "--no-such-option".as_ref(),
        s.src.as_os_str(),
        s.dst.as_os_str(),
    ]);
    assert_eq!(code, Some(2));
    assert!(err.contains("--no-such-option"), "{err}");

    let (code, err) = run(&[
        "--exclude".as_ref(),
        "a[".as_ref(),
        s.src.as_os_str(),
        s.dst.as_os_str(),
    ]);
    assert_eq!(code, Some(2));
    assert!(err.contains("--exclude"), "{err}");
}
