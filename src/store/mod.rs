//! The state store: one SQLite database per fleet holding the hash-chained journal of every
//! event, the rollouts, queued commands from other terminals, the engine lease, last-applied
//! state and per-step history. (The simulated fleet keeps its live state here too, in a
//! table of its own that it makes itself.)
//!
//! The journal is the truth: every other view is a fold over it.

pub mod journal;
pub mod lease;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use serde::{Deserialize, Serialize};

/// The schema this flotilla writes. Each entry of [`MIGRATIONS`] moves one version up.
pub const SCHEMA_VERSION: i64 = 3;

const MIGRATIONS: &[&str] = &[
    // 0 -> 1
    r#"
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE rollouts (
        id INTEGER PRIMARY KEY,
        release TEXT NOT NULL,
        commit_id TEXT NOT NULL,
        started TEXT NOT NULL,
        started_by TEXT NOT NULL,
        status TEXT NOT NULL,
        ended TEXT
    );
    -- One row per committed batch of events; `body` is a JSON array of them.
    CREATE TABLE journal (
        seq INTEGER PRIMARY KEY,
        rollout INTEGER,
        ts TEXT NOT NULL,
        events INTEGER NOT NULL,
        body TEXT NOT NULL,
        hash TEXT NOT NULL
    );
    CREATE INDEX journal_by_rollout ON journal (rollout, seq);
    CREATE VIEW journal_events AS
        SELECT j.seq AS seq, j.rollout AS rollout, e.key AS idx,
               json_extract(e.value, '$.kind') AS kind, e.value AS event
        FROM journal AS j, json_each(j.body) AS e;
    CREATE TABLE commands (
        id INTEGER PRIMARY KEY,
        rollout INTEGER NOT NULL,
        ts TEXT NOT NULL,
        actor TEXT NOT NULL,
        origin TEXT,
        body TEXT NOT NULL,
        taken INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE lease (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        rollout INTEGER NOT NULL,
        user TEXT NOT NULL,
        host TEXT NOT NULL,
        pid INTEGER NOT NULL,
        heartbeat_ms INTEGER NOT NULL,
        acquired TEXT NOT NULL
    );
    -- Derived from the journal, never written directly: they cannot disagree with it, and
    -- keeping them costs nothing while a rollout runs.
    CREATE VIEW last_applied AS
        SELECT json_extract(event, '$.env') AS env,
               json_extract(event, '$.service') AS service,
               json_extract(event, '$.version') AS version,
               json_extract(event, '$.revision') AS revision,
               rollout, max(seq * 100000 + idx) AS position,
               json_extract(event, '$.ts') AS ts
        FROM journal_events
        WHERE kind IN ('step_succeeded', 'step_recovered')
        GROUP BY 1, 2;
    CREATE VIEW history AS
        SELECT json_extract(event, '$.env') AS env,
               json_extract(event, '$.service') AS service,
               sum(kind = 'step_started') AS attempts,
               sum(kind = 'step_succeeded') AS successes
        FROM journal_events
        WHERE kind IN ('step_started', 'step_succeeded')
        GROUP BY 1, 2;
    "#,
    // 1 -> 2: the chain covers every column and names how each row is hashed (rows before
    // stay `v1`); the head is checkpointed outside the journal's table.
    r#"
    ALTER TABLE journal ADD COLUMN chain TEXT NOT NULL DEFAULT 'v1';
    CREATE TABLE checkpoints (
        seq INTEGER NOT NULL,
        hash TEXT NOT NULL,
        ts TEXT NOT NULL,
        reason TEXT NOT NULL
    );
    "#,
    // 2 -> 3: notifications waiting to be sent, queued with their event's row.
    r#"
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY,
        key TEXT NOT NULL UNIQUE,
        rollout INTEGER,
        target TEXT NOT NULL,
        kind TEXT NOT NULL,
        body TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_ms INTEGER NOT NULL,
        sent_ms INTEGER,
        gave_up TEXT,
        last_error TEXT
    );
    CREATE INDEX outbox_due ON outbox (next_ms) WHERE sent_ms IS NULL AND gave_up IS NULL;
    "#,
];

