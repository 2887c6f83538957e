//! The reference flotilla agent: an HTTP(S) server inside one environment that the http
//! driver talks to (`docs/agent-protocol.md`).
//!
//! Without hooks it records what it was asked to run in its directory, which makes it a
//! test target and a template; with hooks it runs them (argv, the exec driver's
//! placeholders and desired-state file) and reports their outcome. Every request needs the
//! bearer token; applies are idempotent by revision and their status survives a restart.

mod local;
pub mod protocol;
pub mod state;
pub mod tls;

pub use local::LocalAgents;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::drivers::exec::{check_placeholders, labels_used, ExecConfig, ExecDriver, Role};
use crate::drivers::{ApplyRequest, Driver, ErrorClass, Health};
use crate::intent::Environment;
use protocol::{ApplyStatus, Desired, ErrorDoc, HealthDoc, Phase, Ping};
use state::AgentState;

/// The largest request body accepted (a desired state with its config).
pub const BODY_LIMIT: usize = 1 << 20;

/// The commands an agent runs instead of only recording (argv; exec's placeholders).
#[derive(Debug, Clone, Default)]
pub struct Hooks {
    pub apply: Option<Vec<String>>,
    pub observe: Option<Vec<String>>,
    pub health: Option<Vec<String>>,
    /// Exit codes of the apply hook that mean "try again".
    pub transient_exit_codes: Vec<i32>,
    /// How long an apply hook may run before it is stopped (its process group killed).
    pub timeout: Duration,
}

/// How an agent is set up. Not `Debug`: it holds the token.
#[derive(Clone)]
pub struct AgentConfig {
    /// Where the agent keeps its state (hooks run from the directory it was started in).
    pub dir: PathBuf,
    /// The bearer token every request must carry; none only with `--insecure-no-auth`.
    pub token: Option<String>,
    /// The environment this agent serves: requests meant for another are refused.
    pub env: Option<String>,
    pub hooks: Hooks,
}

/// A running agent's shared state.
pub struct Agent {
    dir: PathBuf,
    /// The token's digest: compared in constant time, whatever the length of the guess.
    token: Option<[u8; 32]>,
    env: Option<String>,
    /// The environment as hooks see it (`{env}`).
    hook_env: Environment,
    hooks: Option<ExecDriver>,
    hook_timeout: Duration,
    state: tokio::sync::Mutex<AgentState>,
    /// Held while the agent runs: the directory is this agent's alone.
    _lock: std::fs::File,
}

impl Agent {
    /// Opens the agent's directory (creating it) and reads the state left there; checks the
    /// hooks' placeholders.
    pub fn open(config: AgentConfig) -> Result<Arc<Agent>, String> {
        std::fs::create_dir_all(&config.dir)
            .map_err(|e| format!("cannot create --dir {}: {e}", config.dir.display()))?;
        let dir = std::fs::canonicalize(&config.dir)
            .map_err(|e| format!("cannot open --dir {}: {e}", config.dir.display()))?;
        // Two agents on one directory would overwrite each other's state.
        let lock = state::lock(&dir)?;
        let state = state::load(&dir)?;
        let hooks = &config.hooks;
        for (flag, argv, role) in [
            ("--apply-hook", &hooks.apply, Role::Apply),
            ("--observe-hook", &hooks.observe, Role::Observe),
            ("--health-hook", &hooks.health, Role::Health),
        ] {
            for arg in argv.iter().flatten() {
                check_placeholders(arg, role).map_err(|(_, why)| format!("{flag}: {why}"))?;
                if !labels_used(arg).is_empty() || arg.contains("{target}") {
                    return Err(format!(
                        "{flag}: `{arg}`: an agent knows its environment's name, not its labels or target; use {{env}}"
                    ));
                }
            }
        }
        let place = dir.display().to_string();
        // Hook commands a killed agent of this directory left running go first.
        crate::drivers::exec::kill_orphans(&place);
        let runs_hooks = hooks.apply.is_some() || hooks.observe.is_some() || hooks.health.is_some();
        let exec = runs_hooks.then(|| {
            let config = ExecConfig {
                // Without an apply hook an apply only records; this is never run then.
                apply: hooks.apply.clone().unwrap_or_default(),
                observe: hooks.observe.clone(),
                health: hooks.health.clone(),
                ping: None,
                transient_exit_codes: hooks.transient_exit_codes.clone(),
            };
            let root = std::env::current_dir().unwrap_or_else(|_| dir.clone());
            ExecDriver::new(config, &root, &place)
        });
        let name = config.env.clone().unwrap_or_else(|| "agent".into());
        let hook_env = Environment {
            labels: [("name".to_string(), name.clone())].into(),
            name,
            target: None,
            config: Default::default(),
            file: String::new(),
        };
        Ok(Arc::new(Agent {
            dir,
            token: config.token.as_deref().map(digest),
            env: config.env,
            hook_env,
            hooks: exec,
            hook_timeout: config.hooks.timeout,
            state: tokio::sync::Mutex::new(state),
            _lock: lock,
        }))
    }

