//! Simulation only: TCP streams whose links the fault plugin can break at the byte-stream
//! level, under every connection the node and the client library open — RESP client links as
//! well as the framed peer links (whose frames also meet the writer task's faults).
//!
//! The faults (set through [`crate::fault`]) act on the link between two IP addresses:
//! * **reset** ([`crate::fault::reset_links`]): every connection open on the link fails its
//!   next read, write or flush with `ConnectionReset` (both ends), as after a RST; new
//!   connections work.
//! * **stall** ([`crate::fault::stall_link`]): bytes from `src` to `dst` are held until a
//!   deadline — a link that goes silent while both ends think it open (half-open when one
//!   direction only); the reader sees them late, in order.
//! * **fragment** ([`crate::fault::fragment_link`]): reads on `dst` from `src` return at most a
//!   few bytes at a time, so every reader meets commands and frames split at any byte.
//! * **slow reader** ([`crate::fault::slow_reader`]): the reader on `dst` of bytes from `src`
//!   takes at most a set number of bytes per millisecond.
//!
//! And always, as a kernel does: **flow control**. Each direction of a connection holds at
//! most [`crate::fault::STREAM_WINDOW`] bytes written and not yet read; a writer beyond it
//! waits (partial writes included) until the reader takes some. So a reader that is slow, or
//! stops reading, pushes back on its writer — a node writing replies to a client that does not
//! read them, or frames to a stalled peer, meets a write that does not complete.
//!
//! madsim delivers each flushed write whole, never blocks a writer and never fails a read on
//! its own; this wrapper is where the kernel's less polite behaviours come from. In production
//! `sim_runtime::net::{TcpStream, TcpListener}` are tokio's own.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::fault;

/// A TCP listener whose accepted streams are [`TcpStream`]s.
#[derive(Debug)]
pub struct TcpListener {
    inner: madsim::net::TcpListener,
}

