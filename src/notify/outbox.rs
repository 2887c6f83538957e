//! The notifications waiting to be sent, in the state database: queued with their event's
//! journal row (one transaction), marked sent or given up by the sender.

use rusqlite::{params, Connection, OptionalExtension, Transaction};

use super::Routes;
use crate::engine::Event;
use crate::store::StoreError;

/// Queues the notifications of `events`, journaled as row `seq` of `rollout`, in `tx`.
pub fn enqueue(
    tx: &Transaction,
    routes: &Routes,
    rollout: Option<i64>,
    seq: i64,
    events: &[Event],
    now_ms: i64,
) -> Result<(), StoreError> {
    let rollout_id = rollout.unwrap_or(0);
    for (idx, event) in events.iter().enumerate() {
        if super::about_notifications(&event.kind) {
            continue;
        }
        for target in routes.route(event) {
            // The same event reaches the same target under the same key, however often
            // it is sent: receivers drop the repeats.
            let key = format!("{}:{rollout_id}:{seq}:{idx}:{}", routes.fleet, target.name);
            tx.prepare_cached(
                "INSERT OR IGNORE INTO outbox (key, rollout, target, kind, body, created_ms, next_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
            )?
            .execute(params![
                key,
                rollout,
                target.name,
                event.kind.name(),
                routes.body(target, rollout_id, event),
                now_ms
            ])?;
        }
    }
    Ok(())
}

/// One queued notification.
#[derive(Debug, Clone)]
pub struct Queued {
    pub id: i64,
    pub key: String,
    pub target: String,
    pub kind: String,
    pub body: String,
    pub attempts: i64,
}

/// Notifications due by `now_ms`, oldest first, at most `limit`.
pub fn due(conn: &Connection, now_ms: i64, limit: usize) -> Result<Vec<Queued>, StoreError> {
    let rows = conn
        .prepare_cached(
            "SELECT id, key, target, kind, body, attempts FROM outbox
             WHERE sent_ms IS NULL AND gave_up IS NULL AND next_ms <= ?1
             ORDER BY id LIMIT ?2",
        )?
        .query_map(params![now_ms, limit as i64], |r| {
            Ok(Queued {
                id: r.get(0)?,
                key: r.get(1)?,
                target: r.get(2)?,
                kind: r.get(3)?,
                body: r.get(4)?,
                attempts: r.get(5)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// When the next queued notification is due, if any is queued.
pub fn next_due(conn: &Connection) -> Result<Option<i64>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT min(next_ms) FROM outbox WHERE sent_ms IS NULL AND gave_up IS NULL",
        )?
        .query_row([], |r| r.get::<_, Option<i64>>(0))
        .optional()?
        .flatten())
}

pub fn mark_sent(conn: &Connection, id: i64, now_ms: i64) -> Result<(), StoreError> {
    conn.prepare_cached("UPDATE outbox SET sent_ms = ?2, attempts = attempts + 1 WHERE id = ?1")?
        .execute(params![id, now_ms])?;
    Ok(())
}

/// A failed attempt: tried again at `next_ms`, or given up when `next_ms` is None.
pub fn mark_failed(
    conn: &Connection,
    id: i64,
    error: &str,
    next_ms: Option<i64>,
) -> Result<(), StoreError> {
    match next_ms {
        Some(at) => conn
            .prepare_cached(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ?2, next_ms = ?3 WHERE id = ?1",
            )?
            .execute(params![id, error, at])?,
        None => conn
            .prepare_cached(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ?2, gave_up = ?2 WHERE id = ?1",
            )?
            .execute(params![id, error])?,
    };
    Ok(())
}

/// How the queue stands: queued (not yet sent), given up, and the newest error.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Standing {
    pub queued: i64,
    pub sent: i64,
    pub gave_up: i64,
    /// (target, error) of the newest failed attempt still relevant.
    pub last_error: Option<(String, String)>,
}

pub fn standing(conn: &Connection) -> Result<Standing, StoreError> {
    let (queued, sent, gave_up): (i64, i64, i64) = conn.query_row(
        "SELECT coalesce(sum(sent_ms IS NULL AND gave_up IS NULL), 0),
                coalesce(sum(sent_ms IS NOT NULL), 0),
                coalesce(sum(gave_up IS NOT NULL), 0) FROM outbox",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    let last_error = conn
        .query_row(
            "SELECT target, last_error FROM outbox
             WHERE last_error IS NOT NULL AND sent_ms IS NULL ORDER BY id DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    Ok(Standing {
        queued,
        sent,
        gave_up,
        last_error,
    })
}
