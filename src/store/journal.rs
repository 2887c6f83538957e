//! The journal: every event, in rows of one committed batch each, each row carrying a SHA-256
//! hash chained from the row before it, so an edited, inserted or deleted row is detected.
//!
//! Events are written by one writer thread in batches (one row and one transaction per batch)
//! and only passed on to views after their batch committed: nothing is visible before it is
//! durable. A row per batch rather than per event keeps the journal's cost small next to a
//! fast rollout; views over the rows (`journal_events`, `history`, `last_applied`) give SQL a
//! row per event.

use std::path::Path;
use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};

use super::lease::Holder;
use super::{connect, StoreError};
use crate::engine::{Event, EventSink, SinkFuture};

/// One event of the journal with where it is stored.
#[derive(Debug, Clone)]
pub struct JournalEntry {
    /// The row (batch) that holds it.
    pub seq: i64,
    /// Its place in the row.
    pub index: usize,
    pub rollout: Option<i64>,
    pub ts: String,
    pub kind: String,
    pub wave: Option<String>,
    pub env: Option<String>,
    pub service: Option<String>,
    pub actor: Option<String>,
    /// The event as stored (also for kinds a newer flotilla wrote).
    pub raw: serde_json::Value,
    /// The hash of the row that holds it.
    pub hash: String,
}

impl JournalEntry {
    /// The event, when this flotilla knows its kind.
    pub fn event(&self) -> Option<Event> {
        serde_json::from_value(self.raw.clone()).ok()
    }
}

/// The hash of a row: its content and the previous row's hash.
fn row_hash(prev: &str, seq: i64, rollout: Option<i64>, ts: &str, body: &str) -> String {
    let mut h = Sha256::new();
    for part in [
        prev.as_bytes(),
        seq.to_string().as_bytes(),
        rollout
            .map(|r| r.to_string())
            .unwrap_or_default()
            .as_bytes(),
        ts.as_bytes(),
        body.as_bytes(),
    ] {
        h.update(part);
        h.update(b"\n");
    }
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(64);
    for b in h.finalize() {
        out.push(HEX[(b >> 4) as usize] as char);
        out.push(HEX[(b & 15) as usize] as char);
    }
    out
}

/// Appends one event's JSON (the same as `serde_json::to_string(event)`) to `out`. Serialising
/// the tagged kind directly and splicing the timestamp in front avoids serde's slower path
/// for flattened fields; this runs for every event of every rollout.
fn write_event(out: &mut String, event: &Event) {
    match serde_json::to_string(&event.kind) {
        Ok(kind) if kind.starts_with('{') && kind.len() > 2 => {
            out.push_str("{\"ts\":");
            out.push_str(&serde_json::to_string(&event.ts).unwrap_or_else(|_| "\"\"".into()));
            out.push(',');
            out.push_str(&kind[1..]);
        }
        _ => out.push_str(&serde_json::to_string(event).unwrap_or_else(|_| "null".into())),
    }
}

/// Appends `events` of `rollout` in `tx` as one row, continuing the hash chain.
pub fn append(tx: &Transaction, rollout: Option<i64>, events: &[Event]) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    // Cached statements: the writer appends many small batches when events trickle in, and
    // parsing the SQL each time would cost more than the insert.
    let last: Option<(i64, String)> = tx
        .prepare_cached("SELECT seq, hash FROM journal ORDER BY seq DESC LIMIT 1")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let (seq, prev) = last.unwrap_or((0, String::new()));
    let seq = seq + 1;
    let mut body = String::with_capacity(events.len() * 200);
    body.push('[');
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        write_event(&mut body, e);
    }
    body.push(']');
    let ts = &events[0].ts;
    let hash = row_hash(&prev, seq, rollout, ts, &body);
    tx.prepare_cached(
        "INSERT INTO journal (seq, rollout, ts, events, body, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![seq, rollout, ts, events.len() as i64, body, hash])?;
    Ok(())
}

/// Appends events outside a running engine (an abort from another terminal, a lease takeover).
pub fn append_now(
    conn: &mut Connection,
    rollout: Option<i64>,
    events: &[Event],
) -> Result<(), StoreError> {
    append_fenced(conn, rollout, events, None)
}

