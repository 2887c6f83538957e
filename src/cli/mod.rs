//! The `flotilla` command line: parses arguments, calls the core, prints results and maps
//! outcomes to exit codes. It never calls a driver except through the engine.

mod adopt;
mod agent;
mod audit;
mod complete;
mod console;
mod drift;
mod explain;
mod init;
mod notify;
pub mod output;
mod plan;
mod revert;
mod rollout;
mod sim;
mod status;
mod steer;
mod validate;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::intent::{self, IntentError, Loaded};
use crate::store::StoredCommand;

/// Exit codes of PRODUCT.md.
pub mod exit {
    /// Done.
    pub const OK: u8 = 0;
    /// The rollout failed or halted.
    pub const FAILED: u8 = 1;
    /// Invalid input or usage.
    pub const INVALID: u8 = 2;
    /// Blocked by a preflight check, a policy or a gate nobody approved.
    pub const BLOCKED: u8 = 3;
    /// Interrupted with Ctrl-C (the shell convention, 128 + SIGINT).
    pub const INTERRUPTED: u8 = 130;
}

#[derive(Debug, Parser)]
#[command(
    name = "flotilla",
    version,
    about = "Roll one release out across a fleet of single-tenant environments",
    long_about = None
)]
/// The command line as clap parses it.
pub struct Cli {
    /// The intent repository (a Git repository).
    #[arg(long, global = true, default_value = ".", env = "FLOTILLA_REPO")]
    repo: PathBuf,
    /// The revision of the intent to read (commit, branch or tag).
    #[arg(long, global = true, default_value = "HEAD")]
    rev: String,
    /// The state database (journal, rollouts, the simulated fleet); default: one per fleet in
    /// the platform data directory.
    #[arg(long, global = true, env = "FLOTILLA_STATE")]
    state: Option<PathBuf>,
    /// Log more to the log file (-v: debug, -vv: trace); RUST_LOG, when set, decides instead.
    /// `flotilla status` says where the log is.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Commands,
}

/// How a command reports: text for people or JSON for scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Output {
    #[default]
    Plain,
    Json,
}

/// `--output` of the steering commands: one JSON document says what was done and what the
/// engine answered.
#[derive(Debug, Clone, Copy, clap::Args)]
struct Report {
    #[arg(long, value_enum, default_value_t)]
    output: Output,
}

