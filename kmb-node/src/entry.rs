//! The log entry: a fixed 128-byte header plus an opaque body (an encoded client request).
//!
//! Pure data and checksums — no I/O. The same bytes are what the WAL stores, what replicas send
//! each other in prepares and repairs, and what the hash chain links: `header.parent` is the
//! `checksum` of the entry at `op - 1`. Op 0 is the cluster's *root* entry, the same on every
//! replica, so every chain starts from a known checksum.
//!
//! Header layout (little-endian, 128 bytes):
//!
//! | bytes   | field         | meaning                                                   |
//! |---------|---------------|-----------------------------------------------------------|
//! | 0..16   | checksum      | xxh3-128 of bytes 16..128                                  |
//! | 16..32  | checksum_body | xxh3-128 of the body                                       |
//! | 32..48  | parent        | checksum of the entry at op - 1 (hash chain)               |
//! | 48..64  | client        | client id (0 for entries not from a client)                |
//! | 64..72  | cluster       | cluster id                                                 |
//! | 72..80  | op            | op number                                                  |
//! | 80..88  | commit        | the primary's commit number when it prepared this entry    |
//! | 88..96  | request       | the client's request number                                |
//! | 96..104 | view          | view in which the entry was prepared ([`View`], 64 bits)   |
//! | 104..108| size          | body length in bytes                                       |
//! | 108     | replica       | index of the primary that prepared it                      |
//! | 109     | operation     | [`Operation`]                                              |
//! | 110..112| version       | [`FORMAT_VERSION`]                                         |
//! | 112..116| magic         | `b"KMBE"`                                                  |
//! | 116..124| timestamp     | cluster time in ms since the Unix epoch ([`Header::timestamp`]) |
//! | 124..128| reserved      | zero                                                       |

use xxhash_rust::xxh3::xxh3_128;

/// A 128-bit checksum.
pub type Checksum = u128;

/// Bytes in an encoded header.
pub const HEADER_SIZE: usize = 128;
/// Header magic.
pub const MAGIC: [u8; 4] = *b"KMBE";
/// On-disk and on-wire format version (2: 64-bit views; 3: the cluster timestamp).
pub const FORMAT_VERSION: u16 = 3;

/// A view number. 64 bits: at one view change per 500 ms timeout the count lasts far longer
/// than any cluster, and the core bounds how far one message may move it (`VIEW_JUMP_MAX` in
/// `core::replica`), so neither time nor a buggy peer can exhaust it.
pub type View = u64;
/// Upper bound on a body.
pub const BODY_SIZE_MAX: u32 = 1 << 20;

/// What an entry does to the state machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Operation {
    /// The root entry at op 0.
    Root = 0,
    /// A client request (the body is the encoded request).
    Request = 1,
    /// No effect (e.g. a primary's first entry of a new view).
    Noop = 2,
}

impl Operation {
    fn from_u8(v: u8) -> Option<Operation> {
        match v {
            0 => Some(Operation::Root),
            1 => Some(Operation::Request),
            2 => Some(Operation::Noop),
            _ => None,
        }
    }
}

/// The decoded fixed-size header of an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Header {
    pub checksum: Checksum,
    pub checksum_body: Checksum,
    pub parent: Checksum,
    pub client: u128,
    pub cluster: u64,
    pub op: u64,
    pub commit: u64,
    pub request: u64,
    pub view: View,
    pub size: u32,
    pub replica: u8,
    pub operation: Operation,
    /// The cluster time the primary stamped the entry with: milliseconds since the Unix
    /// epoch, the largest of its own clock and its predecessor's timestamp, so it never goes
    /// backwards along a log (across views and restarts). Expiry is evaluated against it
    /// (`kv::ApplyContext`), never against a replica's clock.
    pub timestamp: u64,
}

/// Why bytes do not decode to a valid header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderError {
    /// Every byte is zero: nothing was ever written here.
    Blank,
    /// Wrong length, bad magic, version, reserved bytes, operation or size, or a checksum
    /// mismatch: the bytes are torn, rotten or foreign.
    Corrupt,
}