/// Why the store could not be used. Nothing is ever overwritten on these errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the state database {path}: {detail}")]
    Open { path: PathBuf, detail: String },
    #[error("{path} is not a flotilla state database or is corrupt ({detail}); it was left untouched: move it aside or pass another --state")]
    Corrupt { path: PathBuf, detail: String },
    #[error("the state database {path} was written by a newer flotilla (schema {found}, this one knows up to {SCHEMA_VERSION}); it was left untouched: upgrade flotilla")]
    Newer { path: PathBuf, found: i64 },
    #[error("the state database {path} belongs to fleet `{found}`, not `{expected}`; pass the right --state")]
    OtherFleet {
        path: PathBuf,
        found: String,
        expected: String,
    },
    #[error("{holder} no longer holds the engine lease (another engine took over); this engine records and applies nothing more")]
    LeaseLost { holder: String },
    /// The journal is keyed and this process has no key, or another one.
    #[error("{0}")]
    AuditKey(String),
    #[error("state database error: {0}")]
    Sql(#[from] rusqlite::Error),
}

/// A rollout as recorded in the store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutRecord {
    pub id: i64,
    pub release: String,
    pub commit: String,
    pub started: String,
    pub started_by: String,
    pub status: String,
    pub ended: Option<String>,
}

impl RolloutRecord {
    /// Finished rollouts are done with; anything else may be resumed.
    pub fn finished(&self) -> bool {
        matches!(self.status.as_str(), "completed" | "aborted")
    }
}

/// What flotilla last applied to one service of one environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub version: String,
    pub revision: String,
    /// The intent commit whose rendering was applied.
    pub commit: String,
    pub release: String,
    pub rollout: i64,
    /// When the step ended.
    pub ts: String,
}

/// What flotilla applied, per (environment, service): the last apply that succeeded, and
/// one set out on after it whose end is not recorded.
#[derive(Debug, Clone, Default)]
pub struct LastApplied {
    pub applied: BTreeMap<(String, String), Applied>,
    pub intended: BTreeMap<(String, String), Applied>,
}

/// The state database of one fleet.
pub struct Store {
    path: PathBuf,
    conn: Mutex<Connection>,
}

impl Store {
    /// Opens (creating if needed) the database at `path` for fleet `fleet`, migrating an older
    /// schema. A newer schema, a foreign fleet or a file that is not SQLite is refused.
    pub fn open(path: &Path, fleet: &str) -> Result<Store, StoreError> {
        let conn = connect(path)?;
        let store = Store {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
        };
        store.migrate()?;
        store.claim_fleet(fleet)?;
        Ok(store)
    }

    /// Opens an existing database without knowing the fleet (steering and audit commands).
    pub fn open_existing(path: &Path) -> Result<Store, StoreError> {
        if !path.exists() {
            return Err(StoreError::Open {
                path: path.into(),
                detail: "no such file; has a rollout been started with this --state?".into(),
            });
        }
        let store = Store {
            path: path.to_path_buf(),
            conn: Mutex::new(connect(path)?),
        };
        store.migrate()?;
        Ok(store)
    }

