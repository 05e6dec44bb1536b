//! Property checks over untrusted bytes: one function per decoder, shared by the `cargo fuzz`
//! targets (`fuzz/fuzz_targets/`) and the corpus replay test (`tests/fuzz_corpus.rs`), so both
//! run one definition.
//!
//! Each function takes arbitrary bytes and returns normally whatever they are; it panics only
//! when a decoder panics or a property fails (a round trip through the matching encoder, or an
//! invariant of the decoded value). Inputs that must carry checksums to reach deeper code start
//! with a mode byte whose bits ask the check to fix the checksums up first, so the fuzzer can
//! change fields freely and still get past verification. See `fuzz/README.md`.
//!
//! Pure: no I/O, no clock, no randomness.

use xxhash_rust::xxh3::xxh3_128;

use crate::auth::{Challenge, ClusterKey, Hello, Response, Transcript, KEY_SIZE, NONCE_SIZE};
use crate::commands::{self, Command};
use crate::core::{snapshot, Message};
use crate::entry::{Entry, Header, HEADER_SIZE};
use crate::kv::{KvState, Reply, Request, SCAN_LIMIT_MAX};
use crate::resp::{self, CommandReader, ProtocolError, Value};
use crate::storage::format::{
    verify_checkpoint, CheckpointRef, Identity, Layout, StorageConfig, Superblock,
    CHECKPOINT_HEADER_SIZE, SECTOR_SIZE, SUPERBLOCK_COPIES, SUPERBLOCK_SIZE,
};
use crate::storage::recovery::{self, CheckpointState, SlotRead, Window};
use crate::storage::verify;
use crate::storage::Examination;
use sim_runtime::net::{decode_frame, encode_frame, FRAME_HEADER_SIZE};

/// A property check over arbitrary bytes (panics when a property fails).
pub type Check = fn(&[u8]);

/// Every fuzz target: its name (the directory under `fuzz/corpus/` and `fuzz/regressions/`, and
/// the file under `fuzz/fuzz_targets/`) and its check.
pub const TARGETS: &[(&str, Check)] = &[
    ("resp", resp),
    ("command_kv", command_kv),
    ("message", message),
    ("frame", frame),
    ("auth", auth),
    ("superblock", superblock),
    ("wal", wal),
    ("checkpoint", checkpoint),
    ("snapshot", snapshot),
    ("recovery", recovery),
];

/// The check of the target called `name`.
pub fn target(name: &str) -> Option<Check> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|&(_, f)| f)
}

// ---------------------------------------------------------------------------------------------
// RESP

/// What a reader made of a stream: the commands, the bytes they used, and whether it ended in
/// a protocol error.
#[derive(Debug, PartialEq, Eq)]
struct Read {
    commands: Vec<Vec<Vec<u8>>>,
    consumed: usize,
    error: Option<ProtocolError>,
}

fn read_chunks<'a>(chunks: impl IntoIterator<Item = &'a [u8]>, limit: usize) -> Read {
    let mut reader = CommandReader::new(limit);
    let mut commands = Vec::new();
    let mut consumed = 0;
    for chunk in chunks {
        reader.feed(chunk);
        loop {
            match reader.next_command() {
                Ok(Some(command)) => {
                    assert!(reader.consumed() > consumed, "a command consumed nothing");
                    consumed = reader.consumed();
                    assert!(command.len() <= resp::ARGS_MAX);
                    assert!(command.iter().all(|a| a.len() <= resp::ARG_SIZE_MAX));
                    commands.push(command);
                }
                Ok(None) => break,
                Err(error) => {
                    return Read {
                        commands,
                        consumed,
                        error: Some(error),
                    }
                }
            }
        }
    }
    Read {
        commands,
        consumed,
        error: None,
    }
}

/// Cut `stream` into chunks whose sizes (1..=256) cycle through `sizes`.
fn chunks<'a>(stream: &'a [u8], sizes: &[u8]) -> Vec<&'a [u8]> {
    if sizes.is_empty() {
        return vec![stream];
    }
    let mut out = Vec::new();
    let mut rest = stream;
    for &s in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (a, b) = rest.split_at((s as usize + 1).min(rest.len()));
        out.push(a);
        rest = b;
    }
    out
}