/// Appends events in one transaction, only while `fence` (if any) holds the lease.
fn append_fenced(
    conn: &mut Connection,
    rollout: Option<i64>,
    events: &[Event],
    fence: Option<&Holder>,
) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    if let Some(h) = fence {
        let held: i64 = tx
            .prepare_cached(
                "SELECT count(*) FROM lease WHERE id = 1 AND user = ?1 AND host = ?2 AND pid = ?3",
            )?
            .query_row(params![h.user, h.host, h.pid], |r| r.get(0))?;
        if held == 0 {
            return Err(StoreError::LeaseLost {
                holder: h.to_string(),
            });
        }
    }
    append(&tx, rollout, events)?;
    tx.commit()?;
    Ok(())
}

struct Row {
    seq: i64,
    rollout: Option<i64>,
    ts: String,
    body: String,
    hash: String,
}

fn raw_rows(conn: &Connection, rollout: Option<i64>) -> Result<Vec<Row>, StoreError> {
    raw_rows_after(conn, rollout, 0)
}

fn raw_rows_after(
    conn: &Connection,
    rollout: Option<i64>,
    after: i64,
) -> Result<Vec<Row>, StoreError> {
    let sql = "SELECT seq, rollout, ts, body, hash FROM journal";
    // Read loosely typed: a row whose columns were given the wrong type by hand must show up
    // as a broken row in `audit --verify`, not as a database error.
    let map = |r: &rusqlite::Row| {
        use rusqlite::types::Value;
        let text = |i: usize| -> rusqlite::Result<String> {
            Ok(match r.get::<_, Value>(i)? {
                Value::Text(t) => t,
                Value::Integer(n) => format!("\u{0}int:{n}"),
                Value::Real(x) => format!("\u{0}real:{x}"),
                Value::Blob(b) => format!("\u{0}blob:{}", b.len()),
                Value::Null => "\u{0}null".into(),
            })
        };
        let rollout = match r.get::<_, Value>(1)? {
            Value::Integer(n) => Some(n),
            Value::Null => None,
            // An impossible id: the recomputed hash will not match.
            _ => Some(i64::MIN),
        };
        Ok(Row {
            seq: r.get::<_, Value>(0).map(|v| match v {
                Value::Integer(n) => n,
                _ => i64::MIN,
            })?,
            rollout,
            ts: text(2)?,
            body: text(3)?,
            hash: text(4)?,
        })
    };
    Ok(match rollout {
        Some(id) => conn
            .prepare(&format!(
                "{sql} WHERE rollout = ?1 AND seq > ?2 ORDER BY seq"
            ))?
            .query_map(params![id, after], map)?
            .collect::<Result<Vec<_>, _>>()?,
        None => conn
            .prepare(&format!("{sql} WHERE seq > ?1 ORDER BY seq"))?
            .query_map(params![after], map)?
            .collect::<Result<Vec<_>, _>>()?,
    })
}

fn text(v: &serde_json::Value, key: &str) -> Option<String> {
    v.get(key).and_then(|x| x.as_str()).map(str::to_string)
}

/// Journal events, oldest first: of one rollout, or all.
pub fn entries(conn: &Connection, rollout: Option<i64>) -> Result<Vec<JournalEntry>, StoreError> {
    entries_after(conn, rollout, 0)
}

/// Journal events in rows after row `after`, oldest first: what a watcher has not seen yet.
pub fn entries_after(
    conn: &Connection,
    rollout: Option<i64>,
    after: i64,
) -> Result<Vec<JournalEntry>, StoreError> {
    let mut out = Vec::new();
    for row in raw_rows_after(conn, rollout, after)? {
        // A row that does not parse is reported by `audit --verify`; readers skip it.
        let Ok(serde_json::Value::Array(events)) = serde_json::from_str(&row.body) else {
            continue;
        };
        for (index, raw) in events.into_iter().enumerate() {
            out.push(JournalEntry {
                seq: row.seq,
                index,
                rollout: row.rollout,
                ts: text(&raw, "ts").unwrap_or_else(|| row.ts.clone()),
                kind: text(&raw, "kind").unwrap_or_default(),
                wave: text(&raw, "wave"),
                env: text(&raw, "env"),
                service: text(&raw, "service"),
                actor: text(&raw, "by"),
                hash: row.hash.clone(),
                raw,
            });
        }
    }
    Ok(out)
}

