//! The http driver: a flotilla agent in each environment, reached over HTTPS at the
//! environment's `target` (`docs/agent-protocol.md`).
//!
//! One connection pool serves every environment. An apply is a PUT, idempotent by revision,
//! followed by polls of the service's status until it is applied or failed, so a dropped
//! connection never loses or doubles an apply. The bearer token is read once, kept in a
//! header marked sensitive, and never put in a message.

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use toml::Spanned;

use super::text::excerpt;
use super::{
    ApplyRequest, Driver, DriverError, DriverFuture, ErrorClass, Health, LiveState, Printed,
    Problem,
};
use crate::agent::protocol::{ApplyStatus, Desired, ErrorDoc, HealthDoc, Phase, Ping};
use crate::intent::Environment;

/// `[driver.http]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpDef {
    #[serde(default)]
    pub token_file: Option<Spanned<String>>,
    #[serde(default)]
    pub token_env: Option<Spanned<String>>,
    #[serde(default)]
    pub ca_file: Option<Spanned<String>>,
    #[serde(default)]
    pub connect_timeout: Option<Spanned<String>>,
    #[serde(default)]
    pub request_timeout: Option<Spanned<String>>,
}

/// Where the bearer token comes from (never the intent itself).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum TokenSource {
    #[default]
    Missing,
    /// A file outside the intent repo (relative paths are from the repo's root).
    File(String),
    /// An environment variable of the engine's process.
    Env(String),
}

/// The http driver's settings, checked.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub token: TokenSource,
    /// CA certificates (PEM) to trust besides the usual roots: an internal CA.
    pub ca_file: Option<String>,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            token: TokenSource::Missing,
            ca_file: None,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// Checks `[driver.http]`; what is wrong is returned beside the settings.
pub fn check_config(def: &HttpDef) -> (HttpConfig, Vec<Problem>) {
    let mut cfg = HttpConfig::default();
    let mut problems = Vec::new();
    match (&def.token_file, &def.token_env) {
        (Some(_), Some(env)) => problems.push((
            env.span(),
            "token_file and token_env are both set".into(),
            "keep one: the token comes from one place".into(),
        )),
        (Some(file), None) => cfg.token = TokenSource::File(file.get_ref().clone()),
        (None, Some(env)) => cfg.token = TokenSource::Env(env.get_ref().clone()),
        (None, None) => {}
    }
    for s in [&def.token_file, &def.token_env, &def.ca_file]
        .into_iter()
        .flatten()
    {
        if s.get_ref().trim().is_empty() {
            problems.push((
                s.span(),
                "this setting is empty".into(),
                "name a file or a variable, or remove the setting".into(),
            ));
        }
    }
    cfg.ca_file = def.ca_file.as_ref().map(|s| s.get_ref().clone());
    for (setting, slot) in [
        (&def.connect_timeout, &mut cfg.connect_timeout),
        (&def.request_timeout, &mut cfg.request_timeout),
    ] {
        let Some(s) = setting else { continue };
        match humantime::parse_duration(s.get_ref().trim()) {
            Ok(d) if !d.is_zero() => *slot = d,
            _ => problems.push((
                s.span(),
                format!("`{}` is not a duration", s.get_ref()),
                "write a duration such as \"5s\" or \"500ms\"".into(),
            )),
        }
    }
    (cfg, problems)
}

/// The http driver.
pub struct HttpDriver {
    client: reqwest::Client,
    /// `Bearer TOKEN`, marked sensitive so no debug output shows it.
    auth: HeaderValue,
}

/// The most of an answer read (a live state of many services fits easily).
const BODY_LIMIT: usize = 16 << 20;

/// Polls of an apply that may fail in a row (a blip) before the attempt fails.
const POLL_MISSES: u32 = 3;

/// How soon an apply still applying is asked about again, at first and at most.
const POLL_FIRST: Duration = Duration::from_millis(20);
const POLL_MOST: Duration = Duration::from_secs(1);

