//! Replica-to-replica messages and their total, bounded encoding.
//!
//! Layout: magic `KMBM`, version `u16`, tag `u8`, cluster `u64`, sender replica `u8`, then the
//! body fields in declaration order (little-endian). Headers are the 128-byte entry headers
//! (checksum-verified on decode), entries are `u32`-length-prefixed [`Entry`] encodings
//! (checksum-verified, exact length), header lists are `u32`-counted and at most
//! [`HEADERS_MAX`] long, snapshots are `u64`-prefixed and at most
//! [`snapshot::SNAPSHOT_SIZE_MAX`](super::snapshot::SNAPSHOT_SIZE_MAX). Decoding never panics
//! and rejects trailing bytes. Semantic checks (cluster, view, op ranges) happen in the replica.

use super::codec::{DecodeError, Reader, Writer};
use super::snapshot::SNAPSHOT_SIZE_MAX;
use crate::entry::View;
use crate::entry::{Checksum, Entry, Header, BODY_SIZE_MAX, HEADER_SIZE};

/// At most this many headers in one message.
pub const HEADERS_MAX: usize = 256;
/// Largest encoded message.
pub const MESSAGE_SIZE_MAX: usize = SNAPSHOT_SIZE_MAX + 4096;

const MAGIC: [u8; 4] = *b"KMBM";
/// 2: `RequestStateTransfer` carries `op_min`. 3: `DoViewChange` carries `bodies` (nacks).
/// 4: `DoViewChange` carries `held_max` and `never_written` (nacks of holes). 5: 64-bit views
/// (entry format 2). 6: client sessions register (`kv::Request::Register`; the client table
/// executes nothing else for a client it does not hold), so no replica of version 5 may apply
/// the same log. 7: `CommitAck` (a backup answers the primary's heartbeat; a primary that
/// hears from no quorum steps down). 8: `Commit` and `CommitAck` carry a read round (reads
/// served without a log entry, `core/read.rs`).
const VERSION: u16 = 8;

/// A replica's log as DoViewChange, StartView and RecoveryResponse carry it: the head (`op` and
/// its entry's checksum), the commit number, the durable checkpoint op, and the last (at most
/// [`HEADERS_MAX`]) headers of the log up to the head, ascending. A head that is exactly the
/// sender's checkpoint has no header (only `op_checksum`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogSummary {
    pub op: u64,
    pub op_checksum: Checksum,
    pub commit: u64,
    pub checkpoint_op: u64,
    pub headers: Vec<Header>,
}

/// What a DoViewChange says besides its view (VRR's `v'`, `l`, `n`, `k`, plus what lets the
/// new primary count nacks).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vote {
    /// The sender's durable `log_view`: the view whose log it last installed completely.
    pub log_view: View,
    pub log: LogSummary,
    /// One flag per `log.headers` entry (same length; encoded as a bitset after the headers):
    /// the sender holds that entry's body intact and durably. With `log.op` and `log.headers` it
    /// lets the new primary count nacks (see `docs/protocol.md`, "Nacks"): a header-only
    /// slot (a faulty or not yet repaired body) never counts as a nack.
    pub bodies: Vec<bool>,
    /// The highest op the sender ever wrote a body for (in this incarnation) or recovered
    /// from its disk (intact or faulty): an op above it was never durable there, so never
    /// acknowledged by the sender — a nack even if the sender holds its header.
    pub held_max: u64,
    /// Ascending ops at or below `held_max` that the sender's storage proves it never made
    /// durable (recovered faulty with a blank or stale redundant header, not written since):
    /// nacks too. At most [`HEADERS_MAX`].
    pub never_written: Vec<u64>,
}

/// A message between replicas.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Cluster id; a mismatch is dropped.
    pub cluster: u64,
    /// Sender's replica index; must match the transport's `from`.
    pub replica: u8,
    pub body: Body,
}

