//! On-disk formats: the file layout, the superblock and the checkpoint header. Pure (no I/O).
//!
//! Every multi-byte integer is little-endian. Every structure carries an xxh3-128 checksum over
//! its remaining bytes, a magic and the format version. See `docs/storage-format.md`.

use crate::entry::View;
use xxhash_rust::xxh3::xxh3_128;

use crate::entry::{Checksum, HEADER_SIZE};

/// The file format version stored in the superblock (3: entry format 3, with the cluster
/// timestamp; 2: 64-bit views, entry format 2).
pub const STORAGE_VERSION: u16 = 3;
/// Superblock magic.
pub const SUPERBLOCK_MAGIC: [u8; 4] = *b"KMBS";
/// Checkpoint header magic.
pub const CHECKPOINT_MAGIC: [u8; 4] = *b"KMBC";
/// Number of superblock copies.
pub const SUPERBLOCK_COPIES: usize = 4;
/// Bytes of one encoded superblock (one sector).
pub const SUPERBLOCK_SIZE: usize = 512;
/// Each superblock copy lives in its own block of this size.
pub const BLOCK_SIZE: u64 = 4096;
/// Bytes of the checkpoint header that precedes the checkpoint blob.
pub const CHECKPOINT_HEADER_SIZE: usize = 128;
/// Sector size (granularity of torn writes and latent errors): the disk's own constant.
pub use sim_runtime::disk::SECTOR_SIZE;
/// Largest checkpoint blob: a snapshot ([`crate::core::snapshot::SNAPSHOT_SIZE_MAX`]). A
/// superblock referencing a larger one does not verify (the engine would allocate its size).
pub const CHECKPOINT_SIZE_MAX: u64 = crate::core::snapshot::SNAPSHOT_SIZE_MAX as u64;

fn align_up(x: u64, to: u64) -> u64 {
    x.div_ceil(to) * to
}

fn u128_at(b: &[u8], i: usize) -> u128 {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[i..i + 16]);
    u128::from_le_bytes(a)
}
fn u64_at(b: &[u8], i: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[i..i + 8]);
    u64::from_le_bytes(a)
}
fn u32_at(b: &[u8], i: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[i..i + 4]);
    u32::from_le_bytes(a)
}

/// WAL geometry, fixed at format time and stored in the superblock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StorageConfig {
    /// Number of WAL slots (entries kept between checkpoints). At least 2.
    pub slot_count: u32,
    /// Bytes per WAL slot (header + body). A multiple of 512, at least 512.
    pub slot_size: u32,
}

impl StorageConfig {
    /// Small geometry for the simulator and tests: 64 slots of 4 KiB.
    pub const SIMULATION: StorageConfig = StorageConfig {
        slot_count: 64,
        slot_size: 4096,
    };
    /// Production geometry: 1024 slots of 64 KiB.
    pub const PRODUCTION: StorageConfig = StorageConfig {
        slot_count: 1024,
        slot_size: 64 * 1024,
    };

    /// Whether the geometry is usable.
    pub fn is_valid(&self) -> bool {
        self.slot_count >= 2
            && self.slot_count <= 1 << 24
            && self.slot_size as u64 >= SECTOR_SIZE
            && self.slot_size as u64 & (SECTOR_SIZE - 1) == 0
            && self.slot_size <= 1 << 28
    }

    /// Largest body an entry may carry.
    pub fn body_size_max(&self) -> usize {
        self.slot_size as usize - HEADER_SIZE
    }
}

/// Byte offsets of the zones of the data file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub config: StorageConfig,
    /// Start of the redundant WAL headers ring (`slot_count` × 128 bytes).
    pub headers_offset: u64,
    /// Start of the WAL prepares ring (`slot_count` × `slot_size` bytes).
    pub prepares_offset: u64,
    /// Start of the checkpoint zone (to the end of the file).
    pub checkpoints_offset: u64,
}