impl HttpDriver {
    /// A driver for agents, with its token read and its CA certificates loaded. `root` is
    /// the intent repo (relative paths are from there; the token may not live in it).
    pub fn new(config: &HttpConfig, root: &Path) -> Result<HttpDriver, String> {
        let token = read_token(&config.token, root)?;
        let mut auth = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
            "the agent token holds characters an HTTP header cannot carry".to_string()
        })?;
        auth.set_sensitive(true);
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .user_agent(concat!("flotilla/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = &config.ca_file {
            let path = from_root(root, ca);
            let pem = std::fs::read(&path)
                .map_err(|e| format!("cannot read ca_file {}: {e}", path.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("ca_file {} holds no PEM certificate: {e}", path.display()))?;
            if certs.is_empty() {
                return Err(format!(
                    "ca_file {} holds no PEM certificate",
                    path.display()
                ));
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let client = builder
            .build()
            .map_err(|e| format!("cannot set up HTTPS: {e}"))?;
        Ok(HttpDriver { client, auth })
    }

    /// One request to `env`'s agent: the status and body, or the error as a driver error.
    async fn call(
        &self,
        env: &Environment,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, Vec<u8>, String), DriverError> {
        let Some(target) = env.target.as_deref() else {
            return Err(DriverError::permanent(format!(
                "environment {} has no target; the http driver needs target = \"https://HOST:PORT\"",
                env.name
            )));
        };
        let shown = shown_target(target);
        let url = format!("{}{path}", target.trim_end_matches('/'));
        let mut request = self
            .client
            .request(method.clone(), &url)
            .header(AUTHORIZATION, self.auth.clone());
        if let Some(body) = body {
            request = request.header(CONTENT_TYPE, "application/json").body(body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| transport_error(&env.name, &shown, &e))?;
        let status = response.status();
        tracing::debug!(env = %env.name, "{method} {shown}{path}: {status}");
        // Read up to a limit: whatever answers there cannot make the engine hold gigabytes.
        let mut body = Vec::new();
        let mut response = response;
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| transport_error(&env.name, &shown, &e))?
        {
            if body.len() + chunk.len() > BODY_LIMIT {
                return Err(DriverError::permanent(format!(
                    "{}: {shown}{path} answered more than {} MiB",
                    env.name,
                    BODY_LIMIT >> 20
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok((status, body, shown))
    }

    /// A request whose success is a JSON document of type `T`.
    async fn get<T: DeserializeOwned>(
        &self,
        env: &Environment,
        path: &str,
    ) -> Result<T, DriverError> {
        let (status, body, target) = self.call(env, Method::GET, path, None).await?;
        if !status.is_success() {
            return Err(status_error(&env.name, &target, status, &body));
        }
        document(&env.name, &target, path, &body)
    }

    /// The service's latest apply, as its agent tells it.
    async fn status(&self, env: &Environment, service: &str) -> Result<ApplyStatus, DriverError> {
        self.get(env, &format!("/v1/services/{service}")).await
    }
}

impl Driver for HttpDriver {
    fn ping<'a>(&'a self, env: &'a Environment) -> DriverFuture<'a, ()> {
        Box::pin(async move {
            let ping: Ping = self.get(env, "/v1/ping").await?;
            if ping.agent != "flotilla" {
                return Err(DriverError::permanent(format!(
                    "{}: what answers at its target is not a flotilla agent (it calls itself `{}`)",
                    env.name,
                    excerpt(&ping.agent)
                )));
            }
            match ping.env.as_deref() {
                Some(theirs) if theirs != env.name => Err(DriverError::permanent(format!(
                    "{}: the agent at its target serves environment `{}`; check the target",
                    env.name,
                    excerpt(theirs)
                ))),
                _ => Ok(()),
            }
        })
    }

    fn observe<'a>(&'a self, env: &'a Environment) -> DriverFuture<'a, LiveState> {
        Box::pin(async move {
            let (status, body, target) = self.call(env, Method::GET, "/v1/state", None).await?;
            if !status.is_success() {
                return Err(status_error(&env.name, &target, status, &body));
            }
            super::live_doc::parse(&String::from_utf8_lossy(&body)).map_err(|why| {
                DriverError::permanent(format!("{}: {target}/v1/state answered {why}", env.name))
            })
        })
    }

    fn apply<'a>(
        &'a self,
        env: &'a Environment,
        req: &'a ApplyRequest,
    ) -> DriverFuture<'a, Printed> {
        Box::pin(async move {
            let path = format!("/v1/services/{}", req.service);
            let desired = Desired {
                env: Some(env.name.clone()),
                version: req.version.clone(),
                config: req.config.clone(),
                revision: req.revision.clone(),
                secrets: req.secrets.clone(),
            };
            let body = serde_json::to_vec(&desired)
                .map_err(|e| DriverError::permanent(format!("cannot encode the request: {e}")))?;
            let (code, body, target) = self.call(env, Method::PUT, &path, Some(body)).await?;
            if code == StatusCode::CONFLICT {
                // Another revision is applying there (a step abandoned by a crash or a
                // timeout): it ends by itself, so this one is tried again.
                return Err(DriverError::transient(format!(
                    "{}: the agent is applying another revision of {} ({}); trying again later",
                    env.name,
                    req.service,
                    said(&body)
                )));
            }
            if !code.is_success() {
                return Err(status_error(&env.name, &target, code, &body));
            }
            let mut status: ApplyStatus = document(&env.name, &target, &path, &body)?;
            let mut wait = POLL_FIRST;
            let mut misses = 0;
            loop {
                if status.revision != req.revision {
                    return Err(DriverError::transient(format!(
                        "{}: the agent now applies revision {} of {}, not {}",
                        env.name,
                        excerpt(&status.revision),
                        req.service,
                        req.revision
                    )));
                }
                match status.phase {
                    Phase::Applied => return Ok(status.output),
                    Phase::Failed => {
                        let message = format!(
                            "apply of {} {} for {} failed at the agent: {}",
                            req.service,
                            req.version,
                            env.name,
                            excerpt(&status.message)
                        );
                        let error = if status.retryable {
                            DriverError::transient(message)
                        } else {
                            DriverError::permanent(message)
                        };
                        return Err(error.with_output(status.output));
                    }
                    // The step timeout bounds this wait: the engine drops the call.
                    // A poll that fails is asked again: the apply goes on at the agent
                    // whether or not this connection holds, and sending it again would
                    // only be answered with its status.
                    Phase::Applying => {
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(POLL_MOST);
                        match self.status(env, &req.service).await {
                            Ok(s) => {
                                status = s;
                                misses = 0;
                            }
                            Err(e) if e.class != ErrorClass::Permanent && misses < POLL_MISSES => {
                                misses += 1;
                            }
                            Err(e) => return Err(e),
                        }
                    }
                }
            }
        })
    }

    fn health<'a>(&'a self, env: &'a Environment, service: &'a str) -> DriverFuture<'a, Health> {
        Box::pin(async move {
            let doc: HealthDoc = self
                .get(env, &format!("/v1/services/{service}/health"))
                .await?;
            Ok(if doc.healthy {
                Health::Healthy
            } else {
                Health::Unhealthy(excerpt(&doc.message))
            })
        })
    }
}

/// The token, from where the settings say; never in a message.
fn read_token(source: &TokenSource, root: &Path) -> Result<String, String> {
    let token = match source {
        TokenSource::Missing => {
            return Err(
                "the http driver needs a token: set token_file or token_env in [driver.http]"
                    .into(),
            )
        }
        TokenSource::Env(name) => std::env::var(name)
            .map_err(|_| format!("token_env names {name}, which is not set in this environment"))?,
        TokenSource::File(file) => {
            let path = from_root(root, file);
            // A token in the intent repo would be in Git, for everyone who clones it.
            let inside = match (std::fs::canonicalize(&path), std::fs::canonicalize(root)) {
                (Ok(p), Ok(r)) => p.starts_with(r),
                _ => false,
            };
            if inside {
                return Err(format!(
                    "token_file {} is inside the intent repo; keep the token outside Git (an absolute path, or token_env)",
                    path.display()
                ));
            }
            std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read token_file {}: {e}", path.display()))?
        }
    };
    let token = token.trim().to_string();
    if token.is_empty() {
        return Err("the agent token is empty".into());
    }
    Ok(token)
}

fn from_root(root: &Path, path: &str) -> PathBuf {
    let path = Path::new(path);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        root.join(path)
    }
}

/// A target as messages show it: without any user or password in it.
pub fn shown_target(target: &str) -> String {
    match reqwest::Url::parse(target) {
        Ok(mut url) => {
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.as_str().trim_end_matches('/').to_string()
        }
        Err(_) => excerpt(target),
    }
}

/// A request that got no answer: refused or reset connections are transient, a timeout is
/// a timeout, a certificate that does not verify is permanent.
fn transport_error(env: &str, target: &str, e: &reqwest::Error) -> DriverError {
    // The innermost cause says what happened ("Connection refused"); reqwest's own text
    // repeats the URL.
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    let why = excerpt(&cause.to_string());
    if e.is_timeout() {
        return DriverError {
            class: ErrorClass::Timeout,
            message: format!("{env}: no answer from {target} in time"),
            output: Printed::default(),
        };
    }
    if why.to_ascii_lowercase().contains("certificate") {
        return DriverError::permanent(format!(
            "{env}: the TLS certificate of {target} does not verify ({why}); check ca_file"
        ));
    }
    if e.is_connect() {
        return DriverError::transient(format!("{env}: cannot connect to {target}: {why}"));
    }
    DriverError::transient(format!("{env}: the request to {target} failed: {why}"))
}

/// An answer that is not a success: 5xx transient, 401/403 authentication, others permanent.
fn status_error(env: &str, target: &str, status: StatusCode, body: &[u8]) -> DriverError {
    let code = status.as_u16();
    match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => DriverError::permanent(format!(
            "{env}: authentication failed at {target} (HTTP {code}); check the agent token (token_file or token_env)"
        )),
        s if s.is_server_error() => DriverError::transient(format!(
            "{env}: {target} answered HTTP {code}: {}",
            said(body)
        )),
        _ => DriverError::permanent(format!(
            "{env}: {target} refused the request (HTTP {code}): {}",
            said(body)
        )),
    }
}

/// What an error answer says: its `error`, else a short excerpt of the body.
fn said(body: &[u8]) -> String {
    match serde_json::from_slice::<ErrorDoc>(body) {
        Ok(doc) => excerpt(&doc.error),
        Err(_) => format!("\"{}\"", excerpt(&String::from_utf8_lossy(body))),
    }
}

/// A success's body as the document it must be; anything else is a permanent error that
/// quotes a short, printable excerpt.
fn document<T: DeserializeOwned>(
    env: &str,
    target: &str,
    path: &str,
    body: &[u8],
) -> Result<T, DriverError> {
    serde_json::from_slice(body).map_err(|e| {
        DriverError::permanent(format!(
            "{env}: {target}{path} answered what is not the agent protocol ({e}): \"{}\"",
            excerpt(&String::from_utf8_lossy(body))
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_is_shown_without_credentials() {
        assert_eq!(
            shown_target("https://ops:hunter2@agent.example:8443/"),
            "https://agent.example:8443"
        );
    }

    #[test]
    fn answers_are_classified_as_an_operator_expects() {
        let auth = status_error("e", "https://a", StatusCode::UNAUTHORIZED, b"");
        assert_eq!(auth.class, ErrorClass::Permanent);
        assert!(
            auth.message.contains("authentication failed"),
            "{}",
            auth.message
        );
        let busy = status_error(
            "e",
            "https://a",
            StatusCode::SERVICE_UNAVAILABLE,
            b"<html>busy</html>",
        );
        assert_eq!(busy.class, ErrorClass::Transient);
        assert!(
            busy.message.contains("\"<html>busy</html>\""),
            "{}",
            busy.message
        );
        let bad = status_error(
            "e",
            "https://a",
            StatusCode::BAD_REQUEST,
            br#"{"error": "no such service"}"#,
        );
        assert_eq!(bad.class, ErrorClass::Permanent);
        assert!(bad.message.ends_with("no such service"), "{}", bad.message);
    }

    #[test]
    fn a_token_inside_the_repo_is_refused_and_one_outside_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        std::fs::create_dir(&repo).unwrap();
        std::fs::write(repo.join("token"), "s3cret\n").unwrap();
        std::fs::write(dir.path().join("token"), "s3cret\n").unwrap();
        let inside = read_token(&TokenSource::File("token".into()), &repo).unwrap_err();
        assert!(
            inside.contains("inside the intent repo") && !inside.contains("s3cret"),
            "{inside}"
        );
        let outside = dir.path().join("token").display().to_string();
        assert_eq!(
            read_token(&TokenSource::File(outside), &repo).unwrap(),
            "s3cret"
        );
    }
}
