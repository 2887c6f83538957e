//! `flotilla drift [ENV...]`: the fleet's drift report, three ways (desired, last-applied,
//! live); exit 1 when something changed behind flotilla's back.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;

use super::{exit, load, Output};
use crate::drift::scan::{self, FleetReport, Known};
use crate::drift::three_way::{Change, DriftState};
use crate::drift::DiffLine;
use crate::store::Store;

#[derive(Debug, Clone, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct DriftArgs {
    #[command(subcommand)]
    pub command: Option<DriftCommand>,
    /// Only these environments (default: all).
    #[arg(add = clap_complete::ArgValueCandidates::new(super::complete::envs))]
    pub envs: Vec<String>,
    /// The release desired states are rendered from (default: the latest rollout's, else
    /// the newest).
    #[arg(long)]
    #[arg(add = clap_complete::ArgValueCandidates::new(super::complete::releases))]
    pub release: Option<String>,
    #[arg(long, value_enum, default_value_t)]
    pub output: Output,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum DriftCommand {
    /// Accept an environment's drift for a while: still reported, marked accepted, it
    /// blocks nothing until it expires.
    Accept {
        #[arg(add = clap_complete::ArgValueCandidates::new(super::complete::envs))]
        env: String,
        /// Only this service's drift (default: every service of the environment).
        #[arg(long)]
        service: Option<String>,
        /// For how long, e.g. 24h (at most 30 days).
        #[arg(long = "for", value_parser = humantime::parse_duration)]
        duration: std::time::Duration,
        /// Why (kept in the journal).
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        report: super::Report,
    },
}

pub fn run(repo: &Path, rev: &str, state: Option<&Path>, args: &DriftArgs) -> u8 {
    if let Some(DriftCommand::Accept {
        env,
        service,
        duration,
        reason,
        report,
    }) = &args.command
    {
        let accepted = Accepted {
            env,
            service: service.as_deref(),
            duration: *duration,
            reason,
        };
        return accept(repo, rev, state, &accepted, report.output);
    }
    let loaded = match load(repo, rev) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let intent = Arc::new(loaded.intent);
    let (path, store) = match super::open_fleet_state(state, &intent.fleet) {
        Ok(opened) => opened,
        Err(code) => return code,
    };
    let release = match args
        .release
        .clone()
        .or_else(|| scan::default_release(&intent, &store))
    {
        Some(r) => r,
        None => {
            return super::refuse(
                exit::INVALID,
                "error: the intent has no release to compare with",
            )
        }
    };
    if intent.release(&release).is_none() {
        let names: Vec<&str> = intent.releases.iter().map(|r| r.name.as_str()).collect();
        return super::refuse(
            exit::INVALID,
            format!(
                "error: no release `{release}`; {}",
                crate::intent::load::did_you_mean(&release, &names)
            ),
        );
    }
    let names: Vec<&str> = intent
        .environments
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    for env in &args.envs {
        if let Err(code) = super::environment(&intent, env) {
            return code;
        }
    }
    let envs: Vec<String> = if args.envs.is_empty() {
        names.iter().map(|n| n.to_string()).collect()
    } else {
        args.envs.clone()
    };
    let known = match Known::load(repo, &intent, &store, std::time::SystemTime::now()) {
        Ok(k) => Arc::new(k),
        Err(e) => return super::refuse(exit::INVALID, format!("error: {e}")),
    };
    if known.baseline.unrendered > 0 {
        eprintln!(
            "warning: {} earlier apply(s) cannot be rendered again (their commit is gone from the repo, or renders differently); those services compare as never applied, so their drift cannot be told",
            known.baseline.unrendered
        );
    }
    let place = crate::drivers::Place {
        repo,
        state: Some(&path),
    };
    let driver = match crate::drivers::open(&intent, intent.release(&release), place) {
        Ok(d) => d,
        Err(e) => return super::refuse(exit::INVALID, format!("error: {e}")),
    };
    let runtime = match super::runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let routes = crate::notify::Routes::new(&intent, &release);
    let report = runtime.block_on(scan::scan(
        intent.clone(),
        release,
        envs,
        known,
        driver,
        scan::PARALLEL,
        scan::TIMEOUT,
    ));
    if let Err(e) = scan::record(&store, &report, routes.as_deref()) {
        eprintln!("warning: drift not journaled: {e}");
    }
    // What it found goes out now (a scan from cron tells on-call), within a moment; what
    // does not stays queued for the next session.
    if let Some(routes) = routes {
        runtime.block_on(crate::notify::send::flush(path.clone(), routes));
    }
    match args.output {
        Output::Json => {
            let counts: std::collections::BTreeMap<&str, usize> = report
                .counts()
                .into_iter()
                .map(|(s, n)| (s.name(), n))
                .collect();
            let doc = serde_json::json!({
                "release": report.release,
                "commit": report.commit,
                "counts": counts,
                "drifted": report.any_drift(),
                "envs": report.envs,
            });
            println!("{doc}");
        }
        Output::Plain => print!("{}", text(&report, colour())),
    }
    if report.any_drift() {
        exit::FAILED
    } else {
        exit::OK
    }
}

