//! The log file: what a command did goes to a daily file in the platform state directory
//! (or FLOTILLA_LOG_DIR), `-v` and RUST_LOG raise the level, and `status` says where it is.

mod common;

use std::path::Path;
use std::process::Output;

use common::*;

fn run(repo: &Path, state: &Path, log: &Path, args: &[&str]) -> Output {
    cmd(repo, state, "ops")
        .env("FLOTILLA_LOG_DIR", log)
        .env_remove("RUST_LOG")
        .args(args)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn logged(log: &Path) -> String {
    std::fs::read_to_string(log.join("flotilla.log")).unwrap_or_default()
}

#[test]
fn a_rollout_is_logged_v_adds_its_steps_and_status_says_where_the_log_is() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let mut f = Fixture::standard(3, &strategy("", "0")).with_earlier_release();
    f.fleet = f
        .fleet
        .replace("latency = \"100ms..2s\"", "latency = \"0ms\"");
    f.load(&repo);
    let state = dir.path().join("state.db");
    let log = dir.path().join("log");

    let out = run(&repo, &state, &log, &["rollout", "r0", "--approve-all"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let first = logged(&log);
    assert!(
        first.contains("rollout r0 --approve-all"),
        "the command: {first}"
    );
    assert!(first.contains("\"kind\":\"rollout_started\""), "{first}");
    assert!(first.contains("\"kind\":\"rollout_completed\""), "{first}");
    assert!(first.contains("done exit=0"), "{first}");
    assert!(
        !first.contains("step_started"),
        "steps are debug, not logged by default: {first}"
    );
    // Today's file, and the name status gives linking to it.
    let files: Vec<String> = std::fs::read_dir(&log)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        files
            .iter()
            .any(|f| f.starts_with("flotilla.20") && f.ends_with(".log")),
        "{files:?}"
    );

    let out = run(
        &repo,
        &state,
        &log,
        &["-v", "rollout", "r1", "--approve-all"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let second = logged(&log);
    assert!(
        second.contains("step_started"),
        "-v logs the steps: {second}"
    );
    assert!(
        !text(&out).contains("DEBUG") && !text(&out).contains("flotilla::journal"),
        "nothing logged goes to the terminal: {}",
        text(&out)
    );

    let status = run(&repo, &state, &log, &["status"]);
    let expected = format!("log: {}", log.join("flotilla.log").display());
    assert!(text(&status).contains(&expected), "{}", text(&status));
    let json = run(&repo, &state, &log, &["status", "--output", "json"]);
    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(
        doc["log"]["path"].as_str(),
        log.join("flotilla.log").to_str(),
        "{doc}"
    );

    // RUST_LOG decides over the default: errors only, so a status adds nothing.
    let before = logged(&log);
    let quiet = cmd(&repo, &state, "ops")
        .env("FLOTILLA_LOG_DIR", &log)
        .env("RUST_LOG", "error")
        .arg("status")
        .output()
        .unwrap();
    assert_eq!(quiet.status.code(), Some(0));
    assert_eq!(logged(&log), before, "RUST_LOG=error logs no info");
}

#[test]
fn a_log_that_cannot_be_written_stops_nothing_and_status_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let mut f = Fixture::standard(2, &strategy("", "0"));
    f.fleet = f
        .fleet
        .replace("latency = \"100ms..2s\"", "latency = \"0ms\"");
    f.load(&repo);
    let state = dir.path().join("state.db");
    // A file where the directory should be.
    let blocked = dir.path().join("not-a-dir");
    std::fs::write(&blocked, "x").unwrap();
    let log = blocked.join("log");
    let out = run(&repo, &state, &log, &["rollout", "r1", "--approve-all"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let status = run(&repo, &state, &log, &["status"]);
    assert_eq!(status.status.code(), Some(0), "{}", text(&status));
    assert!(
        text(&status).contains(&format!("log: none: cannot create {}", log.display())),
        "{}",
        text(&status)
    );
}
