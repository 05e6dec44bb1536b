//! Tasks: tokio's in production, madsim's (deterministic, killed with their node) in simulation.

pub use tokio::task::{spawn, yield_now, JoinHandle};

use std::future::Future;

/// Run `future` apart from the caller's runtime and return a future that completes when it has.
///
/// In production it runs on an OS thread of its own (named `name`) with a single-threaded
/// runtime, and the real-disk calls it makes ([`crate::disk::File`]'s reads, writes, resizes and
/// syncs) run inline on that thread instead of being handed to a blocking thread each: a node's
/// I/O task writes its log this way, so a slow disk holds that thread and never a runtime worker,
/// and a buffered write costs one system call instead of two thread hand-offs (requests that
/// arrive during an `fdatasync` wait for it; none of them could have been covered by it). In
/// simulation it is an ordinary task of the current node, scheduled deterministically and killed
/// with it.
///
/// If `future` panics (or the thread cannot be started), the returned future completes all the
/// same; what `future` owned (its channels) is dropped, which its peers see.
pub fn spawn_dedicated<F>(name: &str, future: F) -> impl Future<Output = ()> + Send + 'static
where
    F: Future<Output = ()> + Send + 'static,
{
    #[cfg(madsim)]
    {
        let _ = name;
        let handle = spawn(future);
        async move {
            let _ = handle.await;
        }
    }
    #[cfg(not(madsim))]
    {
        let (done, finished) = tokio::sync::oneshot::channel::<()>();
        let started = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        tracing::error!("cannot start the runtime of a dedicated thread: {e}");
                        return;
                    }
                };
                crate::disk::inline_on_this_thread();
                runtime.block_on(future);
                let _ = done.send(());
            });
        if let Err(e) = started {
            tracing::error!("cannot start a dedicated thread: {e}");
        }
        async move {
            let _ = finished.await;
        }
    }
}