    /// Where the database is.
    /// The connection, for the store's own modules. A poisoned lock is still usable: every
    /// change happens in a transaction that rolled back on the panic.
    pub(crate) fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn migrate(&self) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| self.corrupt(e))?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::Newer {
                path: self.path.clone(),
                found: version,
            });
        }
        if version < SCHEMA_VERSION {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            // Read again under the write lock: another process may have migrated meanwhile.
            let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
            for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
                tx.execute_batch(sql).map_err(|e| self.corrupt(e))?;
                tx.pragma_update(None, "user_version", i as i64 + 1)?;
            }
            tx.commit()?;
        }
        Ok(())
    }

    fn claim_fleet(&self, fleet: &str) -> Result<(), StoreError> {
        let conn = self.conn();
        // Insert-if-absent first, so two processes opening a new database agree on it.
        conn.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('fleet', ?1)",
            params![fleet],
        )?;
        let found: String =
            conn.query_row("SELECT value FROM meta WHERE key = 'fleet'", [], |r| {
                r.get(0)
            })?;
        if found == fleet {
            Ok(())
        } else {
            Err(StoreError::OtherFleet {
                path: self.path.clone(),
                found,
                expected: fleet.into(),
            })
        }
    }

    fn corrupt(&self, e: rusqlite::Error) -> StoreError {
        StoreError::Corrupt {
            path: self.path.clone(),
            detail: e.to_string(),
        }
    }

    /// The newest rollout, finished or not.
    pub fn latest_rollout(&self) -> Result<Option<RolloutRecord>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT id, release, commit_id, started, started_by, status, ended
                 FROM rollouts ORDER BY id DESC LIMIT 1",
                [],
                rollout_row,
            )
            .optional()?)
    }

    /// The rollout that has not finished, if any (there is at most one).
    pub fn unfinished_rollout(&self) -> Result<Option<RolloutRecord>, StoreError> {
        Ok(self.latest_rollout()?.filter(|r| !r.finished()))
    }

    /// The unfinished rollout with its journal folded. A rollout whose journal says it ended
    /// (a crash came between its last event and its status update) is marked finished here
    /// instead: the journal is the truth.
    pub fn unfinished_with_view(
        &self,
    ) -> Result<Option<(RolloutRecord, crate::engine::RolloutView)>, StoreError> {
        let Some(r) = self.unfinished_rollout()? else {
            return Ok(None);
        };
        let events: Vec<crate::engine::Event> = self
            .journal_rows(Some(r.id))?
            .iter()
            .filter_map(|e| e.event())
            .collect();
        let view = crate::engine::RolloutView::fold(&events);
        if view.state.is_final() {
            self.set_status(r.id, view.state.name(), view.last_event.as_deref())?;
            return Ok(None);
        }
        Ok(Some((r, view)))
    }

    /// Records a new rollout and returns its id.
    pub fn start_rollout(
        &self,
        release: &str,
        commit: &str,
        started: &str,
        by: &str,
    ) -> Result<i64, StoreError> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO rollouts (release, commit_id, started, started_by, status)
             VALUES (?1, ?2, ?3, ?4, 'running')",
            params![release, commit, started, by],
        )?;
        Ok(conn.last_insert_rowid())
    }

    /// Sets a rollout's status (the journal writer does this on terminal events).
    pub fn set_status(
        &self,
        rollout: i64,
        status: &str,
        ended: Option<&str>,
    ) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE rollouts SET status = ?2, ended = ?3 WHERE id = ?1",
            params![rollout, status, ended],
        )?;
        Ok(())
    }

    /// Queues a command for the engine running `rollout`; returns its id.
    pub fn queue_command(
        &self,
        rollout: i64,
        ts: &str,
        actor: &str,
        origin: Option<&str>,
        body: &StoredCommand,
    ) -> Result<i64, StoreError> {
        let body = serde_json::to_string(body).unwrap_or_default();
        let conn = self.conn();
        conn.execute(
            "INSERT INTO commands (rollout, ts, actor, origin, body) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![rollout, ts, actor, origin, body],
        )?;
        Ok(conn.last_insert_rowid())
    }

    /// Takes the commands queued for `rollout` after command `after`, oldest first. The engine
    /// passes the last command its journal records as received, so a command taken just
    /// before a crash, but never journaled, is delivered again rather than lost.
    pub fn take_commands(
        &self,
        rollout: i64,
        after: i64,
    ) -> Result<Vec<QueuedCommand>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let rows: Vec<QueuedCommand> = {
            let mut stmt = tx.prepare(
                "SELECT id, actor, origin, body FROM commands
                 WHERE rollout = ?1 AND id > ?2 ORDER BY id",
            )?;
            let rows = stmt.query_map(params![rollout, after], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, String>(3)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (id, actor, origin, body) = row?;
                // A command we cannot read (a newer flotilla wrote it) is skipped, not fatal.
                if let Ok(command) = serde_json::from_str(&body) {
                    out.push(QueuedCommand {
                        id,
                        actor,
                        origin,
                        command,
                    });
                }
            }
            out
        };
        tx.execute(
            "UPDATE commands SET taken = 1 WHERE rollout = ?1 AND id > ?2",
            params![rollout, after],
        )?;
        tx.commit()?;
        Ok(rows)
    }

    /// How many commands are queued for `rollout` after command `after`.
    pub fn commands_after(&self, rollout: i64, after: i64) -> Result<i64, StoreError> {
        Ok(self.conn().query_row(
            "SELECT count(*) FROM commands WHERE rollout = ?1 AND id > ?2",
            params![rollout, after],
            |r| r.get(0),
        )?)
    }

    /// Whether an engine took command `id`.
    pub fn command_taken(&self, id: i64) -> Result<bool, StoreError> {
        Ok(self.conn().query_row(
            "SELECT taken FROM commands WHERE id = ?1",
            params![id],
            |r| r.get::<_, i64>(0),
        )? != 0)
    }

    /// Appends events to the journal now, outside a running engine's writer (an abort from
    /// another terminal, a lease takeover).
    pub fn append(
        &self,
        rollout: Option<i64>,
        events: &[crate::engine::Event],
    ) -> Result<(), StoreError> {
        self.append_routed(rollout, events, None)
    }

    /// [`Store::append`], queueing the notifications `routes` ask for with the events.
    pub fn append_routed(
        &self,
        rollout: Option<i64>,
        events: &[crate::engine::Event],
        routes: Option<&crate::notify::Routes>,
    ) -> Result<(), StoreError> {
        journal::append_now(&mut self.conn(), rollout, events, routes)
    }

    /// The journal's newest row and hash (see [`journal::head`]).
    pub fn journal_head(&self) -> Result<Option<(i64, String)>, StoreError> {
        journal::head(&self.conn())
    }

    /// Recomputes the journal's hash chain and checks it against its checkpoints and an
    /// expected head (see [`journal::verify`]).
    pub fn verify(
        &self,
        key: Option<&[u8]>,
        expect: Option<(i64, &str)>,
    ) -> Result<Result<journal::Verified, journal::ChainBreak>, StoreError> {
        journal::verify(&self.conn(), key, expect)
    }

    /// Why the journal is shorter than its checkpoints say, if it is (see
    /// [`journal::truncation`]).
    pub fn truncation(&self) -> Result<Option<String>, StoreError> {
        journal::truncation(&self.conn())
    }

    /// Refuses a keyed journal without its key (see [`journal::check_key`]).
    pub fn check_audit_key(&self) -> Result<(), StoreError> {
        journal::check_key(&self.conn(), journal::audit_key().as_deref())
    }

    /// Checkpoints the journal's head (an engine exits).
    pub fn checkpoint(&self, ts: &str, reason: &str) -> Result<(), StoreError> {
        journal::checkpoint(&self.conn(), ts, reason)
    }

    /// The journal's events of one rollout, or all of them, oldest first.
    pub fn journal_rows(
        &self,
        rollout: Option<i64>,
    ) -> Result<Vec<journal::JournalEntry>, StoreError> {
        journal::entries(&self.conn(), rollout)
    }

    /// Journal events of `rollout` in rows after row `after` (a watcher's last seen row).
    pub fn journal_rows_after(
        &self,
        rollout: i64,
        after: i64,
    ) -> Result<Vec<journal::JournalEntry>, StoreError> {
        journal::entries_after(&self.conn(), Some(rollout), after)
    }

    /// What flotilla last applied successfully to each service of each environment, from the
    /// journal: per (environment, service), the step's version and revision and the commit
    /// and release whose rendering it applied (a rollback's step, the release gone back to).
    /// Beside it, what flotilla set out to apply after that without a recorded end (a step in
    /// flight when an engine was killed): live state at that revision is flotilla's doing.
    pub fn last_applied(&self) -> Result<LastApplied, StoreError> {
        let conn = self.conn();
        // The journal's batches read whole and parsed once each, keeping only the fields
        // used: far cheaper than expanding every event in SQL first.
        let mut stmt = conn.prepare(
            "SELECT j.rollout, j.body, r.commit_id, r.release
             FROM journal AS j JOIN rollouts AS r ON r.id = j.rollout
             ORDER BY j.seq",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
            ))
        })?;
        let mut out = LastApplied::default();
        // The release each rollback (of a rollout, in an environment) goes back to.
        let mut back_to: BTreeMap<(i64, String), String> = BTreeMap::new();
        /// The fields read here: parsed into this alone, the rest of each event (its
        /// output above all) is skipped instead of built.
        #[derive(serde::Deserialize, Default)]
        #[serde(default)]
        struct Fields {
            kind: String,
            env: String,
            service: String,
            version: String,
            revision: String,
            ts: String,
            to: String,
            revisions: BTreeMap<String, String>,
        }
        const KINDS: [&str; 5] = [
            "step_succeeded",
            "step_recovered",
            "step_rolled_back",
            "rollback_started",
            "env_started",
        ];
        for row in rows {
            let (rollout, body, commit, release) = row?;
            let Ok(batch) = serde_json::from_str::<Vec<Fields>>(&body) else {
                continue;
            };
            for e in batch
                .into_iter()
                .filter(|e| KINDS.contains(&e.kind.as_str()))
            {
                let (kind, commit, release) = (e.kind.as_str(), commit.clone(), release.clone());
                let env = e.env.clone();
                let intended = |release: String| {
                    e.revisions
                        .clone()
                        .into_iter()
                        .map(move |(service, revision)| (service, revision, release.clone()))
                };
                match kind {
                    "env_started" | "rollback_started" => {
                        let release = if kind == "rollback_started" {
                            back_to.insert((rollout, env.clone()), e.to.clone());
                            e.to.clone()
                        } else {
                            release
                        };
                        for (service, revision, release) in intended(release) {
                            let a = Applied {
                                version: String::new(),
                                revision,
                                commit: commit.clone(),
                                release,
                                rollout,
                                ts: e.ts.clone(),
                            };
                            out.intended.insert((env.clone(), service), a);
                        }
                    }
                    _ => {
                        let release = match kind {
                            "step_rolled_back" => match back_to.get(&(rollout, env.clone())) {
                                Some(to) => to.clone(),
                                None => continue,
                            },
                            _ => release,
                        };
                        let key = (env, e.service.clone());
                        out.intended.remove(&key);
                        out.applied.insert(
                            key,
                            Applied {
                                version: e.version.clone(),
                                revision: e.revision.clone(),
                                commit,
                                release,
                                rollout,
                                ts: e.ts.clone(),
                            },
                        );
                    }
                }
            }
        }
        Ok(out)
    }

    /// Every journaled event of one of `kinds`, oldest first, as JSON.
    pub fn events_of_kinds(&self, kinds: &[&str]) -> Result<Vec<serde_json::Value>, StoreError> {
        let conn = self.conn();
        let list = kinds
            .iter()
            .map(|k| format!("'{}'", k.replace('\'', "")))
            .collect::<Vec<_>>()
            .join(", ");
        // Rows are batches of compact JSON: one that does not hold the kind's text holds no
        // such event, and is skipped without expanding it (most rows are steps).
        let holds = kinds
            .iter()
            .map(|k| {
                format!(
                    "j.body LIKE '%\"kind\":\"{}\"%'",
                    k.replace(['\'', '%'], "")
                )
            })
            .collect::<Vec<_>>()
            .join(" OR ");
        let mut stmt = conn.prepare(&format!(
            "SELECT e.value FROM journal AS j, json_each(j.body) AS e
             WHERE ({holds}) AND json_extract(e.value, '$.kind') IN ({list})
             ORDER BY j.seq, e.key"
        ))?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        let mut out = Vec::new();
        for row in rows {
            if let Ok(v) = serde_json::from_str(&row?) {
                out.push(v);
            }
        }
        Ok(out)
    }

    /// The drift each service was last reported with (`drift_detected` not cleared since):
    /// per (environment, service), the keys.
    pub fn reported_drift(&self) -> Result<BTreeMap<(String, String), Vec<String>>, StoreError> {
        let mut out = BTreeMap::new();
        for e in self.events_of_kinds(&["drift_detected", "drift_cleared"])? {
            let key = (
                e["env"].as_str().unwrap_or_default().to_string(),
                e["service"].as_str().unwrap_or_default().to_string(),
            );
            if e["kind"] == "drift_cleared" {
                out.remove(&key);
            } else {
                let keys = e["keys"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|k| k.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                out.insert(key, keys);
            }
        }
        Ok(out)
    }

    /// Attempts and successes per (env, service) over every rollout.
    pub fn history(&self) -> Result<crate::plan::History, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT env, service, attempts, successes FROM history")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                (r.get::<_, String>(0)?, r.get::<_, String>(1)?),
                (r.get::<_, i64>(2)? as u64, r.get::<_, i64>(3)? as u64),
            ))
        })?;
        Ok(crate::plan::History {
            steps: rows.collect::<Result<_, _>>()?,
        })
    }
}

