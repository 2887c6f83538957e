//! The agent and the http driver with real processes on loopback: rollouts over HTTP and
//! HTTPS, agents that die, fail, hang, answer garbage or refuse the token, idempotent
//! applies, a kill during a write, an engine killed mid-rollout, and hooks.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;

const TOKEN: &str = "agent-token-7f3a9c-never-printed";

/// A `flotilla agent` process, killed when dropped.
struct AgentProc {
    child: Child,
    url: String,
    dir: PathBuf,
}

impl AgentProc {
    /// Starts an agent for `env` keeping its state (and running its hooks) in `dir`.
    fn start(dir: &Path, token_file: &Path, env: &str, extra: &[&str]) -> AgentProc {
        std::fs::create_dir_all(dir).unwrap();
        // A free port unless `extra` names the address.
        let listen: &[&str] = if extra.contains(&"--listen") {
            &[]
        } else {
            &["--listen", "127.0.0.1:0"]
        };
        let mut child = Command::new(env!("CARGO_BIN_EXE_flotilla"))
            .arg("agent")
            .args(listen)
            .arg("--dir")
            .arg(dir)
            .arg("--token-file")
            .arg(token_file)
            .args(["--env", env])
            .args(extra)
            .current_dir(dir)
            // Each agent logs to its own folder, every request: what tests search for tokens.
            .env("FLOTILLA_LOG_DIR", dir.join("log"))
            .env("RUST_LOG", "debug")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Its first line says where it listens; a failed start ends the output instead.
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let Some(url) = line
            .split_whitespace()
            .find(|w| w.starts_with("http://") || w.starts_with("https://"))
        else {
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            panic!("the agent did not start: {line}{err}");
        };
        AgentProc {
            url: url.to_string(),
            child,
            dir: dir.to_path_buf(),
        }
    }

