//! The client table (exactly-once replies) and the checkpoint snapshot format.
//!
//! Snapshot layout: magic `KMBC`, version `u16` (2), the timestamp of the checkpoint's own
//! log entry `u64`, the kv snapshot as a `u64`-prefixed blob, a `u32` client count, then per
//! client (ascending id): id `u128`, request `u64`, op `u64`, the encoded reply as a
//! `u32`-prefixed blob. Decoding is total and canonical. Version 1 (no timestamp) still
//! decodes: a data file written before it keeps its checkpoint.
//!
//! The timestamp is the cluster time a primary must not stamp below when its log's head is
//! the checkpoint (after a restart, nothing above it): the kv state's clock is only the
//! largest timestamp *applied*, and an op that applied nothing (a duplicate, a malformed or
//! evicted-session request) can sit on top of it (VOPR seed 580836881653: a new primary whose
//! head was such an op stamped the next one a second earlier).

use std::collections::BTreeMap;

use super::codec::{DecodeError, Reader, Writer};
use crate::kv::{self, KvState, Reply};

/// Upper bound on `Config::clients_max` (and on the clients a snapshot may hold).
pub const CLIENTS_MAX_LIMIT: usize = 1 << 16;
/// Largest snapshot the core builds, sends or accepts.
pub const SNAPSHOT_SIZE_MAX: usize = kv::SNAPSHOT_SIZE_MAX + (8 << 20);
/// Largest encoded reply stored in the client table.
const REPLY_SIZE_MAX: usize = 4 << 20;

const MAGIC: [u8; 4] = *b"KMBC";
const VERSION: u16 = 2;
/// The format before the checkpoint entry's timestamp.
const VERSION_1: u16 = 1;

/// The last committed request of one client and its reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientEntry {
    pub request: u64,
    /// The op the request was committed at.
    pub op: u64,
    pub reply: Reply,
}

/// Per client: the last committed request and its reply. Bounded: when full, the client whose
/// last request committed earliest is evicted (deterministic on every replica).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientTable {
    entries: BTreeMap<u128, ClientEntry>,
    /// The wrapping sum of every entry's [`entry_hash`], kept up to date (see
    /// [`state_hash`]).
    digest: u128,
}

fn entry_hash(client: u128, entry: &ClientEntry) -> u128 {
    let mut w = Writer::new();
    w.u128(client);
    w.u64(entry.request);
    w.u64(entry.op);
    entry.reply.encode_into(&mut w);
    xxhash_rust::xxh3::xxh3_128(&w.buf)
}

impl ClientTable {
    pub fn new() -> ClientTable {
        ClientTable::default()
    }

    pub fn get(&self, client: u128) -> Option<&ClientEntry> {
        self.entries.get(&client)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Record a committed request, evicting the oldest client if the table is full.
    pub fn insert(&mut self, client: u128, entry: ClientEntry, clients_max: usize) {
        if !self.entries.contains_key(&client) && self.entries.len() >= clients_max {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(id, e)| (e.op, **id))
                .map(|(id, _)| *id);
            if let Some(oldest) = oldest {
                crate::mark!("client_evicted");
                if let Some(evicted) = self.entries.remove(&oldest) {
                    self.digest = self.digest.wrapping_sub(entry_hash(oldest, &evicted));
                }
            }
        }
        self.put(client, entry);
    }

    fn put(&mut self, client: u128, entry: ClientEntry) {
        self.digest = self.digest.wrapping_add(entry_hash(client, &entry));
        if let Some(old) = self.entries.insert(client, entry) {
            self.digest = self.digest.wrapping_sub(entry_hash(client, &old));
        }
    }

    /// The incremental digest equals one computed from scratch.
    pub fn digest_is_consistent(&self) -> bool {
        let sum = self
            .entries
            .iter()
            .fold(0u128, |sum, (c, e)| sum.wrapping_add(entry_hash(*c, e)));
        sum == self.digest
    }
}

