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
use crate::engine::{Event, EventKind, EventSink, SinkFuture};

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

/// How a row's hash is made, named in the row's `chain` column (itself hashed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chain {
    /// Rows written before the chain covered every column: prev, seq, rollout, ts, body.
    V1,
    /// SHA-256 over every column.
    Sha256,
    /// HMAC-SHA256 with `FLOTILLA_AUDIT_KEY` over every column: it cannot be re-chained
    /// without the key.
    Hmac,
}

impl Chain {
    fn name(self) -> &'static str {
        match self {
            Chain::V1 => "v1",
            Chain::Sha256 => "sha256",
            Chain::Hmac => "hmac-sha256",
        }
    }

    fn parse(name: &str) -> Option<Chain> {
        [Chain::V1, Chain::Sha256, Chain::Hmac]
            .into_iter()
            .find(|c| c.name() == name)
    }
}

/// The key of a keyed chain: `FLOTILLA_AUDIT_KEY`, when set and not empty. It is only ever
/// fed to the MAC, never printed or stored.
pub fn audit_key() -> Option<Vec<u8>> {
    std::env::var_os("FLOTILLA_AUDIT_KEY")
        .map(|k| k.into_encoded_bytes())
        .filter(|k| !k.is_empty())
}

/// One row's columns as hashed.
struct Columns<'a> {
    seq: i64,
    rollout: Option<i64>,
    ts: &'a str,
    events: &'a str,
    body: &'a str,
}

/// The hash of a row: its columns and the previous row's hash, as `chain` makes it.
fn row_hash(chain: Chain, key: Option<&[u8]>, prev: &str, row: &Columns) -> String {
    use hmac::Mac;
    let seq = row.seq.to_string();
    let rollout = row.rollout.map(|r| r.to_string()).unwrap_or_default();
    let parts: Vec<&[u8]> = match chain {
        Chain::V1 => vec![
            prev.as_bytes(),
            seq.as_bytes(),
            rollout.as_bytes(),
            row.ts.as_bytes(),
            row.body.as_bytes(),
        ],
        Chain::Sha256 | Chain::Hmac => vec![
            chain.name().as_bytes(),
            prev.as_bytes(),
            seq.as_bytes(),
            rollout.as_bytes(),
            row.ts.as_bytes(),
            row.events.as_bytes(),
            row.body.as_bytes(),
        ],
    };
    // Each part, then a newline: ("ab","c") and ("a","bc") hash apart.
    let feed = |h: &mut dyn hmac::digest::Update| {
        for part in &parts {
            h.update(part);
            h.update(b"\n");
        }
    };
    let digest: Vec<u8> = match (chain, key) {
        (Chain::Hmac, Some(key)) => {
            let mut mac =
                hmac::Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
            feed(&mut mac);
            mac.finalize().into_bytes().to_vec()
        }
        // Without its key a keyed row cannot be recomputed; verify says so before this.
        _ => {
            let mut h = Sha256::new();
            feed(&mut h);
            h.finalize().to_vec()
        }
    };
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push(HEX[(b >> 4) as usize] as char);
        out.push(HEX[(b & 15) as usize] as char);
    }
    out
}

/// Appends one event's JSON (the same as `serde_json::to_string(event)`) to `out`. Serialising
/// the tagged kind directly and splicing the timestamp in front avoids serde's slower path
/// for flattened fields; this runs for every event of every rollout.
fn write_event(out: &mut Vec<u8>, event: &Event) {
    // Written into the row's buffer, not into strings of its own: every event of a
    // rollout passes here.
    let start = out.len();
    out.extend_from_slice(b"{\"ts\":");
    let ts = serde_json::to_writer(&mut *out, &event.ts);
    out.push(b',');
    let at = out.len();
    let kind = serde_json::to_writer(&mut *out, &event.kind);
    if ts.is_ok() && kind.is_ok() && out.get(at) == Some(&b'{') && out.len() > at + 2 {
        // The kind's fields follow the time stamp's in one object.
        out.remove(at);
    } else {
        out.truncate(start);
        if serde_json::to_writer(&mut *out, event).is_err() {
            out.truncate(start);
            out.extend_from_slice(b"null");
        }
    }
}

/// Appends `events` of `rollout` in `tx` as one row, continuing the hash chain.
/// `key` is the audit key ([`audit_key`]), read once by the caller.
pub fn append(
    tx: &Transaction,
    rollout: Option<i64>,
    events: &[Event],
    key: Option<&[u8]>,
) -> Result<(), StoreError> {
    append_routed(tx, rollout, events, key, None)
}

