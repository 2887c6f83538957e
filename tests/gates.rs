//! Gates that verify, through the real binary with real scripts: a wave's `check` command
//! must pass before the wave starts (a failing one halts the rollout there, with its
//! output, and runs again on resume), within its timeout; `gate = "healthy"` asks the
//! earlier waves' environments for their health again first.

mod common;

use std::path::Path;

use common::exec::*;

/// The smoke check: records its arguments and environment, fails while
/// `$LIVE/smoke-fails` exists, hangs while `$LIVE/smoke-hangs` exists.
const SMOKE: &str = r#"#!/bin/bash
LIVE="${LIVE:-$PWD/../live}"
echo "$* | $FLOTILLA_WAVE $FLOTILLA_RELEASE" >> "$LIVE/smoke-runs"
if [ -e "$LIVE/smoke-hangs" ]; then echo $$ > "$LIVE/smoke-pid"; sleep 3013; fi
if [ -e "$LIVE/smoke-fails" ]; then echo "smoke: 2 of 5 requests failed" >&2; exit 1; fi
echo "smoke ok"
"#;

/// The test strategy with `rest` guarded by `guard` (TOML lines of the wave).
fn guarded(guard: &str) -> String {
    common::strategy("", "0").replace("name = \"rest\"\n", &format!("name = \"rest\"\n{guard}"))
}

