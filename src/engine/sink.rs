//! Where the engine's events go: straight to a channel (tests, in-memory runs) or through the
//! journal, which makes them durable before anyone sees them.

use std::future::Future;
use std::pin::Pin;

use tokio::sync::mpsc;

use super::events::Event;

/// Resolves to true once the event is durable (false: it could not be recorded). It owns
/// what it waits on, so the engine can keep it and go on working while the event commits.
pub type SinkFuture = Pin<Box<dyn Future<Output = bool> + Send + 'static>>;

/// Receives every event the engine emits.
pub trait EventSink: Send + Sync {
    /// Records an event; nothing waits for it.
    fn emit(&self, event: Event);
    /// Records an event (in order with the ones emitted before it, at the time of the call)
    /// and resolves once it is durable. The engine waits for this before acting on what the
    /// event announces (an apply), so a crash never loses the intent.
    fn emit_durable(&self, event: Event) -> SinkFuture;
    /// The events emitted from here to [`EventSink::end_group`] become durable together or
    /// not at all: a command and what it did are never split by a crash. Groups must not
    /// span an await.
    fn begin_group(&self) {}
    /// Ends the group [`EventSink::begin_group`] began.
    fn end_group(&self) {}
}

impl<S: EventSink + ?Sized> EventSink for std::sync::Arc<S> {
    fn emit(&self, event: Event) {
        (**self).emit(event)
    }

    fn emit_durable(&self, event: Event) -> SinkFuture {
        (**self).emit_durable(event)
    }

    fn begin_group(&self) {
        (**self).begin_group()
    }

    fn end_group(&self) {
        (**self).end_group()
    }
}

impl EventSink for mpsc::UnboundedSender<Event> {
    fn emit(&self, event: Event) {
        // A closed receiver means nobody is watching any more; the rollout goes on regardless.
        let _ = self.send(event);
    }

    fn emit_durable(&self, event: Event) -> SinkFuture {
        let _ = self.send(event);
        Box::pin(std::future::ready(true))
    }
}
