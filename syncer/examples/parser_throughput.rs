//! Measures the inotify record parser: a 1 MiB buffer of kernel-format records in, records per
//! second out. Run: `cargo run --release -p syncer --example parser_throughput`.

use std::hint::black_box;
use std::time::Instant;

use syncer::event::inotify::{Records, encode};

fn main() {
    // Names like a storm's: short decimal names (32-byte records) and some longer ones.
    let mut buf = Vec::with_capacity(1 << 20);
    let mut records_per_buffer = 0u64;
    let mut i = 0u32;
    while buf.len() < (1 << 20) - 64 {
        let name = if i % 8 == 0 {
            format!("a-longer-file-name-{i}.dat")
        } else {
            format!("{i}")
        };
        encode(
            &mut buf,
            1 + (i % 100) as i32,
            libc::IN_CLOSE_WRITE,
            0,
            name.as_bytes(),
        );
        records_per_buffer += 1;
        i += 1;
    }
    let rounds = 400u64;
    let started = Instant::now();
    let mut checksum = 0u64;
    for _ in 0..rounds {
        for event in Records::new(black_box(&buf)) {
            checksum = checksum.wrapping_add(event.name.len() as u64 + event.mask as u64);
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let total = rounds * records_per_buffer;
    println!(
        "parsed {total} records ({} per 1 MiB buffer) in {secs:.3} s: {:.1} M records/s (checksum {checksum})",
        records_per_buffer,
        total as f64 / secs / 1e6
    );
}
