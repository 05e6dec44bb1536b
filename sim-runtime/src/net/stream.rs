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
//!
//! madsim delivers each flushed write whole and never fails a read on its own; this wrapper is
//! where the kernel's less polite behaviours come from. In production
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
        Ok(TcpListener {
            inner: madsim::net::TcpListener::bind(addr).await?,
        })
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
    /// The link's reset epoch when this connection opened: a later reset breaks it.
    epoch: u64,
    broken: bool,
    stall: Option<Pin<Box<madsim::time::Sleep>>>,
}

impl TcpStream {
    pub async fn connect<A: madsim::net::ToSocketAddrs>(addr: A) -> io::Result<TcpStream> {
        Ok(TcpStream::wrap(
            madsim::net::TcpStream::connect(addr).await?,
        ))
    }

    fn wrap(inner: madsim::net::TcpStream) -> TcpStream {
        let local = inner
            .local_addr()
            .map_or(IpAddr::from([0, 0, 0, 0]), |a| a.ip());
        let peer = inner
            .peer_addr()
            .map_or(IpAddr::from([0, 0, 0, 0]), |a| a.ip());
        TcpStream {
            epoch: fault::link_epoch(local, peer),
            inner,
            local,
            peer,
            broken: false,
            stall: None,
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
        let (epoch, stalled_until, fragment) = fault::read_faults(this.peer, this.local);
        this.check_epoch(epoch)?;
        // Bytes from the peer are held while the link is stalled in that direction.
        if let Some(until) = stalled_until {
            let sleep = this
                .stall
                .get_or_insert_with(|| Box::pin(madsim::time::sleep_until(until)));
            if sleep.deadline() != until {
                sleep.as_mut().reset(until);
            }
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            this.stall = None;
            // The stall may have ended because the link was reset meanwhile.
            this.check_reset()?;
        }
        match fragment {
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
        }
    }
}

impl AsyncWrite for TcpStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.check_reset()?;
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.check_reset()?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
