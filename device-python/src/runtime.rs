//! The Tokio runtime a device owns, shared (`Arc`) by whoever is waiting on
//! it, so that it is never shut down under a caller.

use std::future::Future;

use tokio::runtime::{Builder, Handle, Runtime};

/// A small multi-thread runtime whose drop never waits: the last owner may
/// hold the GIL that a Python callback on one of its threads needs, or be
/// one of its threads.
pub(crate) struct DeviceRuntime(Option<Runtime>);

impl DeviceRuntime {
    /// Two workers: the device's event loop and its stream need little;
    /// Python callbacks run on the blocking threads.
    pub(crate) fn new() -> std::io::Result<Self> {
        Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("assent-device")
            .enable_all()
            .build()
            .map(|runtime| Self(Some(runtime)))
    }

    /// Runs `future` to completion on the calling thread (which must not be
    /// one of the runtime's workers; Python threads and the blocking threads
    /// are fine). `None` only while the runtime is being dropped.
    pub(crate) fn block_on<F: Future>(&self, future: F) -> Option<F::Output> {
        self.0.as_ref().map(|runtime| runtime.block_on(future))
    }

    /// A handle for spawning onto the runtime.
    pub(crate) fn handle(&self) -> Option<&Handle> {
        self.0.as_ref().map(Runtime::handle)
    }
}

impl Drop for DeviceRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            // Never blocks, from any thread; blocking tasks still running a
            // Python callback finish on their own.
            runtime.shutdown_background();
        }
    }
}