/// The first row where the chain breaks, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainBreak {
    pub seq: i64,
    pub problem: String,
}

/// The newest row's sequence number and hash: recorded elsewhere, it lets a later check
/// notice rows deleted from the end, which the chain alone cannot.
pub fn head(conn: &Connection) -> Result<Option<(i64, String)>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT seq, hash FROM journal ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?)
}

/// Recomputes the whole chain. `Ok(n)` is the number of rows verified.
pub fn verify(conn: &Connection) -> Result<Result<usize, ChainBreak>, StoreError> {
    let rows = raw_rows(conn, None)?;
    let mut prev = String::new();
    for (expected_seq, row) in (1..).zip(rows.iter()) {
        if row.seq != expected_seq {
            return Ok(Err(ChainBreak {
                seq: row.seq,
                problem: if row.seq > expected_seq {
                    format!("rows {expected_seq}..{} are missing (deleted)", row.seq - 1)
                } else {
                    "its sequence number is out of order (inserted)".into()
                },
            }));
        }
        let hash = row_hash(&prev, row.seq, row.rollout, &row.ts, &row.body);
        if hash != row.hash {
            return Ok(Err(ChainBreak {
                seq: row.seq,
                problem:
                    "its hash does not match its contents (edited, or a row was inserted before it)"
                        .into(),
            }));
        }
        prev = hash;
    }
    Ok(Ok(rows.len()))
}

enum Msg {
    Event(Event, Option<oneshot::Sender<bool>>),
    Flush(oneshot::Sender<bool>),
    /// The events up to the matching `End` commit in one transaction, never split.
    Begin,
    End,
}

impl Msg {
    /// Whether somebody waits for this message to be committed.
    fn waited_on(&self) -> bool {
        matches!(self, Msg::Event(_, Some(_)) | Msg::Flush(_))
    }
}

/// The most events in one transaction.
const MAX_BATCH: usize = 4096;

/// Below this many events a batch nobody waits on is a trickle worth lingering for.
const LINGER_BELOW: usize = 64;

/// How long the writer waits for more events while nobody waits on the ones it has: short
/// next to a person watching, long next to events that trickle in from a fleet.
const LINGER: std::time::Duration = std::time::Duration::from_millis(2);

/// The sending side of the journal writer; cheap to clone into the engine.
#[derive(Clone)]
pub struct Journal {
    tx: std_mpsc::Sender<Msg>,
    /// The writer, to wake it from lingering when someone waits.
    writer: std::thread::Thread,
}

/// The writer thread; join it to learn whether every event was written.
pub struct JournalThread {
    handle: JoinHandle<Result<(), StoreError>>,
}

impl JournalThread {
    /// Waits for the writer to finish; an error says why events were not written.
    pub fn join(self) -> Result<(), StoreError> {
        self.handle.join().unwrap_or_else(|_| {
            Err(StoreError::Open {
                path: "journal".into(),
                detail: "the journal writer panicked".into(),
            })
        })
    }
}