/// [`append`], queueing the notifications `routes` ask for in the same transaction: an
/// event is journaled with its notifications or not at all.
pub fn append_routed(
    tx: &Transaction,
    rollout: Option<i64>,
    events: &[Event],
    key: Option<&[u8]>,
    routes: Option<&crate::notify::Routes>,
) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    // Cached statements: the writer appends many small batches when events trickle in, and
    // parsing the SQL each time would cost more than the insert.
    let last: Option<(i64, String, String)> = tx
        .prepare_cached("SELECT seq, hash, chain FROM journal ORDER BY seq DESC LIMIT 1")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    // A keyed chain stays keyed: a row without the key would break it for good.
    if key.is_none() && last.as_ref().is_some_and(|l| l.2 == Chain::Hmac.name()) {
        return Err(keyed_without_key());
    }
    let (seq, prev) = last.map_or((0, String::new()), |(s, h, _)| (s, h));
    let seq = seq + 1;
    let mut body = Vec::with_capacity(events.len() * 200);
    body.push(b'[');
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        write_event(&mut body, e);
    }
    body.push(b']');
    // serde_json writes UTF-8 only (a failed event is cut off whole), so this never copies.
    let body = String::from_utf8(body)
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
    let ts = events[0].ts.as_str();
    let chain = if key.is_some() {
        Chain::Hmac
    } else {
        Chain::Sha256
    };
    let count = events.len().to_string();
    let columns = Columns {
        seq,
        rollout,
        ts,
        events: &count,
        body: &body,
    };
    let hash = row_hash(chain, key, &prev, &columns);
    tx.prepare_cached(
        "INSERT INTO journal (seq, rollout, ts, events, body, hash, chain)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        seq,
        rollout,
        ts,
        events.len() as i64,
        body,
        hash,
        chain.name()
    ])?;
    // The head is kept outside the journal's table where it matters (a rollout ends,
    // halts or pauses) and every 1,000 rows, so rows cut off its end are noticed.
    let notable = events.iter().find_map(|e| match e.kind {
        EventKind::RolloutCompleted { .. } => Some("rollout completed"),
        EventKind::RolloutHalted { .. } => Some("rollout halted"),
        EventKind::RolloutPaused { .. } => Some("rollout paused"),
        EventKind::RolloutAborted { .. } => Some("rollout aborted"),
        _ => None,
    });
    let reason = notable.or((seq % CHECKPOINT_EVERY == 0).then_some("every 1,000 rows"));
    if let Some(reason) = reason {
        record_checkpoint(tx, seq, &hash, ts, reason)?;
    }
    if let Some(routes) = routes {
        crate::notify::outbox::enqueue(tx, routes, rollout, seq, events, crate::session::now_ms())?;
    }
    Ok(())
}

fn keyed_without_key() -> StoreError {
    StoreError::AuditKey(
        "the journal is keyed (HMAC-SHA256): set FLOTILLA_AUDIT_KEY to its key to write to it"
            .into(),
    )
}

/// Refuses to write with a key that is not the journal's: its newest keyed row must verify
/// with `key` (checked once per writer, and by every append outside one).
pub fn check_key(conn: &Connection, key: Option<&[u8]>) -> Result<(), StoreError> {
    let Some((seq, _)) = head(conn)? else {
        return Ok(());
    };
    let Some(row) = raw_rows_after(conn, None, seq - 1)?.into_iter().next() else {
        return Ok(());
    };
    if Chain::parse(&row.chain) != Some(Chain::Hmac) {
        return Ok(());
    }
    let Some(key) = key else {
        return Err(keyed_without_key());
    };
    let prev: String = conn
        .query_row("SELECT hash FROM journal WHERE seq = ?1", [seq - 1], |r| {
            r.get(0)
        })
        .optional()?
        .unwrap_or_default();
    if row_hash(Chain::Hmac, Some(key), &prev, &row.columns()) != row.hash {
        return Err(StoreError::AuditKey(
            "FLOTILLA_AUDIT_KEY is not the key of this journal (its newest row does not verify with it); nothing was written".into(),
        ));
    }
    Ok(())
}

/// At least this often (in rows) the head is checkpointed.
const CHECKPOINT_EVERY: i64 = 1000;

fn record_checkpoint(
    conn: &Connection,
    seq: i64,
    hash: &str,
    ts: &str,
    reason: &str,
) -> Result<(), StoreError> {
    conn.prepare_cached("INSERT INTO checkpoints (seq, hash, ts, reason) VALUES (?1, ?2, ?3, ?4)")?
        .execute(params![seq, hash, ts, reason])?;
    Ok(())
}

/// Checkpoints the journal's head now (an engine exits), unless the newest checkpoint
/// already is the head.
pub fn checkpoint(conn: &Connection, ts: &str, reason: &str) -> Result<(), StoreError> {
    let Some((seq, hash)) = head(conn)? else {
        return Ok(());
    };
    if newest_checkpoint(conn)?.map(|c| c.seq) != Some(seq) {
        record_checkpoint(conn, seq, &hash, ts, reason)?;
    }
    Ok(())
}

