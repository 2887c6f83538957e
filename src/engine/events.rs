//! What the engine reports. Every view (plain and JSON output, the console, `status`) is a fold
//! over these events.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::drivers::{ErrorClass, Printed};

/// A short text of an event: a name, a version, a revision id, a timestamp. Up to 24
/// bytes are kept inline, so the millions of events of a large rollout allocate nothing
/// for them (each `String` was an allocation made by a step and freed by the journal's
/// thread, and they were a third of a rollout's allocations).
pub type Text = compact_str::CompactString;

/// One thing that happened, stamped with the time it happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// RFC 3339 with milliseconds, UTC.
    pub ts: Text,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// `at` in RFC 3339 with milliseconds: 24 bytes, kept inline (a rollout makes millions of
/// these).
fn timestamp(at: SystemTime) -> Text {
    use std::fmt::Write;
    let mut ts = Text::default();
    write!(ts, "{}", humantime::format_rfc3339_millis(at)).expect("writing to a Text");
    ts
}

impl Event {
    /// An event of `kind` that happened at `at`.
    pub fn new(at: SystemTime, kind: EventKind) -> Self {
        Event {
            ts: timestamp(at),
            kind,
        }
    }
}

/// The kinds scripts may rely on are listed in PRODUCT.md; new ones may be added.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventKind {
    RolloutStarted {
        release: String,
        commit: String,
        waves: usize,
        envs: usize,
        /// Wave names in order, so views can show waves that have not started yet.
        #[serde(default)]
        wave_names: Vec<String>,
        #[serde(default)]
        services: Vec<String>,
        /// True when this continues an unfinished rollout from the journal.
        #[serde(default)]
        resumed: bool,
    },
    WaveStarted {
        wave: Text,
        envs: usize,
        allowed_failures: usize,
    },
    GateWaiting {
        wave: Text,
        /// What the gate waits for, in words.
        reason: String,
    },
    /// A gate's check (its command, or the health of the earlier waves) passed.
    CheckPassed {
        wave: Text,
        /// The command as written, or "health of earlier waves".
        check: String,
        attempts: u32,
    },
    /// A gate's check failed and is tried again after `delay_ms`.
    CheckRetrying {
        wave: Text,
        check: String,
        attempt: u32,
        error: String,
        delay_ms: u64,
    },
    /// A gate's check failed for good: the rollout halts before the wave.
    CheckFailed {
        wave: Text,
        check: String,
        attempts: u32,
        error: String,
        /// What the command printed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        output: Option<Box<Printed>>,
    },
    /// A notification could not be delivered (the first failure, and when it is given up).
    NotificationFailed {
        target: String,
        /// The kind of the event it told of.
        event: String,
        attempts: u32,
        error: String,
        gave_up: bool,
    },
    GateApproved {
        wave: Text,
        by: String,
        note: Option<String>,
        approvals: usize,
        needed: usize,
    },
    /// The write-ahead record of the intent to apply: the revision of every service still to
    /// do in this environment, durable before any apply there.
    EnvStarted {
        wave: Text,
        env: Text,
        revisions: std::collections::BTreeMap<String, String>,
    },
    StepStarted {
        wave: Text,
        env: Text,
        service: Text,
        attempt: u32,
        #[serde(default)]
        version: Text,
        #[serde(default)]
        revision: Text,
    },
    StepRetrying {
        wave: Text,
        env: Text,
        service: Text,
        attempt: u32,
        error: String,
        class: ErrorClass,
        delay_ms: u64,
        /// What the apply printed (the exec driver's commands), secrets masked.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        output: Option<Box<Printed>>,
    },
    StepSucceeded {
        wave: Text,
        env: Text,
        service: Text,
        attempts: u32,
        #[serde(default)]
        version: Text,
        #[serde(default)]
        revision: Text,
        /// What the apply printed (the exec driver's commands), secrets masked.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        output: Option<Box<Printed>>,
    },
    /// A step in flight at a crash was found applied when the rollout resumed.
    StepRecovered {
        wave: Text,
        env: Text,
        service: Text,
        version: Text,
        revision: Text,
    },
    StepFailed {
        wave: Text,
        env: Text,
        service: Text,
        error: String,
        class: ErrorClass,
        attempts: u32,
        /// What the apply printed (the exec driver's commands), secrets masked.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        output: Option<Box<Printed>>,
    },
    StepBlocked {
        wave: Text,
        env: Text,
        service: Text,
        /// The dependency that failed or was itself blocked.
        dependency: String,
    },
    /// A failed environment was queued to run again.
    EnvRetried {
        wave: Text,
        env: Text,
        by: String,
    },
    EnvSkipped {
        wave: Text,
        env: Text,
        reason: String,
        by: String,
    },
    /// A running environment is to be rolled back: its run stops after the steps in flight,
    /// then its `rollback_started` follows.
    RollbackRequested {
        wave: Text,
        env: Text,
        to: String,
        by: String,
    },
    /// The write-ahead record of a rollback: environment `env` goes back to release `to`,
    /// these services (in the order they are put back: dependents first) to these
    /// revisions. Durable before anything is applied, so a crash mid-rollback resumes it.
    RollbackStarted {
        wave: Text,
        env: Text,
        to: String,
        services: Vec<String>,
        revisions: std::collections::BTreeMap<String, String>,
        by: String,
    },
    /// A service's live state differs from what flotilla last applied there (an
    /// out-of-band change), in these keys (`version` for the version). Journaled when the
    /// drift appears or its keys change, not again while it holds.
    DriftDetected {
        env: Text,
        service: Text,
        keys: Vec<String>,
    },
    /// Environment `env` changed out of band (its `drift_detected` events say how) and
    /// nobody accepted it: nothing is applied to it until someone decides (adopt, revert
    /// or accept release it). The wave goes on with the others.
    EnvHeld {
        wave: Text,
        env: Text,
        /// The services that drifted.
        services: Vec<String>,
    },
    /// A decision released a held environment, or one the rollout has not reached yet:
    /// `how` is `adopt`, `revert` or `accept`. After an adopt the rollout renders the
    /// environment with the emergency layer of `commit`, so it keeps the adopted values.
    EnvReleased {
        wave: Text,
        env: Text,
        how: String,
        by: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        commit: Option<String>,
    },
    /// A failed preflight check someone set aside for this rollout (`--override`), with
    /// why: what it said is kept beside the reason.
    CheckOverridden {
        check: String,
        detail: String,
        reason: String,
        by: String,
    },
    /// Everything else is done: the rollout waits for decisions on these held
    /// environments (headless without `--wait`, it ends here and stays resumable).
    RolloutHeld {
        envs: Vec<String>,
    },
    /// The drift reported for a service is gone.
    DriftCleared {
        env: Text,
        service: Text,
    },
    /// Someone accepted the drift of an environment (one service, or all) for a while: it
    /// is still reported, and blocks nothing until `until` (RFC 3339).
    DriftAccepted {
        env: Text,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        service: Option<String>,
        until: String,
        reason: String,
        by: String,
    },
    /// One service of a rollback is back at the version of the release rolled back to, and
    /// healthy. `attempts` 0: it was found there (put back before a crash, or never moved)
    /// and nothing was applied.
    StepRolledBack {
        wave: Text,
        env: Text,
        service: Text,
        version: Text,
        revision: Text,
        attempts: u32,
        /// What the apply printed (the exec driver's commands), secrets masked.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        output: Option<Box<Printed>>,
    },
    /// A rollback could not put a service back: the environment counts as failed.
    RollbackFailed {
        wave: Text,
        env: Text,
        service: Text,
        error: String,
    },
    /// Every service of the environment that may go back is back at release `to`.
    EnvRolledBack {
        wave: Text,
        env: Text,
        to: String,
        by: String,
    },
    WaveCompleted {
        wave: Text,
        succeeded: usize,
        failed: usize,
        skipped: usize,
        #[serde(default)]
        rolled_back: usize,
    },
    RolloutPaused {
        by: String,
    },
    RolloutResumed {
        by: String,
        /// Failed environments this resume accepted (resuming a halt): they stop counting
        /// against the budgets while they stay failed.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        accepted: Vec<String>,
    },
    RolloutHalted {
        wave: Text,
        reason: String,
        failed_envs: Vec<String>,
    },
    /// An abort was asked for: nothing new starts, and once the steps in flight finish the
    /// rollout ends with `rollout_aborted`. Journaled at once, so a crash in between still
    /// ends it.
    AbortRequested {
        by: String,
    },
    RolloutAborted {
        by: String,
    },
    /// Stopped on request (Ctrl-C): in-flight steps finished, nothing new started.
    RolloutInterrupted {
        in_flight_finished: usize,
    },
    RolloutCompleted {
        succeeded: usize,
        failed: usize,
        skipped: usize,
        #[serde(default)]
        rolled_back: usize,
    },
    /// A command from another terminal reached the engine: who sent it, from where, and when
    /// (the event's time). What it did follows as its own event.
    CommandReceived {
        /// The command's id in the store's queue.
        #[serde(default)]
        id: i64,
        command: String,
        by: String,
        origin: Option<String>,
    },
    /// A command that could not be carried out, and why.
    CommandRejected {
        command: String,
        reason: String,
        #[serde(default)]
        by: String,
    },
    /// An engine took over the lease of one whose holder stopped answering.
    LeaseTakenOver {
        by: String,
        from: String,
    },
}