/// Starts a writer for `rollout` in the database at `path`. Committed events are passed on
/// to `downstream` (the printer, the console).
///
/// With `fence`, every batch is written only while that holder still holds the engine lease:
/// an engine whose lease was taken over cannot record (and so cannot apply) anything more.
pub fn spawn(
    path: &Path,
    rollout: i64,
    fence: Option<Holder>,
    downstream: mpsc::UnboundedSender<Vec<Event>>,
) -> Result<(Journal, JournalThread), StoreError> {
    let mut conn = connect(path)?;
    // Checkpoints (copying the WAL into the database, with an fsync) in the middle of a
    // rollout stall the steps waiting on the journal; let the WAL grow to 64 MB instead. The
    // last connection to close checkpoints it.
    conn.pragma_update(None, "wal_autocheckpoint", 16384)?;
    let (tx, rx) = std_mpsc::channel::<Msg>();
    let handle = std::thread::Builder::new()
        .name("flotilla-journal".into())
        .spawn(move || -> Result<(), StoreError> {
            let mut failure: Option<StoreError> = None;
            while let Ok(first) = rx.recv() {
                // Group commit: everything queued so far goes into one transaction.
                let mut batch = vec![first];
                let drain = |batch: &mut Vec<Msg>| {
                    while batch.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(m) => batch.push(m),
                            Err(_) => break,
                        }
                    }
                };
                drain(&mut batch);
                // A group (a command and what it did) is never split across transactions:
                // wait for its end, which follows at once (the engine emits a group without
                // awaiting anything in between).
                let open = |batch: &Vec<Msg>| {
                    batch.iter().fold(0i32, |n, m| match m {
                        Msg::Begin => n + 1,
                        Msg::End => n - 1,
                        _ => n,
                    }) > 0
                };
                while open(&batch) {
                    match rx.recv() {
                        Ok(m) => batch.push(m),
                        Err(_) => break,
                    }
                }
                // Events that trickle in one by one would cost a transaction and a wake-up
                // each: while nobody waits on a small batch, sleep a moment to gather more.
                // Whoever starts waiting (a durable event, a flush) wakes the writer at once.
                if batch.len() < LINGER_BELOW && !batch.iter().any(Msg::waited_on) {
                    std::thread::park_timeout(LINGER);
                    drain(&mut batch);
                }
                let mut events = Vec::with_capacity(batch.len());
                let mut acks = Vec::new();
                let mut flushes = Vec::new();
                for m in batch {
                    match m {
                        Msg::Event(e, ack) => {
                            events.push(e);
                            acks.extend(ack);
                        }
                        Msg::Flush(ack) => flushes.push(ack),
                        Msg::Begin | Msg::End => {}
                    }
                }
                let ok = failure.is_none()
                    && match append_fenced(&mut conn, Some(rollout), &events, fence.as_ref()) {
                        Ok(()) => true,
                        Err(e) => {
                            crate::notice::say(format!("error: cannot write the journal: {e}; no further step will be applied"));
                            failure = Some(e);
                            false
                        }
                    };
                // Release the waiting steps first: they are on the rollout's critical path,
                // the views are not. A flush is answered last, once the views have it all.
                for ack in acks {
                    let _ = ack.send(ok);
                }
                // One message per batch: views wake once per commit, not once per event.
                if ok {
                    let _ = downstream.send(events);
                }
                for ack in flushes {
                    let _ = ack.send(ok);
                }
            }
            failure.map_or(Ok(()), Err)
        })
        .map_err(|e| StoreError::Open {
            path: path.into(),
            detail: format!("cannot start the journal writer: {e}"),
        })?;
    let writer = handle.thread().clone();
    Ok((Journal { tx, writer }, JournalThread { handle }))
}

impl Journal {
    /// Waits until everything sent so far is committed; false if the journal failed.
    pub async fn flush(&self) -> bool {
        let (ack, done) = oneshot::channel();
        if self.tx.send(Msg::Flush(ack)).is_err() {
            return false;
        }
        self.writer.unpark();
        done.await.unwrap_or(false)
    }
}

impl EventSink for Journal {
    fn emit(&self, event: Event) {
        let _ = self.tx.send(Msg::Event(event, None));
    }

    fn emit_durable(&self, event: Event) -> SinkFuture {
        let (ack, done) = oneshot::channel();
        let sent = self.tx.send(Msg::Event(event, Some(ack))).is_ok();
        self.writer.unpark();
        Box::pin(async move { sent && done.await.unwrap_or(false) })
    }

    fn begin_group(&self) {
        let _ = self.tx.send(Msg::Begin);
    }

