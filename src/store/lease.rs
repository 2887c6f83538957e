//! One engine at a time: the engine running a rollout holds a lease row and refreshes its
//! heartbeat; another engine is refused unless the holder died.

use std::fmt;
use std::time::Duration;

use rusqlite::{params, OptionalExtension, TransactionBehavior};

use super::{Store, StoreError};

/// Who holds (or wants) the lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub user: String,
    pub host: String,
    pub pid: u32,
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{} (pid {})", self.user, self.host, self.pid)
    }
}

/// The lease could not be had.
#[derive(Debug, Clone, thiserror::Error)]
#[error("another engine is running rollout {rollout}: {holder}, last heartbeat {age_secs}s ago; steer it with `flotilla status`, `pause`, `abort`..., or wait {wait_secs}s after it stops answering to take over")]
pub struct LeaseHeld {
    pub holder: String,
    pub rollout: i64,
    pub age_secs: u64,
    pub wait_secs: u64,
}

/// What acquiring did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acquired {
    Fresh,
    /// The previous holder had died or stopped answering; it is named for the journal.
    TookOver(String),
}

fn pid_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

impl Store {
    /// Takes the lease for `rollout`, unless a live engine holds it. A holder is dead when
    /// its heartbeat is older than `stale_after`, or at once when it ran on this host and its
    /// process is gone (a `kill -9` need not wait out the timeout).
    pub fn acquire_lease(
        &self,
        rollout: i64,
        me: &Holder,
        now_ms: i64,
        stale_after: Duration,
    ) -> Result<Result<Acquired, LeaseHeld>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let current: Option<(i64, String, String, u32, i64)> = tx
            .query_row(
                "SELECT rollout, user, host, pid, heartbeat_ms FROM lease WHERE id = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .optional()?;
        let outcome = match current {
            None => Acquired::Fresh,
            Some((held_rollout, user, host, pid, beat)) => {
                let holder = Holder { user, host, pid };
                let age = (now_ms - beat).max(0) as u64;
                let same_process = holder == *me;
                let died_here = holder.host == me.host && !pid_alive(holder.pid);
                if !same_process && !died_here && age < stale_after.as_millis() as u64 {
                    return Ok(Err(LeaseHeld {
                        holder: holder.to_string(),
                        rollout: held_rollout,
                        age_secs: age / 1000,
                        wait_secs: stale_after.as_secs(),
                    }));
                }
                if same_process {
                    Acquired::Fresh
                } else {
                    Acquired::TookOver(holder.to_string())
                }
            }
        };
        tx.execute(
            "INSERT INTO lease (id, rollout, user, host, pid, heartbeat_ms, acquired)
             VALUES (1, ?1, ?2, ?3, ?4, ?5, ?5)
             ON CONFLICT (id) DO UPDATE SET rollout = ?1, user = ?2, host = ?3, pid = ?4,
               heartbeat_ms = ?5, acquired = ?5",
            params![rollout, me.user, me.host, me.pid, now_ms],
        )?;
        tx.commit()?;
        Ok(Ok(outcome))
    }

    /// Refreshes the heartbeat; false when the lease was taken over meanwhile.
    pub fn heartbeat(&self, me: &Holder, now_ms: i64) -> Result<bool, StoreError> {
        let n = self.conn().execute(
            "UPDATE lease SET heartbeat_ms = ?4 WHERE id = 1 AND user = ?1 AND host = ?2 AND pid = ?3",
            params![me.user, me.host, me.pid, now_ms],
        )?;
        Ok(n == 1)
    }

    /// Gives the lease back, if `me` still holds it.
    pub fn release_lease(&self, me: &Holder) -> Result<(), StoreError> {
        self.conn().execute(
            "DELETE FROM lease WHERE id = 1 AND user = ?1 AND host = ?2 AND pid = ?3",
            params![me.user, me.host, me.pid],
        )?;
        Ok(())
    }

