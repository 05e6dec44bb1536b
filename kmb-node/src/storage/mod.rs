//! Storage: on-disk formats (WAL, superblock, checkpoints), pure recovery decisions, and the
//! storage engine over `sim_runtime::disk`.
//!
//! * [`format`] — the file layout, superblock and checkpoint encodings. Pure.
//! * [`recovery`] — classify every slot and rebuild the log after a crash. Pure.
//! * [`Storage`] — the async engine: format, open (recover), append, group-commit sync,
//!   truncate, superblock updates, checkpoints, verified reads; [`Storage::examine`] reads a
//!   file offline without writing.
//! * [`verify`] — the offline verifier's report over an examination. Pure.
//!
//! The on-disk format and the recovery decision table are specified in
//! `docs/storage-format.md`.

mod engine;
pub mod format;
pub mod recovery;
pub mod verify;

pub use engine::{Examination, Fsync, Storage, StorageError};
pub use format::{CheckpointRef, Identity, StorageConfig, Superblock};
pub use recovery::{CheckpointState, Recovery, RecoveryReport};