    fn end_group(&self) {
        let _ = self.tx.send(Msg::End);
        self.writer.unpark();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::EventKind;
    use crate::store::Store;

    fn event(n: u32) -> Event {
        Event {
            ts: format!("2026-11-02T00:00:{n:02}.000Z"),
            kind: EventKind::RolloutPaused {
                by: format!("user{n}"),
            },
        }
    }

    #[test]
    fn the_fast_event_encoding_is_the_serde_encoding() {
        let more = [
            EventKind::EnvStarted {
                wave: "w".into(),
                env: "e \"quoted\"".into(),
                revisions: [("api".to_string(), "r1".to_string())].into(),
            },
            EventKind::GateApproved {
                wave: "w".into(),
                by: "ü@host".into(),
                note: None,
                approvals: 1,
                needed: 2,
            },
        ];
        let all = [event(1), event(12)]
            .into_iter()
            .chain(more.into_iter().map(|kind| Event {
                ts: "2026-11-02T00:00:00.000Z".into(),
                kind,
            }));
        for e in all {
            let mut fast = String::new();
            write_event(&mut fast, &e);
            assert_eq!(fast, serde_json::to_string(&e).unwrap());
        }
    }

    #[test]
    fn the_chain_detects_an_edited_a_deleted_and_an_inserted_row() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let store = Store::open(&path, "f").unwrap();
        let events: Vec<Event> = (0..5).map(event).collect();
        for e in &events {
            store.append(None, std::slice::from_ref(e)).unwrap();
        }
        assert_eq!(verify(&store.conn()).unwrap(), Ok(5));

        let conn = store.conn();
        conn.execute(
            "UPDATE journal SET body = replace(body, 'user2', 'mallory') WHERE seq = 3",
            [],
        )
        .unwrap();
        assert_eq!(verify(&conn).unwrap().unwrap_err().seq, 3);
        conn.execute(
            "UPDATE journal SET body = replace(body, 'mallory', 'user2') WHERE seq = 3",
            [],
        )
        .unwrap();
        assert_eq!(verify(&conn).unwrap(), Ok(5));

        conn.execute("DELETE FROM journal WHERE seq = 2", [])
            .unwrap();
        let broken = verify(&conn).unwrap().unwrap_err();
        assert_eq!(broken.seq, 3);
        assert!(broken.problem.contains("missing"), "{broken:?}");
    }

    #[tokio::test]
    async fn an_engine_that_lost_its_lease_cannot_record_anything() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let store = Store::open(&path, "f").unwrap();
        let id = store.start_rollout("r", "c", "t", "me").unwrap();
        let old = Holder {
            user: "a".into(),
            host: "h".into(),
            pid: 1,
        };
        let new = Holder {
            user: "b".into(),
            host: "h2".into(),
            pid: 2,
        };
        let stale = std::time::Duration::from_secs(30);
        store.acquire_lease(id, &old, 0, stale).unwrap().unwrap();
        let (down_tx, _down_rx) = mpsc::unbounded_channel();
        let (journal, thread) = spawn(&path, id, Some(old.clone()), down_tx).unwrap();
        assert!(journal.emit_durable(event(1)).await);
        // Another engine takes over after the old one stopped answering.
        store
            .acquire_lease(id, &new, 60_000, stale)
            .unwrap()
            .unwrap();
        assert!(!journal.emit_durable(event(2)).await, "fenced off");
        drop(journal);
        assert!(matches!(thread.join(), Err(StoreError::LeaseLost { .. })));
        assert_eq!(entries(&store.conn(), Some(id)).unwrap().len(), 1);
    }

    #[tokio::test]
    async fn the_writer_passes_events_on_only_after_committing_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let store = Store::open(&path, "f").unwrap();
        let id = store.start_rollout("r", "c", "t", "me").unwrap();
        let (down_tx, mut down_rx) = mpsc::unbounded_channel();
        let (journal, thread) = spawn(&path, id, None, down_tx).unwrap();
        assert!(journal.emit_durable(event(1)).await);
        // Once acknowledged, the row is there for any other connection to read.
        let other = connect(&path).unwrap();
        assert_eq!(entries(&other, Some(id)).unwrap().len(), 1);
        assert_eq!(down_rx.recv().await.unwrap(), vec![event(1)]);
        journal.emit(event(2));
        assert!(journal.flush().await);
        drop(journal);
        thread.join().unwrap();
        assert_eq!(verify(&other).unwrap(), Ok(2));
    }
}
