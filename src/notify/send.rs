//! The sender: takes due notifications from the outbox and POSTs them, each within a
//! timeout, signed when the target has a secret, under its idempotency key. A failed one is
//! tried again with a doubling backoff, then given up; failures become events, never a
//! failed rollout. URLs never reach an error: they are cut out of what reqwest says.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hmac::Mac;
use tokio::sync::watch;

use super::{outbox, Routes, Target};

/// How long one POST may take.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// Tries before a notification is given up.
pub const ATTEMPTS: i64 = 8;
/// The first retry's delay; each next one doubles, up to [`MAX_BACKOFF`].
const BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How often the queue is looked at while nothing is due.
const POLL: Duration = Duration::from_millis(200);

use crate::session::now_ms;

/// A failed attempt, told to whoever records it (an event in the journal).
pub type OnFailure = Arc<dyn Fn(Failure) + Send + Sync>;

/// What a failed attempt was.
#[derive(Debug, Clone)]
pub struct Failure {
    pub target: String,
    pub kind: String,
    pub attempts: u32,
    pub error: String,
    pub gave_up: bool,
}

/// Sends `body` to `target` once. Err says why, without the URL.
pub async fn deliver(
    client: &reqwest::Client,
    target: &Target,
    key: &str,
    kind: &str,
    body: &str,
) -> Result<u16, String> {
    let sent = post(client, target, key, kind, body).await;
    match &sent {
        Ok(status) => tracing::debug!("notification {key} ({kind}) to `{}`: {status}", target.name),
        Err(e) => tracing::warn!(
            "notification {key} ({kind}) to `{}` failed: {e}",
            target.name
        ),
    }
    sent
}

/// One POST of `body` to `target`; errors never quote the URL.
async fn post(
    client: &reqwest::Client,
    target: &Target,
    key: &str,
    kind: &str,
    body: &str,
) -> Result<u16, String> {
    let url = target.url()?;
    let mut req = client
        .post(&url)
        .timeout(TIMEOUT)
        .header("content-type", "application/json")
        .header("idempotency-key", key)
        .header("x-flotilla-event", kind)
        .body(body.to_string());
    if let Some(var) = &target.secret_env {
        let secret = std::env::var(var)
            .ok()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| format!("{var} is not set (the signing key of `{}`)", target.name))?;
        req = req.header(
            "x-signature",
            format!("sha256={}", sign(secret.as_bytes(), body)),
        );
    }
    let hide = |e: reqwest::Error| {
        let text = e.without_url().to_string();
        // Whatever else might quote it, the URL is cut out.
        text.replace(&url, "<url>")
    };
    let resp = req.send().await.map_err(hide)?;
    let status = resp.status();
    if status.is_success() {
        Ok(status.as_u16())
    } else {
        Err(format!("the receiver answered {status}"))
    }
}

/// HMAC-SHA256 of `body` under `key`, hex: what `x-signature: sha256=...` carries.
pub fn sign(key: &[u8], body: &str) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes any key");
    mac.update(body.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The delay before try `attempts + 1`.
fn backoff(attempts: i64) -> Duration {
    BACKOFF
        .saturating_mul(1u32 << (attempts.clamp(1, 16) - 1))
        .min(MAX_BACKOFF)
}

/// Sends what is due now in the state database at `path`, for at most a few seconds, by a
/// command that runs no session (`flotilla drift`). Failures stay in the queue.
pub async fn flush(path: PathBuf, routes: Arc<Routes>) {
    let (_stop, stopped) = watch::channel(true);
    run(
        path,
        routes,
        Arc::new(|_| {}),
        stopped,
        Duration::from_secs(3),
    )
    .await;
}

/// Sends what is due in the state database at `path` until `stop` turns true and nothing
/// is due within `grace` of it (what is left stays queued for the next run).
pub async fn run(
    path: PathBuf,
    routes: Arc<Routes>,
    on_failure: OnFailure,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
) {
    let Ok(conn) = crate::store::connect(&path) else {
        return;
    };
    // A redirect would turn the POST into a GET and carry the signature to another host.
    let client = match reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(c) => c,
        Err(_) => return,
    };
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        // Once the session ends, everything (each send too) fits in the grace.
        if *stop.borrow() && deadline.is_none() {
            deadline = Some(tokio::time::Instant::now() + grace);
        }
        let due = outbox::due(&conn, now_ms(), 16).unwrap_or_default();
        for q in &due {
            let left = deadline.map(|d| d.saturating_duration_since(tokio::time::Instant::now()));
            if left.is_some_and(|l| l.is_zero()) {
                return;
            }
            let Some(target) = routes.target(&q.target) else {
                let _ =
                    outbox::mark_failed(&conn, q.id, "the target is no longer in the intent", None);
                continue;
            };
            let send = deliver(&client, target, &q.key, &q.kind, &q.body);
            let sent = match left {
                Some(left) => tokio::time::timeout(left, send).await.unwrap_or_else(|_| {
                    Err("the session ended before the receiver answered".into())
                }),
                None => send.await,
            };
            match sent {
                Ok(_) => {
                    let _ = outbox::mark_sent(&conn, q.id, now_ms());
                }
                Err(error) => {
                    let attempts = q.attempts + 1;
                    let gave_up = attempts >= ATTEMPTS;
                    let next = (!gave_up).then(|| now_ms() + backoff(attempts).as_millis() as i64);
                    let _ = outbox::mark_failed(&conn, q.id, &error, next);
                    // Said on the first failure and when it is given up, not every retry.
                    if attempts == 1 || gave_up {
                        on_failure(Failure {
                            target: q.target.clone(),
                            kind: q.kind.clone(),
                            attempts: attempts as u32,
                            error,
                            gave_up,
                        });
                    }
                }
            }
        }
        if let Some(end) = deadline {
            let pending = outbox::next_due(&conn).ok().flatten();
            let left = end.saturating_duration_since(tokio::time::Instant::now());
            match pending {
                None => return,
                Some(at) if at - now_ms() > left.as_millis() as i64 => return,
                Some(_) if left.is_zero() => return,
                Some(_) => {}
            }
        }
        if due.is_empty() {
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                changed = stop.changed() => {
                    // The session went away without saying so: it ended all the same.
                    if changed.is_err() && deadline.is_none() {
                        deadline = Some(tokio::time::Instant::now() + grace);
                    }
                }
            }
        }
    }
}
