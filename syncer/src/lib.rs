//! syncer: keeps replicas identical to a source tree in real time from kernel file events.
//!
//! Data flow (see DESIGN.md): kernel fd ─▶ `sys` ─▶ `event` parser ─▶ `backend` (watch table,
//! watch-then-scan) ─▶ `pending` (dirty set per target) ─▶ `apply` ─▶ `target` ─▶ replica.
#![deny(unsafe_code)]

pub mod event;
pub mod handles;
pub mod sys;
