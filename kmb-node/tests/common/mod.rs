//! Helpers shared by the storage test files: one identity and small geometry, and entries
//! chained from the root with bodies that are a function of the op.
#![allow(dead_code)] // each test file uses its own part

use kmb_node::entry::{Checksum, Entry, EntryFields, Operation};
use kmb_node::storage::{Identity, StorageConfig};

pub const CLUSTER: u64 = 42;
pub const ID: Identity = Identity {
    cluster: CLUSTER,
    replica: 1,
    replica_count: 3,
};
pub const SMALL: StorageConfig = StorageConfig {
    slot_count: 8,
    slot_size: 1024,
};

pub fn entry(op: u64, parent: Checksum, view: u64, len: usize) -> Entry {
    Entry::new(
        EntryFields {
            cluster: CLUSTER,
            replica: 0,
            view,
            op,
            commit: op.saturating_sub(1),
            parent,
            client: 9,
            request: op,
            operation: Operation::Request,
            timestamp: 0,
        },
        (0..len).map(|i| (i as u64 ^ op) as u8).collect(),
    )
}

/// Entries `1..=count` chained from the root.
pub fn chain(count: u64, len: usize) -> Vec<Entry> {
    let mut parent = Entry::root(CLUSTER).checksum();
    (1..=count)
        .map(|op| {
            let e = entry(op, parent, 0, len);
            parent = e.checksum();
            e
        })
        .collect()
}
