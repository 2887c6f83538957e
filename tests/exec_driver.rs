//! The exec driver with real scripts and the real binary: dependency order, retries of a
//! transient exit code, a timeout that kills the whole process group, arguments that stay
//! one argument, placeholders checked by validate, garbage from observe, and a kill -9
//! mid-rollout resumed by observing instead of applying again.

mod common;

use std::path::Path;
use std::process::Stdio;

use common::exec::*;
use common::*;

/// (env, service) in the order their applies completed.
fn order(live: &Path) -> Vec<(String, String)> {
    let mut lines: Vec<(u128, String, String)> = std::fs::read_to_string(live.join("order"))
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let mut p = l.split(' ');
            (
                p.next().unwrap().parse().unwrap(),
                p.next().unwrap().to_string(),
                p.next().unwrap().to_string(),
            )
        })
        .collect();
    lines.sort();
    lines.into_iter().map(|(_, e, s)| (e, s)).collect()
}

/// How many applies reached `service` in `env` (counted by the script with its change).
fn applies(live: &Path, env: &str, service: &str) -> u32 {
    let Ok(text) = std::fs::read_to_string(live.join(env).join(format!("{service}.json"))) else {
        return 0;
    };
    let doc: serde_json::Value = serde_json::from_str(&format!("{{{text}}}")).unwrap();
    doc[service]["applies"].as_u64().unwrap() as u32
}

#[test]
fn an_exec_rollout_applies_every_service_once_in_dependency_order() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, live) = exec_repo(dir.path(), 4, "0", "");
    let state = dir.path().join("state.db");
    let out = run(&repo, &state, &live, &["rollout", "r1", "--approve-all"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let done = order(&live);
    assert_eq!(done.len(), 12, "{done:?}");
    for env in ["e-00", "e-01", "e-02", "e-03"] {
        let services: Vec<&str> = done
            .iter()
            .filter(|(e, _)| e == env)
            .map(|(_, s)| s.as_str())
            .collect();
        assert_eq!(services, ["schema", "api", "web"], "{env}");
        for s in ["schema", "api", "web"] {
            assert_eq!(applies(&live, env, s), 1, "{env}/{s}");
        }
    }
    // status reads an exec-driven rollout as any other.
    let status = run(&repo, &state, &live, &["status"]);
    assert!(
        text(&status).contains("state: completed"),
        "{}",
        text(&status)
    );
}

#[test]
fn what_a_successful_apply_printed_is_in_its_step_event_with_secrets_masked() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "hunter2-in-the-config";
    let (repo, live) = exec_repo(dir.path(), 2, "0", "");
    // The environment's config holds a secret, which the apply script prints in full.
    let env_file = repo.join("environments/e-01.toml");
    let mut labels = std::fs::read_to_string(&env_file).unwrap();
    labels.push_str(&format!("[config.api]\ndb_password = \"{secret}\"\n"));
    std::fs::write(&env_file, labels).unwrap();
    let committed = std::process::Command::new("git")
        .current_dir(&repo)
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-qam",
            "a secret",
        ])
        .status()
        .unwrap();
    assert!(committed.success());
    std::fs::write(live.join("print-config"), "").unwrap();
    let state = dir.path().join("state.db");
    let out = run(
        &repo,
        &state,
        &live,
        &["rollout", "r1", "--approve-all", "--output", "json"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let api = events
        .iter()
        .find(|e| e["kind"] == "step_succeeded" && e["env"] == "e-01" && e["service"] == "api")
        .expect("api succeeded in e-01");
    assert_eq!(
        api["output"]["stdout"], "applied api 1.0 to e-01\n",
        "{api}"
    );
    let stderr = api["output"]["stderr"].as_str().unwrap();
    assert!(stderr.contains("\"db_password\""), "{api}");
    assert!(stderr.contains(flotilla::secrets::MASK), "{api}");
    assert!(!text(&out).contains(secret));
    // The journal keeps the output as the events showed it.
    let journaled = run(&repo, &state, &live, &["audit", "--output", "json"]);
    assert!(
        String::from_utf8_lossy(&journaled.stdout).contains("applied api 1.0 to e-01"),
        "{}",
        text(&journaled)
    );
    assert_not_stored(dir.path(), secret);
}

#[test]
fn a_transient_exit_code_is_retried_and_another_is_permanent_with_stderr_quoted() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, live) = exec_repo(dir.path(), 3, "\"100%\"", "");
    std::fs::write(live.join("flaky-e-01-api"), "").unwrap();
    std::fs::write(live.join("broken-e-02-schema"), "").unwrap();
    let state = dir.path().join("state.db");
    let out = run(
        &repo,
        &state,
        &live,
        &["rollout", "r1", "--approve-all", "--output", "json"],
    );
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let retried = events
        .iter()
        .find(|e| e["kind"] == "step_retrying" && e["env"] == "e-01")
        .expect("a retry of e-01");
    assert_eq!(retried["class"], "transient", "{retried}");
    assert!(
        retried["error"]
            .as_str()
            .unwrap()
            .contains("exited 75: busy, try later"),
        "{retried}"
    );
    assert_eq!(applies(&live, "e-01", "api"), 1);
    let failed = events
        .iter()
        .find(|e| e["kind"] == "step_failed" && e["env"] == "e-02")
        .expect("e-02 failed");
    assert_eq!(failed["class"], "permanent", "{failed}");
    assert_eq!(failed["attempts"], 1, "{failed}");
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("image 1 not found"),
        "{failed}"
    );
}

