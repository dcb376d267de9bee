//! The syncer's integration tests: one binary, topic modules, real kernel events on real
//! tempdirs, the real `syncer` binary as a child process, deadline waits.

mod backends;
mod backup;
mod bandwidth;
mod barrier;
mod cli;
mod common;
mod config;
mod consistency;
mod daemon;
mod fanotify_sys;
mod faults;
mod guard;
mod links;
mod metrics;
mod replaced;
mod replicate;
mod rsync;
mod systemd;
mod verify;