#[derive(Debug, Subcommand)]
enum Commands {
    /// Make a demo intent repo for a simulated fleet and roll a release out on it.
    Demo {
        /// How many environments the simulated fleet has.
        #[arg(long, default_value_t = crate::demo::DEFAULT_ENVS)]
        envs: usize,
        /// Run a real networked rollout instead: this many flotilla agents on loopback, one
        /// per environment, reached by the http driver.
        #[arg(long, value_name = "N", conflicts_with = "envs")]
        agents: Option<usize>,
    },
    /// Scaffold an intent repository.
    Init {
        dir: PathBuf,
        /// Write a realistic demo fleet with Git history instead of a minimal skeleton.
        #[arg(long)]
        demo: bool,
        /// With --demo: how many environments.
        #[arg(long, default_value_t = crate::demo::DEFAULT_ENVS)]
        envs: usize,
    },
    /// Parse and check the intent; exit 2 with precise errors.
    Validate {
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Show the waves, service order, risk and preflight results of a release; changes nothing.
    Plan {
        #[arg(add = clap_complete::ArgValueCandidates::new(complete::releases))]
        release: String,
        /// Check as `rollout --allow-downgrade` would: a lower version is allowed.
        #[arg(long)]
        allow_downgrade: bool,
        /// Propose the largest wave sizes that keep every wave under [policy] max_wave_risk,
        /// as a [strategy] snippet to paste into flotilla.toml.
        #[arg(long)]
        suggest: bool,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Show the rendered desired state of an environment and the layer that set each key.
    Explain {
        #[arg(add = clap_complete::ArgValueCandidates::new(complete::envs))]
        env: String,
        /// Only this dotted key, e.g. api.replicas.
        key: Option<String>,
        /// The release to render (default: the newest).
        #[arg(long)]
        #[arg(add = clap_complete::ArgValueCandidates::new(complete::releases))]
        release: Option<String>,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Roll a release out headlessly (for scripts and CI); resumes an unfinished one.
    Rollout(rollout::RolloutArgs),
    /// The operations console: roll RELEASE out (or resume the unfinished rollout) and watch
    /// and steer it with single keys.
    Console {
        /// The release; default: the unfinished rollout's.
        #[arg(add = clap_complete::ArgValueCandidates::new(complete::releases))]
        release: Option<String>,
        /// Watch only: every action that changes anything is removed.
        #[arg(long)]
        read_only: bool,
        /// dark, light, high-contrast, mono, or a theme file (.toml).
        #[arg(long)]
        theme: Option<String>,
    },
    /// Where the current (or last) rollout stands.
    Status {
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Approve a wave's gate of the running rollout.
    Approve {
        #[arg(add = clap_complete::ArgValueCandidates::new(complete::waves))]
        wave: String,
        /// Why you approve (kept in the journal).
        #[arg(long)]
        note: Option<String>,
        #[command(flatten)]
        report: Report,
    },
    /// Pause the running rollout: steps in flight finish, nothing new starts.
    Pause(Report),
    /// Resume a paused or halted rollout (resuming a halt accepts the failures so far).
    Resume(Report),
    /// Abort the unfinished rollout.
    Abort(Report),
    /// Retry failed environments (all of them when none are named).
    Retry {
        #[arg(add = clap_complete::ArgValueCandidates::new(complete::envs))]
        envs: Vec<String>,
        #[command(flatten)]
        report: Report,
    },
    /// Skip an environment, with a reason for the record.
    Skip {
        #[arg(add = clap_complete::ArgValueCandidates::new(complete::envs))]
        env: String,
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        report: Report,
    },
    /// Roll environments (or every environment of a wave this rollout changed) back to the
    /// release before the rollout's; the rollout pauses until someone resumes or aborts it.
    /// Services marked `rollback = "forward-only"` stay as they are.
    Rollback {
        #[arg(required_unless_present = "wave")]
        #[arg(add = clap_complete::ArgValueCandidates::new(complete::envs))]
        envs: Vec<String>,
        /// Roll back the whole wave instead of named environments.
        #[arg(long, conflicts_with = "envs")]
        #[arg(add = clap_complete::ArgValueCandidates::new(complete::waves))]
        wave: Option<String>,
        /// The release to go back to (default: the one before the rollout's release).
        #[arg(long)]
        #[arg(add = clap_complete::ArgValueCandidates::new(complete::releases))]
        to: Option<String>,
        #[command(flatten)]
        report: Report,
    },
    /// The journal of who did what; --verify checks its hash chain.
    Audit(audit::AuditArgs),
    /// Run the flotilla agent for one environment: the http driver's other end.
    Agent(agent::AgentArgs),
    /// The fleet's drift: each service's live state against what flotilla last applied and
    /// what Git wants; exit 1 when something changed behind flotilla's back.
    Drift(drift::DriftArgs),
    /// Make an environment's out-of-band change part of the intent: its live values are
    /// committed as the environment's emergency layer (emergency/ENV.toml).
    Adopt(adopt::AdoptArgs),
    /// Undo an environment's out-of-band change: apply again what flotilla last applied
    /// there, through the engine, as a rollout of that environment alone.
    Revert(revert::RevertArgs),
    /// Handle the simulated fleet by hand (`sim tamper` makes drift to try).
    #[command(subcommand)]
    Sim(sim::SimCommand),
    /// Notifications: `notify test` sends one to each [[notify]] target now.
    #[command(subcommand)]
    Notify(notify::NotifyCommand),
    /// Print the completion script for a shell: `flotilla completions bash >
    /// ~/.local/share/bash-completion/completions/flotilla`.
    ///
    /// The script asks flotilla for release, environment and wave names as you type, read
    /// from the intent (`--repo`, else FLOTILLA_REPO, else the current directory).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
        /// The whole script instead: commands and flags only, without calling flotilla.
        #[arg(long = "static")]
        fixed: bool,
    },
    /// Print the manual page (roff): `flotilla man | man -l -`.
    Man,
}

/// Set once when the command reports in JSON: its errors and refusals then do too.
static JSON_REFUSALS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Says why a command refused or failed and returns `code`: on stderr for people, and with
/// `--output json` also as one JSON document on stdout (`{"kind": "refused", "message",
/// "exit"}`), so a script reading stdout always learns how it ended.
fn refuse(code: u8, message: impl AsRef<str>) -> u8 {
    let message = message.as_ref();
    tracing::warn!(exit = code, "{message}");
    eprintln!("{message}");
    if JSON_REFUSALS.load(std::sync::atomic::Ordering::Relaxed) {
        let text = message
            .strip_prefix("error: ")
            .or_else(|| message.strip_prefix("refused: "))
            .unwrap_or(message);
        println!(
            "{}",
            serde_json::json!({
                "ts": crate::session::now_text(),
                "kind": if code == exit::BLOCKED { "refused" } else { "error" },
                "message": text,
                "exit": code,
            })
        );
    }
    code
}

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    complete::answer_if_asked();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                exit::INVALID
            } else {
                exit::OK
            });
        }
    };
    // Commands that only print end quietly when their reader goes away (`status | head`),
    // as Unix tools do. Not the ones that run a rollout or a console: they keep going and
    // get write errors instead (and sockets must never kill the process).
    if matches!(
        cli.command,
        Commands::Validate { .. }
            | Commands::Plan { .. }
            | Commands::Explain { .. }
            | Commands::Status { .. }
            | Commands::Audit(_)
            | Commands::Drift(_)
    ) {
        // SAFETY: restores the default disposition of SIGPIPE before any thread starts.
        #[cfg(unix)]
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let json = match &cli.command {
        Commands::Validate { output }
        | Commands::Plan { output, .. }
        | Commands::Explain { output, .. }
        | Commands::Status { output } => *output == Output::Json,
        Commands::Rollout(args) => args.output == Output::Json,
        Commands::Audit(args) => args.output == Output::Json,
        Commands::Drift(drift::DriftArgs {
            command: Some(drift::DriftCommand::Accept { report, .. }),
            ..
        }) => report.output == Output::Json,
        Commands::Drift(args) => args.output == Output::Json,
        Commands::Revert(args) => args.output == Output::Json,
        Commands::Adopt(args) => args.output == Output::Json,
        Commands::Approve { report, .. }
        | Commands::Pause(report)
        | Commands::Resume(report)
        | Commands::Abort(report)
        | Commands::Retry { report, .. }
        | Commands::Skip { report, .. }
        | Commands::Rollback { report, .. } => report.output == Output::Json,
        Commands::Notify(notify::NotifyCommand::Test { output }) => *output == Output::Json,
        Commands::Sim(sim::SimCommand::Tamper { report, .. }) => report.output == Output::Json,
        _ => false,
    };
    JSON_REFUSALS.store(json, std::sync::atomic::Ordering::Relaxed);
    // Printing a script or a page is not worth a log line (nor a directory made for it).
    let logged = !matches!(cli.command, Commands::Completions { .. } | Commands::Man);
    if logged {
        // Without a log the command still runs: `status` says why there is none.
        let _ = crate::log::init(cli.verbose);
        let args: Vec<String> = std::env::args().skip(1).collect();
        tracing::info!(
            version = env!("CARGO_PKG_VERSION"),
            pid = std::process::id(),
            "flotilla {}",
            args.join(" ")
        );
    }
    // The operator's own notify targets, for whatever this command runs or tests. An agent
    // tells no one.
    if logged && !matches!(cli.command, Commands::Agent(_)) {
        if let Some(path) = crate::notify::personal::default_path() {
            let (personal, warnings) = crate::notify::personal::read(&path);
            for w in warnings {
                crate::notice::say(w);
            }
            crate::notify::personal::install(personal);
        }
    }
    let code = match cli.command {
        Commands::Demo { envs, agents } => init::demo(envs, agents, cli.state),
        Commands::Agent(ref args) => agent::run(args),
        Commands::Drift(ref args) => drift::run(&cli.repo, &cli.rev, cli.state.as_deref(), args),
        Commands::Adopt(ref args) => adopt::run(&cli.repo, cli.state.as_deref(), args),
        Commands::Revert(ref args) => revert::run(&cli.repo, cli.state.as_deref(), args),
        Commands::Sim(ref command) => sim::run(&cli.repo, &cli.rev, cli.state.as_deref(), command),
        Commands::Notify(ref command) => notify::run(&cli.repo, &cli.rev, command),
        Commands::Completions { shell, fixed } => complete::print(shell, fixed),
        Commands::Man => {
            use clap::CommandFactory;
            match clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()) {
                Ok(()) => exit::OK,
                Err(e) => refuse(
                    exit::FAILED,
                    format!("error: cannot write the manual page: {e}"),
                ),
            }
        }
        Commands::Init {
            ref dir,
            demo,
            envs,
        } => init::init(dir, demo, envs),
        Commands::Validate { output } => validate::run(&cli.repo, &cli.rev, output),
        Commands::Plan {
            ref release,
            allow_downgrade,
            suggest,
            output,
        } => plan::run(
            &cli.repo,
            &cli.rev,
            cli.state.as_deref(),
            release,
            plan::Asked {
                downgrades: rollout::downgrades(allow_downgrade),
                suggest,
            },
            output,
        ),
        Commands::Explain {
            ref env,
            ref key,
            ref release,
            output,
        } => explain::run(
            &cli.repo,
            &cli.rev,
            env,
            key.as_deref(),
            release.as_deref(),
            output,
        ),
        Commands::Rollout(ref args) => {
            rollout::run(&cli.repo, &cli.rev, cli.state.as_deref(), args, None)
        }
        Commands::Console {
            ref release,
            read_only,
            ref theme,
        } => console::run(
            &cli.repo,
            &cli.rev,
            cli.state.as_deref(),
            release.as_deref(),
            read_only,
            theme.clone(),
        ),
        Commands::Status { output } => {
            status::run(&cli.repo, &cli.rev, cli.state.as_deref(), output)
        }
        Commands::Audit(ref args) => audit::run(&cli.repo, &cli.rev, cli.state.as_deref(), args),
        Commands::Approve {
            ref wave,
            ref note,
            report,
        } => steer(
            &cli,
            StoredCommand::Approve {
                wave: wave.clone(),
                note: note.clone(),
            },
            report,
        ),
        Commands::Pause(report) => steer(&cli, StoredCommand::Pause, report),
        Commands::Resume(report) => steer(&cli, StoredCommand::Resume, report),
        Commands::Abort(report) => steer(&cli, StoredCommand::Abort, report),
        Commands::Retry { ref envs, report } => {
            steer(&cli, StoredCommand::Retry { envs: envs.clone() }, report)
        }
        Commands::Rollback {
            ref envs,
            ref wave,
            ref to,
            report,
        } => steer(
            &cli,
            StoredCommand::Rollback {
                envs: envs.clone(),
                wave: wave.clone(),
                to: to.clone(),
            },
            report,
        ),
        Commands::Skip {
            ref env,
            ref reason,
            report,
        } => steer(
            &cli,
            StoredCommand::Skip {
                env: env.clone(),
                reason: reason.clone(),
            },
            report,
        ),
    };
    if logged {
        tracing::info!(exit = code, "done");
    }
    ExitCode::from(code)
}

