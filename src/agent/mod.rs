//! The reference flotilla agent: an HTTP(S) server inside one environment that the http
//! driver talks to (`docs/agent-protocol.md`).
//!
//! Without hooks it records what it was asked to run in its directory, which makes it a
//! test target and a template; with hooks it runs them (argv, the exec driver's
//! placeholders and desired-state file) and reports their outcome. Every request needs the
//! bearer token; applies are idempotent by revision and their status survives a restart.

pub mod protocol;
pub mod state;
pub mod tls;

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

/// How an agent is set up.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Where the agent keeps its state (and runs hooks from).
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
}

impl Agent {
    /// Opens the agent's directory (creating it) and reads the state left there; checks the
    /// hooks' placeholders.
    pub fn open(config: AgentConfig) -> Result<Arc<Agent>, String> {
        std::fs::create_dir_all(&config.dir)
            .map_err(|e| format!("cannot create --dir {}: {e}", config.dir.display()))?;
        let dir = std::fs::canonicalize(&config.dir)
            .map_err(|e| format!("cannot open --dir {}: {e}", config.dir.display()))?;
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
            return error(
                StatusCode::UNAUTHORIZED,
                "authentication failed: send Authorization: Bearer TOKEN with this agent's token",
            );
        }
    }
    next.run(request).await
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
            (None, Some(live)) => Json(applied(&live.revision)).into_response(),
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

fn applied(revision: &str) -> ApplyStatus {
    ApplyStatus {
        revision: revision.to_string(),
        phase: Phase::Applied,
        message: String::new(),
        retryable: false,
        output: Default::default(),
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
    let mut state = agent.state.lock().await;
    let record = state.services.get(&name).cloned().unwrap_or_default();
    match &record.apply {
        // The same revision again: its apply's status; it never starts twice. A failed one
        // is started again: that is a retry.
        Some(a) if a.revision == desired.revision && a.phase != Phase::Failed => {
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
        None if record
            .live
            .as_ref()
            .is_some_and(|l| l.revision == desired.revision) =>
        {
            return (StatusCode::ACCEPTED, Json(applied(&desired.revision))).into_response();
        }
        _ => {}
    }
    let request = ApplyRequest {
        service: name.clone(),
        version: desired.version,
        config: desired.config,
        revision: desired.revision,
        secrets: desired.secrets,
    };
    let mut next = state.clone();
    let entry = next.services.entry(name.clone()).or_default();
    if !agent.runs_apply_hook() {
        // Recording is the apply: done at once.
        entry.live = Some(request.sealed_live());
        entry.apply = Some(applied(&request.revision));
        let status = entry.apply.clone();
        if let Err(e) = agent.commit(&mut state, next).await {
            return e;
        }
        return (StatusCode::ACCEPTED, Json(status)).into_response();
    }
    let status = ApplyStatus {
        revision: request.revision.clone(),
        phase: Phase::Applying,
        message: String::new(),
        retryable: false,
        output: Default::default(),
    };
    entry.apply = Some(status.clone());
    if let Err(e) = agent.commit(&mut state, next).await {
        return e;
    }
    drop(state);
    tokio::spawn(run_apply_hook(agent.clone(), request));
    (StatusCode::ACCEPTED, Json(status)).into_response()
}

/// Runs the apply hook and records how it ended.
async fn run_apply_hook(agent: Arc<Agent>, request: ApplyRequest) {
    let Some(hooks) = agent.hooks.as_ref() else {
        return;
    };
    let ran =
        tokio::time::timeout(agent.hook_timeout, hooks.apply(&agent.hook_env, &request)).await;
    let status = match ran {
        Ok(Ok(output)) => ApplyStatus {
            output,
            ..applied(&request.revision)
        },
        Ok(Err(e)) => ApplyStatus {
            revision: request.revision.clone(),
            phase: Phase::Failed,
            message: e.message,
            retryable: e.class != ErrorClass::Permanent,
            output: e.output,
        },
        // Dropping the call killed the hook's process group.
        Err(_) => ApplyStatus {
            revision: request.revision.clone(),
            phase: Phase::Failed,
            message: format!(
                "the apply hook did not finish within {}; it was stopped",
                humantime::format_duration(agent.hook_timeout)
            ),
            retryable: true,
            output: Default::default(),
        },
    };
    let mut state = agent.state.lock().await;
    let mut next = state.clone();
    let entry = next.services.entry(request.service.clone()).or_default();
    if status.phase == Phase::Applied {
        entry.live = Some(request.sealed_live());
    }
    entry.apply = Some(status);
    // A state that cannot be written leaves the apply "applying" in memory and on disk;
    // the agent's restart turns it into a retryable failure.
    let _ = agent.commit(&mut state, next).await;
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

/// Agents served in this process on loopback (the demo and the benchmarks): one per
/// environment, each on its own port, on a runtime of their own. Dropping this stops them.
pub struct LocalAgents {
    /// Each agent's URL, in the order asked for.
    pub urls: Vec<String>,
    stop: Option<tokio::sync::watch::Sender<bool>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LocalAgents {
    /// Starts one agent per config on `127.0.0.1`, on free ports.
    pub fn start(configs: Vec<AgentConfig>) -> Result<LocalAgents, String> {
        let mut bound = Vec::new();
        for config in configs {
            let listener = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.set_nonblocking(true).map(|()| l))
                .map_err(|e| format!("cannot listen on 127.0.0.1: {e}"))?;
            bound.push((listener, Agent::open(config)?));
        }
        let urls = bound
            .iter()
            .map(|(l, _)| l.local_addr().map(|a| format!("http://{a}")))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("flotilla-agents")
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the agents' runtime: {e}"))?;
        let thread = std::thread::Builder::new()
            .name("flotilla-agents".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let mut served = tokio::task::JoinSet::new();
                    for (listener, agent) in bound {
                        let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                            continue;
                        };
                        let mut stopped = stopped.clone();
                        served.spawn(serve(listener, agent, async move {
                            let _ = stopped.wait_for(|s| *s).await;
                        }));
                    }
                    while served.join_next().await.is_some() {}
                });
            })
            .map_err(|e| format!("cannot start the agents' thread: {e}"))?;
        Ok(LocalAgents {
            urls,
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for LocalAgents {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