    /// The agent's routes, behind the token check and the body limit.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/v1/ping", get(ping))
            .route("/v1/state", get(live_state))
            .route("/v1/services/{name}", get(service_status).put(put_service))
            .route("/v1/services/{name}/health", get(health))
            .layer(DefaultBodyLimit::max(BODY_LIMIT))
            .layer(axum::middleware::from_fn_with_state(
                self.clone(),
                authorize,
            ))
            .with_state(self.clone())
    }

    fn runs_apply_hook(&self) -> bool {
        self.hooks.as_ref().is_some_and(ExecDriver::applies)
    }

    /// Writes `next` as the state, durably, then keeps it; on failure nothing changes.
    async fn commit(&self, state: &mut AgentState, next: AgentState) -> Result<(), Response> {
        let dir = self.dir.clone();
        let snapshot = next.clone();
        match tokio::task::spawn_blocking(move || state::save(&dir, &snapshot)).await {
            Ok(Ok(())) => {
                *state = next;
                Ok(())
            }
            Ok(Err(e)) => Err(error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the agent cannot write its state: {e}"),
            )),
            Err(e) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
        }
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Serves `agent` on `listener` until `shutdown` completes.
pub async fn serve<L>(
    listener: L,
    agent: Arc<Agent>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    axum::serve(listener, agent.router())
        .with_graceful_shutdown(shutdown)
        .await
}

/// `{"error": ..}` with a status.
fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        Json(ErrorDoc {
            error: message.into(),
        }),
    )
        .into_response()
}

/// Every request carries `Authorization: Bearer TOKEN` (unless the agent runs without one).
async fn authorize(State(agent): State<Arc<Agent>>, request: Request, next: Next) -> Response {
    if let Some(expected) = &agent.token {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(digest);
        let ok = given.is_some_and(|g| bool::from(g.ct_eq(expected)));
        if !ok {
            tracing::warn!(
                "refused {} {}: no or a wrong token",
                request.method(),
                request.uri().path()
            );
            return error(
                StatusCode::UNAUTHORIZED,
                "authentication failed: send Authorization: Bearer TOKEN with this agent's token",
            );
        }
    }
    let asked = format!("{} {}", request.method(), request.uri().path());
    let response = next.run(request).await;
    tracing::debug!("{asked}: {}", response.status());
    response
}

async fn ping(State(agent): State<Arc<Agent>>) -> Json<Ping> {
    Json(Ping {
        agent: "flotilla".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        env: agent.env.clone(),
    })
}

async fn live_state(State(agent): State<Arc<Agent>>) -> Response {
    if let Some(hooks) = agent.hooks.as_ref().filter(|h| h.observes()) {
        return match hooks.observe(&agent.hook_env).await {
            Ok(live) => Json(crate::drivers::live_doc::render(&live)).into_response(),
            Err(e) => error(StatusCode::BAD_GATEWAY, e.message),
        };
    }
    let live = agent.state.lock().await.live();
    Json(crate::drivers::live_doc::render(&live)).into_response()
}

async fn service_status(State(agent): State<Arc<Agent>>, Path(name): Path<String>) -> Response {
    let state = agent.state.lock().await;
    match state.services.get(&name) {
        Some(record) => match (&record.apply, &record.live) {
            (Some(apply), _) => Json(apply.clone()).into_response(),
            (None, Some(live)) => Json(ApplyStatus::applied(&live.revision)).into_response(),
            (None, None) => error(
                StatusCode::NOT_FOUND,
                format!("{name} was never applied here"),
            ),
        },
        None => error(
            StatusCode::NOT_FOUND,
            format!("{name} was never applied here"),
        ),
    }
}

/// What a body that is not a desired state says: what is wrong and where, never the
/// values it holds (they may be secrets).
fn bad_body(e: &serde_json::Error) -> String {
    let text = e.to_string();
    if text.starts_with("missing field") || text.starts_with("unknown field") {
        return format!("the body is not a desired state: {text}");
    }
    let what = match e.classify() {
        serde_json::error::Category::Data => "a value of the wrong type",
        _ => "not JSON",
    };
    format!(
        "the body is not a desired state: {what} at line {}, column {}",
        e.line(),
        e.column()
    )
}