/// Opens (creating it if need be) the state database of `fleet`: `--state`, or the fleet's
/// default; prints why it cannot be opened and returns the exit code otherwise.
fn open_fleet_state(
    state: Option<&Path>,
    fleet: &str,
) -> Result<(PathBuf, crate::store::Store), u8> {
    let path = state
        .map(Path::to_path_buf)
        .unwrap_or_else(|| default_state(fleet));
    match crate::store::Store::open(&path, fleet) {
        Ok(store) => Ok((path, store)),
        Err(e) => Err(refuse(exit::INVALID, format!("error: {e}"))),
    }
}

/// Opens the existing state database for commands that read or steer a rollout (status,
/// audit, approve...); prints why it cannot be opened and returns the exit code otherwise.
fn open_state(
    repo: &Path,
    rev: &str,
    state: Option<&Path>,
) -> Result<(PathBuf, crate::store::Store), u8> {
    let path = state_path(repo, rev, state)?;
    match crate::store::Store::open_existing(&path) {
        Ok(store) => Ok((path, store)),
        Err(e) => Err(refuse(exit::INVALID, format!("error: {e}"))),
    }
}

fn steer(cli: &Cli, command: StoredCommand, report: Report) -> u8 {
    steer::run(
        &cli.repo,
        &cli.rev,
        cli.state.as_deref(),
        command,
        report.output,
    )
}