impl TcpListener {
    pub async fn bind<A: madsim::net::ToSocketAddrs>(addr: A) -> io::Result<TcpListener> {
        let inner = madsim::net::TcpListener::bind(addr).await?;
        if let Ok(local) = inner.local_addr() {
            fault::note_node_ip(local.ip());
        }
        Ok(TcpListener { inner })
    }

    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let (stream, addr) = self.inner.accept().await?;
        Ok((TcpStream::wrap(stream), addr))
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// A simulated TCP stream under the link faults of [`crate::fault`].
#[derive(Debug)]
pub struct TcpStream {
    inner: madsim::net::TcpStream,
    local: IpAddr,
    peer: IpAddr,
    /// This connection's two sockets (the receive windows are keyed by them).
    local_socket: SocketAddr,
    peer_socket: SocketAddr,
    /// The link's reset epoch when this connection opened: a later reset breaks it.
    epoch: u64,
    broken: bool,
    stall: Option<Pin<Box<madsim::time::Sleep>>>,
    /// A slow reader's wait before its next read.
    pace: Option<Pin<Box<madsim::time::Sleep>>>,
    /// A writer's wait for room in the receive window.
    window_wait: Option<Pin<Box<madsim::time::Sleep>>>,
    /// Bytes written into madsim's buffer and not flushed yet.
    unflushed: bool,
    /// `TCP_USER_TIMEOUT`: give up once written bytes were held this long.
    user_timeout: Option<std::time::Duration>,
    /// Since when bytes this end wrote have been held (unacknowledged).
    unacked_since: Option<madsim::time::Instant>,
    /// The user timeout fired: every operation fails with `TimedOut`.
    timed_out: bool,
}

impl Drop for TcpStream {
    fn drop(&mut self) {
        fault::forget_connection(self.local_socket, self.peer_socket);
    }
}

/// A millisecond: a slow reader's pace, and how often a waiting writer looks again.
const TICK: std::time::Duration = std::time::Duration::from_millis(1);

impl TcpStream {
    /// Connect to `addr`. Into a TCP partition ([`fault::set_tcp_partitions`]) the handshake
    /// completes only at the SYN's first retransmission after the heal, or fails after the
    /// kernel's ~127 s of retries; the acceptor sees nothing before.
    pub async fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
        let since = madsim::time::Instant::now();
        let mut counted = false;
        while let Some(at) = fault::connect_hold(addr.ip(), since) {
            if !counted {
                counted = true;
                fault::count_connect_held(addr.ip());
            }
            if at - since > SYN_RETRIES_TIME {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "connection timed out (simulated partition)",
                ));
            }
            madsim::time::sleep_until(at).await;
        }
        let stream = TcpStream::wrap(madsim::net::TcpStream::connect(addr).await?);
        fault::connection_opened(stream.local_socket, stream.peer_socket);
        Ok(stream)
    }

    /// Set `TCP_USER_TIMEOUT`: once bytes this end wrote have been held (unacknowledged) for
    /// `timeout`, the connection fails with `TimedOut` and they are never delivered.
    pub fn set_user_timeout(&mut self, timeout: std::time::Duration) {
        self.user_timeout = Some(timeout);
    }

    /// Give up on the connection if written bytes were held longer than the user timeout; note
    /// when they were delivered.
    fn check_user_timeout(&mut self) -> io::Result<()> {
        if self.timed_out {
            return Err(timed_out());
        }
        let (Some(limit), Some(since)) = (self.user_timeout, self.unacked_since) else {
            return Ok(());
        };
        if fault::held_until(self.local_socket, self.peer_socket).is_none() {
            self.unacked_since = None;
        } else if since.elapsed() >= limit {
            self.timed_out = true;
            fault::abandon(self.local_socket, self.peer_socket);
            return Err(timed_out());
        }
        Ok(())
    }

    fn wrap(inner: madsim::net::TcpStream) -> TcpStream {
        let unspecified = SocketAddr::from(([0, 0, 0, 0], 0));
        let local_socket = inner.local_addr().unwrap_or(unspecified);
        let peer_socket = inner.peer_addr().unwrap_or(unspecified);
        let (local, peer) = (local_socket.ip(), peer_socket.ip());
        fault::note_node_ip(local);
        TcpStream {
            epoch: fault::link_epoch(local, peer),
            inner,
            local,
            peer,
            local_socket,
            peer_socket,
            broken: false,
            stall: None,
            pace: None,
            window_wait: None,
            unflushed: false,
            user_timeout: None,
            unacked_since: None,
            timed_out: false,
        }
    }

    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.inner.set_nodelay(nodelay)
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.peer_addr()
    }

    /// `ConnectionReset` once the link was reset after this connection opened.
    fn check_reset(&mut self) -> io::Result<()> {
        if self.broken {
            return Err(reset());
        }
        let epoch = fault::link_epoch(self.local, self.peer);
        self.check_epoch(epoch)
    }

    /// [`TcpStream::check_reset`] with the link's current reset epoch already read.
    fn check_epoch(&mut self, epoch: u64) -> io::Result<()> {
        if !self.broken && epoch != self.epoch {
            self.broken = true;
            fault::with(|s| s.counters.stream_resets_seen += 1);
        }
        if self.broken {
            return Err(reset());
        }
        Ok(())
    }
}

/// How long a kernel retries a SYN before `connect` fails (Linux, `tcp_syn_retries` = 6).
const SYN_RETRIES_TIME: std::time::Duration = std::time::Duration::from_secs(127);

fn timed_out() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "connection timed out: bytes unacknowledged past the user timeout (simulated)",
    )
}

fn reset() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionReset,
        "connection reset (simulated)",
    )
}

