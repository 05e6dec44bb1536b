//! The file API every byte of durable state goes through.
//!
//! Semantics shared by both modes (and relied on by kmb's storage):
//! * [`File::open`] creates a missing file and never truncates an existing one.
//! * [`File::write_at`] is *not* durable until a later [`File::sync`] returns `Ok`. A crash may
//!   lose, keep, or tear (at 512-byte sector granularity) any write not yet synced.
//! * [`File::sync`] covers exactly the writes completed before it was *called* (the fsync
//!   starts at the call, not at the first poll of the future it returns): a caller may keep
//!   writing while a sync is in flight, and only a later sync covers those writes (production
//!   may persist them sooner; nothing may count on it; the simulated disk never does).
//! * [`File::sync`] failing means the state of the unsynced data is unknown: callers must stop,
//!   never retry the same sync (the kernel may already have dropped the dirty pages).
//! * [`File::read_at`] reads exactly `buf.len()` bytes or fails (`UnexpectedEof` past the end).
//! * [`File::try_lock`] takes an advisory exclusive lock held while the `File` lives (real
//!   `flock` in production; a no-op in simulation, where each node opens its file once).
//! * Creating a file in [`File::open`] and directory operations ([`remove`], [`rename`],
//!   [`create_dir_all`]) are durable when they return (production syncs the parent directory,
//!   both parents for a rename across directories; the simulated disk applies them at once).
//!
//! Production ([`real`](self)): `std::fs` files; every read, write, resize and `sync_data` on
//! a blocking thread (a slow disk never holds a runtime worker) — except on a thread started by
//! [`crate::task::spawn_dedicated`], where reads, writes, resizes and `sync_data` run inline
//! (nothing else runs there).
//! Simulation: an in-memory disk per madsim node, registered as a simulator plugin, surviving
//! kill/restart, with the faults configured through [`crate::fault`].

/// Sector size: the granularity of torn writes and latent sector errors.
pub const SECTOR_SIZE: u64 = 512;

#[cfg(not(madsim))]
mod real;
#[cfg(not(madsim))]
pub(crate) use real::inline_on_this_thread;
#[cfg(not(madsim))]
pub use real::*;

#[cfg(madsim)]
pub(crate) mod simulated;
#[cfg(madsim)]
pub use simulated::{
    accepted, copy_durable, create_dir_all, discard_disk, exists, list, oracle_violations, remove,
    rename, reported_faulty, File,
};
