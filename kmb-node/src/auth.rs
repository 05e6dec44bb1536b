//! Peer authentication: the cluster key, the mutual challenge–response handshake, and the
//! per-message MAC that ties every later message to the authenticated connection. Pure (the
//! caller supplies nonces from `sim_runtime::rand`).
//!
//! Every replica of a cluster holds the same 32-byte key (`kmb-node format` writes it next to
//! the data file; see `docs/protocol.md`, "Peer authentication"). On each peer connection:
//!
//! ```text
//! connector → acceptor  Hello     { cluster, from, to, connector nonce }
//! acceptor  → connector Challenge { acceptor nonce, HMAC(key, "acceptor" | transcript) }
//! connector → acceptor  Response  { HMAC(key, "connector" | transcript) }
//! ```
//!
//! where the transcript is the cluster id, both replica indexes and both nonces. Each side
//! proves it holds the key over a nonce the other chose, so neither a replay nor a reflection
//! (the labels differ) passes. Afterwards every message frame carries
//! `HMAC(session key, message)` truncated to 16 bytes, the session key being derived from the
//! key and the transcript: a frame from another connection, or injected into this one, fails.
//! Duplicates and reordering within the connection are not rejected (the protocol tolerates
//! them from the network anyway, and the simulator injects them).

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Bytes in a cluster key.
pub const KEY_SIZE: usize = 32;
/// Bytes in a handshake nonce.
pub const NONCE_SIZE: usize = 16;
/// Bytes of a handshake proof (a full HMAC-SHA-256).
pub const PROOF_SIZE: usize = 32;
/// Bytes of the MAC appended to every peer message.
pub const MESSAGE_MAC_SIZE: usize = 16;

const MAGIC: &[u8; 4] = b"KMBP";
const VERSION: u8 = 1;
const HELLO: u8 = 1;
const CHALLENGE: u8 = 2;
const RESPONSE: u8 = 3;

/// The shared secret of a cluster's replicas.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterKey([u8; KEY_SIZE]);

impl std::fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterKey(..)")
    }
}

impl ClusterKey {
    /// A key with these bytes.
    pub fn from_bytes(bytes: [u8; KEY_SIZE]) -> ClusterKey {
        ClusterKey(bytes)
    }

    /// A fresh random key (from `sim_runtime::rand`: OS-seeded in production).
    pub fn generate() -> ClusterKey {
        ClusterKey(sim_runtime::rand::random())
    }

    /// The key file's text: 64 lowercase hex digits and a newline.
    pub fn to_hex(&self) -> String {
        let mut s: String = self.0.iter().map(|b| format!("{b:02x}")).collect();
        s.push('\n');
        s
    }

    /// Parse a key file's text (surrounding whitespace ignored).
    pub fn from_hex(text: &str) -> Result<ClusterKey, String> {
        let text = text.trim();
        if text.len() != 2 * KEY_SIZE || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "a cluster key is {} hex digits, not {} characters",
                2 * KEY_SIZE,
                text.len()
            ));
        }
        let mut key = [0u8; KEY_SIZE];
        for (i, byte) in key.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16)
                .map_err(|_| "invalid hex digit in the cluster key".to_string())?;
        }
        Ok(ClusterKey(key))
    }

    fn mac(&self) -> HmacSha256 {
        HmacSha256::new_from_slice(&self.0).expect("HMAC takes a key of any length")
    }
}

/// Why a handshake frame was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandshakeError {
    /// Not a handshake frame of this version (an old kmb-node, or not a peer at all).
    Malformed,
    /// The proof does not verify: the other side does not hold this cluster's key.
    BadProof,
}

/// The connector's first frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hello {
    pub cluster: u64,
    /// The connecting replica's index.
    pub from: u8,
    /// The replica it means to reach.
    pub to: u8,
    pub nonce: [u8; NONCE_SIZE],
}

fn frame(kind: u8, body: &[&[u8]]) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.push(VERSION);
    out.push(kind);
    for part in body {
        out.extend_from_slice(part);
    }
    out
}

/// The body of a handshake frame of `kind` and exactly `len` body bytes.
fn body(bytes: &[u8], kind: u8, len: usize) -> Result<&[u8], HandshakeError> {
    match bytes {
        [m0, m1, m2, m3, version, k, rest @ ..]
            if [*m0, *m1, *m2, *m3] == *MAGIC
                && *version == VERSION
                && *k == kind
                && rest.len() == len =>
        {
            Ok(rest)
        }
        _ => Err(HandshakeError::Malformed),
    }
}

impl Hello {
    pub fn encode(&self) -> Vec<u8> {
        frame(
            HELLO,
            &[
                &self.cluster.to_le_bytes(),
                &[self.from, self.to],
                &self.nonce,
            ],
        )
    }

    pub fn decode(bytes: &[u8]) -> Result<Hello, HandshakeError> {
        let b = body(bytes, HELLO, 8 + 2 + NONCE_SIZE)?;
        let mut cluster = [0u8; 8];
        cluster.copy_from_slice(&b[..8]);
        let mut nonce = [0u8; NONCE_SIZE];
        nonce.copy_from_slice(&b[10..]);
        Ok(Hello {
            cluster: u64::from_le_bytes(cluster),
            from: b[8],
            to: b[9],
            nonce,
        })
    }
}

