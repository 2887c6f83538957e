//! Messages for the operator's terminal (stderr) from anywhere in the process. While the
//! console owns the screen they are held, since printing over its frames would garble both,
//! and printed once it has given the screen back.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

static HELD: AtomicBool = AtomicBool::new(false);
static MESSAGES: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn messages() -> std::sync::MutexGuard<'static, Vec<String>> {
    MESSAGES.lock().unwrap_or_else(|p| p.into_inner())
}

/// Prints `message` to stderr now, or once the console has left the screen.
pub fn say(message: impl Into<String>) {
    let message = message.into();
    tracing::warn!("{message}");
    if HELD.load(Ordering::SeqCst) {
        messages().push(message);
    } else {
        eprintln!("{message}");
    }
}

/// Whether messages are being held (the console owns the screen).
pub fn held() -> bool {
    HELD.load(Ordering::SeqCst)
}

/// Holds messages from now on (the console took the screen).
pub fn hold() {
    HELD.store(true, Ordering::SeqCst);
}

/// Prints what was held and stops holding (the console gave the screen back).
pub fn release() {
    HELD.store(false, Ordering::SeqCst);
    for message in std::mem::take(&mut *messages()) {
        eprintln!("{message}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_wait_while_held_and_none_is_lost() {
        hold();
        say("one");
        say("two");
        assert_eq!(*messages(), ["one", "two"]);
        release();
        assert!(messages().is_empty());
        assert!(!held());
    }
}