impl Header {
    /// Encode to exactly [`HEADER_SIZE`] bytes (the checksum field as stored in `self`).
    pub fn encode(&self) -> [u8; HEADER_SIZE] {
        let mut b = [0u8; HEADER_SIZE];
        b[0..16].copy_from_slice(&self.checksum.to_le_bytes());
        b[16..32].copy_from_slice(&self.checksum_body.to_le_bytes());
        b[32..48].copy_from_slice(&self.parent.to_le_bytes());
        b[48..64].copy_from_slice(&self.client.to_le_bytes());
        b[64..72].copy_from_slice(&self.cluster.to_le_bytes());
        b[72..80].copy_from_slice(&self.op.to_le_bytes());
        b[80..88].copy_from_slice(&self.commit.to_le_bytes());
        b[88..96].copy_from_slice(&self.request.to_le_bytes());
        b[96..104].copy_from_slice(&self.view.to_le_bytes());
        b[104..108].copy_from_slice(&self.size.to_le_bytes());
        b[108] = self.replica;
        b[109] = self.operation as u8;
        b[110..112].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        b[112..116].copy_from_slice(&MAGIC);
        b[116..124].copy_from_slice(&self.timestamp.to_le_bytes());
        b
    }

    /// The checksum the header's fields (all but `checksum`) call for.
    pub fn calculate_checksum(&self) -> Checksum {
        xxh3_128(&self.encode()[16..])
    }

    /// Decode and verify a header: magic, version, reserved bytes, operation, size, checksum.
    pub fn decode(bytes: &[u8]) -> Result<Header, HeaderError> {
        if bytes.len() != HEADER_SIZE {
            return Err(HeaderError::Corrupt);
        }
        if bytes.iter().all(|&b| b == 0) {
            return Err(HeaderError::Blank);
        }
        let u128_at = |i: usize| u128::from_le_bytes(bytes[i..i + 16].try_into().expect("16"));
        let u64_at = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().expect("8"));
        let u32_at = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().expect("4"));
        if bytes[112..116] != MAGIC
            || u16::from_le_bytes([bytes[110], bytes[111]]) != FORMAT_VERSION
            || bytes[124..].iter().any(|&b| b != 0)
        {
            return Err(HeaderError::Corrupt);
        }
        let operation = Operation::from_u8(bytes[109]).ok_or(HeaderError::Corrupt)?;
        let header = Header {
            checksum: u128_at(0),
            checksum_body: u128_at(16),
            parent: u128_at(32),
            client: u128_at(48),
            cluster: u64_at(64),
            op: u64_at(72),
            commit: u64_at(80),
            request: u64_at(88),
            view: u64_at(96),
            size: u32_at(104),
            replica: bytes[108],
            operation,
            timestamp: u64_at(116),
        };
        if header.size > BODY_SIZE_MAX || xxh3_128(&bytes[16..]) != header.checksum {
            return Err(HeaderError::Corrupt);
        }
        Ok(header)
    }
}

/// A log entry: header and body.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Entry {
    pub header: Header,
    pub body: Vec<u8>,
}

/// The fields a new entry is built from (checksums are computed by [`Entry::new`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryFields {
    pub cluster: u64,
    pub replica: u8,
    pub view: View,
    pub op: u64,
    pub commit: u64,
    pub parent: Checksum,
    pub client: u128,
    pub request: u64,
    pub operation: Operation,
    /// [`Header::timestamp`].
    pub timestamp: u64,
}

