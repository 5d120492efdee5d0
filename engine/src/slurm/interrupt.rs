//! Ctrl-C (and SIGTERM) while a run follows its jobs: noted, so the run cancels what it submitted
//! before it exits, instead of dying and leaving the jobs queued.

use std::sync::atomic::{AtomicBool, Ordering};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// While alive, SIGINT and SIGTERM set the flag [`interrupted`] reads; the previous handlers
/// come back on drop.
pub(crate) struct Catch {
    previous: [(libc::c_int, libc::sighandler_t); 2],
}

impl Catch {
    /// Starts catching.
    pub(crate) fn install() -> Catch {
        INTERRUPTED.store(false, Ordering::SeqCst);
        let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        let previous =
            [libc::SIGINT, libc::SIGTERM].map(|sig| (sig, unsafe { libc::signal(sig, handler) }));
        Catch { previous }
    }
}

impl Drop for Catch {
    fn drop(&mut self) {
        for (sig, handler) in self.previous {
            // SAFETY: puts back the handler `signal` returned for this signal.
            unsafe { libc::signal(sig, handler) };
        }
    }
}

/// Whether Ctrl-C (or SIGTERM) came since [`Catch::install`].
pub(crate) fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}
