//! Where the engine's events go: straight to a channel (tests, in-memory runs) or through the
//! journal, which makes them durable before anyone sees them.

use std::future::Future;
use std::pin::Pin;

use tokio::sync::mpsc;

use super::events::Event;

/// Resolves to true once the event is durable (false: it could not be recorded).
pub type SinkFuture<'a> = Pin<Box<dyn Future<Output = bool> + Send + 'a>>;

/// Receives every event the engine emits.
pub trait EventSink: Send + Sync {
    /// Records an event; nothing waits for it.
    fn emit(&self, event: Event);
    /// Records an event and resolves once it is durable. The engine waits for this before
    /// acting on what the event announces (an apply), so a crash never loses the intent.
    fn emit_durable(&self, event: Event) -> SinkFuture<'_>;
}

impl EventSink for mpsc::UnboundedSender<Event> {
    fn emit(&self, event: Event) {
        // A closed receiver means nobody is watching any more; the rollout goes on regardless.
        let _ = self.send(event);
    }

    fn emit_durable(&self, event: Event) -> SinkFuture<'_> {
        let _ = self.send(event);
        Box::pin(std::future::ready(true))
    }
}
