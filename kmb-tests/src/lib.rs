//! # kmb-tests — the VOPR (deterministic simulator) and its checkers
//!
//! * [`swarm`] — every parameter a seed decides.
//! * [`workload`] — simulated clients driving the real client library; the history.
//! * `cluster` (simulation only) — replicas as madsim nodes running the production entry point.
//! * `faults` (simulation only) — the fault schedule, inside the bound.
//! * `vopr` (simulation only) — one seed end to end, and its record.
pub mod swarm;
pub mod workload;

pub mod analyzer;
pub mod checkers;
#[cfg(madsim)]
pub mod cluster;
pub mod diagnosis;
#[cfg(madsim)]
pub mod faults;
pub mod timeline;
pub mod trace;
#[cfg(madsim)]
pub mod vopr;
