use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A file on the real disk.
#[derive(Clone, Debug)]
pub struct File {
    inner: Arc<std::fs::File>,
    path: PathBuf,
}

impl File {
    /// Open `path` for reading and writing, creating it if missing (durably: the parent
    /// directory is synced after a create); never truncates.
    pub async fn open(path: impl AsRef<Path>) -> io::Result<File> {
        let path = path.as_ref().to_path_buf();
        let mut options = std::fs::OpenOptions::new();
        options.read(true).write(true);
        let file = match options.clone().create_new(true).open(&path) {
            Ok(file) => {
                sync_parent(&path)?;
                file
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => options.open(&path)?,
            Err(e) => return Err(e),
        };
        Ok(File {
            inner: Arc::new(file),
            path,
        })
    }

    /// The path this file was opened at.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Read exactly `buf.len()` bytes at `offset`, on a blocking thread (inline on a
    /// dedicated one).
    pub async fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        if inline() {
            return self.inner.read_exact_at(buf, offset);
        }
        let file = Arc::clone(&self.inner);
        let len = buf.len();
        let data = blocking(move || {
            let mut data = vec![0u8; len];
            file.read_exact_at(&mut data, offset).map(|()| data)
        })
        .await?;
        buf.copy_from_slice(&data);
        Ok(())
    }

    /// Write all of `data` at `offset` (not durable until [`File::sync`]), on a blocking
    /// thread (inline on a dedicated one).
    pub async fn write_at(&self, data: &[u8], offset: u64) -> io::Result<()> {
        if inline() {
            return self.inner.write_all_at(data, offset);
        }
        let file = Arc::clone(&self.inner);
        let data = data.to_vec();
        blocking(move || file.write_all_at(&data, offset)).await
    }

    /// Make every write completed before this call durable (`fdatasync`), on a blocking
    /// thread (inline, before this returns, on a dedicated one). The `fdatasync` starts when
    /// `sync` is called (not when the future is first polled), so the writes it covers are those
    /// completed before the call; writes issued while it runs may or may not be covered, and the
    /// caller must not count on them.
    pub fn sync(&self) -> impl std::future::Future<Output = io::Result<()>> + Send + use<> {
        let file = Arc::clone(&self.inner);
        // On a dedicated thread the fsync runs inline too: writes that arrive meanwhile wait
        // for it, but no fsync could cover them before it returns anyway.
        let handle = if inline() {
            Err(file.sync_data())
        } else {
            Ok(tokio::task::spawn_blocking(move || file.sync_data()))
        };
        async move {
            match handle {
                Ok(handle) => handle.await.map_err(io::Error::other)?,
                Err(result) => result,
            }
        }
    }

    /// The file's length in bytes.
    pub async fn len(&self) -> io::Result<u64> {
        Ok(self.inner.metadata()?.len())
    }

    /// Whether the file is empty.
    pub async fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len().await? == 0)
    }

    /// Take an advisory exclusive lock on the file (`flock`), held until the last clone of
    /// this `File` is dropped (or the process dies). Fails at once with
    /// [`io::ErrorKind::WouldBlock`] if another open file holds it, in this process or another.
    pub fn try_lock(&self) -> io::Result<()> {
        self.inner.try_lock().map_err(|e| match e {
            std::fs::TryLockError::WouldBlock => io::Error::new(
                io::ErrorKind::WouldBlock,
                "locked by another open file (is another process using it?)",
            ),
            std::fs::TryLockError::Error(e) => e,
        })
    }

    /// Truncate or extend (with zeros) to `len` bytes (not durable until [`File::sync`]), on a
    /// blocking thread (inline on a dedicated one).
    pub async fn set_len(&self, len: u64) -> io::Result<()> {
        let file = Arc::clone(&self.inner);
        blocking(move || file.set_len(len)).await
    }
}

thread_local! {
    /// Whether this thread's file I/O runs inline (a [`crate::task::spawn_dedicated`] thread).
    static INLINE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Make this thread's reads, writes and resizes run inline (called by
/// [`crate::task::spawn_dedicated`] on the thread it starts, which nothing else runs on).
pub(crate) fn inline_on_this_thread() {
    INLINE.with(|inline| inline.set(true));
}

fn inline() -> bool {
    INLINE.with(|inline| inline.get())
}

/// Run file I/O on tokio's blocking threads, so a slow disk never holds a runtime worker —
/// or inline on a dedicated thread, which a slow disk may hold: nothing else runs there.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    if inline() {
        return f();
    }
    tokio::task::spawn_blocking(f)
        .await
        .map_err(io::Error::other)?
}

fn sync_parent(path: &Path) -> io::Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::File::open(parent)?.sync_all()
}

/// Remove a file (durably).
pub async fn remove(path: impl AsRef<Path>) -> io::Result<()> {
    std::fs::remove_file(path.as_ref())?;
    sync_parent(path.as_ref())
}

/// Rename a file, replacing any file at `to` (durably).
pub async fn rename(from: impl AsRef<Path>, to: impl AsRef<Path>) -> io::Result<()> {
    std::fs::rename(from.as_ref(), to.as_ref())?;
    sync_parent(to.as_ref())?;
    let (from_dir, to_dir) = (from.as_ref().parent(), to.as_ref().parent());
    if from_dir != to_dir {
        sync_parent(from.as_ref())?;
    }
    Ok(())
}

/// Create a directory and its parents (durably).
pub async fn create_dir_all(path: impl AsRef<Path>) -> io::Result<()> {
    std::fs::create_dir_all(path.as_ref())?;
    sync_parent(path.as_ref())
}

/// Whether a file or directory exists at `path`.
pub async fn exists(path: impl AsRef<Path>) -> io::Result<bool> {
    path.as_ref().try_exists()
}

/// The names of the files in directory `dir`, sorted.
pub async fn list(dir: impl AsRef<Path>) -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir.as_ref())? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    names.sort();
    Ok(names)
}