/// What `drift accept` was asked to accept.
struct Accepted<'a> {
    env: &'a str,
    service: Option<&'a str>,
    duration: std::time::Duration,
    reason: &'a str,
}

fn accept(repo: &Path, rev: &str, state: Option<&Path>, asked: &Accepted, output: Output) -> u8 {
    let Accepted {
        env,
        service,
        duration,
        reason,
    } = *asked;
    let loaded = match load(repo, rev) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let intent = loaded.intent;
    if let Err(code) = super::environment(&intent, env) {
        return code;
    }
    if let Some(Err(code)) = service.map(|s| super::service(&intent, s)) {
        return code;
    }
    let (path, store) = match super::open_fleet_state(state, &intent.fleet) {
        Ok(opened) => opened,
        Err(code) => return code,
    };
    let by = crate::identity::Identity::current().actor();
    let now = std::time::SystemTime::now();
    let until = match scan::accept(&store, env, service, duration, reason, &by, now) {
        Ok(until) => until,
        Err(why) => return super::refuse(exit::INVALID, format!("refused: {why}")),
    };
    super::say(
        output,
        &format!(
            "drift of {env}{} accepted by {by} until {until}: it is still reported, and blocks nothing until then",
            service.map(|s| format!("/{s}")).unwrap_or_default()
        ),
    );
    let told = tell_rollout(
        repo,
        &path,
        &store,
        env,
        crate::engine::Decision::Accept,
        service,
        output,
    );
    finish(
        told,
        output,
        serde_json::json!({
            "kind": "drift_accepted",
            "env": env,
            "service": service,
            "by": by,
            "until": until.to_string(),
            "reason": reason,
        }),
    )
}

/// Ends a decision on drift (accept, adopt) once the rollout was told (or not): for people
/// the steering's lines, for scripts `doc` with `ts`, `told` (the steering document, or
/// null) and `exit`. Returns the exit code.
pub(super) fn finish(
    told: Option<Result<super::steer::Steered, u8>>,
    output: Output,
    mut doc: serde_json::Value,
) -> u8 {
    let (code, told) = match told {
        Some(Ok(told)) => (told.code, Some(told)),
        Some(Err(code)) => (code, None),
        None => (exit::OK, None),
    };
    match output {
        Output::Plain => told.iter().for_each(|t| t.tell(Output::Plain)),
        Output::Json => {
            doc["ts"] = crate::session::now_text().into();
            doc["told"] = told.map_or(serde_json::Value::Null, |t| t.json());
            doc["exit"] = code.into();
            println!("{doc}");
        }
    }
    code
}

/// Tells the unfinished rollout, when it has yet to finish `env`, what was decided about
/// the drift there: a held environment is released and rolled out, one not reached yet is
/// not held when the rollout gets there. `part` names the one service decided on (None:
/// all of the environment's drift): a decision on part of the drift releases nothing,
/// since the rollout would apply over the rest, unless that service is all the rollout
/// holds there. Returns what the steering did (its lines not yet printed) or the exit code
/// of its refusal; None when no rollout was told. What is said on the way goes to stdout,
/// or to stderr when `output` is JSON.
pub(super) fn tell_rollout(
    repo: &Path,
    state: &Path,
    store: &Store,
    env: &str,
    decision: crate::engine::Decision,
    part: Option<&str>,
    output: Output,
) -> Option<Result<super::steer::Steered, u8>> {
    let (rollout, view) = store.unfinished_with_view().ok().flatten()?;
    if view.env_outcome(env).is_some() {
        return None;
    }
    let theirs = crate::intent::load(repo, &rollout.commit).ok()?.intent;
    theirs.environment(env)?;
    let whole = part.is_none_or(|s| view.held.get(env).is_some_and(|held| held == &[s]));
    if !whole {
        super::say(output, &format!(
            "rollout {} of {} has yet to finish {env} and would apply over all of it: this decides part of its drift, so it stays held; decide on all of it (without --service/--key) to release it",
            rollout.id, rollout.release
        ));
        return None;
    }
    let verb = match &decision {
        crate::engine::Decision::Adopt { .. } => "rolls it out with the adopted values",
        crate::engine::Decision::Revert => "applies its desired state over the change",
        crate::engine::Decision::Accept => "rolls it out over the accepted change",
    };
    super::say(
        output,
        &format!(
            "rollout {} of {} has yet to finish {env}: it {verb}",
            rollout.id, rollout.release
        ),
    );
    Some(super::steer::steer(
        repo,
        "HEAD",
        Some(state),
        &crate::store::StoredCommand::Release {
            env: env.to_string(),
            decision,
        },
        output,
    ))
}

