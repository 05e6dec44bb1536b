//! Production-mode tests: the facade against real files and loopback sockets.
#![cfg(not(madsim))]

use std::io::Write as _;
use std::net::SocketAddr;

use sim_runtime::disk::{self, File};
use sim_runtime::net::{self, FrameError, TcpListener, TcpStream};
use sim_runtime::time::{self, Duration};

/// Goal: open never truncates; writes, reads, sync, len, set_len round-trip on a real file.
#[tokio::test]
async fn disk_real_file_roundtrip_and_no_truncate_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data");
    let f = File::open(&path).await.unwrap();
    assert!(f.is_empty().await.unwrap());
    f.write_at(b"hello world", 4096).await.unwrap();
    f.sync().await.unwrap();
    assert_eq!(f.len().await.unwrap(), 4096 + 11);
    drop(f);
    let f = File::open(&path).await.unwrap();
    let mut buf = [0u8; 11];
    f.read_at(&mut buf, 4096).await.unwrap();
    assert_eq!(&buf, b"hello world");
    let err = f.read_at(&mut buf, 5000).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
    f.set_len(10).await.unwrap();
    assert_eq!(f.len().await.unwrap(), 10);
}

/// Goal: the advisory lock excludes a second open file (even in the same process) until the
/// first `File` and all its clones are dropped.
#[tokio::test]
async fn disk_real_lock_is_exclusive_until_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data");
    let a = File::open(&path).await.unwrap();
    a.try_lock().unwrap();
    let clone = a.clone();
    let b = File::open(&path).await.unwrap();
    let err = b.try_lock().unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::WouldBlock);
    drop(a);
    assert_eq!(
        b.try_lock().unwrap_err().kind(),
        std::io::ErrorKind::WouldBlock
    );
    drop(clone);
    b.try_lock().unwrap();
}

/// Goal: directory operations work on real directories.
#[tokio::test]
async fn disk_real_directory_operations() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("a/b");
    disk::create_dir_all(&sub).await.unwrap();
    File::open(sub.join("x")).await.unwrap();
    File::open(sub.join("y")).await.unwrap();
    assert_eq!(disk::list(&sub).await.unwrap(), vec!["x", "y"]);
    disk::rename(sub.join("x"), sub.join("z")).await.unwrap();
    disk::remove(sub.join("y")).await.unwrap();
    assert_eq!(disk::list(&sub).await.unwrap(), vec!["z"]);
    assert!(disk::exists(sub.join("z")).await.unwrap());
    assert!(!disk::exists(sub.join("x")).await.unwrap());
}

async fn pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connect = tokio::spawn(async move { TcpStream::connect(addr).await.unwrap() });
    let (server, _) = listener.accept().await.unwrap();
    (connect.await.unwrap(), server)
}

/// Goal: frames cross a loopback connection intact and in order.
#[tokio::test]
async fn net_framed_loopback_roundtrip() {
    let (a, b) = pair().await;
    let (w, _r) = net::framed(a);
    let (_w2, mut r) = net::framed(b);
    for i in 0..1000u32 {
        w.send(i.to_le_bytes().repeat((i % 50) as usize + 1))
            .await
            .unwrap();
    }
    for i in 0..1000u32 {
        let p = r.recv().await.unwrap();
        assert_eq!(p, i.to_le_bytes().repeat((i % 50) as usize + 1));
    }
}

/// Goal: frames queued faster than the writer drains them go out coalesced (one write for
/// many) and still arrive whole and in order, a frame larger than one coalesced write
/// included.
#[tokio::test]
async fn net_queued_frames_coalesce_and_stay_whole() {
    let (a, b) = pair().await;
    let (w, _r) = net::framed(a);
    let (_w2, mut r) = net::framed_with_limit(b, 1 << 20);
    let sizes: Vec<usize> = (0..40)
        .map(|i| match i % 4 {
            0 => 300 * 1024,
            1 => 1,
            2 => 100 * 1024,
            _ => 7,
        })
        .collect();
    for (i, &size) in sizes.iter().enumerate() {
        w.try_send(vec![i as u8; size]).unwrap();
    }
    for (i, &size) in sizes.iter().enumerate() {
        assert_eq!(r.recv().await.unwrap(), vec![i as u8; size], "frame {i}");
    }
}