async fn put_service(
    State(agent): State<Arc<Agent>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    if !crate::intent::load::valid_name(&name) {
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "`{}` is not a service name",
                crate::drivers::text::excerpt(&name)
            ),
        );
    }
    let desired: Desired = match serde_json::from_slice(&body) {
        Ok(d) => d,
        Err(e) => return error(StatusCode::BAD_REQUEST, bad_body(&e)),
    };
    if let (Some(mine), Some(theirs)) = (&agent.env, &desired.env) {
        if mine != theirs {
            return error(
                StatusCode::BAD_REQUEST,
                format!("this agent serves environment {mine}, not {theirs}"),
            );
        }
    }
    let request = ApplyRequest {
        service: name.clone(),
        version: desired.version,
        config: desired.config,
        revision: desired.revision,
        secrets: desired.secrets,
    };
    let mut state = agent.state.lock().await;
    let record = state.services.get(&name).cloned().unwrap_or_default();
    // What runs is this revision, untouched since: its apply's status; it never starts
    // twice. A failed apply is started again (a retry), and so is one whose result was
    // changed out of band since (a revert of drift).
    let untouched = record.live.as_ref().is_some_and(|l| request.runs_in(l));
    match &record.apply {
        Some(a) if a.revision == request.revision && a.phase == Phase::Applying => {
            return (StatusCode::ACCEPTED, Json(a.clone())).into_response();
        }
        Some(a) if a.phase == Phase::Applying => {
            return error(
                StatusCode::CONFLICT,
                format!(
                    "revision {} of {name} is applying; send this one when it is done",
                    a.revision
                ),
            );
        }
        Some(a) if a.revision == request.revision && a.phase != Phase::Failed && untouched => {
            return (StatusCode::ACCEPTED, Json(a.clone())).into_response();
        }
        None if untouched => {
            return (
                StatusCode::ACCEPTED,
                Json(ApplyStatus::applied(&request.revision)),
            )
                .into_response();
        }
        _ => {}
    }
    let mut next = state.clone();
    let entry = next.services.entry(name.clone()).or_default();
    if !agent.runs_apply_hook() {
        // Recording is the apply: done at once.
        entry.live = Some(request.sealed_live());
        entry.apply = Some(ApplyStatus::applied(&request.revision));
        let status = entry.apply.clone();
        if let Err(e) = agent.commit(&mut state, next).await {
            return e;
        }
        return (StatusCode::ACCEPTED, Json(status)).into_response();
    }
    let status = ApplyStatus::applying(&request.revision);
    entry.apply = Some(status.clone());
    if let Err(e) = agent.commit(&mut state, next).await {
        return e;
    }
    drop(state);
    tokio::spawn(run_apply_hook(agent.clone(), request));
    (StatusCode::ACCEPTED, Json(status)).into_response()
}

/// Runs the apply hook and records how it ended, however it ends: a hook that panics or
/// outlives its timeout is a failed apply, retryable; the record is kept in memory even
/// when the disk refuses it (a restart then finds the apply "applying" and fails it as
/// interrupted, retryable too).
async fn run_apply_hook(agent: Arc<Agent>, request: ApplyRequest) {
    let ran = {
        let (agent, request) = (agent.clone(), request.clone());
        tokio::spawn(async move {
            let hooks = agent.hooks.as_ref()?;
            tokio::time::timeout(agent.hook_timeout, hooks.apply(&agent.hook_env, &request))
                .await
                .ok()
        })
        .await
    };
    let revision = &request.revision;
    let status = match ran {
        Ok(Some(Ok(output))) => ApplyStatus::applied(revision).with_output(output),
        Ok(Some(Err(e))) => {
            ApplyStatus::failed(revision, e.message, e.class != ErrorClass::Permanent)
                .with_output(e.output)
        }
        // Dropping the call killed the hook's process group.
        Ok(None) => ApplyStatus::failed(
            revision,
            format!(
                "the apply hook did not finish within {}; it was stopped",
                humantime::format_duration(agent.hook_timeout)
            ),
            true,
        ),
        Err(_) => ApplyStatus::failed(
            revision,
            "internal error: the apply hook's task failed",
            true,
        ),
    };
    tracing::info!(
        "apply of {} at {}: {:?}{}",
        request.service,
        revision,
        status.phase,
        if status.message.is_empty() {
            String::new()
        } else {
            format!(": {}", status.message)
        }
    );
    let mut state = agent.state.lock().await;
    let mut next = state.clone();
    let entry = next.services.entry(request.service.clone()).or_default();
    if status.phase == Phase::Applied {
        entry.live = Some(request.sealed_live());
    }
    entry.apply = Some(status);
    if agent.commit(&mut state, next.clone()).await.is_err() {
        *state = next;
    }
}

async fn health(State(agent): State<Arc<Agent>>, Path(name): Path<String>) -> Response {
    if let Some(hooks) = agent.hooks.as_ref().filter(|h| h.checks_health()) {
        return match hooks.health(&agent.hook_env, &name).await {
            Ok(Health::Healthy) => Json(HealthDoc {
                healthy: true,
                message: String::new(),
            })
            .into_response(),
            Ok(Health::Unhealthy(why)) => Json(HealthDoc {
                healthy: false,
                message: why,
            })
            .into_response(),
            Err(e) => error(StatusCode::BAD_GATEWAY, e.message),
        };
    }
    let state = agent.state.lock().await;
    let apply = state.services.get(&name).and_then(|r| r.apply.clone());
    let (healthy, message) = match apply {
        Some(a) if a.phase == Phase::Applied => (true, String::new()),
        Some(a) if a.phase == Phase::Applying => {
            (false, format!("revision {} is applying", a.revision))
        }
        Some(a) => (false, a.message),
        None => (false, format!("{name} does not run here")),
    };
    Json(HealthDoc { healthy, message }).into_response()
}
