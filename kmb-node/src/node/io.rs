//! The I/O task: a node's [`Storage`] runs here, apart from the driver loop, so the core keeps
//! handling messages and ticks while a write or an fsync is in flight.
//!
//! The driver sends the core's storage effects in order ([`IoRequest`]); this task executes
//! them in that order and reports each durability completion back ([`IoDone`]), which the
//! driver feeds to the core as [`Input::Synced`](crate::core::Input::Synced),
//! `SuperblockSynced` or `CheckpointDone`. A sync covers exactly the appends the driver sent
//! before it: the task records [`Storage::writes_issued`] when the request arrives, and answers
//! once [`Storage::durable_through`] it. An fsync is in flight whenever some append awaits
//! one; appends that arrive meanwhile are written at once (they overlap it) and are covered by
//! the next one; the redundant headers of a group are written once its prepares are durable
//! and made durable by the next fsync, which also covers the prepares written meanwhile — one
//! fsync per group under load (docs/storage-format.md, "Write protocol").
//! A checkpoint of the local log rides the same fsyncs: its blob is written at once, and it is
//! read back and its superblock copies written one fsync after another while appends go on
//! ([`Storage::start_checkpoint`]). Truncations, superblock writes and state-transfer
//! checkpoints wait for the fsync in flight and the checkpoint in progress, then run whole
//! (they sync themselves). Any storage error stops the task and, through
//! [`IoDone::Failed`], the node: an fsync is never retried.
//!
//! In production the task has an OS thread of its own (`sim_runtime::task::spawn_dedicated`),
//! where its writes and fsyncs run inline: a write costs one system call instead of two thread
//! hand-offs, and requests that arrive during an fsync queue in the channel and are written
//! the moment it returns — none of them could have been covered by it. In simulation it is an
//! ordinary task, and the simulated disk's latencies interleave its I/O with the driver's
//! messages and ticks.

use std::collections::VecDeque;

use tokio::sync::mpsc;

use crate::entry::{Checksum, Entry, Header, View};
use crate::storage::{Fsync, Storage, StorageError};

/// Requests taken at most before the I/O task looks at its fsync again.
const ROUND_MAX: usize = 256;

/// Storage work, in the order the core emitted it.
pub(super) enum IoRequest {
    Append(Vec<Entry>),
    Truncate(u64),
    Sync {
        op: u64,
    },
    WriteSuperblock {
        view: View,
        log_view: View,
    },
    Checkpoint {
        op: u64,
        checksum: Checksum,
        snapshot: crate::core::Snapshot,
    },
    InstallCheckpoint {
        op: u64,
        checksum: Checksum,
        snapshot: crate::core::Snapshot,
    },
}

/// What the I/O task reports to the driver.
pub(super) enum IoDone {
    /// Every append sent before `Sync { op }` is durable.
    Synced {
        op: u64,
    },
    SuperblockSynced {
        view: View,
        log_view: View,
    },
    CheckpointDone {
        op: u64,
    },
    /// These appends became durable, redundant headers included (what a PrepareOk may claim;
    /// the driver's durability audit in the simulator).
    Durable(Vec<Header>),
    /// The storage stopped: the node must stop.
    Failed(StorageError),
}

/// Run `storage` until the driver drops its sender (or the storage fails).
pub(super) async fn io_task(
    storage: Storage,
    requests: mpsc::UnboundedReceiver<IoRequest>,
    done: mpsc::UnboundedSender<IoDone>,
) {
    let mut io = Io {
        storage,
        done,
        syncs: VecDeque::new(),
        fsync: None,
    };
    if let Err(e) = io.run(requests).await {
        let _ = io.done.send(IoDone::Failed(e));
    }
}

struct Io {
    storage: Storage,
    done: mpsc::UnboundedSender<IoDone>,
    /// Sync requests not answered yet: `(op, writes issued when it arrived)`. The core has at
    /// most one outstanding; the task does not rely on it.
    syncs: VecDeque<(u64, u64)>,
    /// The fsync in flight.
    fsync: Option<Fsync>,
}

/// The fsync in flight's result (pending forever if there is none).
async fn fsync_done(fsync: &mut Option<Fsync>) -> std::io::Result<()> {
    match fsync {
        Some(f) => (&mut f.done).await,
        None => std::future::pending().await,
    }
}

