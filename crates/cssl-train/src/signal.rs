//! Clean stops: SIGINT (Ctrl-C) and SIGTERM ask training to stop after the
//! step in flight; [`pretrain`](crate::pretrain) then writes a checkpoint and
//! returns [`CsslError::Interrupted`](cssl_core::CsslError). A second signal
//! before that ends the process at once (exit code 128 + signal).

use std::sync::atomic::{AtomicI32, Ordering};

static STOP: AtomicI32 = AtomicI32::new(0);

#[cfg(unix)]
extern "C" fn on_signal(signal: libc::c_int) {
    // Only async-signal-safe calls here: an atomic swap and `_exit`.
    if STOP.swap(signal, Ordering::SeqCst) != 0 {
        unsafe { libc::_exit(128 + signal) };
    }
}

/// Routes SIGINT and SIGTERM to the stop flag (idempotent).
pub fn install_stop_handler() {
    #[cfg(unix)]
    unsafe {
        let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
}

/// Gives SIGINT and SIGTERM back their default action (end the process):
/// after training, nothing is left that a clean stop would save.
pub fn restore_default_signals() {
    #[cfg(unix)]
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_DFL);
        libc::signal(libc::SIGTERM, libc::SIG_DFL);
    }
}

/// Clears a stop request (before a new run in the same process).
pub fn clear_stop() {
    STOP.store(0, Ordering::SeqCst);
}

/// The name of the signal that asked to stop, if one did.
pub fn stop_requested() -> Option<&'static str> {
    match STOP.load(Ordering::SeqCst) {
        0 => None,
        15 => Some("SIGTERM"),
        _ => Some("SIGINT"),
    }
}