/// What a message says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    /// Primary → backups: append `entry`; `commit` is the primary's commit number. Also the
    /// answer to [`Body::RequestPrepare`] (then from any replica, verified by checksum).
    Prepare {
        view: View,
        commit: u64,
        entry: Entry,
    },
    /// Backup → primary: every op up to `op` is durable here and chains to `checksum`.
    PrepareOk {
        view: View,
        op: u64,
        checksum: Checksum,
    },
    /// Primary → backups heartbeat: commit number and durable checkpoint op; `round` is the
    /// primary's latest read round (sent at once when reads wait for one, then with every
    /// heartbeat until answered).
    Commit {
        view: View,
        commit: u64,
        checkpoint_op: u64,
        round: u64,
    },
    /// Backup → primary, answering each heartbeat: the primary knows a quorum still hears
    /// it (a primary that hears from no quorum for a view-change timeout steps down), and —
    /// echoing `round` — that the sender was in `view`, normal, after the round was sent: what
    /// confirms the reads waiting for it (`core/read.rs`).
    CommitAck {
        view: View,
        round: u64,
    },
    StartViewChange {
        view: View,
    },
    /// To the new primary: the sender's vote, for `view`.
    DoViewChange {
        view: View,
        vote: Vote,
    },
    /// New primary → all: the log of the new view.
    StartView {
        view: View,
        log: LogSummary,
    },
    /// A replica that saw a newer view asks its primary for the StartView.
    RequestStartView {
        view: View,
    },
    /// A restarted replica with an unreadable head asks for the current view and log.
    Recovery {
        nonce: u64,
    },
    /// Answer to Recovery from a replica in normal status; only the primary fills in
    /// `log.headers`.
    RecoveryResponse {
        view: View,
        nonce: u64,
        log: LogSummary,
    },
    /// Ask for the entry at `op` whose checksum is `checksum`.
    RequestPrepare {
        op: u64,
        checksum: Checksum,
    },
    /// Ask for the headers of ops `op_min..=op_max` (at most [`HEADERS_MAX`]).
    RequestHeaders {
        op_min: u64,
        op_max: u64,
    },
    /// Answer to RequestHeaders (unverified; the receiver checks them against its hash chain).
    Headers {
        headers: Vec<Header>,
    },
    /// Ask for a checkpoint at an op `>= op_min`: the receiver's durable checkpoint if it is
    /// recent enough, else a snapshot of its applied (committed) state.
    RequestStateTransfer {
        op_min: u64,
    },
    /// A checkpoint: the state after applying every (committed) op up to `checkpoint_op`.
    StateTransfer {
        view: View,
        checkpoint_op: u64,
        checkpoint_checksum: Checksum,
        snapshot: Vec<u8>,
    },
}

impl Body {
    fn tag(&self) -> u8 {
        match self {
            Body::Prepare { .. } => 1,
            Body::PrepareOk { .. } => 2,
            Body::Commit { .. } => 3,
            Body::StartViewChange { .. } => 4,
            Body::DoViewChange { .. } => 5,
            Body::StartView { .. } => 6,
            Body::RequestStartView { .. } => 7,
            Body::Recovery { .. } => 8,
            Body::RecoveryResponse { .. } => 9,
            Body::RequestPrepare { .. } => 10,
            Body::RequestHeaders { .. } => 11,
            Body::Headers { .. } => 12,
            Body::RequestStateTransfer { .. } => 13,
            Body::StateTransfer { .. } => 14,
            Body::CommitAck { .. } => 15,
        }
    }
}

/// `len` flags as `ceil(len / 8)` bytes, least significant bit first (missing flags: false).
fn write_bitset(w: &mut Writer, len: usize, flags: &[bool]) {
    let mut bytes = vec![0u8; len.div_ceil(8)];
    for (i, _) in flags.iter().take(len).enumerate().filter(|(_, &f)| f) {
        bytes[i / 8] |= 1 << (i % 8);
    }
    w.raw(&bytes);
}

/// Inverse of [`write_bitset`]; padding bits must be zero (one encoding per value).
fn read_bitset(r: &mut Reader<'_>, len: usize) -> Result<Vec<bool>, DecodeError> {
    let bytes = r.raw(len.div_ceil(8))?;
    let flags: Vec<bool> = (0..len)
        .map(|i| bytes[i / 8] & (1 << (i % 8)) != 0)
        .collect();
    if !len.is_multiple_of(8) && bytes[len / 8] >> (len % 8) != 0 {
        return Err(DecodeError::Invalid("bitset padding"));
    }
    Ok(flags)
}

