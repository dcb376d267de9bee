//! syncer: keeps replicas identical to a source tree in real time from kernel file events.
//!
//! Data flow (see ARCHITECTURE.md): kernel fd ─▶ `sys` ─▶ `event` parser ─▶ `backend` (watch table,
//! watch-then-scan) ─▶ `pending` (dirty set per target) ─▶ `apply` ─▶ `target` ─▶ replica.
#![deny(unsafe_code)]

pub mod apply;
pub mod backend;
pub mod barrier;
pub mod change;
pub mod cli;
pub mod config;
pub mod control;
pub mod entry;
pub mod error;
pub mod event;
pub mod exclude;
pub mod guard;
pub mod links;
pub mod log;
pub mod metrics;
pub mod notify;
pub mod pipeline;
#[cfg(test)]
mod prop;
pub mod queue;
pub mod reconcile;
pub mod reload;
pub mod replica;
pub mod scan;
pub mod source;
pub mod state;
pub mod stats;
pub mod sys;
pub mod verify;