/// An environment whose applies fail more often than its retries allow goes to the back of
/// its wave once (`requeue_failed`, default 1) and succeeds there; with `requeue_failed = 0`
/// it is left failed for a person.
#[test]
fn an_environment_failing_past_its_retries_is_tried_again_after_the_rest_of_its_wave() {
    for (requeue, code, applied) in [("", 0, true), ("requeue_failed = 0", 1, false)] {
        let dir = tempfile::tempdir().unwrap();
        let strategy =
            common::strategy(requeue, "\"100%\"").replace("backoff = \"1s\"", "backoff = \"10ms\"");
        let (repo, live) = exec_repo_with(dir.path(), 4, &strategy, "", &[]);
        // Three applies fail: the first try and both retries.
        std::fs::write(live.join("flaky-e-01-api"), "3").unwrap();
        let state = dir.path().join("state.db");
        let out = run(
            &repo,
            &state,
            &live,
            &["rollout", "r1", "--approve-all", "--output", "json"],
        );
        assert_eq!(out.status.code(), Some(code), "{requeue}: {}", text(&out));
        let events: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        let order: Vec<String> = events
            .iter()
            .filter(|e| {
                e["kind"] == "step_failed"
                    || e["kind"] == "env_retried"
                    || (e["kind"] == "step_succeeded" && e["service"] == "api")
            })
            .map(|e| {
                format!(
                    "{} {}",
                    e["kind"].as_str().unwrap(),
                    e["env"].as_str().unwrap()
                )
            })
            .collect();
        if applied {
            // Requeued behind e-02 and e-03, then done.
            let requeued = order
                .iter()
                .position(|e| e == "env_retried e-01")
                .expect("requeued");
            let last = order
                .iter()
                .rposition(|e| e == "step_succeeded e-01")
                .expect("applied");
            assert!(requeued < last, "{order:?}");
            for other in ["e-02", "e-03"] {
                let done = order
                    .iter()
                    .position(|e| *e == format!("step_succeeded {other}"))
                    .unwrap();
                assert!(done < last, "{other} goes first: {order:?}");
            }
            assert_eq!(applies(&live, "e-01", "api"), 1);
        } else {
            assert!(
                !order.iter().any(|e| e.starts_with("env_retried")),
                "{order:?}"
            );
            assert!(order.contains(&"step_failed e-01".to_string()), "{order:?}");
        }
    }
}