fn write_headers(w: &mut Writer, headers: &[Header]) {
    debug_assert!(headers.len() <= HEADERS_MAX);
    w.u32(headers.len() as u32);
    for h in headers {
        w.raw(&h.encode());
    }
}

fn read_headers(r: &mut Reader<'_>) -> Result<Vec<Header>, DecodeError> {
    let n = r.count(HEADERS_MAX, HEADER_SIZE)?;
    let mut headers = Vec::with_capacity(n);
    for _ in 0..n {
        let header =
            Header::decode(r.raw(HEADER_SIZE)?).map_err(|_| DecodeError::Invalid("header"))?;
        headers.push(header);
    }
    Ok(headers)
}

fn write_log(w: &mut Writer, log: &LogSummary) {
    w.u64(log.op);
    w.u128(log.op_checksum);
    w.u64(log.commit);
    w.u64(log.checkpoint_op);
    write_headers(w, &log.headers);
}

fn read_log(r: &mut Reader<'_>) -> Result<LogSummary, DecodeError> {
    Ok(LogSummary {
        op: r.u64()?,
        op_checksum: r.u128()?,
        commit: r.u64()?,
        checkpoint_op: r.u64()?,
        headers: read_headers(r)?,
    })
}

fn read_entry(r: &mut Reader<'_>) -> Result<Entry, DecodeError> {
    let bytes = r.bytes(HEADER_SIZE + BODY_SIZE_MAX as usize)?;
    let entry = Entry::decode(bytes).map_err(|_| DecodeError::Invalid("entry"))?;
    if HEADER_SIZE + entry.body.len() != bytes.len() {
        return Err(DecodeError::Invalid("entry length"));
    }
    Ok(entry)
}

impl Message {
    pub fn new(cluster: u64, replica: u8, body: Body) -> Message {
        Message {
            cluster,
            replica,
            body,
        }
    }