impl Layout {
    pub fn new(config: StorageConfig) -> Layout {
        let headers_offset = SUPERBLOCK_COPIES as u64 * BLOCK_SIZE;
        let headers_size = align_up(config.slot_count as u64 * HEADER_SIZE as u64, BLOCK_SIZE);
        let prepares_offset = headers_offset + headers_size;
        let prepares_size = align_up(
            config.slot_count as u64 * config.slot_size as u64,
            BLOCK_SIZE,
        );
        Layout {
            config,
            headers_offset,
            prepares_offset,
            checkpoints_offset: prepares_offset + prepares_size,
        }
    }

    pub fn superblock_offset(copy: usize) -> u64 {
        copy as u64 * BLOCK_SIZE
    }

    pub fn slot_of(&self, op: u64) -> usize {
        (op % self.config.slot_count as u64) as usize
    }

    pub fn header_offset(&self, slot: usize) -> u64 {
        self.headers_offset + slot as u64 * HEADER_SIZE as u64
    }

    pub fn prepare_offset(&self, slot: usize) -> u64 {
        self.prepares_offset + slot as u64 * self.config.slot_size as u64
    }

    /// Where to write a checkpoint of `size` blob bytes so that it does not overlap the
    /// checkpoint currently referenced at `[current_offset, current_offset + current_size)`.
    pub fn next_checkpoint_offset(&self, current: Option<(u64, u64)>, size: u64) -> u64 {
        let start = self.checkpoints_offset;
        let need = CHECKPOINT_HEADER_SIZE as u64 + size;
        match current {
            None => start,
            Some((offset, current_size)) => {
                if offset >= start + need {
                    start
                } else {
                    align_up(
                        offset + CHECKPOINT_HEADER_SIZE as u64 + current_size,
                        BLOCK_SIZE,
                    )
                }
            }
        }
    }
}

/// Identity of a replica, fixed at format time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Identity {
    pub cluster: u64,
    pub replica: u8,
    pub replica_count: u8,
}

/// The superblock: identity, geometry, the durable view state and the checkpoint reference.
///
/// Layout (512 bytes):
///
/// | bytes    | field                     |
/// |----------|---------------------------|
/// | 0..16    | checksum: xxh3-128 of 16..512 |
/// | 16..20   | magic `KMBS`              |
/// | 20..22   | version                   |
/// | 22       | copy index (0..4)         |
/// | 23       | replica                   |
/// | 24       | replica_count             |
/// | 25..32   | zero                      |
/// | 32..40   | sequence                  |
/// | 40..48   | cluster                   |
/// | 48..52   | slot_count                |
/// | 52..56   | slot_size                 |
/// | 56..64   | zero (views before version 2) |
/// | 64..72   | log_view_head             |
/// | 72..80   | checkpoint_op             |
/// | 80..96   | checkpoint_entry_checksum |
/// | 96..104  | checkpoint_offset (0 = none) |
/// | 104..112 | checkpoint_size           |
/// | 112..128 | checkpoint_checksum (of the blob) |
/// | 128..136 | view                      |
/// | 136..144 | log_view                  |
/// | 144..512 | zero                      |
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Superblock {
    pub sequence: u64,
    pub identity: Identity,
    pub config: StorageConfig,
    pub view: View,
    pub log_view: View,
    /// Ops up to here may carry any view; ops above it must carry a view ≥ `log_view` (older
    /// ones belong to a suffix truncated by a view change and are ignored by recovery).
    pub log_view_head: u64,
    pub checkpoint: CheckpointRef,
}

/// The checkpoint a superblock points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckpointRef {
    /// The op whose effects the checkpoint includes (0 = no checkpoint: the root).
    pub op: u64,
    /// Checksum of the entry at `op` (the hash chain resumes from it).
    pub entry_checksum: Checksum,
    /// Byte offset of the checkpoint header (0 = no checkpoint written).
    pub offset: u64,
    /// Bytes of the blob.
    pub size: u64,
    /// xxh3-128 of the blob.
    pub checksum: Checksum,
}