impl Entry {
    /// Build an entry with valid checksums.
    ///
    /// Panics if `body` exceeds [`BODY_SIZE_MAX`] (callers bound request sizes first).
    pub fn new(fields: EntryFields, body: Vec<u8>) -> Entry {
        assert!(body.len() <= BODY_SIZE_MAX as usize, "body too large");
        let mut header = Header {
            checksum: 0,
            checksum_body: xxh3_128(&body),
            parent: fields.parent,
            client: fields.client,
            cluster: fields.cluster,
            op: fields.op,
            commit: fields.commit,
            request: fields.request,
            view: fields.view,
            size: body.len() as u32,
            replica: fields.replica,
            operation: fields.operation,
            timestamp: fields.timestamp,
        };
        header.checksum = header.calculate_checksum();
        Entry { header, body }
    }

    /// The root entry (op 0) of `cluster`: identical on every replica.
    pub fn root(cluster: u64) -> Entry {
        Entry::new(
            EntryFields {
                cluster,
                replica: 0,
                view: 0,
                op: 0,
                commit: 0,
                parent: 0,
                client: 0,
                request: 0,
                operation: Operation::Root,
                timestamp: 0,
            },
            Vec::new(),
        )
    }

    /// This entry's checksum (the hash-chain link its successor names as `parent`).
    pub fn checksum(&self) -> Checksum {
        self.header.checksum
    }

    /// Whether both checksums verify and the body has the declared size.
    pub fn is_valid(&self) -> bool {
        self.header.calculate_checksum() == self.header.checksum
            && self.body.len() == self.header.size as usize
            && xxh3_128(&self.body) == self.header.checksum_body
    }

    /// Encode header then body.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_SIZE + self.body.len());
        out.extend_from_slice(&self.header.encode());
        out.extend_from_slice(&self.body);
        out
    }

    /// Decode and verify header and body from `bytes` (which may extend past the entry).
    pub fn decode(bytes: &[u8]) -> Result<Entry, HeaderError> {
        if bytes.len() < HEADER_SIZE {
            return Err(HeaderError::Corrupt);
        }
        let header = Header::decode(&bytes[..HEADER_SIZE])?;
        let end = HEADER_SIZE + header.size as usize;
        let body = bytes.get(HEADER_SIZE..end).ok_or(HeaderError::Corrupt)?;
        if xxh3_128(body) != header.checksum_body {
            return Err(HeaderError::Corrupt);
        }
        Ok(Entry {
            header,
            body: body.to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(op: u64, parent: Checksum) -> Entry {
        Entry::new(
            EntryFields {
                cluster: 7,
                replica: 1,
                view: 3,
                op,
                commit: op - 1,
                parent,
                client: 99,
                request: 5,
                operation: Operation::Request,
                timestamp: 0,
            },
            b"set k v".to_vec(),
        )
    }

    /// Goal: an encoded entry decodes to itself and verifies.
    #[test]
    fn entry_roundtrip_is_identical() {
        let root = Entry::root(7);
        let e = sample(1, root.checksum());
        assert!(e.is_valid());
        assert_eq!(Entry::decode(&e.encode()), Ok(e));
    }

    /// Goal: every single-bit flip in header or body is detected.
    #[test]
    fn entry_any_bit_flip_is_corrupt() {
        let e = sample(1, 42);
        let bytes = e.encode();
        for bit in 0..bytes.len() * 8 {
            let mut b = bytes.clone();
            b[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(Entry::decode(&b), Err(HeaderError::Corrupt), "bit {bit}");
        }
    }

    /// Goal: zeros are blank, not corrupt; garbage is corrupt, not blank.
    #[test]
    fn header_zeros_blank_garbage_corrupt() {
        assert_eq!(Header::decode(&[0; HEADER_SIZE]), Err(HeaderError::Blank));
        assert_eq!(Header::decode(&[1; HEADER_SIZE]), Err(HeaderError::Corrupt));
        assert_eq!(Header::decode(&[0; 10]), Err(HeaderError::Corrupt));
    }

    /// Goal: the root is the same for a cluster and differs between clusters.
    #[test]
    fn root_depends_only_on_cluster() {
        assert_eq!(Entry::root(1), Entry::root(1));
        assert_ne!(Entry::root(1).checksum(), Entry::root(2).checksum());
    }
}
