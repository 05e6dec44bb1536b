//! Networking: TCP, and the framed message connection every kmb peer and client link uses.
//!
//! A frame is `len: u32 LE | checksum: u64 LE | payload`, where `checksum` is xxh3-64 of the
//! payload seeded with `len`. A frame whose checksum fails or whose length exceeds the limit is
//! an error and is never delivered; the reader is poisoned afterwards (the stream can no longer
//! be trusted to be aligned), so the caller drops the connection and reconnects.
//!
//! Writes go through a per-connection writer task that writes each frame whole and flushes it.
//! Under madsim that task is where network faults act (drop, duplicate, reorder, corrupt,
//! delay, partition — see [`crate::fault`]), so the real framing code always runs.

use std::io;
use std::net::{IpAddr, SocketAddr};

use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::mpsc;

#[cfg(madsim)]
pub use stream::{TcpListener, TcpStream};
#[cfg(not(madsim))]
pub use tokio::net::{TcpListener, TcpStream};

use crate::time::Duration;

#[cfg(madsim)]
mod faults;
#[cfg(madsim)]
mod stream;

/// Bytes in a frame header.
pub const FRAME_HEADER_SIZE: usize = 12;
/// Default upper bound on a frame's payload.
pub const FRAME_PAYLOAD_MAX: usize = 4 << 20;
/// Payload bytes a reader allocates before any of them arrived; larger frames grow as they come.
const PAYLOAD_PREALLOCATE_MAX: usize = 1 << 20;
/// Frames queued per connection before [`FrameWriter::send`] waits.
pub const FRAME_QUEUE_MAX: usize = 4096;

/// Why a frame could not be sent or received.
#[derive(Debug)]
pub enum FrameError {
    /// The connection is closed (cleanly at a frame boundary, or the writer task ended).
    Closed,
    /// An I/O error on the socket.
    Io(io::Error),
    /// The frame failed its checksum: corrupt in transit; never delivered.
    Checksum,
    /// The frame's length exceeds the limit; never delivered.
    TooLarge { len: usize, max: usize },
    /// The sender's queue is full ([`FrameWriter::try_send`] only).
    Full,
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Closed => f.write_str("connection closed"),
            FrameError::Io(e) => write!(f, "i/o error: {e}"),
            FrameError::Checksum => f.write_str("frame checksum mismatch"),
            FrameError::TooLarge { len, max } => {
                write!(f, "frame of {len} bytes exceeds the limit of {max}")
            }
            FrameError::Full => f.write_str("send queue full"),
        }
    }
}

impl std::error::Error for FrameError {}

fn checksum(payload: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64_with_seed(payload, payload.len() as u64)
}

/// Encode one frame.
pub fn encode_frame(payload: &[u8]) -> Vec<u8> {
    Frame::from_payload(payload).into_bytes()
}

/// A frame built in place: its payload is written after room for the header, which is filled
/// in when the frame is sent — the payload is never copied into a second buffer. The bytes on
/// the wire are [`encode_frame`]'s of the same payload.
#[derive(Clone, Debug)]
pub struct Frame {
    /// Room for the header, then the payload.
    buf: Vec<u8>,
}

impl Default for Frame {
    fn default() -> Frame {
        Frame::with_capacity(0)
    }
}

impl Frame {
    /// An empty frame with room for `payload_capacity` payload bytes before it reallocates.
    pub fn with_capacity(payload_capacity: usize) -> Frame {
        let mut buf = Vec::with_capacity(FRAME_HEADER_SIZE + payload_capacity);
        buf.resize(FRAME_HEADER_SIZE, 0);
        Frame { buf }
    }

    /// A frame of this payload (copied).
    pub fn from_payload(payload: &[u8]) -> Frame {
        let mut frame = Frame::with_capacity(payload.len());
        frame.buf.extend_from_slice(payload);
        frame
    }

    /// The payload written so far.
    pub fn payload(&self) -> &[u8] {
        &self.buf[FRAME_HEADER_SIZE..]
    }