/// Prints a line for people: on stdout, or on stderr when stdout carries the JSON.
fn say(output: Output, line: &str) {
    match output {
        Output::Plain => println!("{line}"),
        Output::Json => eprintln!("{line}"),
    }
}

/// The async runtime a command runs on, or the refusal that says why there is none.
fn runtime() -> Result<tokio::runtime::Runtime, u8> {
    tokio::runtime::Runtime::new().map_err(|e| {
        refuse(
            exit::FAILED,
            format!("error: cannot start the async runtime: {e}"),
        )
    })
}

/// Loads the intent, printing warnings; on failure prints the errors and returns the exit code.
fn load(repo: &Path, rev: &str) -> Result<Loaded, u8> {
    told(intent::load(repo, rev))
}

/// A loaded intent with its warnings printed, or the errors printed and the exit code.
fn told(loaded: Result<Loaded, IntentError>) -> Result<Loaded, u8> {
    match loaded {
        Ok(loaded) => {
            for w in &loaded.warnings {
                eprintln!("{w}\n");
            }
            Ok(loaded)
        }
        Err(e) => Err(intent_error(e)),
    }
}

/// Loads the intent for a rollout: an invalid one is the first preflight check failing
/// (`intent.valid`, or `deps.acyclic` for a dependency cycle), which blocks the rollout
/// with exit 3 and names the check after the errors.
fn load_for_rollout(repo: &Path, rev: &str) -> Result<Loaded, u8> {
    match intent::load(repo, rev) {
        Err(IntentError::Invalid(diags)) => {
            output::print_diagnostics(&diags);
            let errors: Vec<_> = diags.iter().filter(|d| d.is_error()).collect();
            let cyclic = errors
                .iter()
                .any(|d| d.message.starts_with("dependency cycle"));
            let id = if cyclic {
                "deps.acyclic"
            } else {
                "intent.valid"
            };
            Err(refuse(
                exit::BLOCKED,
                format!(
                    "preflight FAILED: {id}: {} error(s) in the intent, shown above\nblocked: nothing was started; `flotilla validate` checks the intent",
                    errors.len()
                ),
            ))
        }
        other => told(other),
    }
}