/// Why a superblock copy is unusable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SuperblockError {
    Blank,
    Corrupt,
    /// Valid, but written for another copy index (a misdirected write).
    Misdirected,
}

impl Superblock {
    pub fn encode(&self, copy: u8) -> [u8; SUPERBLOCK_SIZE] {
        let mut b = [0u8; SUPERBLOCK_SIZE];
        b[16..20].copy_from_slice(&SUPERBLOCK_MAGIC);
        b[20..22].copy_from_slice(&STORAGE_VERSION.to_le_bytes());
        b[22] = copy;
        b[23] = self.identity.replica;
        b[24] = self.identity.replica_count;
        b[32..40].copy_from_slice(&self.sequence.to_le_bytes());
        b[40..48].copy_from_slice(&self.identity.cluster.to_le_bytes());
        b[48..52].copy_from_slice(&self.config.slot_count.to_le_bytes());
        b[52..56].copy_from_slice(&self.config.slot_size.to_le_bytes());
        b[64..72].copy_from_slice(&self.log_view_head.to_le_bytes());
        b[72..80].copy_from_slice(&self.checkpoint.op.to_le_bytes());
        b[80..96].copy_from_slice(&self.checkpoint.entry_checksum.to_le_bytes());
        b[96..104].copy_from_slice(&self.checkpoint.offset.to_le_bytes());
        b[104..112].copy_from_slice(&self.checkpoint.size.to_le_bytes());
        b[112..128].copy_from_slice(&self.checkpoint.checksum.to_le_bytes());
        b[128..136].copy_from_slice(&self.view.to_le_bytes());
        b[136..144].copy_from_slice(&self.log_view.to_le_bytes());
        let checksum = xxh3_128(&b[16..]);
        b[0..16].copy_from_slice(&checksum.to_le_bytes());
        b
    }

    /// Decode and verify the copy found at index `copy`.
    pub fn decode(b: &[u8], copy: u8) -> Result<Superblock, SuperblockError> {
        if b.len() != SUPERBLOCK_SIZE {
            return Err(SuperblockError::Corrupt);
        }
        if b.iter().all(|&x| x == 0) {
            return Err(SuperblockError::Blank);
        }
        if u128_at(b, 0) != xxh3_128(&b[16..])
            || b[16..20] != SUPERBLOCK_MAGIC
            || u16::from_le_bytes([b[20], b[21]]) != STORAGE_VERSION
            || b[25..32].iter().any(|&x| x != 0)
            || b[56..64].iter().any(|&x| x != 0)
            || b[144..].iter().any(|&x| x != 0)
        {
            return Err(SuperblockError::Corrupt);
        }
        let config = StorageConfig {
            slot_count: u32_at(b, 48),
            slot_size: u32_at(b, 52),
        };
        if !config.is_valid() {
            return Err(SuperblockError::Corrupt);
        }
        let checkpoint = CheckpointRef {
            op: u64_at(b, 72),
            entry_checksum: u128_at(b, 80),
            offset: u64_at(b, 96),
            size: u64_at(b, 104),
            checksum: u128_at(b, 112),
        };
        // What the engine and recovery compute from these must not overflow or allocate
        // without bound: the checkpoint's bytes and the WAL window after it fit in a u64.
        if checkpoint.size > CHECKPOINT_SIZE_MAX
            || checkpoint
                .offset
                .checked_add(CHECKPOINT_HEADER_SIZE as u64 + checkpoint.size)
                .is_none()
            || checkpoint
                .op
                .checked_add(u64::from(config.slot_count))
                .is_none()
        {
            return Err(SuperblockError::Corrupt);
        }
        if b[22] != copy {
            return Err(SuperblockError::Misdirected);
        }
        Ok(Superblock {
            sequence: u64_at(b, 32),
            identity: Identity {
                cluster: u64_at(b, 40),
                replica: b[23],
                replica_count: b[24],
            },
            config,
            view: u64_at(b, 128),
            log_view: u64_at(b, 136),
            log_view_head: u64_at(b, 64),
            checkpoint,
        })
    }
}