/// The acceptor's answer: its nonce and its proof of the key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Challenge {
    pub nonce: [u8; NONCE_SIZE],
    pub proof: [u8; PROOF_SIZE],
}

impl Challenge {
    pub fn encode(&self) -> Vec<u8> {
        frame(CHALLENGE, &[&self.nonce, &self.proof])
    }

    pub fn decode(bytes: &[u8]) -> Result<Challenge, HandshakeError> {
        let b = body(bytes, CHALLENGE, NONCE_SIZE + PROOF_SIZE)?;
        let mut nonce = [0u8; NONCE_SIZE];
        nonce.copy_from_slice(&b[..NONCE_SIZE]);
        let mut proof = [0u8; PROOF_SIZE];
        proof.copy_from_slice(&b[NONCE_SIZE..]);
        Ok(Challenge { nonce, proof })
    }
}

/// The connector's proof of the key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Response {
    pub proof: [u8; PROOF_SIZE],
}

impl Response {
    pub fn encode(&self) -> Vec<u8> {
        frame(RESPONSE, &[&self.proof])
    }

    pub fn decode(bytes: &[u8]) -> Result<Response, HandshakeError> {
        let b = body(bytes, RESPONSE, PROOF_SIZE)?;
        let mut proof = [0u8; PROOF_SIZE];
        proof.copy_from_slice(b);
        Ok(Response { proof })
    }
}

/// What both sides of one handshake agree on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transcript {
    pub cluster: u64,
    /// The connector's replica index.
    pub from: u8,
    /// The acceptor's replica index.
    pub to: u8,
    pub connector_nonce: [u8; NONCE_SIZE],
    pub acceptor_nonce: [u8; NONCE_SIZE],
}

impl Transcript {
    /// The transcript of `hello` answered with `acceptor_nonce`.
    pub fn new(hello: &Hello, acceptor_nonce: [u8; NONCE_SIZE]) -> Transcript {
        Transcript {
            cluster: hello.cluster,
            from: hello.from,
            to: hello.to,
            connector_nonce: hello.nonce,
            acceptor_nonce,
        }
    }

    fn keyed(&self, key: &ClusterKey, label: &[u8]) -> HmacSha256 {
        let mut mac = key.mac();
        mac.update(b"kmb peer v1 ");
        mac.update(label);
        mac.update(&self.cluster.to_le_bytes());
        mac.update(&[self.from, self.to]);
        mac.update(&self.connector_nonce);
        mac.update(&self.acceptor_nonce);
        mac
    }

    /// The acceptor's proof.
    pub fn acceptor_proof(&self, key: &ClusterKey) -> [u8; PROOF_SIZE] {
        self.keyed(key, b"acceptor").finalize().into_bytes().into()
    }

    /// The connector's proof.
    pub fn connector_proof(&self, key: &ClusterKey) -> [u8; PROOF_SIZE] {
        self.keyed(key, b"connector").finalize().into_bytes().into()
    }

    /// Check the acceptor's proof (constant time).
    pub fn verify_acceptor(&self, key: &ClusterKey, proof: &[u8]) -> Result<(), HandshakeError> {
        self.keyed(key, b"acceptor")
            .verify_slice(proof)
            .map_err(|_| HandshakeError::BadProof)
    }

    /// Check the connector's proof (constant time).
    pub fn verify_connector(&self, key: &ClusterKey, proof: &[u8]) -> Result<(), HandshakeError> {
        self.keyed(key, b"connector")
            .verify_slice(proof)
            .map_err(|_| HandshakeError::BadProof)
    }

    /// The key that MACs this connection's messages.
    pub fn session(&self, key: &ClusterKey) -> Session {
        let session_key = self.keyed(key, b"session").finalize().into_bytes();
        Session(HmacSha256::new_from_slice(&session_key).expect("HMAC takes a key of any length"))
    }
}

/// The per-connection message MAC.
#[derive(Clone)]
pub struct Session(HmacSha256);

impl Session {
    /// Append the MAC of `message` to it.
    pub fn seal(&self, message: &mut Vec<u8>) {
        let tag = self.tag(message);
        message.extend_from_slice(&tag);
    }

    /// The MAC of `message`: what [`Session::seal`] appends to it.
    pub fn tag(&self, message: &[u8]) -> [u8; MESSAGE_MAC_SIZE] {
        let mut mac = self.0.clone();
        mac.update(message);
        let tag = mac.finalize().into_bytes();
        let mut out = [0u8; MESSAGE_MAC_SIZE];
        out.copy_from_slice(&tag[..MESSAGE_MAC_SIZE]);
        out
    }