/// Processes whose command line holds `needle`.
fn processes_with(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let line = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if line.contains(needle) {
                found.push(line);
            }
        }
    }
    found
}

#[test]
fn a_step_timeout_kills_the_whole_process_group() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, live) = exec_repo(dir.path(), 3, "0", "");
    let f = std::fs::read_to_string(repo.join("flotilla.toml")).unwrap();
    assert!(f.contains("step_timeout = \"1m\""));
    // A second commit: a short timeout and no retries.
    let fleet = f
        .replace("step_timeout = \"1m\"", "step_timeout = \"1s\"")
        .replace("retries = 2", "retries = 0");
    std::fs::write(repo.join("flotilla.toml"), fleet).unwrap();
    let git = |args: &[&str]| {
        let ok = std::process::Command::new("git")
            .arg("-C")
            .arg(&repo)
            .args(args)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.com")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.com")
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(ok.success());
    };
    git(&["commit", "-qam", "short timeout"]);
    std::fs::write(live.join("hang-e-01"), "").unwrap();
    let state = dir.path().join("state.db");
    let out = run(&repo, &state, &live, &["rollout", "r1", "--approve-all"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("no answer within the step timeout of 1s"),
        "{}",
        text(&out)
    );
    // The script and the child it started in the background are gone.
    let left = processes_with("sleep 301");
    assert!(left.is_empty(), "orphans survived the timeout: {left:?}");
}