/// The wave, environment, service and actor an event is about, where it has them.
pub type Subject<'a> = (
    Option<&'a str>,
    Option<&'a str>,
    Option<&'a str>,
    Option<&'a str>,
);

impl EventKind {
    /// What the step's command printed, for the events of a finished attempt that has it.
    pub fn output(&self) -> Option<&Printed> {
        match self {
            EventKind::StepSucceeded { output, .. }
            | EventKind::StepRetrying { output, .. }
            | EventKind::StepFailed { output, .. }
            | EventKind::StepRolledBack { output, .. } => output.as_deref(),
            _ => None,
        }
    }

    /// (wave, env, service, by): the journal indexes these without parsing the JSON.
    pub fn subject(&self) -> Subject<'_> {
        use EventKind::*;
        match self {
            RolloutStarted { .. }
            | RolloutCompleted { .. }
            | RolloutInterrupted { .. }
            | RolloutHeld { .. } => (None, None, None, None),
            EnvHeld { wave, env, .. } => (Some(wave), Some(env), None, None),
            EnvReleased { wave, env, by, .. } => (Some(wave), Some(env), None, Some(by)),
            WaveStarted { wave, .. }
            | GateWaiting { wave, .. }
            | CheckPassed { wave, .. }
            | CheckRetrying { wave, .. }
            | CheckFailed { wave, .. }
            | WaveCompleted { wave, .. }
            | RolloutHalted { wave, .. } => (Some(wave), None, None, None),
            GateApproved { wave, by, .. } => (Some(wave), None, None, Some(by)),
            EnvStarted { wave, env, .. } => (Some(wave), Some(env), None, None),
            StepStarted {
                wave, env, service, ..
            }
            | StepRetrying {
                wave, env, service, ..
            }
            | StepSucceeded {
                wave, env, service, ..
            }
            | StepRecovered {
                wave, env, service, ..
            }
            | StepFailed {
                wave, env, service, ..
            }
            | StepBlocked {
                wave, env, service, ..
            } => (Some(wave), Some(env), Some(service), None),
            EnvRetried { wave, env, by }
            | EnvSkipped { wave, env, by, .. }
            | RollbackStarted { wave, env, by, .. }
            | RollbackRequested { wave, env, by, .. }
            | EnvRolledBack { wave, env, by, .. } => (Some(wave), Some(env), None, Some(by)),
            StepRolledBack {
                wave, env, service, ..
            }
            | RollbackFailed {
                wave, env, service, ..
            } => (Some(wave), Some(env), Some(service), None),
            RolloutPaused { by }
            | RolloutResumed { by, .. }
            | RolloutAborted { by }
            | AbortRequested { by }
            | LeaseTakenOver { by, .. }
            | CheckOverridden { by, .. }
            | CommandReceived { by, .. }
            | CommandRejected { by, .. } => (None, None, None, Some(by)),
            NotificationFailed { .. } => (None, None, None, None),
            DriftDetected { env, service, .. } | DriftCleared { env, service } => {
                (None, Some(env), Some(service), None)
            }
            DriftAccepted {
                env, service, by, ..
            } => (None, Some(env), service.as_deref(), Some(by)),
        }
    }

    /// The `kind` string of the JSON form.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::RolloutStarted { .. } => "rollout_started",
            EventKind::WaveStarted { .. } => "wave_started",
            EventKind::GateWaiting { .. } => "gate_waiting",
            EventKind::GateApproved { .. } => "gate_approved",
            EventKind::CheckPassed { .. } => "check_passed",
            EventKind::NotificationFailed { .. } => "notification_failed",
            EventKind::CheckRetrying { .. } => "check_retrying",
            EventKind::CheckFailed { .. } => "check_failed",
            EventKind::EnvStarted { .. } => "env_started",
            EventKind::StepStarted { .. } => "step_started",
            EventKind::StepRetrying { .. } => "step_retrying",
            EventKind::StepSucceeded { .. } => "step_succeeded",
            EventKind::StepRecovered { .. } => "step_recovered",
            EventKind::StepFailed { .. } => "step_failed",
            EventKind::StepBlocked { .. } => "step_blocked",
            EventKind::EnvRetried { .. } => "env_retried",
            EventKind::EnvSkipped { .. } => "env_skipped",
            EventKind::RollbackRequested { .. } => "rollback_requested",
            EventKind::RollbackStarted { .. } => "rollback_started",
            EventKind::StepRolledBack { .. } => "step_rolled_back",
            EventKind::RollbackFailed { .. } => "rollback_failed",
            EventKind::EnvRolledBack { .. } => "env_rolled_back",
            EventKind::WaveCompleted { .. } => "wave_completed",
            EventKind::RolloutPaused { .. } => "rollout_paused",
            EventKind::RolloutResumed { .. } => "rollout_resumed",
            EventKind::RolloutHalted { .. } => "rollout_halted",
            EventKind::RolloutAborted { .. } => "rollout_aborted",
            EventKind::AbortRequested { .. } => "abort_requested",
            EventKind::RolloutInterrupted { .. } => "rollout_interrupted",
            EventKind::RolloutCompleted { .. } => "rollout_completed",
            EventKind::CommandReceived { .. } => "command_received",
            EventKind::CommandRejected { .. } => "command_rejected",
            EventKind::DriftDetected { .. } => "drift_detected",
            EventKind::DriftCleared { .. } => "drift_cleared",
            EventKind::EnvHeld { .. } => "env_held",
            EventKind::EnvReleased { .. } => "env_released",
            EventKind::RolloutHeld { .. } => "rollout_held",
            EventKind::CheckOverridden { .. } => "check_overridden",
            EventKind::DriftAccepted { .. } => "drift_accepted",
            EventKind::LeaseTakenOver { .. } => "lease_taken_over",
        }
    }
}