    /// The message of a sealed frame if its MAC verifies (constant time), else `None`.
    pub fn open<'a>(&self, frame: &'a [u8]) -> Option<&'a [u8]> {
        let split = frame.len().checked_sub(MESSAGE_MAC_SIZE)?;
        let (message, tag) = frame.split_at(split);
        let mut mac = self.0.clone();
        mac.update(message);
        mac.verify_truncated_left(tag).ok()?;
        Some(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> ClusterKey {
        ClusterKey::from_bytes([b; KEY_SIZE])
    }

    fn handshake(connector_key: &ClusterKey, acceptor_key: &ClusterKey) -> Option<Session> {
        let hello = Hello {
            cluster: 42,
            from: 1,
            to: 0,
            nonce: [3; NONCE_SIZE],
        };
        let hello = Hello::decode(&hello.encode()).ok()?;
        // Acceptor.
        let t = Transcript::new(&hello, [9; NONCE_SIZE]);
        let challenge = Challenge {
            nonce: t.acceptor_nonce,
            proof: t.acceptor_proof(acceptor_key),
        };
        let challenge = Challenge::decode(&challenge.encode()).ok()?;
        // Connector.
        let ct = Transcript::new(&hello, challenge.nonce);
        ct.verify_acceptor(connector_key, &challenge.proof).ok()?;
        let response = Response {
            proof: ct.connector_proof(connector_key),
        };
        let response = Response::decode(&response.encode()).ok()?;
        // Acceptor.
        t.verify_connector(acceptor_key, &response.proof).ok()?;
        Some(t.session(acceptor_key))
    }

    /// Goal: replicas holding the same key authenticate each other; a different key fails
    /// on both sides.
    #[test]
    fn handshake_needs_the_same_key() {
        assert!(handshake(&key(1), &key(1)).is_some());
        assert!(handshake(&key(1), &key(2)).is_none());
    }

    /// Goal: a proof is bound to the transcript (nonces, indexes, cluster) and its role: a
    /// replayed or reflected proof fails.
    #[test]
    fn proofs_are_bound_to_transcript_and_role() {
        let k = key(5);
        let t = Transcript {
            cluster: 42,
            from: 1,
            to: 0,
            connector_nonce: [1; NONCE_SIZE],
            acceptor_nonce: [2; NONCE_SIZE],
        };
        let proof = t.acceptor_proof(&k);
        assert!(t.verify_acceptor(&k, &proof).is_ok());
        assert_eq!(
            t.verify_connector(&k, &proof),
            Err(HandshakeError::BadProof),
            "reflection"
        );
        for other in [
            Transcript {
                acceptor_nonce: [3; NONCE_SIZE],
                ..t
            },
            Transcript {
                connector_nonce: [3; NONCE_SIZE],
                ..t
            },
            Transcript { from: 2, ..t },
            Transcript { to: 2, ..t },
            Transcript { cluster: 43, ..t },
        ] {
            assert_eq!(
                other.verify_acceptor(&k, &proof),
                Err(HandshakeError::BadProof)
            );
        }
    }

    /// Goal: a message MAC verifies only with its own connection's session, and any change
    /// to the message or tag fails.
    #[test]
    fn messages_are_tied_to_the_session() {
        let a = handshake(&key(1), &key(1)).expect("handshake");
        let mut sealed = b"prepare".to_vec();
        a.seal(&mut sealed);
        assert_eq!(a.open(&sealed), Some(&b"prepare"[..]));
        let other = Transcript {
            cluster: 42,
            from: 1,
            to: 0,
            connector_nonce: [3; NONCE_SIZE],
            acceptor_nonce: [8; NONCE_SIZE],
        }
        .session(&key(1));
        assert_eq!(other.open(&sealed), None);
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 1;
            assert_eq!(a.open(&bad), None, "byte {i}");
        }
        assert_eq!(a.open(&sealed[..10]), None);
        assert_eq!(a.open(b""), None);
    }

    /// Goal: handshake decoders are total and refuse the pre-authentication handshake.
    #[test]
    fn handshake_decoders_refuse_garbage() {
        let mut old = 42u64.to_le_bytes().to_vec();
        old.push(1);
        assert_eq!(Hello::decode(&old), Err(HandshakeError::Malformed));
        let hello = Hello {
            cluster: 1,
            from: 0,
            to: 1,
            nonce: [0; NONCE_SIZE],
        }
        .encode();
        for cut in 0..hello.len() {
            assert!(Hello::decode(&hello[..cut]).is_err());
            assert!(Challenge::decode(&hello[..cut]).is_err());
            assert!(Response::decode(&hello[..cut]).is_err());
        }
        assert!(Challenge::decode(&hello).is_err());
    }

    /// Goal: the key file round-trips and bad key files are one clear error.
    #[test]
    fn key_hex_roundtrip() {
        let k = ClusterKey::from_bytes(std::array::from_fn(|i| i as u8 * 7));
        assert_eq!(ClusterKey::from_hex(&k.to_hex()), Ok(k.clone()));
        assert_eq!(format!("{k:?}"), "ClusterKey(..)");
        assert!(ClusterKey::from_hex("abc").is_err());
        assert!(ClusterKey::from_hex(&"zz".repeat(32)).is_err());
    }
}