    /// Append bytes to the payload.
    pub fn extend_from_slice(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Append to the payload through `append`, which is lent the frame's buffer (room for the
    /// header, then the payload so far) and may only push bytes onto its end.
    pub fn append_with(&mut self, append: impl FnOnce(&mut Vec<u8>)) {
        append(&mut self.buf);
        assert!(
            self.buf.len() >= FRAME_HEADER_SIZE,
            "a frame's buffer is only appended to"
        );
    }

    /// The frame's bytes as sent: the header filled in before the payload.
    pub fn into_bytes(mut self) -> Vec<u8> {
        let (header, payload) = self.buf.split_at_mut(FRAME_HEADER_SIZE);
        header[0..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        header[4..12].copy_from_slice(&checksum(payload).to_le_bytes());
        self.buf
    }
}

/// The payload length and checksum a frame header announces; a length above `payload_max` is
/// [`FrameError::TooLarge`]. Pure: the socket reader and [`decode_frame`] share it.
pub fn decode_frame_header(
    header: &[u8; FRAME_HEADER_SIZE],
    payload_max: usize,
) -> Result<(usize, u64), FrameError> {
    let mut len = [0u8; 4];
    len.copy_from_slice(&header[0..4]);
    let mut sum = [0u8; 8];
    sum.copy_from_slice(&header[4..12]);
    let len = u32::from_le_bytes(len) as usize;
    if len > payload_max {
        return Err(FrameError::TooLarge {
            len,
            max: payload_max,
        });
    }
    Ok((len, u64::from_le_bytes(sum)))
}

/// Check a received payload against the checksum its header announced.
pub fn verify_frame_payload(payload: &[u8], sum: u64) -> Result<(), FrameError> {
    if checksum(payload) != sum {
        return Err(FrameError::Checksum);
    }
    Ok(())
}

/// Decode the first frame at the front of `buf` (pure; what [`FrameReader::recv`] does over a
/// socket). `Ok(None)`: more bytes are needed; `Ok(Some((payload, used)))`: an intact frame of
/// `used` bytes. An error means the stream can no longer be trusted (drop the connection).
pub fn decode_frame(buf: &[u8], payload_max: usize) -> Result<Option<(&[u8], usize)>, FrameError> {
    let Some(header) = buf.first_chunk::<FRAME_HEADER_SIZE>() else {
        return Ok(None);
    };
    let (len, sum) = decode_frame_header(header, payload_max)?;
    let Some(payload) = buf.get(FRAME_HEADER_SIZE..FRAME_HEADER_SIZE + len) else {
        return Ok(None);
    };
    verify_frame_payload(payload, sum)?;
    Ok(Some((payload, FRAME_HEADER_SIZE + len)))
}

/// Split a connected stream into a frame writer (with its writer task) and a frame reader.
pub fn framed(stream: TcpStream) -> (FrameWriter, FrameReader) {
    framed_with_limit(stream, FRAME_PAYLOAD_MAX)
}

/// [`framed`] with an explicit payload size limit for received frames.
pub fn framed_with_limit(stream: TcpStream, payload_max: usize) -> (FrameWriter, FrameReader) {
    let _ = stream.set_nodelay(true);
    let local = stream.local_addr().ok();
    let peer = stream.peer_addr().ok();
    let (read, write) = tokio::io::split(stream);
    let (tx, rx) = mpsc::channel(FRAME_QUEUE_MAX);
    let link = match (local, peer) {
        (Some(l), Some(p)) => Some((l.ip(), p.ip())),
        _ => None,
    };
    crate::task::spawn(writer_task(write, rx, link));
    (
        FrameWriter { tx, peer },
        FrameReader {
            read,
            payload_max,
            poisoned: false,
            peer,
        },
    )
}

async fn write_frame(write: &mut WriteHalf<TcpStream>, frame: &[u8]) -> io::Result<()> {
    write.write_all(frame).await?;
    write.flush().await
}

/// Bytes of queued frames written at most in one write.
#[cfg(not(madsim))]
const COALESCE_MAX: usize = 256 * 1024;

#[cfg(not(madsim))]
async fn writer_task(
    mut write: WriteHalf<TcpStream>,
    mut rx: mpsc::Receiver<Frame>,
    _link: Option<(IpAddr, IpAddr)>,
) {
    while let Some(frame) = rx.recv().await {
        // The frames queued behind it go out in the same write (one system call, and with
        // no-delay one segment where they fit): a primary sends a prepare per op to each
        // backup, and under load they queue faster than one write each drains them.
        let mut bytes = frame.into_bytes();
        while bytes.len() < COALESCE_MAX {
            match rx.try_recv() {
                Ok(next) => bytes.extend_from_slice(&next.into_bytes()),
                Err(_) => break,
            }
        }
        if write_frame(&mut write, &bytes).await.is_err() {
            return;
        }
    }
    let _ = write.shutdown().await;
}

#[cfg(madsim)]
async fn writer_task(
    write: WriteHalf<TcpStream>,
    rx: mpsc::Receiver<Frame>,
    link: Option<(IpAddr, IpAddr)>,
) {
    faults::writer_task(write, rx, link).await
}

/// The sending half of a framed connection. Cloning shares the connection.
#[derive(Clone, Debug)]
pub struct FrameWriter {
    tx: mpsc::Sender<Frame>,
    peer: Option<SocketAddr>,
}

impl FrameWriter {
    /// Queue one frame of this payload; waits while the queue is full.
    pub async fn send(&self, payload: Vec<u8>) -> Result<(), FrameError> {
        self.send_frame(Frame::from_payload(&payload)).await
    }

    /// Queue one frame built in place; waits while the queue is full.
    pub async fn send_frame(&self, frame: Frame) -> Result<(), FrameError> {
        self.tx.send(frame).await.map_err(|_| FrameError::Closed)
    }

    /// Queue one frame of this payload without waiting; `Full` if the queue is full.
    pub fn try_send(&self, payload: Vec<u8>) -> Result<(), FrameError> {
        self.tx
            .try_send(Frame::from_payload(&payload))
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => FrameError::Full,
                mpsc::error::TrySendError::Closed(_) => FrameError::Closed,
            })
    }