/// A checkpoint of the journal's head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub seq: i64,
    pub hash: String,
    pub ts: String,
    pub reason: String,
}

/// Checkpoints, oldest first; `newest` only: the newest, if any.
fn checkpoints(conn: &Connection, newest: bool) -> Result<Vec<Checkpoint>, StoreError> {
    let order = if newest { "DESC LIMIT 1" } else { "" };
    let mut stmt = conn.prepare(&format!(
        "SELECT seq, hash, ts, reason FROM checkpoints ORDER BY seq {order}"
    ))?;
    let rows = stmt.query_map([], |r| {
        Ok(Checkpoint {
            seq: r.get(0)?,
            hash: r.get(1)?,
            ts: r.get(2)?,
            reason: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The newest checkpoint, if any.
pub fn newest_checkpoint(conn: &Connection) -> Result<Option<Checkpoint>, StoreError> {
    Ok(checkpoints(conn, true)?.pop())
}

/// Why the journal is shorter than its own records say, if it is: cheap enough to check
/// before every rollout and status (the full chain is `verify`'s).
pub fn truncation(conn: &Connection) -> Result<Option<String>, StoreError> {
    let head = head(conn)?.map_or(0, |(seq, _)| seq);
    if let Some(c) = newest_checkpoint(conn)? {
        if c.seq > head {
            return Ok(Some(format!(
                "the journal ends at row {head}, but its checkpoint of {} ({}) records row {}: rows were deleted",
                c.ts, c.reason, c.seq
            )));
        }
    }
    // Rollouts that got as far as an outcome have journal rows; none at all means they
    // were deleted (with the checkpoints, or before there were any).
    let orphan: Option<i64> = conn
        .query_row(
            "SELECT id FROM rollouts WHERE status != 'running'
             AND NOT EXISTS (SELECT 1 FROM journal WHERE journal.rollout = rollouts.id)
             ORDER BY id LIMIT 1",
            [],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(first) = orphan {
        return Ok(Some(format!(
            "rollout {first} is recorded as run but has no journal rows: they were deleted"
        )));
    }
    // The newest rollout recorded as ended has its ending among its last rows (rollbacks
    // in flight at an abort may finish after it).
    let ended: Option<(i64, String)> = conn
        .query_row(
            "SELECT id, status FROM rollouts WHERE status IN ('completed', 'aborted')
             ORDER BY id DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    if let Some((id, status)) = ended {
        let ending = format!("\"kind\":\"rollout_{status}\"");
        let last: Vec<String> = conn
            .prepare("SELECT body FROM journal WHERE rollout = ?1 ORDER BY seq DESC LIMIT 20")?
            .query_map([id], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        if !last.is_empty() && !last.iter().any(|body| body.contains(&ending)) {
            return Ok(Some(format!(
                "rollout {id} is recorded as {status}, but its journal does not say so: rows were deleted from its end"
            )));
        }
    }
    Ok(None)
}

/// Appends events outside a running engine (an abort from another terminal, a lease takeover).
pub fn append_now(
    conn: &mut Connection,
    rollout: Option<i64>,
    events: &[Event],
    routes: Option<&crate::notify::Routes>,
) -> Result<(), StoreError> {
    let key = audit_key();
    check_key(conn, key.as_deref())?;
    append_fenced(conn, rollout, events, None, key.as_deref(), routes)
}

/// Appends events in one transaction, only while `fence` (if any) holds the lease. `key`
/// was checked against the journal ([`check_key`]) by the caller.
fn append_fenced(
    conn: &mut Connection,
    rollout: Option<i64>,
    events: &[Event],
    fence: Option<&Holder>,
    key: Option<&[u8]>,
    routes: Option<&crate::notify::Routes>,
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
    append_routed(&tx, rollout, events, key, routes)?;
    tx.commit()?;
    for event in events {
        crate::log::event(rollout, event);
    }
    Ok(())
}

struct Row {
    seq: i64,
    rollout: Option<i64>,
    ts: String,
    events: String,
    body: String,
    hash: String,
    chain: String,
}

impl Row {
    /// The columns its hash covers.
    fn columns(&self) -> Columns<'_> {
        Columns {
            seq: self.seq,
            rollout: self.rollout,
            ts: &self.ts,
            events: &self.events,
            body: &self.body,
        }
    }
}

fn raw_rows(conn: &Connection, rollout: Option<i64>) -> Result<Vec<Row>, StoreError> {
    raw_rows_after(conn, rollout, 0)
}

fn raw_rows_after(
    conn: &Connection,
    rollout: Option<i64>,
    after: i64,
) -> Result<Vec<Row>, StoreError> {
    let sql = "SELECT seq, rollout, ts, body, hash, events, chain FROM journal";
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
            // The count is an integer; anything else is a hand edit the hash must catch.
            events: match r.get::<_, Value>(5)? {
                Value::Integer(n) => n.to_string(),
                _ => "\u{0}not an integer".into(),
            },
            chain: text(6)?,
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

/// What a verified journal looks like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub rows: usize,
    /// The newest row and its hash: kept elsewhere, it lets a later check notice rows
    /// deleted from the end.
    pub head: Option<(i64, String)>,
    /// Whether the chain is keyed (HMAC with `FLOTILLA_AUDIT_KEY`).
    pub keyed: bool,
}

/// Recomputes the whole chain (keyed rows with `key`), then checks it against the
/// checkpoints kept beside it and, when given, a head (seq, hash) kept elsewhere: rows
/// edited, inserted, deleted, cut off the end or re-chained are named.
pub fn verify(
    conn: &Connection,
    key: Option<&[u8]>,
    expect: Option<(i64, &str)>,
) -> Result<Result<Verified, ChainBreak>, StoreError> {
    let rows = raw_rows(conn, None)?;
    let broken = |seq: i64, problem: String| Ok(Err(ChainBreak { seq, problem }));
    let mut prev = String::new();
    let mut newest = Chain::V1;
    let mut hashes = std::collections::HashMap::with_capacity(rows.len());
    for (expected_seq, row) in (1..).zip(rows.iter()) {
        if row.seq != expected_seq {
            return broken(
                row.seq,
                if row.seq > expected_seq {
                    format!("rows {expected_seq}..{} are missing (deleted)", row.seq - 1)
                } else {
                    "its sequence number is out of order (inserted)".into()
                },
            );
        }
        let Some(chain) = Chain::parse(&row.chain) else {
            return broken(
                row.seq,
                format!("its chain `{}` is unknown (edited)", row.chain),
            );
        };
        match (newest, chain) {
            (Chain::Sha256 | Chain::Hmac, Chain::V1) => {
                return broken(
                    row.seq,
                    "it is hashed the old way after rows hashed the new way (re-chained)".into(),
                )
            }
            (Chain::Hmac, Chain::Sha256) => {
                return broken(
                    row.seq,
                    "it is not keyed although the rows before it are (re-chained without the key)"
                        .into(),
                )
            }
            (_, Chain::Hmac) if key.is_none() => return broken(
                row.seq,
                "the chain is keyed from here on: set FLOTILLA_AUDIT_KEY to its key to verify it"
                    .into(),
            ),
            _ => {}
        }
        newest = chain;
        let hash = row_hash(chain, key, &prev, &row.columns());
        if hash != row.hash {
            return broken(
                row.seq,
                if chain == Chain::Hmac {
                    "its hash does not match its contents (edited, re-chained, or FLOTILLA_AUDIT_KEY is not the journal's key)".into()
                } else {
                    "its hash does not match its contents (edited, or a row was inserted before it)"
                        .into()
                },
            );
        }
        hashes.insert(row.seq, hash.clone());
        prev = hash;
    }
    let last = rows.last().map_or(0, |r| r.seq);
    // With the key, the newest row must be keyed: a journal re-chained from the start
    // without the key verifies as plain SHA-256 otherwise.
    if key.is_some() && last > 0 && newest != Chain::Hmac {
        return broken(
            last,
            "FLOTILLA_AUDIT_KEY is set but the newest row is not keyed: it was written without the key, or the journal was re-chained without it".into(),
        );
    }
    for c in &checkpoints(conn, false)? {
        match hashes.get(&c.seq) {
            None => {
                return broken(
                    last + 1,
                    format!(
                        "rows {}..{} are missing: the journal ends at row {last}, but its checkpoint of {} ({}) records row {}",
                        last + 1, c.seq, c.ts, c.reason, c.seq
                    ),
                )
            }
            Some(h) if *h != c.hash => {
                return broken(
                    c.seq,
                    format!("it is not the row its checkpoint of {} ({}) recorded (rewritten and re-chained)", c.ts, c.reason),
                )
            }
            Some(_) => {}
        }
    }
    if let Some(why) = truncation(conn)? {
        return broken(last + 1, why);
    }
    if let Some((seq, hash)) = expect {
        match hashes.get(&seq) {
            None => {
                return broken(
                    last + 1,
                    format!("the journal ends at row {last}, before the expected head (row {seq}): rows were deleted"),
                )
            }
            Some(h) if h != hash => {
                return broken(
                    seq,
                    "it is not the expected head (rewritten and re-chained)".into(),
                )
            }
            Some(_) => {}
        }
    }
    Ok(Ok(Verified {
        rows: rows.len(),
        head: rows.last().map(|r| (r.seq, r.hash.clone())),
        keyed: newest == Chain::Hmac,
    }))
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
    spawn_routed(path, rollout, fence, downstream, None)
}

/// [`spawn`], queueing with each batch the notifications `routes` ask for.
pub fn spawn_routed(
    path: &Path,
    rollout: i64,
    fence: Option<Holder>,
    downstream: mpsc::UnboundedSender<Vec<Event>>,
    routes: Option<std::sync::Arc<crate::notify::Routes>>,
) -> Result<(Journal, JournalThread), StoreError> {
    let mut conn = connect(path)?;
    // Read and checked once: every batch of this writer uses it.
    let key = audit_key();
    check_key(&conn, key.as_deref())?;
    // Checkpoints (copying the WAL into the database, with an fsync) made by the writer
    // stall the steps waiting on the journal: at 100,000 environments they were most of the
    // journal's cost. A thread of its own checkpoints instead, passively (never blocking the
    // writer), when the writer says the WAL has grown, and the writer copies only the little
    // written meanwhile; without that thread, the writer lets the WAL grow to 64 MB between
    // checkpoints. The last connection to close checkpoints it.
    let checkpointer = checkpointer(path);
    let autocheckpoint = if checkpointer.is_some() { 0 } else { 16384 };
    conn.pragma_update(None, "wal_autocheckpoint", autocheckpoint)?;
    let (tx, rx) = std_mpsc::channel::<Msg>();
    let handle = std::thread::Builder::new()
        .name("flotilla-journal".into())
        .spawn(move || -> Result<(), StoreError> {
            let mut failure: Option<StoreError> = None;
            let mut since_checkpoint = 0;
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
                // Events that trickle in one by one would cost a transaction and a wake-up
                // each: while nobody waits on a small batch, sleep a moment to gather more.
                // Whoever starts waiting (a durable event, a flush) wakes the writer at once.
                if batch.len() < LINGER_BELOW && !batch.iter().any(Msg::waited_on) {
                    std::thread::park_timeout(LINGER);
                    drain(&mut batch);
                }
                // A group (a command and what it did) is never split across transactions:
                // after the last drain, wait for the end of a group it began, which follows
                // at once (the engine emits a group without awaiting anything in between).
                let mut depth: i32 = batch
                    .iter()
                    .map(|m| match m {
                        Msg::Begin => 1,
                        Msg::End => -1,
                        _ => 0,
                    })
                    .sum();
                while depth > 0 {
                    match rx.recv() {
                        Ok(m) => {
                            depth += match m {
                                Msg::Begin => 1,
                                Msg::End => -1,
                                _ => 0,
                            };
                            batch.push(m);
                        }
                        Err(_) => break,
                    }
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
                    && match append_fenced(&mut conn, Some(rollout), &events, fence.as_ref(), key.as_deref(), routes.as_deref()) {
                        Ok(()) => true,
                        Err(e) => {
                            // A lost lease is the engine's to explain (who took it, when).
                            if !matches!(e, StoreError::LeaseLost { .. }) {
                                crate::notice::say(format!("error: cannot write the journal: {e}; no further step will be applied"));
                            }
                            failure = Some(e);
                            false
                        }
                    };
                // Release the waiting steps first: they are on the rollout's critical path,
                // the views are not. A flush is answered last, once the views have it all.
                for ack in acks {
                    let _ = ack.send(ok);
                }
                if ok {
                    since_checkpoint += events.len();
                }
                let due = since_checkpoint >= WAL_CHECKPOINT_EVERY;
                if let Some(c) = checkpointer.as_ref().filter(|_| due) {
                    // One nudge waiting is enough: a checkpoint under way takes all there is.
                    let _ = c.nudge.try_send(());
                    since_checkpoint = 0;
                }
                // One message per batch: views wake once per commit, not once per event.
                if ok {
                    let _ = downstream.send(events);
                }
                for ack in flushes {
                    let _ = ack.send(ok);
                }
                if checkpointer.as_ref().is_some_and(Checkpointer::caught_up) {
                    // The checkpointer copied the WAL as far as it reached when it began;
                    // what this writer added meanwhile is copied here, between
                    // transactions, so that the whole WAL is in the database and the next
                    // transaction writes the WAL from its start again. A WAL written
                    // without a pause is otherwise never wholly copied, and grew to the
                    // size of the whole journal (140 MB at 100,000 environments).
                    let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
                }
            }
            if let Some(c) = checkpointer {
                drop(c.nudge);
                let _ = c.thread.join();
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

/// Events committed between nudges to the checkpointer: about 3 MB of WAL, near SQLite's
/// own default of 1,000 pages. A rollout of 10,000 environments (70,000 events) copies its
/// WAL into the database as it goes, as one of 100,000 does, so that the journal costs
/// the same per event at any size; the WAL stays at about 5 MB (it was 24 MB, and a
/// 10,000-environment rollout left all of its WAL to copy when the last connection closed).
const WAL_CHECKPOINT_EVERY: usize = 20_000;

/// A thread with its own connection that checkpoints the WAL passively each time it is
/// nudged, until the nudges end.
struct Checkpointer {
    nudge: std_mpsc::SyncSender<()>,
    /// Set when a checkpoint has ended, for the writer to copy the rest.
    done: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: JoinHandle<()>,
}

impl Checkpointer {
    /// Whether a checkpoint has ended since the last time this was asked.
    fn caught_up(&self) -> bool {
        self.done.swap(false, std::sync::atomic::Ordering::AcqRel)
    }
}

/// The checkpointer of the database at `path`; None when it cannot be had (the writer
/// checkpoints then).
fn checkpointer(path: &Path) -> Option<Checkpointer> {
    let conn = connect(path).ok()?;
    let (nudge, nudges) = std_mpsc::sync_channel::<()>(1);
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let finished = done.clone();
    let thread = std::thread::Builder::new()
        .name("flotilla-checkpoint".into())
        .spawn(move || {
            while nudges.recv().is_ok() {
                // Busy or not, the next nudge (or the last connection's close) catches up.
                let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
                finished.store(true, std::sync::atomic::Ordering::Release);
            }
        })
        .ok()?;
    Some(Checkpointer {
        nudge,
        done,
        thread,
    })
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
            ts: format!("2026-11-02T00:00:{n:02}.000Z").into(),
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
            let mut fast = Vec::new();
            write_event(&mut fast, &e);
            assert_eq!(
                String::from_utf8(fast).unwrap(),
                serde_json::to_string(&e).unwrap()
            );
        }
    }

    /// The rows verified, or where the chain breaks.
    fn rows(conn: &Connection) -> Result<usize, i64> {
        match verify(conn, None, None).unwrap() {
            Ok(v) => Ok(v.rows),
            Err(b) => Err(b.seq),
        }
    }

    fn store_with(n: u32, dir: &Path) -> Store {
        let store = Store::open(&dir.join("s.db"), "f").unwrap();
        for i in 0..n {
            store.append(None, &[event(i)]).unwrap();
        }
        store
    }

    #[test]
    fn rows_cut_off_the_end_are_found_against_the_checkpoints() {
        for cut in [1, 50, 1100] {
            let dir = tempfile::tempdir().unwrap();
            let store = store_with(1100, dir.path());
            // Checkpointed every 1,000 rows, and when an engine exits.
            store
                .checkpoint("2026-11-02T00:00:00.000Z", "engine exited")
                .unwrap();
            assert_eq!(rows(&store.conn()), Ok(1100));
            store
                .conn()
                .execute("DELETE FROM journal WHERE seq > ?1", [1100 - cut])
                .unwrap();
            let broken = verify(&store.conn(), None, None).unwrap().unwrap_err();
            assert_eq!(broken.seq, 1100 - cut + 1, "cut {cut}: {broken:?}");
            assert!(broken.problem.contains("missing"), "{broken:?}");
            assert!(store.truncation().unwrap().is_some(), "cut {cut}");
        }
    }

    #[test]
    fn a_journal_emptied_with_its_checkpoints_is_not_intact_when_rollouts_ran() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db"), "f").unwrap();
        let id = store.start_rollout("r", "c", "t", "me").unwrap();
        store.append(Some(id), &[event(1)]).unwrap();
        store.set_status(id, "completed", Some("t")).unwrap();
        let conn = store.conn();
        conn.execute_batch("DELETE FROM journal; DELETE FROM checkpoints;")
            .unwrap();
        let broken = verify(&conn, None, None).unwrap().unwrap_err();
        assert!(broken.problem.contains("no journal rows"), "{broken:?}");
    }

    #[test]
    fn rows_of_an_older_database_still_verify_after_the_migration() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        {
            // A schema-1 database with two rows hashed the old way.
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(super::super::MIGRATIONS[0]).unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
            let mut prev = String::new();
            for seq in 1..=2 {
                let columns = Columns {
                    seq,
                    rollout: None,
                    ts: "t",
                    events: "1",
                    body: "[]",
                };
                let hash = row_hash(Chain::V1, None, &prev, &columns);
                conn.execute(
                    "INSERT INTO journal (seq, ts, events, body, hash) VALUES (?1, 't', 1, '[]', ?2)",
                    params![seq, hash],
                )
                .unwrap();
                prev = hash;
            }
        }
        let store = Store::open(&path, "f").unwrap();
        store.append(None, &[event(3)]).unwrap();
        assert_eq!(rows(&store.conn()), Ok(3));
    }

    #[test]
    fn the_chain_covers_the_event_count_column() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with(3, dir.path());
        store
            .conn()
            .execute("UPDATE journal SET events = 7 WHERE seq = 2", [])
            .unwrap();
        assert_eq!(rows(&store.conn()), Err(2));
    }

    #[test]
    fn a_keyed_chain_cannot_be_rechained_without_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db"), "f").unwrap();
        let key = b"correct horse".as_slice();
        // Rows written the way `append` does with FLOTILLA_AUDIT_KEY set.
        let mut prev = String::new();
        for seq in 1..=3 {
            let columns = Columns {
                seq,
                rollout: None,
                ts: "t",
                events: "1",
                body: "[]",
            };
            let hash = row_hash(Chain::Hmac, Some(key), &prev, &columns);
            store
                .conn()
                .execute(
                    "INSERT INTO journal (seq, ts, events, body, hash, chain) VALUES (?1, 't', 1, '[]', ?2, 'hmac-sha256')",
                    params![seq, hash],
                )
                .unwrap();
            prev = hash;
        }
        let conn = store.conn();
        let v = verify(&conn, Some(key), None).unwrap().unwrap();
        assert!(v.keyed);
        let no_key = verify(&conn, None, None).unwrap().unwrap_err();
        assert!(no_key.problem.contains("FLOTILLA_AUDIT_KEY"), "{no_key:?}");
        // Someone edits row 2 and re-chains from there with plain SHA-256, or with a key
        // of their own: both are found.
        conn.execute("UPDATE journal SET body = '[1]' WHERE seq = 2", [])
            .unwrap();
        // Rows `from`..=3 re-hashed the way `chain` (and key `k`) makes them.
        let rechain = |from: i64, chain: Chain, k: Option<&[u8]>| {
            let mut prev: String = conn
                .query_row("SELECT hash FROM journal WHERE seq = ?1", [from - 1], |r| {
                    r.get(0)
                })
                .unwrap_or_default();
            for seq in from..=3 {
                let body: String = conn
                    .query_row("SELECT body FROM journal WHERE seq = ?1", [seq], |r| {
                        r.get(0)
                    })
                    .unwrap();
                let columns = Columns {
                    seq,
                    rollout: None,
                    ts: "t",
                    events: "1",
                    body: &body,
                };
                let hash = row_hash(chain, k, &prev, &columns);
                conn.execute(
                    "UPDATE journal SET hash = ?2, chain = ?3 WHERE seq = ?1",
                    params![seq, hash, chain.name()],
                )
                .unwrap();
                prev = hash;
            }
        };
        rechain(2, Chain::Sha256, None);
        let broken = verify(&conn, Some(key), None).unwrap().unwrap_err();
        assert_eq!(broken.seq, 2);
        assert!(broken.problem.contains("not keyed"), "{broken:?}");
        rechain(2, Chain::Hmac, Some(b"mallory's key"));
        assert_eq!(verify(&conn, Some(key), None).unwrap().unwrap_err().seq, 2);
        // Re-chained from the first row without the key: plain SHA-256 throughout, which
        // verifies as such, but not when the key says the chain is keyed.
        rechain(1, Chain::Sha256, None);
        assert!(verify(&conn, None, None).unwrap().is_ok());
        let broken = verify(&conn, Some(key), None).unwrap().unwrap_err();
        assert!(broken.problem.contains("not keyed"), "{broken:?}");
    }

    #[test]
    fn a_head_kept_elsewhere_catches_a_rewritten_and_rechained_journal() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with(4, dir.path());
        let (seq, hash) = head(&store.conn()).unwrap().unwrap();
        let conn = store.conn();
        assert!(verify(&conn, None, Some((seq, &hash))).unwrap().is_ok());
        // Everything deleted and written anew, checkpoints and all: only the kept head
        // tells.
        conn.execute_batch("DELETE FROM journal; DELETE FROM checkpoints;")
            .unwrap();
        drop(conn);
        for i in 10..14 {
            store.append(None, &[event(i)]).unwrap();
        }
        let conn = store.conn();
        assert!(verify(&conn, None, None).unwrap().is_ok());
        let broken = verify(&conn, None, Some((seq, &hash)))
            .unwrap()
            .unwrap_err();
        assert!(broken.problem.contains("expected head"), "{broken:?}");
        assert!(verify(&conn, None, Some((99, &hash))).unwrap().is_err());
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
        assert_eq!(rows(&store.conn()), Ok(5));

        let conn = store.conn();
        conn.execute(
            "UPDATE journal SET body = replace(body, 'user2', 'mallory') WHERE seq = 3",
            [],
        )
        .unwrap();
        assert_eq!(verify(&conn, None, None).unwrap().unwrap_err().seq, 3);
        conn.execute(
            "UPDATE journal SET body = replace(body, 'mallory', 'user2') WHERE seq = 3",
            [],
        )
        .unwrap();
        assert_eq!(rows(&conn), Ok(5));

        conn.execute("DELETE FROM journal WHERE seq = 2", [])
            .unwrap();
        let broken = verify(&conn, None, None).unwrap().unwrap_err();
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

    /// A store at `path` with one rollout, and a journal writer for it; the receiver
    /// stands for the views the writer passes committed events on to.
    fn writer(path: &Path) -> (Store, i64, Journal, JournalThread, Downstream) {
        let store = Store::open(path, "f").unwrap();
        let id = store.start_rollout("r", "c", "t", "me").unwrap();
        let (down_tx, down_rx) = mpsc::unbounded_channel();
        let (journal, thread) = spawn(path, id, None, down_tx).unwrap();
        (store, id, journal, thread, down_rx)
    }

    type Downstream = mpsc::UnboundedReceiver<Vec<Event>>;

    #[tokio::test]
    async fn a_group_of_events_is_committed_in_one_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let (store, id, journal, thread, _down_rx) = writer(&path);
        journal.begin_group();
        // Waited on, so the writer wakes at once; the group holds it until its end.
        let first = journal.emit_durable(event(1));
        std::thread::sleep(std::time::Duration::from_millis(20));
        journal.emit(event(2));
        journal.end_group();
        assert!(first.await);
        assert!(journal.flush().await);
        drop(journal);
        thread.join().unwrap();
        let rows: Vec<i64> = entries(&store.conn(), Some(id))
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0], rows[1], "the group was split across rows");
    }

    #[tokio::test]
    async fn a_group_that_begins_while_the_writer_lingers_is_not_split() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let (store, id, journal, thread, _down_rx) = writer(&path);
        for _ in 0..20 {
            // A trickle nobody waits on makes the writer linger; the group begins meanwhile
            // and ends a moment later.
            journal.emit(event(1));
            journal.begin_group();
            journal.emit(event(2));
            std::thread::sleep(std::time::Duration::from_millis(3));
            journal.emit(event(3));
            journal.end_group();
        }
        assert!(journal.flush().await);
        drop(journal);
        thread.join().unwrap();
        let rows = entries(&store.conn(), Some(id)).unwrap();
        for pair in rows.chunks(3) {
            assert_eq!(pair[1].seq, pair[2].seq, "a group was split across rows");
        }
    }

    #[tokio::test]
    async fn the_wal_stays_bounded_while_a_long_rollout_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let (store, _, journal, thread, _down_rx) = writer(&path);
        // 120,000 step events, about 20 MB of WAL if nothing were copied into the database,
        // in windows that wait to be durable as the engine's do.
        let windows = 120;
        for w in 0..windows {
            for n in 0..1000 {
                let event = Event::new(
                    std::time::SystemTime::now(),
                    EventKind::StepSucceeded {
                        wave: "general".into(),
                        env: format!("env-{w:03}-{n:03}").into(),
                        service: "api".into(),
                        attempts: 1,
                        version: "2026.12.1".into(),
                        revision: "0123456789abcdef".into(),
                        output: None,
                    },
                );
                if n == 999 {
                    assert!(journal.emit_durable(event).await);
                } else {
                    journal.emit(event);
                }
            }
        }
        assert!(journal.flush().await);
        drop(journal);
        thread.join().unwrap();
        // The store's connection is still open, so the WAL keeps the size it grew to.
        let wal = std::fs::metadata(format!("{}-wal", path.display()))
            .unwrap()
            .len();
        let events: i64 = store
            .conn()
            .query_row("SELECT sum(events) FROM journal", [], |r| r.get(0))
            .unwrap();
        assert_eq!(events, windows * 1000, "every event is in the journal");
        assert!(
            wal < 10_000_000,
            "the WAL grew to {:.1} MB: it is not being copied into the database",
            wal as f64 / 1e6
        );
    }

    #[tokio::test]
    async fn the_writer_passes_events_on_only_after_committing_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let (_store, id, journal, thread, mut down_rx) = writer(&path);
        assert!(journal.emit_durable(event(1)).await);
        // Once acknowledged, the row is there for any other connection to read.
        let other = connect(&path).unwrap();
        assert_eq!(entries(&other, Some(id)).unwrap().len(), 1);
        assert_eq!(down_rx.recv().await.unwrap(), vec![event(1)]);
        journal.emit(event(2));
        assert!(journal.flush().await);
        drop(journal);
        thread.join().unwrap();
        assert_eq!(rows(&other), Ok(2));
    }
}
