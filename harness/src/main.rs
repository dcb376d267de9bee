//! harness: file-storm generator and measurement tool (built in its own issue).
#![forbid(unsafe_code)]

fn main() {
    eprintln!("harness: no commands yet; see issue 4");
    std::process::exit(2);
}