fn rollout_row(r: &rusqlite::Row) -> rusqlite::Result<RolloutRecord> {
    Ok(RolloutRecord {
        id: r.get(0)?,
        release: r.get(1)?,
        commit: r.get(2)?,
        started: r.get(3)?,
        started_by: r.get(4)?,
        status: r.get(5)?,
        ended: r.get(6)?,
    })
}

/// Opens a connection with the settings every user of the database shares: WAL so readers
/// never block the journal writer, and a busy timeout so two processes wait instead of failing.
pub fn connect(path: &Path) -> Result<Connection, StoreError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Open {
            path: path.into(),
            detail: e.to_string(),
        })?;
    }
    // Readable by its owner only: it holds who did what, and SQLite gives the WAL and its
    // index the database file's permissions.
    #[cfg(unix)]
    if !path.exists() {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .or_else(|e| match e.kind() {
                // Another process made it just now.
                std::io::ErrorKind::AlreadyExists => Ok(std::fs::File::open(path)?),
                _ => Err(e),
            })
            .map_err(|e| StoreError::Open {
                path: path.into(),
                detail: e.to_string(),
            })?;
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| StoreError::Open {
        path: path.into(),
        detail: e.to_string(),
    })?;
    // Only "not a database" and "corrupt" mean the file is bad; anything else (permissions,
    // a read-only disk) is a problem opening it, and says so.
    let corrupt = |e: rusqlite::Error| match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt) => {
            StoreError::Corrupt {
                path: path.into(),
                detail: e.to_string(),
            }
        }
        _ => StoreError::Open {
            path: path.into(),
            detail: format!("{e} (check the file's permissions and free space)"),
        },
    };
    conn.busy_timeout(Duration::from_secs(10))?;
    // Reading the schema first tells a non-database file apart before anything is written.
    conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
        r.get::<_, i64>(0)
    })
    .map_err(corrupt)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(corrupt)?;
    // With WAL, NORMAL still never corrupts the database; a power cut may lose the last
    // commits, a killed process loses nothing.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    Ok(conn)
}

