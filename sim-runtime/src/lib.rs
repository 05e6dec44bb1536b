//! # sim-runtime — kmb's one async facade
//!
//! Everything above this crate is written once and compiles in two modes:
//!
//! * **production** (`cargo build`): tokio tasks, time and sockets; real files synced with
//!   `sync_data`; randomness from the OS.
//! * **simulation** (`RUSTFLAGS="--cfg madsim"`): madsim's deterministic tasks, time and TCP; a
//!   simulated disk per node ([`disk`]) that survives kill/restart; randomness from the
//!   simulation seed; and every fault the simulator injects ([`fault`], [`sim`]).
//!
//! The public API is identical in both modes (`tests/parity.rs` touches every item in both),
//! except [`fault`] and [`sim`], which exist only under `cfg(madsim)`.
//!
//! Module map:
//! * [`task`] — spawn, yield_now, JoinHandle.
//! * [`time`] — sleep, timeout, interval, [`time::Instant`], wall-clock [`time::now_wall`].
//! * [`rand`] — the only randomness source.
//! * [`net`] — TCP plus the framed, checksummed message connection (the layer where network
//!   faults are injected under madsim, so the real framing code always runs).
//! * [`disk`] — the file API every byte of durable state goes through.
//!
//! This crate is the one place allowed to read the clock, spawn OS threads and draw
//! randomness; `clippy.toml` forbids those methods everywhere else.
#![allow(clippy::disallowed_methods)] // reason: this crate is where the replacements live.

pub mod disk;
pub mod net;
pub mod rand;
pub mod task;
pub mod time;

#[cfg(madsim)]
pub mod fault;
#[cfg(madsim)]
pub mod sim;