/// Goal: a future started by `task::spawn_dedicated` runs on its own named thread, where a
/// file's writes, reads and syncs complete inline (ready at the first poll: no hand-off to a
/// blocking thread), and the handle completes when it has.
#[tokio::test]
async fn dedicated_thread_runs_file_io_inline() {
    use std::future::Future;
    use std::task::{Context, Poll, Waker};
    fn ready_at_first_poll<T>(future: impl Future<Output = T>) -> Option<T> {
        let mut future = std::pin::pin!(future);
        match future
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
        {
            Poll::Ready(value) => Some(value),
            Poll::Pending => None,
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data");
    let f = File::open(&path).await.unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let g = f.clone();
    sim_runtime::task::spawn_dedicated("kmb-test-io", async move {
        let name = std::thread::current().name().map(str::to_string);
        let wrote = ready_at_first_poll(g.write_at(b"inline", 512)).map(|r| r.is_ok());
        let synced = ready_at_first_poll(g.sync()).map(|r| r.is_ok());
        let mut buf = [0u8; 6];
        let read = ready_at_first_poll(g.read_at(&mut buf, 512)).map(|r| r.is_ok());
        tx.send((name, wrote, synced, read, buf)).unwrap();
    })
    .await;
    let (name, wrote, synced, read, buf) = rx.recv().unwrap();
    assert_eq!(name.as_deref(), Some("kmb-test-io"));
    assert_eq!((wrote, synced, read), (Some(true), Some(true), Some(true)));
    assert_eq!(&buf, b"inline");
    // On this (ordinary) runtime the same file's I/O goes through a blocking thread.
    let mut buf = [0u8; 6];
    f.read_at(&mut buf, 512).await.unwrap();
    assert_eq!(&buf, b"inline");
}

/// Goal: a frame with a bad checksum is an error, never delivered, and poisons the reader.
#[tokio::test]
async fn net_corrupt_frame_is_checksum_error() {
    let (a, b) = pair().await;
    let mut raw = a.into_std().unwrap();
    raw.set_nonblocking(false).unwrap();
    let good = net::encode_frame(b"good");
    let mut bad = net::encode_frame(b"evil");
    bad[14] ^= 0x01;
    raw.write_all(&good).unwrap();
    raw.write_all(&bad).unwrap();
    raw.write_all(&good).unwrap();
    let (_w, mut r) = net::framed(b);
    assert_eq!(r.recv().await.unwrap(), b"good");
    assert!(matches!(r.recv().await, Err(FrameError::Checksum)));
    assert!(matches!(r.recv().await, Err(FrameError::Closed)));
}

/// Goal: a frame over the size limit is an error before its payload is read.
#[tokio::test]
async fn net_oversize_frame_is_rejected() {
    let (a, b) = pair().await;
    let (w, _r) = net::framed(a);
    let (_w2, mut r) = net::framed_with_limit(b, 100);
    w.send(vec![0; 101]).await.unwrap();
    assert!(matches!(
        r.recv().await,
        Err(FrameError::TooLarge { len: 101, max: 100 })
    ));
}

/// Goal: connect_with_backoff keeps trying until the peer starts listening.
#[tokio::test]
async fn net_reconnect_waits_for_listener() {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr: SocketAddr = probe.local_addr().unwrap();
    drop(probe);
    let connect = tokio::spawn(net::connect_with_backoff(addr, Default::default(), None));
    time::sleep(Duration::from_millis(100)).await;
    let listener = TcpListener::bind(addr).await.unwrap();
    let (_s, _) = listener.accept().await.unwrap();
    connect.await.unwrap().unwrap();
    let err =
        net::connect_with_backoff("127.0.0.1:1".parse().unwrap(), Default::default(), Some(2))
            .await;
    assert!(err.is_err(), "bounded attempts give up");
}