    /// Who holds the lease now, alive or not, and since when (RFC 3339): what an engine that
    /// lost it tells its operator.
    pub fn lease_holder(&self) -> Result<Option<(Holder, String)>, StoreError> {
        let row: Option<(String, String, u32, rusqlite::types::Value)> = self
            .conn()
            .query_row(
                "SELECT user, host, pid, acquired FROM lease WHERE id = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()?;
        Ok(row.map(|(user, host, pid, acquired)| {
            // Milliseconds since the epoch (stored in a TEXT column).
            let ms = match acquired {
                rusqlite::types::Value::Integer(ms) => Some(ms),
                rusqlite::types::Value::Text(t) => t.parse().ok(),
                _ => None,
            };
            // RFC 3339 stops at the year 9999; a hand-edited value past it is just unknown.
            let since = ms
                .filter(|ms| (0..253_402_300_800_000).contains(ms))
                .map_or("an unknown time".into(), |ms: i64| {
                    humantime::format_rfc3339_seconds(
                        std::time::UNIX_EPOCH + Duration::from_millis(ms as u64),
                    )
                    .to_string()
                });
            (Holder { user, host, pid }, since)
        }))
    }

    /// The current holder, its rollout and its last heartbeat (ms since the epoch), if the
    /// holder still looks alive within `stale_after`.
    pub fn live_holder(
        &self,
        now_ms: i64,
        stale_after: Duration,
        my_host: &str,
    ) -> Result<Option<(Holder, i64)>, StoreError> {
        let row: Option<(i64, String, String, u32, i64)> = self
            .conn()
            .query_row(
                "SELECT rollout, user, host, pid, heartbeat_ms FROM lease WHERE id = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .optional()?;
        Ok(row.and_then(|(rollout, user, host, pid, beat)| {
            let holder = Holder { user, host, pid };
            let stale = (now_ms - beat).max(0) as u128 >= stale_after.as_millis()
                || (holder.host == my_host && !pid_alive(holder.pid));
            (!stale).then_some((holder, rollout))
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me(pid: u32) -> Holder {
        Holder {
            user: "alice".into(),
            host: "remote-host".into(),
            pid,
        }
    }

    #[test]
    fn a_second_engine_is_refused_until_the_first_stops_answering() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db"), "f").unwrap();
        let stale = Duration::from_secs(30);
        // The first holder is this test's own process: alive, whatever else runs here (both
        // holders name one host, so a dead pid would be taken over at once).
        let first = std::process::id();
        assert_eq!(
            store
                .acquire_lease(1, &me(first), 1_000, stale)
                .unwrap()
                .unwrap(),
            Acquired::Fresh
        );
        let held = store
            .acquire_lease(1, &me(11), 20_000, stale)
            .unwrap()
            .unwrap_err();
        assert!(held.holder.contains(&format!("pid {first}")), "{held}");
        assert!(store.heartbeat(&me(first), 25_000).unwrap());
        assert!(store
            .acquire_lease(1, &me(11), 50_000, stale)
            .unwrap()
            .is_err());
        let took = store
            .acquire_lease(1, &me(11), 56_000, stale)
            .unwrap()
            .unwrap();
        assert_eq!(
            took,
            Acquired::TookOver(format!("alice@remote-host (pid {first})"))
        );
        assert!(
            !store.heartbeat(&me(first), 57_000).unwrap(),
            "the old holder lost it"
        );
    }

    #[test]
    fn a_dead_process_on_this_host_is_taken_over_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db"), "f").unwrap();
        let dead = Holder {
            user: "a".into(),
            host: "here".into(),
            pid: u32::MAX - 1,
        };
        let live = Holder {
            user: "a".into(),
            host: "here".into(),
            pid: std::process::id(),
        };
        store
            .acquire_lease(1, &dead, 1_000, Duration::from_secs(30))
            .unwrap()
            .unwrap();
        let took = store
            .acquire_lease(1, &live, 1_001, Duration::from_secs(30))
            .unwrap();
        assert!(matches!(took, Ok(Acquired::TookOver(_))));
    }
}
