//! `flotilla agent`: the reference agent, serving one environment to the http driver.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::exit;
use crate::agent::{Agent, AgentConfig, Hooks};

#[derive(Debug, Clone, clap::Args)]
pub struct AgentArgs {
    /// Address to listen on, e.g. 0.0.0.0:8443 (port 0 takes a free port, printed at start).
    #[arg(long)]
    pub listen: SocketAddr,
    /// Where the agent keeps its state (created if missing).
    #[arg(long)]
    pub dir: PathBuf,
    /// A file holding the token every request must carry.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Serve without a token; only on a loopback address.
    #[arg(long, conflicts_with = "token_file")]
    pub insecure_no_auth: bool,
    /// The environment this agent serves; requests meant for another are refused.
    #[arg(long)]
    pub env: Option<String>,
    /// Serve HTTPS with this certificate chain (PEM).
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Run this on each apply: words, or a JSON array of arguments; placeholders {env}
    /// {service} {version} {revision} {config_file}, as the exec driver's.
    #[arg(long)]
    pub apply_hook: Option<String>,
    /// Run this for the live state; it prints the live-state document.
    #[arg(long)]
    pub observe_hook: Option<String>,
    /// Run this for a service's health (exit 0: healthy); placeholders {env} {service}.
    #[arg(long)]
    pub health_hook: Option<String>,
    /// An exit code of the apply hook that means "try again" (repeatable).
    #[arg(long = "transient-exit-code", value_name = "CODE")]
    pub transient_exit_codes: Vec<i32>,
    /// How long an apply hook may run before it is stopped.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    pub hook_timeout: Duration,
}

/// A hook as given: a JSON array of arguments, or words.
fn argv(flag: &str, text: &Option<String>) -> Result<Option<Vec<String>>, String> {
    let Some(text) = text else { return Ok(None) };
    let words: Vec<String> = if text.trim_start().starts_with('[') {
        serde_json::from_str(text)
            .map_err(|e| format!("{flag}: not a JSON array of strings: {e}"))?
    } else {
        text.split_whitespace().map(str::to_string).collect()
    };
    if words.is_empty() {
        return Err(format!("{flag} is empty"));
    }
    Ok(Some(words))
}

/// Why an agent does not start: refused by the rules (exit 3), or an error (exit 2).
enum Refused {
    Rule(String),
    Error(String),
}

impl From<String> for Refused {
    fn from(e: String) -> Self {
        Refused::Error(e)
    }
}

fn config(args: &AgentArgs) -> Result<AgentConfig, Refused> {
    let token = match &args.token_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read --token-file {}: {e}", path.display()))?;
            let token = text.trim().to_string();
            if token.is_empty() {
                return Err(format!("--token-file {} is empty", path.display()).into());
            }
            Some(token)
        }
        None if args.insecure_no_auth && args.listen.ip().is_loopback() => None,
        None if args.insecure_no_auth => {
            return Err(Refused::Rule(format!(
                "refused: --insecure-no-auth only on a loopback address, not {}; give the agent a --token-file",
                args.listen.ip()
            )))
        }
        None => {
            return Err(Refused::Rule(
                "refused: the agent needs --token-file (or --insecure-no-auth on a loopback address)"
                    .into(),
            ))
        }
    };
    Ok(AgentConfig {
        dir: args.dir.clone(),
        token,
        env: args.env.clone(),
        hooks: Hooks {
            apply: argv("--apply-hook", &args.apply_hook)?,
            observe: argv("--observe-hook", &args.observe_hook)?,
            health: argv("--health-hook", &args.health_hook)?,
            transient_exit_codes: args.transient_exit_codes.clone(),
            timeout: args.hook_timeout,
        },
    })
}

/// Ctrl-C or SIGTERM; both handlers are in place when this returns, before the first poll.
fn stopped() -> impl std::future::Future<Output = ()> + Send + 'static {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let ctrl_c = tokio::signal::ctrl_c();
    async move {
        tokio::select! {
            _ = ctrl_c => {}
            _ = async {
                match term.as_mut() {
                    Some(t) => { t.recv().await; }
                    None => std::future::pending().await,
                }
            } => {}
        }
    }
}

pub fn run(args: &AgentArgs) -> u8 {
    let config = match config(args) {
        Ok(c) => c,
        Err(Refused::Rule(e)) => return super::refuse(exit::BLOCKED, e),
        Err(Refused::Error(e)) => return super::refuse(exit::INVALID, format!("error: {e}")),
    };
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => match crate::agent::tls::acceptor(cert, key) {
            Ok(a) => Some(a),
            Err(e) => return super::refuse(exit::INVALID, format!("error: {e}")),
        },
        _ => None,
    };
    if tls.is_none() && !args.listen.ip().is_loopback() {
        eprintln!("warning: serving plain http on {}: the token crosses the network in clear; serve HTTPS with --tls-cert and --tls-key", args.listen);
    }
    let agent = match Agent::open(config) {
        Ok(a) => a,
        Err(e) => return super::refuse(exit::INVALID, format!("error: {e}")),
    };
    let runtime = match super::runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    runtime.block_on(async {
        let listener = match tokio::net::TcpListener::bind(args.listen).await {
            Ok(l) => l,
            Err(e) => {
                return super::refuse(
                    exit::INVALID,
                    format!("error: cannot listen on {}: {e}", args.listen),
                )
            }
        };
        let local = listener.local_addr().map_or(args.listen, |a| a);
        // A SIGTERM right after the line below already stops the agent gracefully.
        let stop = stopped();
        let scheme = if tls.is_some() { "https" } else { "http" };
        // The first line says where it listens (a port of 0 becomes a real one), for the
        // scripts and tests that start agents.
        println!(
            "flotilla agent listening on {scheme}://{local} (environment {}, state in {})",
            args.env.as_deref().unwrap_or("not set"),
            args.dir.display()
        );
        let _ = std::io::stdout().flush();
        tracing::info!(
            "agent listening on {scheme}://{local} (environment {})",
            args.env.as_deref().unwrap_or("not set")
        );
        let served = match tls {
            Some(acceptor) => match crate::agent::tls::TlsListener::new(listener, acceptor) {
                Ok(l) => crate::agent::serve(l, agent, stop).await,
                Err(e) => Err(e),
            },
            None => crate::agent::serve(listener, agent, stop).await,
        };
        match served {
            Ok(()) => {
                eprintln!("agent stopped");
                exit::OK
            }
            Err(e) => super::refuse(exit::FAILED, format!("error: the agent failed: {e}")),
        }
    })
}