    /// The versions its state file records as running, per service.
    fn versions(&self) -> Vec<(String, String)> {
        let text = std::fs::read_to_string(self.dir.join("state.json")).unwrap();
        let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
        doc["services"]
            .as_object()
            .unwrap()
            .iter()
            .filter_map(|(name, r)| {
                Some((name.clone(), r["live"]["version"].as_str()?.to_string()))
            })
            .collect()
    }
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An intent repo whose environments `e-00`.. are reached at `targets` by the http driver.
fn http_repo(dir: &Path, targets: &[String], budget: &str, http: &str) -> PathBuf {
    let repo = dir.join("repo");
    let mut f = Fixture::standard(
        targets.len(),
        &strategy("", budget)
            .replace("retries = 2", "retries = 1")
            .replace("backoff = \"1s\"", "backoff = \"100ms\"")
            .replace("step_timeout = \"1m\"", "step_timeout = \"4s\""),
    );
    f.fleet = f.fleet.replace(
        "[driver]\nkind = \"sim\"\n",
        &format!(
            "[driver]\nkind = \"http\"\n[driver.http]\ntoken_file = {}\nrequest_timeout = \"1s\"\nconnect_timeout = \"1s\"\n{http}\n",
            toml::Value::String(dir.join("token").display().to_string())
        ),
    );
    for (env, target) in f.envs.iter_mut().zip(targets) {
        env.1.push_str(&format!("target = \"{target}\"\n"));
    }
    f.load(&repo);
    repo
}

/// A token file beside the repo.
fn token_file(dir: &Path, token: &str) -> PathBuf {
    let path = dir.join(format!(
        "token{}",
        if token == TOKEN { "" } else { "-other" }
    ));
    std::fs::write(&path, format!("{token}\n")).unwrap();
    path
}

/// The state database, in a folder of its own: what `assert_not_stored` searches.
fn state_db(dir: &Path) -> PathBuf {
    let state = dir.join("state");
    std::fs::create_dir_all(&state).unwrap();
    state.join("state.db")
}

fn output_text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn json_events(o: &std::process::Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[test]
fn twenty_agents_take_a_full_rollout_and_record_the_release() {
    let dir = tempfile::tempdir().unwrap();
    let token = token_file(dir.path(), TOKEN);
    let agents: Vec<AgentProc> = (0..20)
        .map(|i| {
            let env = format!("e-{i:02}");
            AgentProc::start(&dir.path().join("agents").join(&env), &token, &env, &[])
        })
        .collect();
    let targets: Vec<String> = agents.iter().map(|a| a.url.clone()).collect();
    let repo = http_repo(dir.path(), &targets, "0", "");
    let state = state_db(dir.path());
    let out = cmd(&repo, &state, "ops")
        .args(["rollout", "r1", "--approve-all"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    for a in &agents {
        assert_eq!(
            a.versions(),
            [
                ("api".to_string(), "1.0".to_string()),
                ("schema".into(), "1".into()),
                ("web".into(), "1.0".into())
            ],
            "{}",
            a.url
        );
    }
    // status reads an http-driven rollout as any other, and the token is nowhere.
    let status = cmd(&repo, &state, "ops").arg("status").output().unwrap();
    assert!(
        output_text(&status).contains("state: completed"),
        "{}",
        output_text(&status)
    );
    assert!(!output_text(&out).contains(TOKEN));
    assert_not_stored(&dir.path().join("state"), TOKEN);
}

/// A stand-in for a broken agent: answers ping as an agent, and everything else as `mode`
/// says (500, garbage, or never).
fn fake_agent(mode: &'static str) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            use axum::http::StatusCode;
            let app = axum::Router::new()
                .route(
                    "/v1/ping",
                    axum::routing::get(|| async {
                        axum::Json(serde_json::json!({"agent": "flotilla", "version": "0"}))
                    }),
                )
                .fallback(move || async move {
                    match mode {
                        "500" => (
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "internal error".to_string(),
                        ),
                        "garbage" => (
                            StatusCode::ACCEPTED,
                            "<html>\x1b[31mdeploy portal</html>".to_string(),
                        ),
                        _ => {
                            tokio::time::sleep(Duration::from_secs(3600)).await;
                            (StatusCode::OK, String::new())
                        }
                    }
                });
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    url
}

#[test]
fn agents_that_die_fail_hang_or_answer_garbage_fail_their_steps_as_they_should() {
    let dir = tempfile::tempdir().unwrap();
    let token = token_file(dir.path(), TOKEN);
    let agent = |env: &str, extra: &[&str]| {
        AgentProc::start(&dir.path().join("agents").join(env), &token, env, extra)
    };
    let canary = agent("e-00", &[]);
    // e-01's agent dies during its first apply: the hook kills it.
    let dying = agent(
        "e-01",
        &["--apply-hook", r#"["/bin/sh", "-c", "kill -9 $PPID"]"#],
    );
    let healthy = agent("e-05", &[]);
    let targets = vec![
        canary.url.clone(),
        dying.url.clone(),
        fake_agent("500"),
        fake_agent("hang"),
        fake_agent("garbage"),
        healthy.url.clone(),
    ];
    let repo = http_repo(dir.path(), &targets, "4", "");
    let state = state_db(dir.path());
    let out = cmd(&repo, &state, "ops")
        .args(["rollout", "r1", "--approve-all", "--output", "json"])
        .output()
        .unwrap();
    // Completed within the budget, but not everywhere: exit 1.
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let events = json_events(&out);
    let failed = |env: &str| {
        events
            .iter()
            .find(|e| e["kind"] == "step_failed" && e["env"] == env)
            .unwrap_or_else(|| panic!("no failure of {env}: {}", output_text(&out)))
            .clone()
    };
    let retried = |env: &str| {
        events
            .iter()
            .any(|e| e["kind"] == "step_retrying" && e["env"] == env)
    };
    // Killed: the connection goes, then nothing answers; retried, then failed.
    let died = failed("e-01");
    assert!(retried("e-01"), "e-01 was not retried");
    assert!(
        died["error"].as_str().unwrap().contains("cannot connect"),
        "{died}"
    );
    // 500: retried, then failed saying what the agent answered.
    let five = failed("e-02");
    assert!(retried("e-02"));
    assert_eq!(five["class"], "transient", "{five}");
    assert!(
        five["error"].as_str().unwrap().contains("HTTP 500"),
        "{five}"
    );
    // A hang: a timeout, retried as one.
    let hung = failed("e-03");
    assert_eq!(hung["class"], "timeout", "{hung}");
    assert!(retried("e-03"));
    // Garbage: permanent at once, quoted short and printable.
    let junk = failed("e-04");
    assert_eq!(
        (junk["class"].as_str(), junk["attempts"].as_u64()),
        (Some("permanent"), Some(1)),
        "{junk}"
    );
    let said = junk["error"].as_str().unwrap();
    assert!(
        said.contains("not the agent protocol") && said.contains("<html>"),
        "{junk}"
    );
    assert!(!said.contains('\x1b'), "{junk}");
    // The budget counted the four, and the others got the release.
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "rollout_completed" && e["failed"] == 4),
        "{}",
        output_text(&out)
    );
    assert_eq!(healthy.versions().len(), 3);
    assert!(!output_text(&out).contains(TOKEN));
    assert_not_stored(&dir.path().join("state"), TOKEN);
}

#[test]
fn a_wrong_token_is_refused_as_authentication_and_never_shown() {
    let dir = tempfile::tempdir().unwrap();
    let token = token_file(dir.path(), TOKEN);
    let theirs = token_file(dir.path(), "their-own-token-5d1e");
    let good = AgentProc::start(&dir.path().join("a0"), &token, "e-00", &[]);
    let other = AgentProc::start(&dir.path().join("a1"), &theirs, "e-01", &[]);
    let repo = http_repo(dir.path(), &[good.url.clone(), other.url.clone()], "0", "");
    let state = state_db(dir.path());
    let log = dir.path().join("state/log");
    let out = cmd(&repo, &state, "ops")
        .args(["rollout", "r1", "--approve-all"])
        .env("FLOTILLA_LOG_DIR", &log)
        .env("RUST_LOG", "trace")
        .output()
        .unwrap();
    // The preflight's ping finds it: nothing starts anywhere.
    assert_eq!(out.status.code(), Some(3), "{}", output_text(&out));
    let text = output_text(&out);
    assert!(
        text.contains("e-01") && text.contains("authentication failed"),
        "{text}"
    );
    assert!(
        !text.contains(TOKEN) && !text.contains("their-own-token"),
        "{text}"
    );
    assert!(
        !dir.path().join("a0/state.json").exists(),
        "nothing was applied"
    );
    assert_not_stored(&dir.path().join("state"), TOKEN);
    // The logs (the engine's at trace, the agents' at debug) hold no token either; the
    // agent that refused says so in its own.
    let refused = std::fs::read_to_string(dir.path().join("a1/log/flotilla.log")).unwrap();
    assert!(
        refused.contains("refused GET /v1/ping: no or a wrong token"),
        "{refused}"
    );
    for log in [log, dir.path().join("a0/log"), dir.path().join("a1/log")] {
        assert_not_stored(&log, TOKEN);
        assert_not_stored(&log, "their-own-token");
    }
}

#[test]
fn a_rollout_over_https_needs_the_agents_ca_in_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    let token = token_file(dir.path(), TOKEN);
    let cert =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let (cert_file, key_file) = (dir.path().join("agent.pem"), dir.path().join("agent.key"));
    std::fs::write(&cert_file, cert.cert.pem()).unwrap();
    std::fs::write(&key_file, cert.key_pair.serialize_pem()).unwrap();
    let tls = [
        "--tls-cert",
        cert_file.to_str().unwrap(),
        "--tls-key",
        key_file.to_str().unwrap(),
    ];
    let agents: Vec<AgentProc> = (0..3)
        .map(|i| {
            let env = format!("e-{i:02}");
            AgentProc::start(&dir.path().join("agents").join(&env), &token, &env, &tls)
        })
        .collect();
    let targets: Vec<String> = agents.iter().map(|a| a.url.clone()).collect();
    assert!(
        targets.iter().all(|t| t.starts_with("https://")),
        "{targets:?}"
    );

    // Without the CA, the certificate does not verify: refused before anything starts.
    let untrusting = http_repo(&dir.path().join("untrusting"), &targets, "0", "");
    std::fs::copy(
        dir.path().join("token"),
        dir.path().join("untrusting/token"),
    )
    .unwrap();
    let out = cmd(&untrusting, &dir.path().join("u.db"), "ops")
        .args(["rollout", "r1", "--approve-all"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", output_text(&out));
    assert!(
        output_text(&out).contains("certificate"),
        "{}",
        output_text(&out)
    );

    let ca = format!(
        "ca_file = {}",
        toml::Value::String(cert_file.display().to_string())
    );
    let repo = http_repo(dir.path(), &targets, "0", &ca);
    let out = cmd(&repo, &dir.path().join("state.db"), "ops")
        .args(["rollout", "r1", "--approve-all"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    for a in &agents {
        assert_eq!(a.versions().len(), 3, "{}", a.url);
    }
}

/// An async client that sends the token, for talking to an agent directly.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn put(c: &reqwest::Client, url: &str, revision: &str) -> (u16, serde_json::Value) {
    let r = c
        .put(format!("{url}/v1/services/api"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"env": "e-00", "version": "2.0", "revision": revision, "config": {}}))
        .send()
        .await
        .unwrap();
    let code = r.status().as_u16();
    (code, r.json().await.unwrap())
}

#[tokio::test]
async fn the_same_revision_is_applied_once_and_another_while_it_applies_is_409() {
    let dir = tempfile::tempdir().unwrap();
    let token = token_file(dir.path(), TOKEN);
    let agent = AgentProc::start(
        &dir.path().join("a"),
        &token,
        "e-00",
        // The hook counts its runs and takes a moment, so requests overlap it.
        &[
            "--apply-hook",
            r#"["/bin/sh", "-c", "echo {revision} >> applies; sleep 1"]"#,
        ],
    );
    let c = client();
    let (code, first) = put(&c, &agent.url, "r1").await;
    assert_eq!(
        (code, first["phase"].as_str()),
        (202, Some("applying")),
        "{first}"
    );
    let (code, again) = put(&c, &agent.url, "r1").await;
    assert_eq!(
        (code, again["phase"].as_str()),
        (202, Some("applying")),
        "{again}"
    );
    let (code, other) = put(&c, &agent.url, "r2").await;
    assert_eq!(code, 409, "{other}");
    assert!(other["error"].as_str().unwrap().contains("r1"), "{other}");
    // Polled until applied (bounded: the hook takes a second).
    let mut phase = String::new();
    for _ in 0..100 {
        let status: serde_json::Value = c
            .get(format!("{}/v1/services/api", agent.url))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        phase = status["phase"].as_str().unwrap().to_string();
        if phase != "applying" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(phase, "applied");
    let (code, done) = put(&c, &agent.url, "r1").await;
    assert_eq!(
        (code, done["phase"].as_str()),
        (202, Some("applied")),
        "{done}"
    );
    let runs = std::fs::read_to_string(agent.dir.join("applies")).unwrap();
    assert_eq!(runs, "r1\n", "the hook ran once for r1");
}

#[tokio::test]
async fn an_agent_killed_while_writing_keeps_a_readable_state_file() {
    let dir = tempfile::tempdir().unwrap();
    let token = token_file(dir.path(), TOKEN);
    let mut agent = AgentProc::start(&dir.path().join("a"), &token, "e-00", &[]);
    let c = client();
    let url = agent.url.clone();
    // Applies as fast as they go; the kill lands among their writes.
    let writer = tokio::spawn(async move {
        for n in 0..10_000 {
            if c.put(format!("{url}/v1/services/api"))
                .bearer_auth(TOKEN)
                .json(&serde_json::json!({"version": format!("{n}"), "revision": format!("r{n}")}))
                .send()
                .await
                .is_err()
            {
                return n;
            }
        }
        10_000
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    agent.child.kill().unwrap();
    agent.child.wait().unwrap();
    let sent = writer.await.unwrap();
    assert!(
        sent > 0 && sent < 10_000,
        "the kill came during the writes ({sent})"
    );
    let text = std::fs::read_to_string(agent.dir.join("state.json")).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).expect("a whole state file");
    assert_eq!(doc["services"]["api"]["apply"]["phase"], "applied");
    // A new agent on the same directory starts from it.
    let again = AgentProc::start(&dir.path().join("a"), &token, "e-00", &[]);
    let live: serde_json::Value = client()
        .get(format!("{}/v1/state", again.url))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(live["services"]["api"]["version"].is_string(), "{live}");
}

#[test]
fn an_engine_killed_mid_rollout_resumes_on_agents_and_applies_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let token = token_file(dir.path(), TOKEN);
    let hook = r#"["/bin/sh", "-c", "echo {revision} >> applies-{service}; sleep 0.3"]"#;
    let agents: Vec<AgentProc> = (0..6)
        .map(|i| {
            let env = format!("e-{i:02}");
            AgentProc::start(
                &dir.path().join("agents").join(&env),
                &token,
                &env,
                &["--apply-hook", hook],
            )
        })
        .collect();
    let targets: Vec<String> = agents.iter().map(|a| a.url.clone()).collect();
    let repo = http_repo(dir.path(), &targets, "0", "");
    let state = state_db(dir.path());
    let mut engine = cmd(&repo, &state, "ops")
        .args(["rollout", "r1", "--approve-all"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill the engine once the rest wave is applying (bounded: 30 s at most).
    let started = agents[3].dir.join("applies-schema");
    for _ in 0..3000 {
        if started.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(started.exists(), "the rest wave never started");
    engine.kill().unwrap();
    engine.wait().unwrap();
    let out = cmd(&repo, &state, "ops")
        .args(["rollout", "r1", "--approve-all"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    for a in &agents {
        assert_eq!(a.versions().len(), 3, "{}", a.url);
        for s in ["schema", "api", "web"] {
            let runs = std::fs::read_to_string(a.dir.join(format!("applies-{s}"))).unwrap();
            assert_eq!(runs.lines().count(), 1, "{}/{s} applied {runs:?}", a.url);
        }
    }
}

#[test]
fn a_failing_apply_hook_fails_the_step_quoting_its_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let token = token_file(dir.path(), TOKEN);
    let hook =
        r#"["/bin/sh", "-c", "echo \"chart for {service} {version} not found\" >&2; exit 3"]"#;
    let agent = AgentProc::start(
        &dir.path().join("a"),
        &token,
        "e-00",
        &["--apply-hook", hook],
    );
    let repo = http_repo(dir.path(), std::slice::from_ref(&agent.url), "0", "");
    let out = cmd(&repo, &dir.path().join("state.db"), "ops")
        .args(["rollout", "r1", "--approve-all", "--output", "json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let failed = json_events(&out)
        .into_iter()
        .find(|e| e["kind"] == "step_failed")
        .expect("a failed step");
    assert_eq!(failed["class"], "permanent", "{failed}");
    let error = failed["error"].as_str().unwrap();
    assert!(error.contains("chart for schema 1 not found"), "{failed}");
    assert_eq!(
        failed["output"]["stderr"], "chart for schema 1 not found\n",
        "{failed}"
    );
}

#[test]
fn the_demo_over_agents_rolls_out_through_the_network_and_stops_them() {
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_flotilla"))
        .args(["demo", "--agents", "3"])
        .env("HOME", home.path())
        .env("XDG_DATA_HOME", home.path().join("data"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = output_text(&out);
    // Without a terminal the demo runs headless, approving its gates.
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("each behind a flotilla agent"), "{text}");
    assert!(text.contains("rollout completed: 3 succeeded"), "{text}");
    // The agents recorded it, and their token stayed out of the output.
    let agents = home.path().join("data/flotilla/demo-agents");
    let token = std::fs::read_to_string(agents.join("token")).unwrap();
    assert!(!text.contains(token.trim()));
    let recorded = std::fs::read_dir(&agents)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().join("state.json").exists())
        .count();
    assert_eq!(recorded, 3);
}

#[test]
fn an_agent_refuses_to_start_without_a_token_except_on_loopback_when_told() {
    let dir = tempfile::tempdir().unwrap();
    let start = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_flotilla"))
            .args(["agent", "--dir"])
            .arg(dir.path().join("a"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let none = start(&["--listen", "127.0.0.1:0"]);
    assert_eq!(none.status.code(), Some(3), "{}", output_text(&none));
    assert!(
        output_text(&none).contains("needs --token-file"),
        "{}",
        output_text(&none)
    );
    let open = start(&["--listen", "0.0.0.0:0", "--insecure-no-auth"]);
    assert_eq!(open.status.code(), Some(3), "{}", output_text(&open));
    assert!(
        output_text(&open).contains("only on a loopback address"),
        "{}",
        output_text(&open)
    );
    // On loopback it starts, and answers without a token.
    let mut child = Command::new(env!("CARGO_BIN_EXE_flotilla"))
        .args([
            "agent",
            "--listen",
            "127.0.0.1:0",
            "--insecure-no-auth",
            "--dir",
        ])
        .arg(dir.path().join("a"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(line.contains("listening on http://127.0.0.1:"), "{line}");
}

#[tokio::test]
async fn an_oversized_or_malformed_body_is_refused_without_quoting_it() {
    let dir = tempfile::tempdir().unwrap();
    let token = token_file(dir.path(), TOKEN);
    let agent = AgentProc::start(&dir.path().join("a"), &token, "e-00", &[]);
    let c = client();
    let huge = format!(
        "{{\"version\": \"1\", \"revision\": \"r\", \"config\": {{\"blob\": \"{}\"}}}}",
        "x".repeat(2 << 20)
    );
    // Refused with 413; or the agent closes the connection before the client has sent it
    // all, which a client sees as an error. Either way nothing is recorded (checked below).
    let sent = c
        .put(format!("{}/v1/services/api", agent.url))
        .bearer_auth(TOKEN)
        .body(huge)
        .send()
        .await;
    if let Ok(r) = sent {
        assert_eq!(r.status().as_u16(), 413);
    }
    // A value of the wrong type: where, not what (it could be a secret). A new client: the
    // agent closed the last connection mid-upload, and a pooled one could be that one.
    let r = client()
        .put(format!("{}/v1/services/api", agent.url))
        .bearer_auth(TOKEN)
        .body(r#"{"version": "1", "revision": "r", "secrets": "hunter2-secret"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let said: serde_json::Value = r.json().await.unwrap();
    let error = said["error"].as_str().unwrap();
    assert!(error.contains("line 1"), "{error}");
    assert!(!error.contains("hunter2"), "{error}");
    assert!(
        !dir.path().join("a/state.json").exists(),
        "nothing was recorded"
    );
}

#[test]
fn drift_behind_an_agent_is_an_edit_of_its_state_and_blocks_the_next_rollout() {
    let dir = tempfile::tempdir().unwrap();
    let token = token_file(dir.path(), TOKEN);
    let agent_dir = dir.path().join("agents/e-00");
    let mut agent = AgentProc::start(&agent_dir, &token, "e-00", &[]);
    let repo = http_repo(dir.path(), std::slice::from_ref(&agent.url), "0", "");
    let state = state_db(dir.path());
    let out = cmd(&repo, &state, "ops")
        .args(["rollout", "r1", "--approve-all"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let clean = cmd(&repo, &state, "ops").arg("drift").output().unwrap();
    assert_eq!(clean.status.code(), Some(0), "{}", output_text(&clean));
    // Someone edits what the agent says runs, and restarts it on the same address.
    let port = agent.url.rsplit(':').next().unwrap().to_string();
    let _ = agent.child.kill();
    let _ = agent.child.wait();
    let file = agent_dir.join("state.json");
    let edited = std::fs::read_to_string(&file).unwrap().replacen(
        "\"version\": \"1.0\"",
        "\"version\": \"1.0-hand\"",
        1,
    );
    std::fs::write(&file, edited).unwrap();
    let listen = format!("127.0.0.1:{port}");
    let _again = AgentProc::start(&agent_dir, &token, "e-00", &["--listen", &listen]);
    let out = cmd(&repo, &state, "ops").arg("drift").output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    assert!(
        output_text(&out).contains("1.0-hand"),
        "{}",
        output_text(&out)
    );
    assert!(!output_text(&out).contains(TOKEN));
}

/// Stops `agent`, changes the api version its state file records to `version` (what a
/// hand edit on the host does), and starts it again on the same address.
fn hand_edit(agent: &mut AgentProc, token: &Path, env: &str, from: &str, to: &str) {
    let port = agent.url.rsplit(':').next().unwrap().to_string();
    let _ = agent.child.kill();
    let _ = agent.child.wait();
    let file = agent.dir.join("state.json");
    let text = std::fs::read_to_string(&file).unwrap();
    let needle = format!("\"version\": \"{from}\"");
    assert!(text.contains(&needle), "{text}");
    std::fs::write(
        &file,
        text.replacen(&needle, &format!("\"version\": \"{to}\""), 1),
    )
    .unwrap();
    let listen = format!("127.0.0.1:{port}");
    *agent = AgentProc::start(&agent.dir.clone(), token, env, &["--listen", &listen]);
}

fn api_version(agent: &AgentProc) -> String {
    agent
        .versions()
        .into_iter()
        .find(|(s, _)| s == "api")
        .map(|(_, v)| v)
        .unwrap()
}

#[test]
fn behind_agents_revert_undoes_a_hand_edit_and_a_rollout_holds_an_edited_environment() {
    let dir = tempfile::tempdir().unwrap();
    let token = token_file(dir.path(), TOKEN);
    let mut agents: Vec<AgentProc> = ["e-00", "e-01"]
        .iter()
        .map(|env| AgentProc::start(&dir.path().join("agents").join(env), &token, env, &[]))
        .collect();
    let targets: Vec<String> = agents.iter().map(|a| a.url.clone()).collect();
    let repo = http_repo(dir.path(), &targets, "0", "");
    let state = state_db(dir.path());
    let flotilla = |args: &[&str]| cmd(&repo, &state, "ops").args(args).output().unwrap();
    let out = flotilla(&["rollout", "r1", "--approve-all"]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));

    // A revert applies the same revision again: the agent applies it, since what runs is
    // no longer what that revision is.
    hand_edit(&mut agents[1], &token, "e-01", "1.0", "1.0-hand");
    let out = flotilla(&["revert", "e-01"]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_eq!(api_version(&agents[1]), "1.0");
    let out = flotilla(&["drift"]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));

    // A rollout that reaches an edited environment holds it and goes on with the others.
    std::fs::write(
        repo.join("releases/r2.toml"),
        "[services]\nschema = \"1\"\napi = \"2.0\"\nweb = \"1.0\"\n",
    )
    .unwrap();
    commit_all(&repo, "r2");
    let out = flotilla(&["rollout", "r2"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "the canary gate: {}",
        output_text(&out)
    );
    hand_edit(&mut agents[1], &token, "e-01", "1.0", "1.0-hand");
    let out = flotilla(&["rollout", "r2", "--approve", "canary"]);
    assert_eq!(out.status.code(), Some(3), "{}", output_text(&out));
    assert!(
        output_text(&out).contains("e-01 HELD"),
        "{}",
        output_text(&out)
    );
    assert_eq!(api_version(&agents[0]), "2.0");
    assert_eq!(api_version(&agents[1]), "1.0-hand", "not overwritten");

    // Adopted, the rollout finishes there with the hand-set version kept.
    let out = flotilla(&["adopt", "e-01"]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let out = flotilla(&["rollout", "r2"]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_eq!(api_version(&agents[1]), "1.0-hand");
    let out = flotilla(&["drift"]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert!(!output_text(&out).contains(TOKEN));
}