/// The state hash of a replica: a digest of the kv state ([`KvState::digest`]) and of the
/// client table, both maintained incrementally — equal on replicas whose states (as the
/// checkpoint snapshot would encode them) are equal, and it costs nothing per op, whatever
/// the state's size. The simulator's checkers compare it at every commit.
pub fn state_hash(kv: &KvState, clients: &ClientTable) -> u128 {
    let mut b = [0u8; 40];
    b[..16].copy_from_slice(&kv.digest().to_le_bytes());
    b[16..32].copy_from_slice(&clients.digest.to_le_bytes());
    b[32..40].copy_from_slice(&(clients.entries.len() as u64).to_le_bytes());
    xxhash_rust::xxh3::xxh3_128(&b)
}

/// The state hash of an encoded snapshot (what [`state_hash`] gives for the state it holds).
pub fn state_hash_of(snapshot: &[u8]) -> Result<u128, DecodeError> {
    let (kv, clients) = decode(snapshot)?;
    Ok(state_hash(&kv, &clients))
}

/// The timestamp of the checkpoint's own log entry a snapshot records (`None` for the first
/// format, or bytes that are no snapshot).
pub fn timestamp(snapshot: &[u8]) -> Option<u64> {
    let mut r = Reader::new(snapshot);
    (r.raw(4).ok()? == MAGIC && r.u16().ok()? == VERSION).then(|| r.u64().ok())?
}

/// Encode the kv state and client table as a checkpoint snapshot of the state after an entry
/// stamped `timestamp`.
pub fn encode(kv: &KvState, clients: &ClientTable, timestamp: u64) -> Vec<u8> {
    // One buffer, sized up front: the kv state is encoded in place behind its length (what
    // `blob` would write), not into a buffer of its own copied over, and the buffer never
    // grows by doubling — a checkpoint of a large state is built once.
    let client_bytes: usize = clients
        .entries
        .values()
        .map(|entry| 16 + 8 + 8 + 4 + entry.reply.encoded_len())
        .sum();
    let size = MAGIC.len() + 2 + 8 + 8 + kv.snapshot_len() + 4 + client_bytes;
    let mut w = Writer {
        buf: Vec::with_capacity(size),
    };
    w.raw(&MAGIC);
    w.u16(VERSION);
    w.u64(timestamp);
    let at = w.buf.len();
    w.u64(0);
    kv.encode_snapshot_into(&mut w);
    let len = (w.buf.len() - at - 8) as u64;
    w.buf[at..at + 8].copy_from_slice(&len.to_le_bytes());
    w.u32(clients.entries.len() as u32);
    for (client, entry) in &clients.entries {
        w.u128(*client);
        w.u64(entry.request);
        w.u64(entry.op);
        // What `bytes` writes, the reply encoded in place.
        w.u32(entry.reply.encoded_len() as u32);
        entry.reply.encode_into(&mut w);
    }
    debug_assert_eq!(w.buf.len(), size, "the snapshot's size is computed exactly");
    w.buf
}

/// Decode a checkpoint snapshot; total.
pub fn decode(bytes: &[u8]) -> Result<(KvState, ClientTable), DecodeError> {
    if bytes.len() > SNAPSHOT_SIZE_MAX {
        return Err(DecodeError::TooLarge);
    }
    let mut r = Reader::new(bytes);
    if r.raw(4)? != MAGIC {
        return Err(DecodeError::Invalid("snapshot magic"));
    }
    match r.u16()? {
        VERSION => {
            r.u64()?;
        }
        VERSION_1 => {}
        _ => return Err(DecodeError::Invalid("snapshot version")),
    }
    let kv = KvState::decode_snapshot(r.blob(kv::SNAPSHOT_SIZE_MAX)?)?;
    let n = r.count(CLIENTS_MAX_LIMIT, 36)?;
    let mut clients = ClientTable::new();
    let mut last: Option<u128> = None;
    for _ in 0..n {
        let client = r.u128()?;
        if last.is_some_and(|l| l >= client) {
            return Err(DecodeError::Invalid("client table order"));
        }
        last = Some(client);
        let request = r.u64()?;
        let op = r.u64()?;
        let reply = Reply::decode(r.bytes(REPLY_SIZE_MAX)?)?;
        clients.put(client, ClientEntry { request, op, reply });
    }
    r.finish()?;
    Ok((kv, clients))
}

/// The empty snapshot (state at the root, op 0).
pub fn empty() -> Vec<u8> {
    encode(&KvState::new(), &ClientTable::new(), 0)
}