/// One environment observed now and compared three ways (for adopt and revert): its
/// report, and what it was compared with.
pub(super) fn one_env(
    repo: &Path,
    intent: &Arc<crate::intent::Intent>,
    store: &Store,
    state: &Path,
    env: &str,
) -> Result<(scan::EnvReport, Known), u8> {
    super::environment(intent, env)?;
    let runtime = tokio::runtime::Runtime::new()
        .map_err(|e| super::refuse(exit::FAILED, format!("error: {e}")))?;
    let (report, known) = runtime
        .block_on(scan::observe_one(repo, intent, store, state, env))
        .map_err(|e| super::refuse(exit::INVALID, format!("error: {e}")))?;
    if let Some(e) = &report.error {
        return Err(super::refuse(
            exit::FAILED,
            format!("error: cannot observe {env}: {e}; nothing was changed"),
        ));
    }
    Ok((report, known))
}

/// Colour on a terminal, unless NO_COLOR says otherwise.
fn colour() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// The plain report: counts, then each drifted environment with a unified diff of
/// last-applied against live, then pending changes, then what could not be observed.
pub fn text(report: &FleetReport, colour: bool) -> String {
    let paint = |code: &str, s: String| {
        if colour {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s
        }
    };
    let mut out = String::new();
    let counts = report.counts();
    let n = |s: DriftState| counts.get(&s).copied().unwrap_or(0);
    out.push_str(&format!(
        "drift against release {} at {} ({} environments): {} in sync, {} pending, {} drifted, {} conflict, {} unknown (services)\n",
        report.release,
        &report.commit[..7.min(report.commit.len())],
        report.envs.len(),
        n(DriftState::InSync),
        n(DriftState::Pending),
        n(DriftState::Drifted),
        n(DriftState::Conflict),
        n(DriftState::Unknown),
    ));
    for env in report.drifted() {
        out.push_str(&format!("\n{}: {}\n", env.env, env.state().name()));
        for s in env
            .services
            .iter()
            .filter(|s| s.comparison.state.is_drift())
        {
            let applied = s.applied_at.as_deref().unwrap_or("?");
            out.push_str(&format!(
                "  {} ({}; last applied {applied}): changed {}\n",
                s.service,
                s.comparison.state.name(),
                s.comparison
                    .drift
                    .iter()
                    .map(|c| c.key.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            let (Some(last), live) = (&s.last, &s.live) else {
                continue;
            };
            let live_version = live
                .as_ref()
                .map_or("(not running)", |l| l.version.as_str());
            out.push_str(&paint(
                "31",
                format!("  --- last applied {}\n", last.version),
            ));
            out.push_str(&paint("32", format!("  +++ live {live_version}\n")));
            for line in s.drift_diff().unwrap_or_default() {
                out.push_str(&match line {
                    DiffLine::Hunk(h) => paint("36", format!("  {h}\n")),
                    DiffLine::Same(t) => format!("   {t}\n"),
                    DiffLine::Live(t) => paint("31", format!("  -{t}\n")),
                    DiffLine::Desired(t) => paint("32", format!("  +{t}\n")),
                });
            }
            for c in &s.comparison.pending {
                out.push_str(&format!("  and Git changed {}\n", c.line()));
            }
        }
    }
    for env in report.accepted() {
        for s in env
            .services
            .iter()
            .filter_map(|s| Some((s, s.accepted.as_ref()?)))
        {
            let (s, a) = s;
            let keys: Vec<&str> = s.comparison.drift.iter().map(|c| c.key.as_str()).collect();
            out.push_str(&format!(
                "\n{}/{}: {} ({}), accepted by {} until {}: {}\n",
                env.env,
                s.service,
                s.comparison.state.name(),
                keys.join(", "),
                a.by,
                a.until,
                a.reason
            ));
        }
    }
    let pending: Vec<_> = report
        .envs
        .iter()
        .flat_map(|e| e.services.iter().map(move |s| (e, s)))
        .filter(|(_, s)| s.comparison.state == DriftState::Pending)
        .collect();
    if !pending.is_empty() {
        out.push_str(&format!(
            "\npending (Git changed, not rolled out yet): {}\n",
            pending.len()
        ));
        for (e, s) in pending.iter().take(20) {
            let what: Vec<String> = s.comparison.pending.iter().map(Change::line).collect();
            out.push_str(&format!("  {}/{}: {}\n", e.env, s.service, what.join("; ")));
        }
        if pending.len() > 20 {
            out.push_str(&format!(
                "  and {} more (--output json lists them all)\n",
                pending.len() - 20
            ));
        }
    }
    for e in report.envs.iter().filter(|e| e.error.is_some()) {
        out.push_str(&format!(
            "\nunknown: {} cannot be observed: {}\n",
            e.env,
            e.error.as_deref().unwrap_or("")
        ));
    }
    out
}
