//! # kmb-tests — the VOPR (deterministic simulator) and its checkers
//!
//! * [`swarm`] — every parameter a seed decides.
pub mod swarm;