fn smoke_runs(live: &Path) -> Vec<String> {
    std::fs::read_to_string(live.join("smoke-runs"))
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

fn applied(live: &Path, env: &str) -> bool {
    live.join(env).join("api.json").exists()
}

#[test]
fn a_failing_check_halts_before_its_wave_and_runs_again_on_resume() {
    let dir = tempfile::tempdir().unwrap();
    let strategy = guarded(
        "check = [\"./deploy/smoke.sh\", \"{wave}\", \"--envs={envs}\"]\ncheck_retries = 1\n",
    );
    let (repo, live) = exec_repo_with(
        dir.path(),
        3,
        &strategy.replace("backoff = \"1s\"", "backoff = \"10ms\""),
        "",
        &[("deploy/smoke.sh", SMOKE)],
    );
    let state = dir.path().join("s.db");

    let plan = text(&run(&repo, &state, &live, &["plan", "r1"]));
    assert!(
        plan.contains(
            "first, `./deploy/smoke.sh {wave} --envs={envs}` must pass (timeout 1m, 1 retries)"
        ),
        "{plan}"
    );

    std::fs::write(live.join("smoke-fails"), "").unwrap();
    let out = run(&repo, &state, &live, &["rollout", "r1", "--approve-all"]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("check `./deploy/smoke.sh {wave} --envs={envs}` of wave `rest` failed: exited 1: smoke: 2 of 5 requests failed"),
        "{said}"
    );
    assert!(said.contains("retrying in"), "{said}");
    // Tried twice (one retry), with the wave's name and environments; nothing of the wave
    // was applied, the canary was.
    assert_eq!(
        smoke_runs(&live),
        vec!["rest --envs=e-01,e-02 | rest r1"; 2],
        "{said}"
    );
    assert!(applied(&live, "e-00"));
    assert!(!applied(&live, "e-01") && !applied(&live, "e-02"), "{said}");
    let status = text(&run(&repo, &state, &live, &["status"]));
    assert!(status.contains("halted"), "{status}");

    // Fixed: a resume runs the check again, and the wave goes.
    std::fs::remove_file(live.join("smoke-fails")).unwrap();
    let out = run(&repo, &state, &live, &["rollout", "r1"]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(
        said.contains("check `./deploy/smoke.sh {wave} --envs={envs}` passed"),
        "{said}"
    );
    assert_eq!(smoke_runs(&live).len(), 3);
    assert!(applied(&live, "e-01") && applied(&live, "e-02"));
}

#[test]
fn a_check_past_its_timeout_is_killed_and_halts_the_wave() {
    let dir = tempfile::tempdir().unwrap();
    let strategy =
        guarded("check = [\"./deploy/smoke.sh\"]\ncheck_timeout = \"1s\"\ncheck_retries = 0\n");
    let (repo, live) = exec_repo_with(dir.path(), 2, &strategy, "", &[("deploy/smoke.sh", SMOKE)]);
    let state = dir.path().join("s.db");
    std::fs::write(live.join("smoke-hangs"), "").unwrap();
    let out = run(&repo, &state, &live, &["rollout", "r1", "--approve-all"]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("did not finish within its timeout (1s)"),
        "{said}"
    );
    assert!(!applied(&live, "e-01"), "{said}");
    // The hung check and what it started are gone.
    let pid = std::fs::read_to_string(live.join("smoke-pid")).unwrap();
    let alive = std::process::Command::new("kill")
        .args(["-0", pid.trim()])
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap()
        .success();
    assert!(!alive, "the check {pid} still runs");
}

#[test]
fn a_healthy_gate_halts_when_an_earlier_wave_went_unhealthy() {
    let dir = tempfile::tempdir().unwrap();
    let strategy = guarded("gate = [\"healthy\", \"approval\"]\n");
    let (repo, live) = exec_repo_with(dir.path(), 3, &strategy, "", &[]);
    let state = dir.path().join("s.db");
    let plan = text(&run(&repo, &state, &live, &["plan", "r1"]));
    assert!(
        plan.contains("healthy+approval")
            && plan.contains("the earlier waves' environments must be healthy"),
        "{plan}"
    );

    // The canary goes; the rest waits for its approval.
    let out = run(
        &repo,
        &state,
        &live,
        &["rollout", "r1", "--approve", "canary"],
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(applied(&live, "e-00") && !applied(&live, "e-01"));

    // Meanwhile the canary's api went down: the gate asks again and halts.
    std::fs::write(live.join("unhealthy-e-00-api"), "").unwrap();
    let out = run(
        &repo,
        &state,
        &live,
        &["rollout", "r1", "--approve", "rest"],
    );
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("gate `healthy` of wave `rest`: 1 of the 1 environment(s) of earlier waves not healthy: e-00: api (api answers 503)"),
        "{said}"
    );
    assert!(!applied(&live, "e-01") && !applied(&live, "e-02"), "{said}");

    std::fs::remove_file(live.join("unhealthy-e-00-api")).unwrap();
    let out = run(
        &repo,
        &state,
        &live,
        &["rollout", "r1", "--approve", "rest"],
    );
    let said = text(&out);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(
        said.contains("the health of earlier waves passed"),
        "{said}"
    );
    assert!(applied(&live, "e-01") && applied(&live, "e-02"));
}

#[test]
fn gates_and_checks_written_wrong_are_refused_with_what_to_write() {
    let dir = tempfile::tempdir().unwrap();
    for (n, (guard, expect)) in [
        (
            "check = [\"./deploy/smoke.sh\", \"{env}\"]\n",
            "unknown placeholder `{env}` in the check command (it may use {wave}, {release}, {revision}, {envs})",
        ),
        ("check = []\n", "check is an empty command"),
        ("check_retries = 2\n", "check_retries is set but the wave has no check"),
        ("gate = [\"auto\", \"healthy\"]\n", "`auto` means no gate; it cannot be combined"),
        ("gate = \"healthly\"\n", "unknown gate `healthly`"),
        ("gate = []\n", "gate lists no kind"),
    ]
    .into_iter()
    .enumerate()
    {
        let repo = dir.path().join(format!("r{n}"));
        let f = common::Fixture::standard(2, &guarded(guard));
        flotilla::intent::write::write_repo(&repo, &f.commits()).unwrap();
        let out = common::cmd(&repo, &dir.path().join("s.db"), "ops")
            .arg("validate")
            .output()
            .unwrap();
        let said = text(&out);
        assert_eq!(out.status.code(), Some(2), "{guard}: {said}");
        assert!(said.contains(expect), "{guard}: {said}");
    }
}
