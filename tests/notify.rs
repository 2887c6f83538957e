//! Notifications through the real binary to a real HTTP receiver on loopback: what a
//! receiver gets (signed, under an idempotency key), a receiver that fails and recovers, a
//! dead one that never fails the rollout, a queued notification surviving a killed engine,
//! and a secret URL that appears nowhere.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use common::*;

/// What a receiver was sent: (headers, body), in order.
#[derive(Clone, Default)]
struct Received {
    got: Arc<Mutex<Vec<(HeaderMap, String)>>>,
    /// Statuses to answer with, in order; 200 once they run out.
    answers: Arc<Mutex<Vec<u16>>>,
}

impl Received {
    fn all(&self) -> Vec<(HeaderMap, String)> {
        self.got.lock().unwrap().clone()
    }

    fn kinds(&self) -> Vec<String> {
        self.all()
            .iter()
            .map(|(_, b)| {
                let v: serde_json::Value = serde_json::from_str(b).unwrap();
                v["event"]["kind"].as_str().unwrap_or_default().to_string()
            })
            .collect()
    }
}

async fn hook(State(r): State<Received>, headers: HeaderMap, body: String) -> StatusCode {
    r.got.lock().unwrap().push((headers, body));
    let mut answers = r.answers.lock().unwrap();
    let code = if answers.is_empty() {
        200
    } else {
        answers.remove(0)
    };
    StatusCode::from_u16(code).unwrap()
}

/// A receiver on 127.0.0.1 answering `answers` first; its URL (with `path`).
fn receiver(rt: &tokio::runtime::Runtime, answers: Vec<u16>, path: &str) -> (Received, String) {
    let received = Received {
        answers: Arc::new(Mutex::new(answers)),
        ..Received::default()
    };
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}{path}", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route(path, post(hook))
        .with_state(received.clone());
    rt.spawn(async move { axum::serve(listener, app).await.unwrap() });
    (received, url)
}

/// A simulated fleet of 4 (e-00 the canary) whose release is broken in e-02 (so the rest
/// wave halts) unless `healthy`; `notify` appended to flotilla.toml.
fn repo_with(dir: &Path, notify: &str, healthy: bool) -> (PathBuf, PathBuf) {
    let repo = dir.join("repo");
    let mut f = Fixture::standard(4, &strategy("", "0"));
    if !healthy {
        f = f.with_release_sim("broken = \"name=e-02\"");
    }
    f.fleet = f
        .fleet
        .replace("latency = \"100ms..2s\"", "latency = \"0ms\"");
    f.fleet += notify;
    f.load(&repo);
    (repo, dir.join("state.db"))
}

fn repo(dir: &Path, notify: &str) -> (PathBuf, PathBuf) {
    repo_with(dir, notify, false)
}

fn flotilla(repo: &Path, state: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut c = cmd(repo, state, "ops");
    c.envs(env.iter().copied());
    c.args(args).output().unwrap()
}

fn said(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn a_receiver_hears_of_the_gate_and_the_halt_signed_and_keyed() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (received, url) = receiver(&rt, vec![], "/hook");
    let dir = tempfile::tempdir().unwrap();
    let (repo, state) = repo(
        dir.path(),
        &format!("[[notify]]\nname = \"oncall\"\nurl = \"{url}\"\nsecret_env = \"HOOK_KEY\"\n"),
    );
    let env = [("HOOK_KEY", "k-123")];
    let out = flotilla(&repo, &state, &env, &["rollout", "r1"]);
    assert_eq!(out.status.code(), Some(3), "{}", said(&out));
    let out = flotilla(&repo, &state, &env, &["rollout", "r1", "--approve-all"]);
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));

    let kinds = received.kinds();
    assert!(kinds.contains(&"gate_waiting".to_string()), "{kinds:?}");
    assert!(kinds.contains(&"rollout_halted".to_string()), "{kinds:?}");
    // Only what the target asked for (the defaults): no steps.
    assert!(!kinds.iter().any(|k| k.starts_with("step_")), "{kinds:?}");
    for (headers, body) in received.all() {
        let signature = headers["x-signature"].to_str().unwrap();
        assert_eq!(
            signature,
            format!("sha256={}", flotilla::notify::send::sign(b"k-123", &body))
        );
        assert!(headers.contains_key("idempotency-key"));
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["release"], "r1");
        assert!(v["text"].as_str().unwrap().contains("r1"), "{v}");
    }
    let halted = received
        .all()
        .into_iter()
        .find(|(_, b)| b.contains("rollout_halted"))
        .unwrap();
    assert!(halted.1.contains("e-02"), "{}", halted.1);
}

