//! What an agent keeps in its directory: per service, what runs there and the latest apply.
//! Written whole, atomically (temporary file, fsync, rename, fsync of the directory), so a
//! kill at any moment leaves the old state or the new one, never a torn file.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::protocol::{ApplyStatus, Phase};
use crate::drivers::{LiveService, LiveState};

/// One service, as the agent keeps it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ServiceRecord {
    /// What runs (secrets sealed); none before the first apply succeeded.
    #[serde(default)]
    pub live: Option<LiveService>,
    /// The latest apply asked for.
    #[serde(default)]
    pub apply: Option<ApplyStatus>,
}

/// Everything the agent keeps.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AgentState {
    #[serde(default)]
    pub services: BTreeMap<String, ServiceRecord>,
}

impl AgentState {
    /// What runs, per service.
    pub fn live(&self) -> LiveState {
        self.services
            .iter()
            .filter_map(|(name, r)| Some((name.clone(), r.live.clone()?)))
            .collect()
    }
}

/// The state file in `dir`.
pub fn path(dir: &Path) -> PathBuf {
    dir.join("state.json")
}

/// Reads the state left in `dir` (none yet: empty). An apply that was running when the
/// agent stopped is failed, and may be retried: nobody finishes it now.
pub fn load(dir: &Path) -> Result<AgentState, String> {
    let file = path(dir);
    let mut state: AgentState = match std::fs::read(&file) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| format!("{} is not an agent state file: {e}", file.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => AgentState::default(),
        Err(e) => return Err(format!("cannot read {}: {e}", file.display())),
    };
    for record in state.services.values_mut() {
        if let Some(apply) = record.apply.as_mut().filter(|a| a.phase == Phase::Applying) {
            apply.phase = Phase::Failed;
            apply.retryable = true;
            apply.message = "interrupted: the agent stopped during this apply".into();
        }
    }
    Ok(state)
}

/// Locks `dir` for this agent (an advisory lock, released when the file is closed, so a
/// killed agent never leaves it locked).
pub fn lock(dir: &Path) -> Result<std::fs::File, String> {
    use std::os::fd::AsRawFd;
    let path = dir.join("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    // SAFETY: flock on a descriptor this function owns.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(format!(
            "another agent serves from {}; give each agent a --dir of its own",
            dir.display()
        ));
    }
    Ok(file)
}

/// Writes `state` into `dir` atomically and durably.
pub fn save(dir: &Path, state: &AgentState) -> std::io::Result<()> {
    let bytes = serde_json::to_vec_pretty(state).map_err(std::io::Error::other)?;
    let tmp = dir.join("state.json.tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path(dir))?;
    // The rename itself is durable once the directory is.
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_apply_running_when_the_agent_stopped_is_failed_and_retryable() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = AgentState::default();
        state.services.insert(
            "api".into(),
            ServiceRecord {
                live: None,
                apply: Some(ApplyStatus {
                    revision: "r1".into(),
                    phase: Phase::Applying,
                    message: String::new(),
                    retryable: false,
                    output: Default::default(),
                }),
            },
        );
        save(dir.path(), &state).unwrap();
        let back = load(dir.path()).unwrap();
        let apply = back.services["api"].apply.clone().unwrap();
        assert_eq!((apply.phase, apply.retryable), (Phase::Failed, true));
        assert!(apply.message.contains("interrupted"), "{}", apply.message);
    }

    #[test]
    fn a_write_cut_short_leaves_the_state_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = AgentState::default();
        state
            .services
            .insert("api".into(), ServiceRecord::default());
        save(dir.path(), &state).unwrap();
        // A kill in the middle of the next save: its temporary file is half written.
        std::fs::write(dir.path().join("state.json.tmp"), "{\"services\": {\"we").unwrap();
        let back = load(dir.path()).unwrap();
        assert_eq!(back.services.keys().collect::<Vec<_>>(), ["api"]);
        // The next save replaces the leftover.
        save(dir.path(), &AgentState::default()).unwrap();
        assert!(load(dir.path()).unwrap().services.is_empty());
    }

    #[test]
    fn a_second_agent_on_the_same_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let first = lock(dir.path()).unwrap();
        let e = lock(dir.path()).unwrap_err();
        assert!(e.contains("another agent serves from"), "{e}");
        drop(first);
        assert!(lock(dir.path()).is_ok());
    }

    #[test]
    fn a_state_file_that_is_not_one_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(path(dir.path()), "{not json").unwrap();
        let e = load(dir.path()).unwrap_err();
        assert!(e.contains("is not an agent state file"), "{e}");
    }
}