    /// Whether the writer task has ended (the connection is gone).
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// The remote address, if known.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer
    }
}

/// The receiving half of a framed connection.
#[derive(Debug)]
pub struct FrameReader {
    read: ReadHalf<TcpStream>,
    payload_max: usize,
    poisoned: bool,
    peer: Option<SocketAddr>,
}

impl FrameReader {
    /// Receive the next intact frame's payload.
    pub async fn recv(&mut self) -> Result<Vec<u8>, FrameError> {
        if self.poisoned {
            return Err(FrameError::Closed);
        }
        let result = self.recv_inner().await;
        if result.is_err() {
            self.poisoned = true;
        }
        result
    }

    async fn recv_inner(&mut self) -> Result<Vec<u8>, FrameError> {
        let mut header = [0u8; FRAME_HEADER_SIZE];
        match self.read.read_exact(&mut header).await {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Err(FrameError::Closed),
            Err(e) => return Err(FrameError::Io(e)),
        }
        let (len, sum) = decode_frame_header(&header, self.payload_max)?;
        // The buffer grows as bytes arrive rather than being allocated at the announced length:
        // a header damaged in transit (caught only by the payload checksum, after the read)
        // must not cost the reader the full limit in memory up front.
        let payload = if len <= PAYLOAD_PREALLOCATE_MAX {
            // Read in place: `read_to_end` grows (and copies) a buffer of exactly `len` bytes
            // whenever fewer than 32 spare bytes remain before a read.
            let mut payload = vec![0u8; len];
            match self.read.read_exact(&mut payload).await {
                Ok(_) => payload,
                Err(e) => return Err(FrameError::Io(e)),
            }
        } else {
            let mut payload = Vec::with_capacity(PAYLOAD_PREALLOCATE_MAX);
            let read = (&mut self.read)
                .take(len as u64)
                .read_to_end(&mut payload)
                .await
                .map_err(FrameError::Io)?;
            if read < len {
                return Err(FrameError::Io(io::ErrorKind::UnexpectedEof.into()));
            }
            payload
        };
        verify_frame_payload(&payload, sum)?;
        Ok(payload)
    }

    /// Change the limit on received payloads — e.g. raise it once the peer has authenticated.
    pub fn set_payload_max(&mut self, payload_max: usize) {
        self.payload_max = payload_max;
    }

