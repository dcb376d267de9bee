//! Pure parsers of kernel notification records: bytes in, borrowed records out. No syscalls,
//! no clock, no allocation per record, so they are tested on synthetic buffers.

pub mod fanotify;
pub mod inotify;