/// A command as another terminal queues it (who sent it is kept beside it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum StoredCommand {
    Approve {
        wave: String,
        note: Option<String>,
    },
    Pause,
    Resume,
    Abort,
    Retry {
        envs: Vec<String>,
    },
    Skip {
        env: String,
        reason: String,
    },
    Rollback {
        envs: Vec<String>,
        wave: Option<String>,
        to: Option<String>,
    },
    /// A decision on an environment that changed out of band (adopt, revert, accept).
    Release {
        env: String,
        decision: crate::engine::Decision,
    },
}

impl StoredCommand {
    /// What to queue for an engine command (the sender is queued beside it); None for the
    /// engine's own Ctrl-C, which another terminal cannot send.
    pub fn from_engine(command: &crate::engine::Command) -> Option<StoredCommand> {
        use crate::engine::Command;
        Some(match command {
            Command::Approve { wave, note, .. } => StoredCommand::Approve {
                wave: wave.clone(),
                note: note.clone(),
            },
            Command::Pause { .. } => StoredCommand::Pause,
            Command::Resume { .. } => StoredCommand::Resume,
            Command::Abort { .. } => StoredCommand::Abort,
            Command::Retry { envs, .. } => StoredCommand::Retry { envs: envs.clone() },
            Command::Skip { env, reason, .. } => StoredCommand::Skip {
                env: env.clone(),
                reason: reason.clone(),
            },
            Command::Rollback { envs, wave, to, .. } => StoredCommand::Rollback {
                envs: envs.clone(),
                wave: wave.clone(),
                to: to.clone(),
            },
            Command::Release { env, decision, .. } => StoredCommand::Release {
                env: env.clone(),
                decision: decision.clone(),
            },
            Command::Interrupt => return None,
            Command::Received { command, .. } => return StoredCommand::from_engine(command),
        })
    }
}