/// Header preceding a checkpoint blob (128 bytes):
///
/// | bytes  | field                               |
/// |--------|-------------------------------------|
/// | 0..16  | checksum: xxh3-128 of 16..128       |
/// | 16..32 | blob checksum                       |
/// | 32..48 | checksum of the entry at `op`       |
/// | 48..56 | cluster                             |
/// | 56..64 | op                                  |
/// | 64..72 | blob size                           |
/// | 72..76 | magic `KMBC`                        |
/// | 76..78 | version                             |
/// | 78     | replica                             |
/// | 79..128| zero                                |
pub fn encode_checkpoint_header(
    identity: &Identity,
    reference: &CheckpointRef,
) -> [u8; CHECKPOINT_HEADER_SIZE] {
    let mut b = [0u8; CHECKPOINT_HEADER_SIZE];
    b[16..32].copy_from_slice(&reference.checksum.to_le_bytes());
    b[32..48].copy_from_slice(&reference.entry_checksum.to_le_bytes());
    b[48..56].copy_from_slice(&identity.cluster.to_le_bytes());
    b[56..64].copy_from_slice(&reference.op.to_le_bytes());
    b[64..72].copy_from_slice(&reference.size.to_le_bytes());
    b[72..76].copy_from_slice(&CHECKPOINT_MAGIC);
    b[76..78].copy_from_slice(&STORAGE_VERSION.to_le_bytes());
    b[78] = identity.replica;
    let checksum = xxh3_128(&b[16..]);
    b[0..16].copy_from_slice(&checksum.to_le_bytes());
    b
}