#[test]
fn a_receiver_that_fails_then_recovers_gets_the_notification_under_one_key() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (received, url) = receiver(&rt, vec![500], "/hook");
    let dir = tempfile::tempdir().unwrap();
    let (repo, state) = repo(
        dir.path(),
        &format!("[[notify]]\nurl = \"{url}\"\non = [\"gate_waiting\"]\n"),
    );
    let out = flotilla(&repo, &state, &[], &["rollout", "r1"]);
    assert_eq!(out.status.code(), Some(3), "{}", said(&out));
    let got = received.all();
    assert_eq!(
        got.len(),
        2,
        "tried, failed, tried again: {:?}",
        received.kinds()
    );
    assert_eq!(got[0].0["idempotency-key"], got[1].0["idempotency-key"]);
    assert_eq!(got[0].1, got[1].1);
    // The failure was said, and the queue stands delivered.
    assert!(
        said(&out).contains("notification to `notify-1` of gate_waiting failed (1 attempt): the receiver answered 500"),
        "{}",
        said(&out)
    );
    let status = said(&flotilla(&repo, &state, &[], &["status"]));
    assert!(
        status.contains("notifications: 1 sent, 0 queued, 0 given up"),
        "{status}"
    );
}

#[test]
fn a_dead_receiver_never_fails_the_rollout_and_a_secret_url_appears_nowhere() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    // A port nothing listens on any more.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let secret = "T0KEN-in-the-path-6f1d";
    let dir = tempfile::tempdir().unwrap();
    let (repo, state) = repo_with(
        dir.path(),
        "[[notify]]\nname = \"chat\"\nformat = \"slack\"\nurl_env = \"CHAT_WEBHOOK\"\non = [\"rollout_completed\", \"gate_waiting\"]\n",
        true,
    );
    // Logged at the most verbose level there is: the secret stays out of the log too.
    let log = dir.path().join("log");
    let env = [
        (
            "CHAT_WEBHOOK",
            &*format!("http://127.0.0.1:{port}/services/{secret}"),
        ),
        ("FLOTILLA_LOG_DIR", log.to_str().unwrap()),
        ("RUST_LOG", "trace"),
    ];
    // A healthy release: the rollout completes whatever the receiver does.
    let out = flotilla(&repo, &state, &env, &["rollout", "r1", "--approve-all"]);
    assert_eq!(out.status.code(), Some(0), "{}", said(&out));
    assert!(
        said(&out).contains("notification to `chat`"),
        "{}",
        said(&out)
    );
    let status = flotilla(&repo, &state, &env, &["status"]);
    let status_json = flotilla(&repo, &state, &env, &["status", "--output", "json"]);
    let audit = flotilla(&repo, &state, &env, &["audit", "--output", "json"]);
    for o in [&out, &status, &status_json, &audit] {
        assert!(
            !said(o).contains(secret),
            "the secret URL was shown: {}",
            said(o)
        );
    }
    assert!(said(&status).contains("queued"), "{}", said(&status));
    assert_not_stored(dir.path(), secret);
    let logged = std::fs::read_to_string(log.join("flotilla.log")).unwrap();
    assert!(
        logged.contains("notification") && logged.contains("to `chat` failed"),
        "the failure is logged: {logged}"
    );
    assert_not_stored(&log, secret);
    drop(rt);
}