    /// The remote address, if known.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer
    }
}

/// Set `TCP_USER_TIMEOUT` on `stream`: once bytes written to it have gone unacknowledged for
/// `timeout` (a partition, a peer that stopped reading), the kernel gives up on the
/// connection and its next read or write fails, instead of retransmitting with exponential
/// backoff for up to ~15 minutes — after which a healed partition would deliver the held
/// bytes only at the next retransmission, seconds to minutes after the heal. Linux only
/// (elsewhere a no-op).
pub fn set_user_timeout(stream: &mut TcpStream, timeout: Duration) -> io::Result<()> {
    #[cfg(madsim)]
    {
        stream.set_user_timeout(timeout);
        Ok(())
    }
    #[cfg(all(not(madsim), any(target_os = "linux", target_os = "android")))]
    {
        socket2::SockRef::from(&*stream).set_tcp_user_timeout(Some(timeout))
    }
    #[cfg(all(not(madsim), not(any(target_os = "linux", target_os = "android"))))]
    {
        let _ = (stream, timeout);
        Ok(())
    }
}

/// How long one connection attempt of [`connect_with_backoff`] waits: a kernel retries an
/// unanswered SYN for ~127 s, and a connect into a partition would otherwise complete only at
/// the first retry after the heal (1, 3, 7, 15, 31, 63 s after it began).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Exponential backoff with jitter for reconnecting to a peer.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    pub min: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            min: Duration::from_millis(10),
            max: Duration::from_millis(500),
        }
    }
}

/// Connect to `addr`, retrying with backoff up to `attempts_max` times (`None`: forever).
pub async fn connect_with_backoff(
    addr: SocketAddr,
    backoff: Backoff,
    attempts_max: Option<u32>,
) -> io::Result<TcpStream> {
    use rand::Rng;
    let mut delay = backoff.min;
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let result = match crate::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(result) => result,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("connect {addr}: no answer within {CONNECT_TIMEOUT:?}"),
            )),
        };
        match result {
            Ok(stream) => return Ok(stream),
            Err(e) if attempts_max.is_some_and(|max| attempt >= max) => return Err(e),
            Err(_) => {}
        }
        let jitter = crate::rand::rng().gen_range(0..=delay.as_micros() as u64 / 2);
        crate::time::sleep(delay + Duration::from_micros(jitter)).await;
        delay = (delay * 2).min(backoff.max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: a frame built in place (payload appended in pieces, header filled in at the end)
    /// is byte for byte the frame `encode_frame` makes of the same payload.
    #[test]
    fn frame_built_in_place_is_encode_frame() {
        for payload in [&b""[..], b"x", b"hello, frame", &[7u8; 300][..]] {
            let (head, tail) = payload.split_at(payload.len() / 2);
            let mut frame = Frame::with_capacity(1);
            frame.append_with(|buf| buf.extend_from_slice(head));
            frame.extend_from_slice(tail);
            assert_eq!(frame.payload(), payload);
            assert_eq!(frame.into_bytes(), encode_frame(payload));
            assert_eq!(
                Frame::from_payload(payload).into_bytes(),
                encode_frame(payload)
            );
        }
    }

    /// Goal: the pure decoder reads back what `encode_frame` wrote, asks for more bytes on a
    /// partial frame, and refuses a corrupt or oversized one.
    #[test]
    fn decode_frame_round_trip_partial_and_errors() {
        let frame = encode_frame(b"hello");
        assert_eq!(
            decode_frame(&frame, 16).unwrap(),
            Some((&b"hello"[..], frame.len()))
        );
        for cut in 0..frame.len() {
            assert!(decode_frame(&frame[..cut], 16).unwrap().is_none(), "{cut}");
        }
        let mut corrupt = frame.clone();
        corrupt[FRAME_HEADER_SIZE] ^= 1;
        assert!(matches!(
            decode_frame(&corrupt, 16),
            Err(FrameError::Checksum)
        ));
        assert!(matches!(
            decode_frame(&frame, 4),
            Err(FrameError::TooLarge { len: 5, max: 4 })
        ));
    }
}