impl Io {
    async fn run(
        &mut self,
        mut requests: mpsc::UnboundedReceiver<IoRequest>,
    ) -> Result<(), StorageError> {
        loop {
            // Everything the driver has sent so far joins the group the next fsync covers.
            for _ in 0..ROUND_MAX {
                match requests.try_recv() {
                    Ok(request) => self.execute(request).await?,
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => {
                        self.drain().await?;
                        return Ok(());
                    }
                }
            }
            self.answer_syncs();
            #[cfg(madsim)]
            crate::inspect::durable(self.storage.identity().replica, self.storage.durable());
            // One fsync in flight whenever an append awaits one: it covers the headers of the
            // ops whose prepares the previous fsync made durable, and the prepares written
            // since (one fsync per group under load).
            // A checkpoint in progress rides the same fsyncs, and asks for one when no append
            // does.
            if self.fsync.is_none()
                && (self.storage.has_pending() || self.storage.checkpoint_awaits_fsync())
            {
                self.storage.write_redundant_headers().await?;
                self.fsync = Some(self.storage.start_fsync());
            }
            tokio::select! {
                biased;
                result = fsync_done(&mut self.fsync) => {
                    let covers = self.fsync.take().map_or(0, |f| f.covers);
                    self.storage.finish_fsync(covers, result).await?;
                    if let Some(op) = self.storage.advance_checkpoint().await? {
                        self.answer_syncs();
                        let _ = self.done.send(IoDone::CheckpointDone { op });
                    }
                }
                request = requests.recv() => match request {
                    Some(request) => self.execute(request).await?,
                    None => {
                        // The node is stopping: let the fsync in flight finish (in production
                        // its blocking thread holds the file, and with it the file's lock).
                        self.drain().await?;
                        return Ok(());
                    }
                },
            }
        }
    }

    /// Wait for the fsync in flight, if any, then complete the checkpoint in progress, if
    /// any (reported before whatever the caller does next, in the order the core asked).
    async fn drain(&mut self) -> Result<(), StorageError> {
        if let Some(f) = self.fsync.take() {
            let result = f.done.await;
            self.storage.finish_fsync(f.covers, result).await?;
        }
        if let Some(op) = self.storage.finish_checkpoint().await? {
            self.answer_syncs();
            let _ = self.done.send(IoDone::CheckpointDone { op });
        }
        Ok(())
    }

    /// Answer, in order, every sync request whose appends are all durable (after reporting
    /// the appends that became durable, for the simulator's audit).
    fn answer_syncs(&mut self) {
        let durable = self.storage.take_durable();
        if cfg!(madsim) && !durable.is_empty() {
            let _ = self.done.send(IoDone::Durable(durable));
        }
        while let Some(&(op, writes)) = self.syncs.front() {
            if !self.storage.durable_through(writes) {
                break;
            }
            self.syncs.pop_front();
            let _ = self.done.send(IoDone::Synced { op });
        }
    }

    async fn execute(&mut self, request: IoRequest) -> Result<(), StorageError> {
        match request {
            IoRequest::Append(entries) => {
                for entry in &entries {
                    self.storage.append(entry).await?;
                }
            }
            IoRequest::Sync { op } => {
                let writes = self.storage.writes_issued();
                self.syncs.push_back((op, writes));
            }
            IoRequest::Truncate(op) => {
                self.drain().await?;
                self.storage.truncate_after(op).await?;
            }
            IoRequest::WriteSuperblock { view, log_view } => {
                self.drain().await?;
                self.storage.write_superblock(view, log_view).await?;
                // It synced every append before it: answer the syncs that completed first.
                self.answer_syncs();
                let _ = self.done.send(IoDone::SuperblockSynced { view, log_view });
            }
            IoRequest::Checkpoint {
                op,
                checksum,
                snapshot,
            } => {
                if self.storage.can_start_checkpoint(op, checksum) {
                    // Written now, synced and published over the next fsyncs while appends
                    // go on; reported when published (`run`).
                    self.storage
                        .start_checkpoint(op, checksum, snapshot)
                        .await?;
                } else {
                    // A checkpoint the log cannot name (after state transfer): whole.
                    self.drain().await?;
                    self.storage.checkpoint(op, checksum, &snapshot).await?;
                    self.answer_syncs();
                    let _ = self.done.send(IoDone::CheckpointDone { op });
                }
            }
            IoRequest::InstallCheckpoint {
                op,
                checksum,
                snapshot,
            } => {
                self.drain().await?;
                self.storage
                    .install_checkpoint(op, checksum, &snapshot)
                    .await?;
                self.answer_syncs();
                let _ = self.done.send(IoDone::CheckpointDone { op });
            }
        }
        Ok(())
    }
}