#[test]
fn a_placeholder_value_stays_one_argument_whatever_it_holds() {
    let dir = tempfile::tempdir().unwrap();
    let nasty = "-rf /; echo 'pwned' \"x\" $(id) `id` a b";
    let (repo, live) = exec_repo(dir.path(), 2, "0", nasty);
    let state = dir.path().join("state.db");
    let out = run(&repo, &state, &live, &["rollout", "r1", "--approve-all"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let args = std::fs::read_to_string(live.join("e-01").join("api.args")).unwrap();
    let args: Vec<&str> = args.lines().collect();
    assert_eq!(args.len(), 5, "{args:?}");
    assert_eq!(args[4], format!("--target={nasty}"));
}

#[test]
fn an_unknown_placeholder_is_a_validate_error_with_its_position() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let mut f = Fixture::standard(2, &strategy("", "0"));
    f.fleet = f.fleet.replace(
        "[driver]\nkind = \"sim\"\n",
        "[driver]\nkind = \"exec\"\n[driver.exec]\napply = [\"helm\", \"upgrade\", \"{servce}\"]\n",
    );
    flotilla::intent::write::write_repo(&repo, &f.commits()).unwrap();
    let out = run(&repo, &dir.path().join("s.db"), dir.path(), &["validate"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("flotilla.toml:6:30"), "{}", text(&out));
    assert!(
        text(&out).contains("unknown placeholder `{servce}` in the apply command"),
        "{}",
        text(&out)
    );
}

#[test]
fn a_label_placeholder_an_environment_lacks_is_a_validate_error() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let mut f = Fixture::standard(3, &strategy("", "0"));
    f.fleet = f.fleet.replace(
        "[driver]\nkind = \"sim\"\n",
        "[driver]\nkind = \"exec\"\n[driver.exec]\napply = [\"helm\", \"--kube-context={label.cluster}\"]\n",
    );
    f.envs[0].1 = f.envs[0].1.replace("region", "cluster = \"c1\", region");
    flotilla::intent::write::write_repo(&repo, &f.commits()).unwrap();
    let out = run(&repo, &dir.path().join("s.db"), dir.path(), &["validate"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("`{label.cluster}` would be empty for environment `e-01` and 1 more"),
        "{}",
        text(&out)
    );
    // Every environment has `name`.
    let mut f = Fixture::standard(2, &strategy("", "0"));
    f.fleet = f.fleet.replace(
        "[driver]\nkind = \"sim\"\n",
        "[driver]\nkind = \"exec\"\n[driver.exec]\napply = [\"true\", \"{label.name}\", \"{label.region}\"]\n",
    );
    let repo = dir.path().join("repo2");
    flotilla::intent::write::write_repo(&repo, &f.commits()).unwrap();
    let out = run(&repo, &dir.path().join("s.db"), dir.path(), &["validate"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[tokio::test]
async fn garbage_from_observe_is_a_clear_permanent_error() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, live) = exec_repo(dir.path(), 2, "0", "");
    std::fs::write(live.join("garbage"), "").unwrap();
    let intent = flotilla::intent::load(&repo, "HEAD").unwrap().intent;
    // The scripts find the live state beside the repo (LIVE unset).
    let _ = &live;
    let place = flotilla::drivers::Place {
        repo: &repo,
        state: None,
    };
    let driver = flotilla::drivers::open(&intent, None, place).unwrap();
    let err = driver.observe(&intent.environments[1]).await.unwrap_err();
    assert_eq!(err.class, flotilla::drivers::ErrorClass::Permanent);
    for part in [
        "observe for e-01",
        "./deploy/observe.sh {env}",
        "not live state",
        "cluster unreachable",
    ] {
        assert!(err.message.contains(part), "{part}: {}", err.message);
    }
}

/// Whether any process still carries the mark of the engine with pid `engine`.
fn marked_by(engine: u32) -> Vec<String> {
    let mark = format!("FLOTILLA_ENGINE={engine}:");
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(environ) = std::fs::read(entry.path().join("environ")) {
            if String::from_utf8_lossy(&environ).contains(&mark) {
                found.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
    }
    found
}

#[test]
fn an_exec_rollout_killed_mid_way_resumes_by_observing_and_applies_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, live) = exec_repo(dir.path(), 8, "0", "");
    let state = dir.path().join("state.db");
    let mut child = cmd(&repo, &state, "ops")
        .env("LIVE", &live)
        .env("APPLY_SLEEP", "0.05")
        .env("SLOW_ENV", "e-05")
        .args(["rollout", "r1", "--approve-all"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let engine = child.id();
    // Kill the engine while e-05's first apply is under way (bounded: 30 s at most).
    let started = live.join("started-e-05-schema");
    for _ in 0..3000 {
        if started.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(started.exists(), "e-05's apply never started");
    child.kill().unwrap(); // SIGKILL, with that apply in flight
    child.wait().unwrap();
    assert!(
        !marked_by(engine).is_empty(),
        "the apply in flight should outlive its engine"
    );
    let out = run(&repo, &state, &live, &["rollout", "r1", "--approve-all"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // The resumed engine killed what the dead one left running before it observed.
    assert!(marked_by(engine).is_empty(), "{:?}", marked_by(engine));
    let done = order(&live);
    for env in (0..8).map(|i| format!("e-{i:02}")) {
        for s in ["schema", "api", "web"] {
            // The log line follows the atomic change, so an apply killed between the two
            // leaves the change without its line: at most one line, and exactly one change.
            let n = done.iter().filter(|(e, x)| *e == env && x == s).count();
            assert!(n <= 1, "{env}/{s} applied {n} times");
            assert_eq!(applies(&live, &env, s), 1, "{env}/{s}");
        }
    }
}

#[test]
fn a_script_that_differs_from_the_rollouts_commit_is_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, live) = exec_repo(dir.path(), 2, "0", "");
    let script = repo.join("deploy/apply.sh");
    let edited = std::fs::read_to_string(&script).unwrap() + "echo edited by hand\n";
    std::fs::write(&script, edited).unwrap();
    let state = dir.path().join("state.db");
    let out = run(&repo, &state, &live, &["rollout", "r1", "--approve-all"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("deploy/apply.sh in the work tree differs from commit"),
        "{}",
        text(&out)
    );
    assert!(order(&live).is_empty(), "something was applied");
}