fn value_has_line_break(v: &Value) -> bool {
    match v {
        Value::Simple(s) | Value::Error(s) | Value::Double(s) => s.contains(['\r', '\n']),
        Value::Array(items) | Value::Set(items) => items.iter().any(value_has_line_break),
        Value::Map(pairs) => pairs
            .iter()
            .any(|(k, v)| value_has_line_break(k) || value_has_line_break(v)),
        _ => false,
    }
}

/// RESP: the incremental [`CommandReader`] fed in chunks whose sizes come from the input,
/// [`resp::parse_command`] and the reply parser [`resp::parse_value`].
///
/// Input: byte 0 = `n | limit << 4`, then `n` (0..16) chunk sizes, then the stream.
/// Properties: reading in chunks gives the same commands, bytes and error-or-not as reading
/// the whole stream at once; with a buffer limit the commands are a prefix of those without;
/// `parse_command` agrees with the reader's first command; every command re-encoded as a
/// client sends it parses back to itself; `parse_value` round-trips what it parsed.
pub fn resp(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let n = (first & 15) as usize;
    let limit = (first >> 4) as usize;
    let (sizes, stream) = rest.split_at(n.min(rest.len()));

    let whole = read_chunks([stream], usize::MAX);
    let chunked = read_chunks(chunks(stream, sizes), usize::MAX);
    assert_eq!(
        whole.commands, chunked.commands,
        "chunking changed the commands"
    );
    assert_eq!(whole.consumed, chunked.consumed);
    assert_eq!(
        whole.error.is_some(),
        chunked.error.is_some(),
        "chunking changed the outcome: {:?} vs {:?}",
        whole.error,
        chunked.error
    );
    let bytes_one_at_a_time = read_chunks(stream.chunks(1), usize::MAX);
    assert_eq!(whole.commands, bytes_one_at_a_time.commands);
    assert_eq!(whole.error.is_some(), bytes_one_at_a_time.error.is_some());

    if limit > 0 {
        let limited = read_chunks(chunks(stream, sizes), limit * limit * 16);
        assert!(limited.commands.len() <= whole.commands.len());
        assert_eq!(limited.commands, whole.commands[..limited.commands.len()]);
    }

    match (resp::parse_command(stream), whole.commands.first()) {
        (Ok(Some((args, used))), Some(first)) => {
            assert_eq!(&args, first);
            assert!(used <= stream.len());
        }
        (Ok(None), None) => assert!(whole.error.is_none()),
        (Err(_), None) => assert!(whole.error.is_some()),
        (other, first) => panic!("parse_command {other:?} but the reader read {first:?}"),
    }

    for command in &whole.commands {
        let encoded = Value::Array(command.iter().cloned().map(Value::Bulk).collect()).encode();
        assert_eq!(
            resp::parse_command(&encoded),
            Ok(Some((command.clone(), encoded.len()))),
            "re-encoded command"
        );
    }

    if let Ok(Some((value, used))) = resp::parse_value(stream) {
        assert!(used <= stream.len());
        if !value_has_line_break(&value) {
            // RESP3 encodes every kind of value as itself (RESP2 downgrades maps, sets, …).
            let encoded = value.encode_with(resp::Protocol::Resp3);
            assert_eq!(
                resp::parse_value(&encoded),
                Ok(Some((value, encoded.len())))
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Commands → kv

/// Apply `request` and check the reply against the state.
fn apply_checked(state: &mut KvState, request: &Request) {
    let reply = state.apply(request, crate::kv::ApplyContext::default());
    match (request, &reply) {
        (Request::Set { key, value }, Reply::Ok) => assert_eq!(state.get(key), Some(&value[..])),
        (Request::Get { key }, Reply::Value(v)) => assert_eq!(state.get(key), v.as_deref()),
        (Request::Del { key }, Reply::Bool(_)) => assert_eq!(state.get(key), None),
        (Request::IncrBy { key, .. }, Reply::Integer(v)) => {
            assert_eq!(state.get(key), Some(v.to_string().as_bytes()))
        }
        (Request::IncrBy { .. }, Reply::Error(_)) => {}
        (Request::Cas { key, new, .. }, Reply::Bool(true)) => {
            assert_eq!(state.get(key), Some(&new[..]))
        }
        (Request::Cas { .. }, Reply::Bool(false)) => {}
        (Request::Register, Reply::Ok) => {}
        (Request::Scan { start, end, limit }, Reply::Entries(entries)) => {
            assert!(entries.len() <= (*limit).min(SCAN_LIMIT_MAX) as usize);
            assert!(entries.windows(2).all(|w| w[0].0 < w[1].0), "scan order");
            for (k, v) in entries {
                assert!(start <= k && k < end, "scan range");
                assert_eq!(state.get(k), Some(&v[..]));
            }
        }
        // The commands beyond the original set are checked by kv's own tests; here they
        // must answer without a panic, and round-trip.
        (
            Request::SetWith { .. }
            | Request::DelKeys { .. }
            | Request::Exists { .. }
            | Request::MGet { .. }
            | Request::MSet { .. }
            | Request::GetDel { .. }
            | Request::Append { .. }
            | Request::IncrByFloat { .. }
            | Request::Expire { .. }
            | Request::Persist { .. }
            | Request::Ttl { .. }
            | Request::DbSize
            | Request::Flush
            | Request::Keys { .. }
            | Request::ScanCursor { .. }
            | Request::Multi { .. }
            | Request::Batch { .. },
            _,
        ) => {}
        (request, reply) => panic!("{request:?} answered {reply:?}"),
    }
    assert_eq!(Reply::decode(&reply.encode()), Ok(reply.clone()));
    let _ = commands::reply_value(&reply).encode();
}

/// Client commands: a RESP stream, each command parsed by [`commands::parse`] and, if it is a
/// key-value command, encoded as a log entry body, decoded and applied to a fresh state.
///
/// Properties: errors are RESP errors; a request decodes back to itself unless a key or value
/// exceeds its bound (then the decoder refuses it and the replica answers an error); replies
/// agree with the state and round-trip; the final state's snapshot round-trips.
pub fn command_kv(data: &[u8]) {
    let mut reader = CommandReader::new(usize::MAX);
    reader.feed(data);
    let mut state = KvState::new();
    while let Ok(Some(args)) = reader.next_command() {
        if args.is_empty() {
            continue;
        }
        match commands::parse(&args) {
            Err(error) => assert!(matches!(error, Value::Error(_)), "{error:?}"),
            Ok(Command::Local(value)) => {
                let _ = value.encode();
            }
            Ok(Command::Quit) => {}
            Ok(Command::Conn(conn)) => {
                // A connection answers every connection command without a panic, in both
                // protocols, with and without the node's state.
                let settings = std::sync::Arc::new(crate::connection::Settings {
                    listen: std::net::SocketAddr::from(([127, 0, 0, 1], 6381)),
                    requirepass: None,
                    client_connections_max: 1,
                    client_idle_timeout_secs: 1,
                    client_buffer_max: 1,
                    request_size_max: 1,
                });
                let mut connection = crate::connection::Connection::new(settings, 1, None);
                let step = connection.step(Ok(Command::Conn(conn)));
                if let crate::connection::Step::Local(conn) = step {
                    let ctx = crate::connection::Context::default();
                    if let crate::connection::Step::Reply(v) = connection.local(conn, &ctx) {
                        let _ = v.encode_with(connection.protocol());
                    }
                }
            }
            Ok(Command::Kv {
                session, request, ..
            }) => {
                if let Some((client, number)) = session {
                    assert!(client != 0 && number != 0);
                }
                let body = request.encode();
                match Request::decode(&body) {
                    Ok(decoded) => {
                        assert_eq!(decoded, request);
                        apply_checked(&mut state, &decoded);
                    }
                    Err(e) => assert!(request.exceeds_bounds(), "{request:?}: {e}"),
                }
            }
        }
    }
    assert_eq!(
        KvState::decode_snapshot(&state.encode_snapshot()),
        Ok(state)
    );
}

// ---------------------------------------------------------------------------------------------
// Peer messages, frames, handshake

/// Peer messages: [`Message::decode`]. Properties: a decoded message encodes to exactly the
/// input (the encoding is canonical) and decodes again to the same value.
pub fn message(data: &[u8]) {
    if let Ok(message) = Message::decode(data) {
        let encoded = message.encode();
        assert_eq!(Message::decode(&encoded), Ok(message));
        assert!(encoded == data, "a message has two encodings");
    }
}

/// Rewrite the checksum of every frame in `stream` (as far as the length fields lead).
fn fix_frame_checksums(stream: &mut [u8]) {
    let mut at = 0;
    while let Some(header) = stream.get(at..at + FRAME_HEADER_SIZE) {
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let Some(payload) = stream.get(at + FRAME_HEADER_SIZE..at + FRAME_HEADER_SIZE + len) else {
            return;
        };
        let fixed = encode_frame(payload);
        stream[at + 4..at + FRAME_HEADER_SIZE].copy_from_slice(&fixed[4..FRAME_HEADER_SIZE]);
        at += FRAME_HEADER_SIZE + len;
    }
}

/// Frames: [`sim_runtime::net::decode_frame`] over a stream of frames.
///
/// Input: byte 0 = `fix | max << 1` (bit 0: fix the checksums up first; the payload limit is
/// `max * 64` bytes), then the stream. Properties: each decoded frame is exactly
/// `encode_frame(payload)`, within the limit; an incomplete frame asks for more bytes.
pub fn frame(data: &[u8]) {
    let Some((&mode, stream)) = data.split_first() else {
        return;
    };
    let payload_max = (mode >> 1) as usize * 64;
    let mut stream = stream.to_vec();
    if mode & 1 != 0 {
        fix_frame_checksums(&mut stream);
    }
    let mut rest = &stream[..];
    loop {
        match decode_frame(rest, payload_max) {
            Ok(Some((payload, used))) => {
                assert!(payload.len() <= payload_max);
                assert_eq!(used, FRAME_HEADER_SIZE + payload.len());
                assert!(encode_frame(payload) == rest[..used], "frame round trip");
                rest = &rest[used..];
            }
            Ok(None) => {
                if rest.len() >= FRAME_HEADER_SIZE {
                    let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
                    assert!(
                        rest.len() < FRAME_HEADER_SIZE + len,
                        "a whole frame was refused"
                    );
                }
                return;
            }
            Err(_) => return,
        }
    }
}

/// Peer handshake: [`Hello`], [`Challenge`], [`Response`] decoders, the key file parser and
/// the message MAC. Properties: each decoded frame encodes to exactly the input; a parsed key
/// round-trips through its file text; a MAC opens only what it sealed.
pub fn auth(data: &[u8]) {
    if let Ok(hello) = Hello::decode(data) {
        assert!(hello.encode() == data);
    }
    if let Ok(challenge) = Challenge::decode(data) {
        assert!(challenge.encode() == data);
    }
    if let Ok(response) = Response::decode(data) {
        assert!(response.encode() == data);
    }
    if let Ok(key) = ClusterKey::from_hex(&String::from_utf8_lossy(data)) {
        assert_eq!(ClusterKey::from_hex(&key.to_hex()), Ok(key));
    }
    let key = ClusterKey::from_bytes([7; KEY_SIZE]);
    let hello = Hello::decode(data).unwrap_or(Hello {
        cluster: 1,
        from: 1,
        to: 0,
        nonce: [1; NONCE_SIZE],
    });
    let transcript = Transcript::new(&hello, [2; NONCE_SIZE]);
    let _ = transcript.verify_acceptor(&key, data);
    let _ = transcript.verify_connector(&key, data);
    let session = transcript.session(&key);
    if let Some(message) = session.open(data) {
        let mut sealed = message.to_vec();
        session.seal(&mut sealed);
        assert!(sealed == data);
    }
    let mut sealed = data.to_vec();
    session.seal(&mut sealed);
    assert_eq!(session.open(&sealed), Some(data));
}

// ---------------------------------------------------------------------------------------------
// Storage

fn fix_superblock_checksum(b: &mut [u8]) {
    if b.len() == SUPERBLOCK_SIZE && b.iter().any(|&x| x != 0) {
        let sum = xxh3_128(&b[16..]);
        b[..16].copy_from_slice(&sum.to_le_bytes());
    }
}

/// Fix the checksums of the entry at the front of `b` (a header, and the body it declares if
/// present).
fn fix_entry_checksums(b: &mut [u8]) {
    if b.len() < HEADER_SIZE || b[..HEADER_SIZE].iter().all(|&x| x == 0) {
        return;
    }
    let size = u32::from_le_bytes([b[100], b[101], b[102], b[103]]) as usize;
    if let Some(body) = b.get(HEADER_SIZE..HEADER_SIZE.saturating_add(size)) {
        let sum = xxh3_128(body);
        b[16..32].copy_from_slice(&sum.to_le_bytes());
    }
    let sum = xxh3_128(&b[16..HEADER_SIZE]);
    b[..16].copy_from_slice(&sum.to_le_bytes());
}

/// Properties every superblock that verifies must have: it re-encodes to the same bytes, and
/// its numbers are small enough for the arithmetic the engine and recovery do on them.
fn check_superblock(sb: &Superblock, bytes: &[u8], copy: u8) {
    assert!(sb.encode(copy) == bytes, "superblock round trip");
    assert!(sb.config.is_valid());
    let window = Window::from_superblock(sb);
    assert!(window.first() <= window.last());
    assert!(sb.checkpoint.size <= snapshot::SNAPSHOT_SIZE_MAX as u64);
}

/// Superblock: [`Superblock::decode`]. Input: byte 0 = `fix | copy << 1` (bit 0: fix the
/// checksum up first), then the 512 bytes. Properties: a decoded superblock re-encodes to
/// the input, only for its own copy index, with bounded fields.
pub fn superblock(data: &[u8]) {
    let Some((&mode, bytes)) = data.split_first() else {
        return;
    };
    let copy = (mode >> 1) & 3;
    let mut bytes = bytes.to_vec();
    if mode & 1 != 0 {
        fix_superblock_checksum(&mut bytes);
    }
    if let Ok(sb) = Superblock::decode(&bytes, copy) {
        check_superblock(&sb, &bytes, copy);
        let other = (copy + 1) % SUPERBLOCK_COPIES as u8;
        assert!(Superblock::decode(&bytes, other).is_err());
    }
}

/// WAL: [`Header::decode`], [`Entry::decode`] and the entry body ([`Request::decode`]).
/// Input: byte 0 (bit 0: fix the checksums up first), then a prepare (header and body).
/// Properties: a decoded header encodes to exactly its bytes; a decoded entry is valid and
/// encodes to exactly its bytes; a decoded request encodes to exactly its bytes.
pub fn wal(data: &[u8]) {
    let Some((&mode, bytes)) = data.split_first() else {
        return;
    };
    let mut bytes = bytes.to_vec();
    if mode & 1 != 0 {
        fix_entry_checksums(&mut bytes);
    }
    let header = Header::decode(&bytes[..bytes.len().min(HEADER_SIZE)]);
    if let Ok(h) = header {
        assert!(h.encode()[..] == bytes[..HEADER_SIZE], "header round trip");
        assert_eq!(h.calculate_checksum(), h.checksum);
    }
    match Entry::decode(&bytes) {
        Ok(entry) => {
            assert!(entry.is_valid());
            assert_eq!(Ok(entry.header), header);
            let encoded = entry.encode();
            assert!(encoded[..] == bytes[..encoded.len()], "entry round trip");
            if let Ok(request) = Request::decode(&entry.body) {
                assert!(request.encode() == entry.body);
            }
        }
        Err(_) => {
            if let Ok(request) = Request::decode(&bytes) {
                assert!(request.encode() == bytes);
            }
        }
    }
}

fn take<const N: usize>(bytes: &mut &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    let n = N.min(bytes.len());
    out[..n].copy_from_slice(&bytes[..n]);
    *bytes = &bytes[n..];
    out
}

/// Checkpoint: [`verify_checkpoint`] and [`recovery::load_checkpoint`] against a reference,
/// then the blob as a snapshot.
///
/// Input: byte 0 = mode, then cluster `u64`, replica `u8`, op `u64`, entry checksum `u128`,
/// size `u64`, blob checksum `u128`, then the bytes read. Mode bit 0: prepend the header the
/// reference calls for; bit 1: size modulo the bytes present; bit 2: the blob checksum of the
/// bytes present. Properties: a verified blob has the reference's size and checksum and
/// follows exactly the expected header; the loader agrees.
pub fn checkpoint(data: &[u8]) {
    let mut input = data;
    let [mode] = take::<1>(&mut input);
    let identity = Identity {
        cluster: u64::from_le_bytes(take(&mut input)),
        replica: take::<1>(&mut input)[0],
        replica_count: 3,
    };
    let op = u64::from_le_bytes(take(&mut input));
    let entry_checksum = u128::from_le_bytes(take(&mut input));
    let mut size = u64::from_le_bytes(take(&mut input));
    let mut checksum = u128::from_le_bytes(take(&mut input));
    if mode & 2 != 0 {
        size %= input.len() as u64 + 1;
    }
    if mode & 4 != 0 {
        checksum = xxh3_128(&input[..(size as usize).min(input.len())]);
    }
    let reference = CheckpointRef {
        op,
        entry_checksum,
        offset: 1,
        size,
        checksum,
    };
    let mut bytes = Vec::new();
    if mode & 1 != 0 {
        bytes.extend_from_slice(&crate::storage::format::encode_checkpoint_header(
            &identity, &reference,
        ));
    }
    bytes.extend_from_slice(input);
    let verified = verify_checkpoint(&bytes, &identity, &reference);
    if let Some(blob) = &verified {
        assert_eq!(blob.len() as u64, size);
        assert_eq!(xxh3_128(blob), checksum);
        assert!(bytes[CHECKPOINT_HEADER_SIZE..CHECKPOINT_HEADER_SIZE + blob.len()] == blob[..]);
        snapshot(blob);
    }
    let sb = Superblock {
        sequence: 1,
        identity,
        config: StorageConfig::SIMULATION,
        view: 0,
        log_view: 0,
        log_view_head: 0,
        checkpoint: reference,
    };
    match recovery::load_checkpoint(&sb, Some(&bytes)) {
        CheckpointState::Loaded(blob) => assert_eq!(Some(blob), verified),
        CheckpointState::Faulty => assert_eq!(verified, None),
        CheckpointState::Empty => panic!("a referenced checkpoint loaded as empty"),
    }
}

/// Checkpoint snapshots: [`snapshot::decode`] (kv state and client table),
/// [`KvState::decode_snapshot`] and [`Reply::decode`]. Property: whatever decodes in the
/// current format encodes to exactly the input (every snapshot encoding is canonical).
pub fn snapshot(data: &[u8]) {
    if let (Ok((kv, clients)), Some(stamp)) = (snapshot::decode(data), snapshot::timestamp(data)) {
        assert!(
            snapshot::encode(&kv, &clients, stamp) == data,
            "snapshot round trip"
        );
    }
    if let Ok(kv) = KvState::decode_snapshot(data) {
        assert!(kv.encode_snapshot() == data, "kv snapshot round trip");
    }
    if let Ok(reply) = Reply::decode(data) {
        assert!(reply.encode() == data, "reply round trip");
    }
}

/// The most WAL slots the recovery check reads (a valid superblock may name 2^24).
const RECOVERY_SLOTS_MAX: u32 = 256;

/// A read of `len` bytes at `offset` of `image` (`None` past its end, as a failed read).
fn read_at(image: &[u8], offset: u64, len: u64) -> Option<Vec<u8>> {
    let end = offset.checked_add(len)?;
    let (offset, end) = (usize::try_from(offset).ok()?, usize::try_from(end).ok()?);
    image.get(offset..end).map(<[u8]>::to_vec)
}

/// Storage recovery over a whole data file image: superblock selection, slot classification,
/// the decision table ([`recovery::decide`]), [`recovery::recover`], the checkpoint loader and
/// the offline verifier's report, reading the image as the engine reads a file.
///
/// Input: byte 0 = mode (bit 0: fix the superblock copies' checksums; bit 1: the redundant
/// headers'; bit 2: the prepares'), then the file. Properties: the recovered log is a verified
/// hash chain starting at the checkpoint, inside the window; faulty ops ascend and include
/// those never written; what is past a gap chains too; no decision panics.
pub fn recovery(data: &[u8]) {
    let Some((&mode, image)) = data.split_first() else {
        return;
    };
    let mut image = image.to_vec();
    if mode & 1 != 0 {
        for copy in 0..SUPERBLOCK_COPIES {
            let at = Layout::superblock_offset(copy) as usize;
            if let Some(b) = image.get_mut(at..at + SUPERBLOCK_SIZE) {
                fix_superblock_checksum(b);
            }
        }
    }
    let copies: Vec<Option<Vec<u8>>> = (0..SUPERBLOCK_COPIES)
        .map(|copy| {
            read_at(
                &image,
                Layout::superblock_offset(copy),
                SUPERBLOCK_SIZE as u64,
            )
        })
        .collect();
    let Some((sb, _)) = recovery::select_superblock(&copies) else {
        return;
    };
    for (copy, bytes) in copies.iter().enumerate() {
        if let Some(Ok(c)) = bytes.as_ref().map(|b| Superblock::decode(b, copy as u8)) {
            check_superblock(&c, bytes.as_deref().unwrap_or_default(), copy as u8);
        }
    }
    let config = sb.config;
    let layout = Layout::new(config);
    if config.slot_count > RECOVERY_SLOTS_MAX || (image.len() as u64) < layout.checkpoints_offset {
        return;
    }
    let slot_size = config.slot_size as usize;
    for slot in 0..config.slot_count as usize {
        if mode & 2 != 0 {
            let at = layout.header_offset(slot) as usize;
            fix_entry_checksums(&mut image[at..at + HEADER_SIZE]);
        }
        if mode & 4 != 0 {
            let at = layout.prepare_offset(slot) as usize;
            fix_entry_checksums(&mut image[at..at + slot_size]);
        }
    }
    // Read every slot as the engine does: the first sector of the prepare, and the rest of the
    // body if its header verifies and declares one that fits the slot.
    let slots: Vec<SlotRead> = (0..config.slot_count as usize)
        .map(|slot| {
            let header = read_at(&image, layout.header_offset(slot), HEADER_SIZE as u64);
            let offset = layout.prepare_offset(slot);
            let prepare =
                read_at(&image, offset, SECTOR_SIZE).and_then(|first| {
                    match Header::decode(&first[..HEADER_SIZE]) {
                        Ok(h)
                            if HEADER_SIZE + h.size as usize > first.len()
                                && HEADER_SIZE + h.size as usize <= slot_size =>
                        {
                            read_at(&image, offset, (HEADER_SIZE + h.size as usize) as u64)
                        }
                        _ => Some(first),
                    }
                });
            SlotRead { header, prepare }
        })
        .collect();
    let checkpoint_bytes = if sb.checkpoint.offset == 0 {
        None
    } else {
        read_at(
            &image,
            sb.checkpoint.offset,
            CHECKPOINT_HEADER_SIZE as u64 + sb.checkpoint.size,
        )
    };
    let checkpoint = recovery::load_checkpoint(&sb, checkpoint_bytes.as_deref());
    if let CheckpointState::Loaded(blob) = &checkpoint {
        snapshot(blob);
    }
    let window = Window::from_superblock(&sb);
    let evidence: Vec<_> = slots
        .iter()
        .enumerate()
        .map(|(slot, read)| {
            recovery::classify(
                slot,
                config.slot_count,
                config.slot_size,
                sb.identity.cluster,
                read,
            )
        })
        .collect();
    for op in window.first()..=window.last() {
        let _ = recovery::decide(
            op,
            &evidence[(op % config.slot_count as u64) as usize],
            &window,
        );
    }
    let r = recovery::recover(sb, checkpoint, &slots);

    let mut parent = sb.checkpoint.entry_checksum;
    for (i, e) in r.log.iter().enumerate() {
        assert_eq!(
            e.header.op,
            window.first() + i as u64,
            "log ops consecutive"
        );
        assert_eq!(e.header.parent, parent, "log hash chain");
        assert!(e.is_valid());
        assert_eq!(e.header.cluster, sb.identity.cluster);
        parent = e.checksum();
    }
    assert!(r.log_head() <= r.head_op.max(sb.checkpoint.op));
    assert!(r.faulty.windows(2).all(|w| w[0] < w[1]), "faulty ascending");
    assert!(r
        .faulty
        .iter()
        .all(|&op| op > r.log_head() && op <= window.last()));
    assert!(r.never_written.iter().all(|op| r.faulty.contains(op)));
    assert!(r.after_gap.is_empty() || !r.faulty.is_empty());
    for pair in r.after_gap.windows(2) {
        assert!(pair[0].header.op < pair[1].header.op);
    }
    for e in &r.after_gap {
        assert!(e.is_valid() && e.header.op > r.faulty[0] && e.header.op <= window.last());
    }
    assert!(r.torn.iter().all(|&op| op > r.log_head()));

    let examination = Examination {
        len: image.len() as u64,
        copies: copies
            .iter()
            .enumerate()
            .map(|(i, c)| match c {
                Some(bytes) => Superblock::decode(bytes, i as u8),
                None => Err(crate::storage::format::SuperblockError::Corrupt),
            })
            .collect(),
        evidence,
        recovery: r,
    };
    let _ = verify::verify(&examination);
}