/// Verify checkpoint bytes (header + blob) read at `reference.offset` against the superblock's
/// reference; returns the blob.
pub fn verify_checkpoint(
    bytes: &[u8],
    identity: &Identity,
    reference: &CheckpointRef,
) -> Option<Vec<u8>> {
    let expected = encode_checkpoint_header(identity, reference);
    let header = bytes.get(..CHECKPOINT_HEADER_SIZE)?;
    if header != expected {
        return None;
    }
    let end = usize::try_from(reference.size)
        .ok()?
        .checked_add(CHECKPOINT_HEADER_SIZE)?;
    let blob = bytes.get(CHECKPOINT_HEADER_SIZE..end)?;
    if xxh3_128(blob) != reference.checksum {
        return None;
    }
    Some(blob.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Superblock {
        Superblock {
            sequence: 9,
            identity: Identity {
                cluster: 77,
                replica: 2,
                replica_count: 3,
            },
            config: StorageConfig::SIMULATION,
            view: 5,
            log_view: 4,
            log_view_head: 33,
            checkpoint: CheckpointRef {
                op: 30,
                entry_checksum: 0xabc,
                offset: 123 * 4096,
                size: 10,
                checksum: 0xdef,
            },
        }
    }

    /// Goal: superblocks round-trip; copy index mismatch is misdirected; any flip is corrupt.
    #[test]
    fn superblock_roundtrip_and_detection() {
        let sb = sample();
        let bytes = sb.encode(1);
        assert_eq!(Superblock::decode(&bytes, 1), Ok(sb));
        assert_eq!(
            Superblock::decode(&bytes, 2),
            Err(SuperblockError::Misdirected)
        );
        assert_eq!(
            Superblock::decode(&[0; SUPERBLOCK_SIZE], 0),
            Err(SuperblockError::Blank)
        );
        for bit in (0..SUPERBLOCK_SIZE * 8).step_by(7) {
            let mut b = bytes;
            b[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(
                Superblock::decode(&b, 1),
                Err(SuperblockError::Corrupt),
                "bit {bit}"
            );
        }
    }

    /// Goal: checkpoints verify against their reference and nothing else.
    #[test]
    fn checkpoint_verification() {
        let sb = sample();
        let blob = b"0123456789".to_vec();
        let reference = CheckpointRef {
            checksum: xxh3_128(&blob),
            ..sb.checkpoint
        };
        let mut bytes = encode_checkpoint_header(&sb.identity, &reference).to_vec();
        bytes.extend_from_slice(&blob);
        assert_eq!(
            verify_checkpoint(&bytes, &sb.identity, &reference),
            Some(blob)
        );
        let mut rotten = bytes.clone();
        rotten[130] ^= 1;
        assert_eq!(verify_checkpoint(&rotten, &sb.identity, &reference), None);
        let other = CheckpointRef {
            op: 31,
            ..reference
        };
        assert_eq!(verify_checkpoint(&bytes, &sb.identity, &other), None);
        assert_eq!(
            verify_checkpoint(&bytes[..100], &sb.identity, &reference),
            None
        );
    }

    /// Goal: a checksum-valid superblock whose checkpoint size, offset or op would overflow or
    /// make the engine allocate without bound is corrupt, not a panic later (found by the
    /// `superblock` and `recovery` fuzz targets: fuzz/regressions/).
    #[test]
    fn superblock_with_unbounded_numbers_is_corrupt() {
        let sb = sample();
        for bad in [
            CheckpointRef {
                size: CHECKPOINT_SIZE_MAX + 1,
                ..sb.checkpoint
            },
            CheckpointRef {
                size: u64::MAX,
                ..sb.checkpoint
            },
            CheckpointRef {
                offset: u64::MAX - 100,
                ..sb.checkpoint
            },
            CheckpointRef {
                op: u64::MAX - 1,
                ..sb.checkpoint
            },
        ] {
            let bytes = Superblock {
                checkpoint: bad,
                ..sb
            }
            .encode(0);
            assert_eq!(
                Superblock::decode(&bytes, 0),
                Err(SuperblockError::Corrupt),
                "{bad:?}"
            );
        }
        let largest = Superblock {
            checkpoint: CheckpointRef {
                size: CHECKPOINT_SIZE_MAX,
                op: u64::MAX - u64::from(sb.config.slot_count),
                ..sb.checkpoint
            },
            ..sb
        };
        assert_eq!(Superblock::decode(&largest.encode(0), 0), Ok(largest));
    }

    /// Goal: a checkpoint reference with a size near `u64::MAX` fails verification instead of
    /// overflowing (found by the `checkpoint` fuzz target: fuzz/regressions/checkpoint/).
    #[test]
    fn checkpoint_verification_with_huge_size_fails() {
        let sb = sample();
        for size in [u64::MAX, u64::MAX - 127, 1 << 40] {
            let reference = CheckpointRef {
                size,
                ..sb.checkpoint
            };
            let mut bytes = encode_checkpoint_header(&sb.identity, &reference).to_vec();
            bytes.extend_from_slice(b"blob");
            assert_eq!(verify_checkpoint(&bytes, &sb.identity, &reference), None);
        }
    }

    /// Goal: a new checkpoint never overlaps the current one.
    #[test]
    fn checkpoint_placement_alternates() {
        let layout = Layout::new(StorageConfig::SIMULATION);
        let start = layout.checkpoints_offset;
        assert_eq!(layout.next_checkpoint_offset(None, 100), start);
        let second = layout.next_checkpoint_offset(Some((start, 100)), 100);
        assert!(second >= start + 228);
        assert_eq!(
            layout.next_checkpoint_offset(Some((second, 100)), 100),
            start
        );
        // Too large to fit before the current one: goes after it.
        let big = layout.next_checkpoint_offset(Some((second, 100)), 1 << 20);
        assert!(big >= second + 228);
    }
}
