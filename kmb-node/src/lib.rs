//! # kmb-node — the replicated key-value node
//!
//! * [`entry`] — the log entry (header + body), checksums and the hash chain. Pure.
//! * [`storage`] — on-disk formats (WAL, superblock, checkpoints), pure recovery decisions,
//!   and the storage engine over `sim_runtime::disk`.
//! * [`core`] — the Viewstamped Replication protocol: pure, ticks and messages in, effects out.
//! * [`kv`] — the key-value state machine. Pure.
//! * [`resp`] — RESP (Redis protocol) command parser and RESP2/RESP3 reply encoder. Pure.
//! * [`commands`], [`connection`] — the Redis command set and one client connection's state
//!   (protocol, name, authentication, refused transactions). Pure.
//! * [`coverage`] — the named coverage marks (`mark!`) at rare paths, counted in simulation.
//! * [`fuzzing`] — property checks over untrusted bytes, shared by the `cargo fuzz` targets and
//!   the corpus replay test. Pure.

/// Record that the rare path named `$name` ran (a [`coverage`] mark): simulation only, nothing
/// in production. The name must be listed in [`coverage::MARKS`].
#[macro_export]
macro_rules! mark {
    ($name:literal) => {{
        #[cfg(madsim)]
        $crate::inspect::mark($name);
    }};
}

pub mod auth;
pub mod client;
pub mod commands;
pub mod connection;
pub mod core;
pub mod coverage;
pub mod entry;
pub mod fuzzing;
pub mod glob;
#[cfg(madsim)]
pub mod inspect;
pub mod kv;
#[cfg(any(madsim, feature = "chaos-mutation"))]
pub mod mutation;
pub mod node;
pub mod ratelimit;
pub mod resp;
pub mod storage;