    /// Encode. Bodies built by the replica respect every bound the decoder checks.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len_hint());
        self.encode_into(&mut out);
        out
    }

    /// About how many bytes [`Message::encode`] writes: exact for the messages that carry an
    /// entry or a snapshot, room for the small ones otherwise (the rest grow as they are
    /// written).
    pub fn encoded_len_hint(&self) -> usize {
        // Magic, version, tag, cluster, replica.
        const FIXED: usize = 4 + 2 + 1 + 8 + 1;
        match &self.body {
            Body::Prepare { entry, .. } => FIXED + 8 + 8 + 4 + HEADER_SIZE + entry.body.len(),
            Body::StateTransfer { snapshot, .. } => FIXED + 8 + 8 + 16 + 8 + snapshot.len(),
            _ => 64,
        }
    }

    /// Append the encoding of [`Message::encode`] to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let mut w = Writer {
            buf: std::mem::take(out),
        };
        w.raw(&MAGIC);
        w.u16(VERSION);
        w.u8(self.body.tag());
        w.u64(self.cluster);
        w.u8(self.replica);
        match &self.body {
            Body::Prepare {
                view,
                commit,
                entry,
            } => {
                w.u64(*view);
                w.u64(*commit);
                // `w.bytes(&entry.encode())` without the temporary.
                w.u32((HEADER_SIZE + entry.body.len()) as u32);
                w.raw(&entry.header.encode());
                w.raw(&entry.body);
            }
            Body::PrepareOk { view, op, checksum } => {
                w.u64(*view);
                w.u64(*op);
                w.u128(*checksum);
            }
            Body::Commit {
                view,
                commit,
                checkpoint_op,
                round,
            } => {
                w.u64(*view);
                w.u64(*commit);
                w.u64(*checkpoint_op);
                w.u64(*round);
            }
            Body::StartViewChange { view } | Body::RequestStartView { view } => w.u64(*view),
            Body::DoViewChange { view, vote } => {
                w.u64(*view);
                w.u64(vote.log_view);
                write_log(&mut w, &vote.log);
                write_bitset(&mut w, vote.log.headers.len(), &vote.bodies);
                w.u64(vote.held_max);
                debug_assert!(vote.never_written.len() <= HEADERS_MAX);
                w.u32(vote.never_written.len() as u32);
                for &o in &vote.never_written {
                    w.u64(o);
                }
            }
            Body::StartView { view, log } => {
                w.u64(*view);
                write_log(&mut w, log);
            }
            Body::Recovery { nonce } => w.u64(*nonce),
            Body::RecoveryResponse { view, nonce, log } => {
                w.u64(*view);
                w.u64(*nonce);
                write_log(&mut w, log);
            }
            Body::RequestPrepare { op, checksum } => {
                w.u64(*op);
                w.u128(*checksum);
            }
            Body::RequestHeaders { op_min, op_max } => {
                w.u64(*op_min);
                w.u64(*op_max);
            }
            Body::Headers { headers } => write_headers(&mut w, headers),
            Body::RequestStateTransfer { op_min } => w.u64(*op_min),
            Body::CommitAck { view, round } => {
                w.u64(*view);
                w.u64(*round);
            }
            Body::StateTransfer {
                view,
                checkpoint_op,
                checkpoint_checksum,
                snapshot,
            } => {
                w.u64(*view);
                w.u64(*checkpoint_op);
                w.u128(*checkpoint_checksum);
                w.blob(snapshot);
            }
        }
        *out = w.buf;
    }

    /// Decode; total (never panics), bounded, no trailing bytes.
    pub fn decode(bytes: &[u8]) -> Result<Message, DecodeError> {
        if bytes.len() > MESSAGE_SIZE_MAX {
            return Err(DecodeError::TooLarge);
        }
        let mut r = Reader::new(bytes);
        if r.raw(4)? != MAGIC {
            return Err(DecodeError::Invalid("message magic"));
        }
        if r.u16()? != VERSION {
            return Err(DecodeError::Invalid("message version"));
        }
        let tag = r.u8()?;
        let cluster = r.u64()?;
        let replica = r.u8()?;
        let body = match tag {
            1 => Body::Prepare {
                view: r.u64()?,
                commit: r.u64()?,
                entry: read_entry(&mut r)?,
            },
            2 => Body::PrepareOk {
                view: r.u64()?,
                op: r.u64()?,
                checksum: r.u128()?,
            },
            3 => Body::Commit {
                view: r.u64()?,
                commit: r.u64()?,
                checkpoint_op: r.u64()?,
                round: r.u64()?,
            },
            4 => Body::StartViewChange { view: r.u64()? },
            5 => {
                let view = r.u64()?;
                let log_view = r.u64()?;
                let log = read_log(&mut r)?;
                let bodies = read_bitset(&mut r, log.headers.len())?;
                let held_max = r.u64()?;
                let n = r.count(HEADERS_MAX, 8)?;
                let mut never_written = Vec::with_capacity(n);
                for _ in 0..n {
                    let o = r.u64()?;
                    if never_written.last().is_some_and(|&p| p >= o) || o > held_max {
                        return Err(DecodeError::Invalid("never_written order"));
                    }
                    never_written.push(o);
                }
                Body::DoViewChange {
                    view,
                    vote: Vote {
                        log_view,
                        log,
                        bodies,
                        held_max,
                        never_written,
                    },
                }
            }
            6 => Body::StartView {
                view: r.u64()?,
                log: read_log(&mut r)?,
            },
            7 => Body::RequestStartView { view: r.u64()? },
            8 => Body::Recovery { nonce: r.u64()? },
            9 => Body::RecoveryResponse {
                view: r.u64()?,
                nonce: r.u64()?,
                log: read_log(&mut r)?,
            },
            10 => Body::RequestPrepare {
                op: r.u64()?,
                checksum: r.u128()?,
            },
            11 => Body::RequestHeaders {
                op_min: r.u64()?,
                op_max: r.u64()?,
            },
            12 => Body::Headers {
                headers: read_headers(&mut r)?,
            },
            13 => Body::RequestStateTransfer { op_min: r.u64()? },
            15 => Body::CommitAck {
                view: r.u64()?,
                round: r.u64()?,
            },
            14 => Body::StateTransfer {
                view: r.u64()?,
                checkpoint_op: r.u64()?,
                checkpoint_checksum: r.u128()?,
                snapshot: r.blob(SNAPSHOT_SIZE_MAX)?.to_vec(),
            },
            _ => return Err(DecodeError::Invalid("message tag")),
        };
        r.finish()?;
        Ok(Message {
            cluster,
            replica,
            body,
        })
    }
}