impl AsyncRead for TcpStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let faults = fault::read_faults(this.peer_socket, this.local_socket);
        this.check_epoch(faults.epoch)?;
        this.check_user_timeout()?;
        // The peer gave up on what it sent (its user timeout): those bytes never arrive, and
        // nothing tells this end (a half-open connection). (Read with the other faults: the
        // user timeout above abandons only this end's own direction.)
        if faults.abandoned {
            return Poll::Pending;
        }
        // Bytes from the peer are held while the link is stalled in that direction.
        if let Some(until) = faults.stalled_until {
            // A fresh timer for a new deadline: madsim's `Sleep::reset` does not re-arm one
            // that has fired (a partition's hold moves from one retransmission to the next).
            if this.stall.as_ref().is_none_or(|s| s.deadline() != until) {
                this.stall = Some(Box::pin(madsim::time::sleep_until(until)));
            }
            let sleep = this.stall.as_mut().expect("set above");
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            this.stall = None;
            // The stall may have ended because the link was reset meanwhile.
            this.check_reset()?;
        }
        // A slow reader reads at most its pace's worth, once a millisecond.
        if faults.slow.is_some() {
            if let Some(pace) = this.pace.as_mut() {
                if pace.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                this.pace = None;
            }
        }
        let max = match (faults.fragment, faults.slow) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let before = buf.filled().len();
        let result = match max {
            Some(max) if buf.remaining() > max => {
                let mut small = vec![0u8; max];
                let mut part = ReadBuf::new(&mut small);
                match Pin::new(&mut this.inner).poll_read(cx, &mut part) {
                    Poll::Ready(Ok(())) => {
                        buf.put_slice(part.filled());
                        Poll::Ready(Ok(()))
                    }
                    other => other,
                }
            }
            _ => Pin::new(&mut this.inner).poll_read(cx, buf),
        };
        let read = buf.filled().len() - before;
        if read > 0 {
            fault::add_unread(this.peer_socket, this.local_socket, -(read as i64));
            if faults.slow.is_some() {
                this.pace = Some(Box::pin(madsim::time::sleep(TICK)));
            }
        }
        result
    }
}

impl AsyncWrite for TcpStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let (epoch, mut used) = fault::write_state(this.local_socket, this.peer_socket);
        this.check_epoch(epoch)?;
        this.check_user_timeout()?;
        // Flow control: wait while the reader has not taken a window's worth already sent.
        let mut first = true;
        let used = loop {
            if !std::mem::take(&mut first) {
                used = fault::unread(this.local_socket, this.peer_socket);
            }
            if used < fault::STREAM_WINDOW {
                this.window_wait = None;
                break used;
            }
            // madsim sends only on flush, a kernel at once: push out what this writer holds,
            // or a reader waiting for it would never make room. Only then: madsim sends even an
            // empty buffer as one more payload, and its receiver spends a timer tick on each —
            // flushing every tick of a long wait queued so many that delivery slowed
            // exponentially (VOPR seeds 817607132977 and others: a replica starved of every
            // message after the heal).
            if this.unflushed {
                this.unflushed = false;
                if let Poll::Ready(Err(e)) = Pin::new(&mut this.inner).poll_flush(cx) {
                    return Poll::Ready(Err(e));
                }
            }
            let wait = this.window_wait.get_or_insert_with(|| {
                fault::count_window_wait();
                Box::pin(madsim::time::sleep(TICK))
            });
            if wait.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            // Look again in a millisecond (the same wait: counted once). A fresh timer:
            // madsim's `Sleep::reset` does not re-arm one that has fired.
            *wait = Box::pin(madsim::time::sleep(TICK));
            this.check_reset()?;
        };
        let room = (fault::STREAM_WINDOW - used) as usize;
        let part = &buf[..buf.len().min(room)];
        match Pin::new(&mut this.inner).poll_write(cx, part) {
            Poll::Ready(Ok(n)) => {
                this.unflushed |= n > 0;
                if n > 0 {
                    fault::wrote(this.local_socket, this.peer_socket, n);
                    if this.user_timeout.is_some()
                        && this.unacked_since.is_none()
                        && fault::held_until(this.local_socket, this.peer_socket).is_some()
                    {
                        this.unacked_since = Some(madsim::time::Instant::now());
                    }
                }
                Poll::Ready(Ok(n))
            }
            other => other,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.check_reset()?;
        self.check_user_timeout()?;
        self.unflushed = false;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
