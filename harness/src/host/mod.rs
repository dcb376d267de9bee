//! The machine: facts for the results README (env.rs), the inotify sysctls and their guard
//! (kernel.rs), loop-mounted filesystems, small tmpfs mounts for fault cases, network
//! namespaces and a delaying TCP proxy for the net faults, the process tree
//! and its /proc readers (CPU, RSS, I/O, watches), kernel memory, and where cargo put our
//! binaries.

pub mod cargo_target;
pub mod env;
pub mod kernel;
pub mod kmem;
pub mod loopfs;
pub mod netns;
pub mod procio;
pub mod proctree;
pub mod tcp_delay;
pub mod tmpfs;
pub mod watches;