/// The environment called `name`, or the refusal that says there is none (with the
/// nearest name).
fn environment<'a>(intent: &'a intent::Intent, name: &str) -> Result<&'a intent::Environment, u8> {
    intent.environment(name).ok_or_else(|| {
        let names: Vec<&str> = intent
            .environments
            .iter()
            .map(|e| e.name.as_str())
            .collect();
        refuse(
            exit::INVALID,
            format!(
                "error: no environment `{name}`; {}",
                intent::load::did_you_mean(name, &names)
            ),
        )
    })
}

/// The service called `name`, or the exit code after saying it is not one (did you mean).
fn service(intent: &intent::Intent, name: &str) -> Result<(), u8> {
    let names: Vec<&str> = intent.services.iter().map(|s| s.name.as_str()).collect();
    if names.contains(&name) {
        return Ok(());
    }
    Err(refuse(
        exit::INVALID,
        format!(
            "error: no service `{name}`; {}",
            intent::load::did_you_mean(name, &names)
        ),
    ))
}

/// Says why a session did not start or end well; returns its exit code.
fn refused(refusal: crate::session::Refusal) -> u8 {
    match refusal {
        crate::session::Refusal::Said { code, message } => refuse(code, message),
        crate::session::Refusal::Intent(e) => intent_error(e),
        crate::session::Refusal::Blocked { message, .. } => refuse(exit::BLOCKED, message),
    }
}

/// Prints why the intent does not load (each diagnostic); returns the exit code.
fn intent_error(e: IntentError) -> u8 {
    match e {
        IntentError::Git(msg) => refuse(exit::INVALID, format!("error: {msg}")),
        IntentError::Invalid(diags) => {
            output::print_diagnostics(&diags);
            if JSON_REFUSALS.load(std::sync::atomic::Ordering::Relaxed) {
                let errors: Vec<_> = diags.iter().filter(|d| d.is_error()).collect();
                println!(
                    "{}",
                    serde_json::json!({ "kind": "error", "message": "the intent is invalid",
                        "errors": errors, "exit": exit::INVALID })
                );
            }
            exit::INVALID
        }
    }
}

/// Where the state lives when `--state` is not given: the platform data directory.
fn default_state(fleet: &str) -> PathBuf {
    data_dir().join("state").join(format!("{fleet}.db"))
}

fn data_dir() -> PathBuf {
    crate::dirs::project()
        .map(|d| d.data_dir().to_path_buf())
        .unwrap_or_else(|| PathBuf::from(".flotilla"))
}

/// The state database: `--state`, or the fleet's default (which needs the fleet's name from
/// `flotilla.toml`, read on its own so steering works even while the rest of the intent is
/// invalid).
fn state_path(repo: &Path, rev: &str, state: Option<&Path>) -> Result<PathBuf, u8> {
    if let Some(s) = state {
        return Ok(s.to_path_buf());
    }
    match intent::source::fleet_name(repo, rev) {
        Ok(name) => Ok(default_state(&name)),
        Err(e) => Err(refuse(
            exit::INVALID,
            format!("error: {e}; pass --state to name the state database"),
        )),
    }
}