/// A queued command with its sender.
#[derive(Debug, Clone)]
pub struct QueuedCommand {
    pub id: i64,
    pub actor: String,
    pub origin: Option<String>,
    pub command: StoredCommand,
}

impl QueuedCommand {
    /// The engine command this asks for, as received from the queue: the engine journals
    /// its receipt together with what it did.
    pub fn received(&self) -> crate::engine::Command {
        crate::engine::Command::Received {
            id: self.id,
            origin: self.origin.clone(),
            command: Box::new(self.to_engine()),
        }
    }

    /// The engine command this asks for.
    pub fn to_engine(&self) -> crate::engine::Command {
        use crate::engine::Command;
        let by = self.actor.clone();
        match &self.command {
            StoredCommand::Approve { wave, note } => Command::Approve {
                wave: wave.clone(),
                by,
                note: note.clone(),
            },
            StoredCommand::Pause => Command::Pause { by },
            StoredCommand::Resume => Command::Resume { by },
            StoredCommand::Abort => Command::Abort { by },
            StoredCommand::Retry { envs } => Command::Retry {
                envs: envs.clone(),
                by,
            },
            StoredCommand::Skip { env, reason } => Command::Skip {
                env: env.clone(),
                reason: reason.clone(),
                by,
            },
            StoredCommand::Rollback { envs, wave, to } => Command::Rollback {
                envs: envs.clone(),
                wave: wave.clone(),
                to: to.clone(),
                by,
            },
            StoredCommand::Release { env, decision } => Command::Release {
                env: env.clone(),
                decision: decision.clone(),
                by,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_console_command_survives_the_queue_unchanged() {
        use crate::engine::Command;
        let by = "ann@bastion".to_string();
        let commands = [
            Command::Approve {
                wave: "canary".into(),
                by: by.clone(),
                note: Some("ok".into()),
            },
            Command::Pause { by: by.clone() },
            Command::Resume { by: by.clone() },
            Command::Abort { by: by.clone() },
            Command::Retry {
                envs: vec!["e-1".into()],
                by: by.clone(),
            },
            Command::Skip {
                env: "e-2".into(),
                reason: "freeze".into(),
                by: by.clone(),
            },
        ];
        for c in commands {
            let queued = QueuedCommand {
                id: 1,
                actor: by.clone(),
                origin: None,
                command: StoredCommand::from_engine(&c).unwrap(),
            };
            assert_eq!(queued.to_engine(), c);
        }
        assert_eq!(StoredCommand::from_engine(&Command::Interrupt), None);
    }

    #[test]
    fn a_watcher_reads_only_the_rows_it_has_not_seen() {
        use crate::engine::{Event, EventKind};
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db"), "f").unwrap();
        let id = store.start_rollout("r", "c", "t", "me").unwrap();
        let paused = |by: &str| Event {
            ts: "2026-11-02T00:00:00.000Z".into(),
            kind: EventKind::RolloutPaused { by: by.into() },
        };
        store.append(Some(id), &[paused("a")]).unwrap();
        let seen = store.journal_rows(Some(id)).unwrap().last().unwrap().seq;
        store.append(Some(id), &[paused("b"), paused("c")]).unwrap();
        store.append(None, &[paused("other")]).unwrap();
        let new: Vec<String> = store
            .journal_rows_after(id, seen)
            .unwrap()
            .iter()
            .filter_map(|e| e.actor.clone())
            .collect();
        assert_eq!(new, ["b", "c"]);
    }

    #[test]
    fn a_file_that_is_not_sqlite_is_refused_and_left_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        std::fs::write(
            &path,
            b"{\"version\": 1, \"envs\": {}} and more text to fill a page",
        )
        .unwrap();
        let before = std::fs::read(&path).unwrap();
        let err = Store::open(&path, "f").err().expect("refused");
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("left untouched"));
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        drop(Store::open(&path, "f").unwrap());
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        let err = Store::open(&path, "f").err().expect("refused");
        assert!(matches!(err, StoreError::Newer { .. }), "{err}");
    }

    #[test]
    fn a_database_of_another_fleet_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        drop(Store::open(&path, "one").unwrap());
        let err = Store::open(&path, "two").err().expect("refused");
        assert!(err.to_string().contains("belongs to fleet `one`"), "{err}");
    }

    #[test]
    fn queued_commands_are_taken_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db"), "f").unwrap();
        let id = store.start_rollout("r", "c", "t", "me").unwrap();
        let cmd = StoredCommand::Approve {
            wave: "canary".into(),
            note: None,
        };
        let q = store.queue_command(id, "t", "bob@h", None, &cmd).unwrap();
        assert!(!store.command_taken(q).unwrap());
        let taken = store.take_commands(id, 0).unwrap();
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].command, cmd);
        assert!(store.command_taken(q).unwrap());
        assert!(store.take_commands(id, q).unwrap().is_empty());
        // Not journaled as received before a crash: taken again.
        assert_eq!(store.take_commands(id, 0).unwrap().len(), 1);
    }
}