/// What was decided about an environment that changed out of band.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    /// Its live values were committed as its emergency layer in `commit`: the rollout
    /// applies them with the release, so the fix stays.
    Adopt { commit: String },
    /// The out-of-band change is to go: the rollout applies its desired state over it.
    Revert,
    /// It is accepted for now (`drift accept`): the rollout goes on over it.
    Accept,
}

impl Decision {
    /// The decision's name: the command that made it.
    pub fn name(&self) -> &'static str {
        match self {
            Decision::Adopt { .. } => "adopt",
            Decision::Revert => "revert",
            Decision::Accept => "accept",
        }
    }
}

/// What an operator (a console key, a CLI verb) asks the engine to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Approve {
        wave: String,
        by: String,
        note: Option<String>,
    },
    Pause {
        by: String,
    },
    Resume {
        by: String,
    },
    Abort {
        by: String,
    },
    /// Retry failed environments: these, or all failed ones when empty.
    Retry {
        envs: Vec<String>,
        by: String,
    },
    Skip {
        env: String,
        reason: String,
        by: String,
    },
    /// Put environments back at an earlier release: these, or every environment of `wave`
    /// this rollout changed. `to` is the release (default: the one before the rollout's).
    /// The rollout pauses: the release is in doubt until someone resumes or aborts it.
    Rollback {
        envs: Vec<String>,
        wave: Option<String>,
        to: Option<String>,
        by: String,
    },
    /// A decision on an environment that changed out of band: it is released (held, or
    /// not reached yet) and rolled out.
    Release {
        env: String,
        decision: Decision,
        by: String,
    },
    /// Stop starting new steps, let in-flight ones finish, then end (Ctrl-C).
    Interrupt,
    /// A command taken from the store's queue (another terminal). The engine journals it as
    /// received in one group with everything it did, so a crash keeps both or neither; a
    /// command whose receipt is not in the journal is taken from the queue again.
    Received {
        /// Its id in the queue.
        id: i64,
        /// Where it came from (the SSH client address), when known.
        origin: Option<String>,
        command: Box<Command>,
    },
}

impl Command {
    /// Who asked (empty for Ctrl-C, which is the engine's own operator).
    pub fn by(&self) -> &str {
        match self {
            Command::Approve { by, .. }
            | Command::Pause { by }
            | Command::Resume { by }
            | Command::Abort { by }
            | Command::Retry { by, .. }
            | Command::Skip { by, .. }
            | Command::Rollback { by, .. }
            | Command::Release { by, .. } => by,
            Command::Interrupt => "",
            Command::Received { command, .. } => command.by(),
        }
    }

    /// The command's name, as refusals and the journal show it.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Approve { .. } => "approve",
            Command::Pause { .. } => "pause",
            Command::Resume { .. } => "resume",
            Command::Abort { .. } => "abort",
            Command::Retry { .. } => "retry",
            Command::Skip { .. } => "skip",
            Command::Rollback { .. } => "rollback",
            Command::Release { decision, .. } => decision.name(),
            Command::Interrupt => "interrupt",
            Command::Received { command, .. } => command.name(),
        }
    }
}