#[test]
fn a_notification_queued_when_the_engine_is_killed_is_sent_on_resume() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    // Down (500) for the first run, whatever it tries.
    let (received, url) = receiver(&rt, vec![500; 50], "/hook");
    let dir = tempfile::tempdir().unwrap();
    let (repo, state) = repo(
        dir.path(),
        &format!("[[notify]]\nurl = \"{url}\"\non = [\"gate_waiting\"]\n"),
    );
    let mut engine = cmd(&repo, &state, "ops")
        .args(["rollout", "r1", "--wait"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Bounded: the gate's notification is tried within moments of the start.
    let mut tries = 0;
    while received.all().is_empty() {
        tries += 1;
        assert!(tries < 600, "the gate was never notified");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    engine.kill().unwrap();
    engine.wait().unwrap();
    let key = received.all()[0].0["idempotency-key"].clone();
    received.answers.lock().unwrap().clear();

    let out = flotilla(&repo, &state, &[], &["rollout", "r1"]);
    assert_eq!(out.status.code(), Some(3), "{}", said(&out));
    let got = received.all();
    let delivered = got.last().unwrap();
    assert_eq!(
        delivered.0["idempotency-key"], key,
        "the queued one, sent again"
    );
    let status = said(&flotilla(&repo, &state, &[], &["status"]));
    assert!(status.contains("0 queued"), "{status}");
}

#[test]
fn notify_test_sends_one_to_each_target_and_says_which_failed() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (received, url) = receiver(&rt, vec![], "/hook");
    let dir = tempfile::tempdir().unwrap();
    let (repo, state) = repo(
        dir.path(),
        &format!("[[notify]]\nname = \"oncall\"\nurl = \"{url}\"\n[[notify]]\nname = \"chat\"\nurl_env = \"CHAT_URL\"\n"),
    );
    let out = flotilla(&repo, &state, &[], &["notify", "test"]);
    let text = said(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("oncall: delivered (200)"), "{text}");
    assert!(
        text.contains("chat: NOT delivered: CHAT_URL is not set"),
        "{text}"
    );
    assert_eq!(received.kinds(), ["notify_test"]);
    let out = flotilla(
        &repo,
        &state,
        &[("CHAT_URL", &url)],
        &["notify", "test", "--output", "json"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", said(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["results"][1]["delivered"], true, "{v}");
}

#[test]
fn notify_tables_written_wrong_are_refused_with_what_to_write() {
    let dir = tempfile::tempdir().unwrap();
    for (n, (table, expect)) in [
        ("[[notify]]\nname = \"x\"\n", "notify target `x` has no url"),
        (
            "[[notify]]\nurl = \"hooks.example.com\"\n",
            "must start with http:// or https://",
        ),
        (
            "[[notify]]\nurl = \"https://h\"\non = [\"gate_waitng\"]\n",
            "did you mean `gate_waiting`?",
        ),
        (
            "[[notify]]\nurl = \"https://h\"\nformat = \"teams\"\n",
            "unknown notify format `teams`",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let repo = dir.path().join(format!("r{n}"));
        let mut f = Fixture::standard(2, "");
        f.fleet += table;
        flotilla::intent::write::write_repo(&repo, &f.commits()).unwrap();
        let out = flotilla(&repo, &dir.path().join("s.db"), &[], &["validate"]);
        assert_eq!(out.status.code(), Some(2), "{table}: {}", said(&out));
        assert!(said(&out).contains(expect), "{table}: {}", said(&out));
    }
}

#[test]
fn drift_found_by_a_scan_is_notified_from_flotilla_drift() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (received, url) = receiver(&rt, vec![], "/hook");
    let dir = tempfile::tempdir().unwrap();
    let (repo, state) = repo_with(
        dir.path(),
        &format!(
            "[[notify]]\nurl = \"{url}\"\non = [\"drift_detected\"]\nselect = \"name=e-01\"\n"
        ),
        true,
    );
    let out = flotilla(&repo, &state, &[], &["rollout", "r1", "--approve-all"]);
    assert_eq!(out.status.code(), Some(0), "{}", said(&out));
    assert!(received.all().is_empty(), "{:?}", received.kinds());
    for env in ["e-01", "e-02"] {
        let out = flotilla(
            &repo,
            &state,
            &[],
            &["sim", "tamper", env, "api", "version=9.9"],
        );
        assert_eq!(out.status.code(), Some(0), "{}", said(&out));
    }
    let out = flotilla(&repo, &state, &[], &["drift"]);
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    // Only the environment the target selects.
    let got = received.all();
    assert_eq!(received.kinds(), ["drift_detected"], "{got:?}");
    assert!(
        got[0].1.contains("e-01") && !got[0].1.contains("e-02"),
        "{}",
        got[0].1
    );
}

#[test]
fn a_selector_takes_the_events_of_waves_holding_an_environment_it_selects() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (received, url) = receiver(&rt, vec![], "/hook");
    let dir = tempfile::tempdir().unwrap();
    let (repo, state) = repo_with(
        dir.path(),
        &format!("[[notify]]\nurl = \"{url}\"\non = [\"wave_started\", \"rollout_completed\"]\nselect = \"name=e-01\"\n"),
        true,
    );
    let out = flotilla(&repo, &state, &[], &["rollout", "r1", "--approve-all"]);
    assert_eq!(out.status.code(), Some(0), "{}", said(&out));
    let waves: Vec<String> = received
        .all()
        .iter()
        .map(|(_, b)| {
            let v: serde_json::Value = serde_json::from_str(b).unwrap();
            format!(
                "{} {}",
                v["event"]["kind"].as_str().unwrap(),
                v["event"]["wave"].as_str().unwrap_or("-")
            )
        })
        .collect();
    // The canary (e-00) is not its business; the rest wave (with e-01) and the end are.
    assert_eq!(waves, ["wave_started rest", "rollout_completed -"]);
}

#[test]
fn the_operators_own_config_adds_targets_and_a_broken_one_is_told_not_fatal() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (mine, url) = receiver(&rt, vec![], "/mine");
    let (theirs, their_url) = receiver(&rt, vec![], "/team");
    let dir = tempfile::tempdir().unwrap();
    let (repo, state) = repo(
        dir.path(),
        &format!("[[notify]]\nname = \"team\"\nurl = \"{their_url}\"\n"),
    );
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!("[[notify]]\nurl = \"{url}\"\non = [\"gate_waiting\", \"rollout_halted\"]\n"),
    )
    .unwrap();
    let env = [("FLOTILLA_CONFIG", config.to_str().unwrap())];

    // `notify test` reaches both, and says which is the operator's own.
    let out = flotilla(&repo, &state, &env, &["notify", "test"]);
    let text = said(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("team: delivered (200)"), "{text}");
    assert!(
        text.contains("personal-1 (yours): delivered (200)"),
        "{text}"
    );
    assert_eq!(mine.kinds(), ["notify_test"]);

    // A rollout this operator runs tells their target too, of the kinds it asked for.
    let out = flotilla(&repo, &state, &env, &["rollout", "r1"]);
    assert_eq!(out.status.code(), Some(3), "{}", said(&out));
    let out = flotilla(&repo, &state, &env, &["rollout", "r1", "--approve-all"]);
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    assert_eq!(
        mine.kinds(),
        ["notify_test", "gate_waiting", "rollout_halted"]
    );
    // The intent's target is told as before, beside it.
    let team = theirs.kinds();
    assert!(team.contains(&"gate_waiting".to_string()), "{team:?}");
    assert!(team.contains(&"rollout_halted".to_string()), "{team:?}");
    let out = flotilla(&repo, &state, &env, &["status", "--output", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["notifications"]["yours"]["targets"],
        serde_json::json!(["personal-1"])
    );

    // A broken file is told with its line, its targets are not used, and nothing stops.
    std::fs::write(
        &config,
        format!("[[notify]]\nurl = \"{url}\"\nformat = \"teams\"\n"),
    )
    .unwrap();
    let out = flotilla(&repo, &state, &env, &["notify", "test"]);
    let text = said(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("config.toml:3:"), "{text}");
    assert!(text.contains("unknown notify format `teams`"), "{text}");
    assert!(
        text.contains("its [[notify]] targets are not used"),
        "{text}"
    );
    assert!(!text.contains("(yours)"), "{text}");
    assert_eq!(
        mine.kinds().len(),
        3,
        "nothing more reached the broken target"
    );

    // A name the intent uses already stays the intent's.
    std::fs::write(
        &config,
        format!("[[notify]]\nname = \"team\"\nurl = \"{url}\"\n"),
    )
    .unwrap();
    let out = flotilla(&repo, &state, &env, &["notify", "test"]);
    let text = said(&out);
    assert!(
        text.contains("your notify target `team` has the name of one in flotilla.toml"),
        "{text}"
    );
    assert_eq!(mine.kinds().len(), 3, "{text}");
}
