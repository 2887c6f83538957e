//! Drift through the real binary: changes made out of band on the simulated fleet, behind
//! exec scripts and behind agents are reported three ways, journaled once, and block a
//! rollout that would overwrite them.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::*;

fn run(repo: &Path, state: &Path, args: &[&str]) -> Output {
    cmd(repo, state, "ops").args(args).output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A simulated fleet of `n`, rolled out once (r1 everywhere); `extra` goes into each
/// service table of flotilla.toml's api.
fn rolled_out(dir: &Path, n: usize, api_extra: &str) -> (PathBuf, PathBuf) {
    let repo = dir.join("repo");
    let mut f = Fixture::standard(n, &strategy("", "0"));
    f.fleet = f
        .fleet
        .replace("name = \"api\"\n", &format!("name = \"api\"\n{api_extra}"))
        .replace("latency = \"100ms..2s\"", "latency = \"0ms\"");
    f.envs[1]
        .1
        .push_str("[config.api]\nreplicas = 3\nlog = \"info\"\n");
    f.load(&repo);
    let state = dir.join("state.db");
    let out = run(&repo, &state, &["rollout", "r1", "--approve-all"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    (repo, state)
}

fn drift_events(state: &Path) -> Vec<serde_json::Value> {
    let db = rusqlite::Connection::open(state).unwrap();
    let mut stmt = db
        .prepare("SELECT event FROM journal_events WHERE kind LIKE 'drift_%' ORDER BY seq, idx")
        .unwrap();
    stmt.query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|e| serde_json::from_str(&e.unwrap()).unwrap())
        .collect()
}

fn live_api(state: &Path, env: &str) -> (String, String) {
    let db = rusqlite::Connection::open(state).unwrap();
    db.query_row(
        "SELECT version, config FROM sim_live WHERE env = ?1 AND service = 'api'",
        [env],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .unwrap()
}

#[test]
fn a_tampered_environment_is_reported_journaled_once_and_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, state) = rolled_out(dir.path(), 3, "");
    let clean = run(&repo, &state, &["drift"]);
    assert_eq!(clean.status.code(), Some(0), "{}", text(&clean));
    assert!(text(&clean).contains("0 drifted"), "{}", text(&clean));

    let tamper = run(
        &repo,
        &state,
        &[
            "sim",
            "tamper",
            "e-01",
            "api",
            "replicas=9",
            "version=1.0-hotfix",
        ],
    );
    assert_eq!(tamper.status.code(), Some(0), "{}", text(&tamper));
    let out = run(&repo, &state, &["drift"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let report = text(&out);
    assert!(report.contains("e-01: drifted"), "{report}");
    assert!(
        report.contains("-replicas = 3") && report.contains("+replicas = 9"),
        "{report}"
    );
    assert!(
        report.contains("--- last applied 1.0") && report.contains("+++ live 1.0-hotfix"),
        "{report}"
    );
    // JSON names each key with both values.
    let json = run(&repo, &state, &["drift", "--output", "json"]);
    assert_eq!(json.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(doc["counts"]["drifted"], 1, "{doc}");
    let e01 = doc["envs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["env"] == "e-01")
        .unwrap();
    let api = e01["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["service"] == "api")
        .unwrap();
    assert_eq!(api["state"], "drifted", "{api}");
    let replicas = api["drift"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["key"] == "replicas")
        .unwrap();
    assert_eq!(
        (replicas["from"].as_i64(), replicas["to"].as_i64()),
        (Some(3), Some(9)),
        "{api}"
    );

    // Journaled when it appeared, not again while it holds.
    let events = drift_events(&state);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["kind"], "drift_detected");
    assert_eq!(
        events[0]["keys"],
        serde_json::json!(["version", "replicas"])
    );

    // A rollout would overwrite the fix: its preflight fails naming it, and nothing moves.
    let before = live_api(&state, "e-01");
    std::fs::write(
        repo.join("releases/r2.toml"),
        "[services]\nschema = \"1\"\napi = \"2.0\"\nweb = \"1.0\"\n",
    )
    .unwrap();
    commit_all(&repo, "r2");
    let blocked = run(&repo, &state, &["rollout", "r2", "--approve-all"]);
    assert_eq!(blocked.status.code(), Some(3), "{}", text(&blocked));
    assert!(
        text(&blocked).contains("drift.clean")
            && text(&blocked).contains("e-01 (api: version, replicas)"),
        "{}",
        text(&blocked)
    );
    assert_eq!(live_api(&state, "e-01"), before);
    assert_eq!(
        live_api(&state, "e-00").0,
        "1.0",
        "nothing else moved either"
    );
    // plan shows the same check, and changes nothing.
    let plan = run(&repo, &state, &["plan", "r2"]);
    assert!(text(&plan).contains("drift.clean"), "{}", text(&plan));

    // Put back by hand: the drift clears, once.
    run(
        &repo,
        &state,
        &["sim", "tamper", "e-01", "api", "replicas=3", "version=1.0"],
    );
    let cleared = run(&repo, &state, &["drift"]);
    assert_eq!(cleared.status.code(), Some(0), "{}", text(&cleared));
    let events = drift_events(&state);
    assert_eq!(
        events.last().unwrap()["kind"],
        "drift_cleared",
        "{events:?}"
    );
    assert_eq!(events.len(), 2);
    // The journal still verifies, and status reads it.
    let verify = run(&repo, &state, &["audit", "--verify"]);
    assert_eq!(verify.status.code(), Some(0), "{}", text(&verify));
}

#[test]
fn ignored_keys_never_report_and_pending_is_told_from_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, state) = rolled_out(dir.path(), 3, "drift_ignore = [\"replicas\"]\n");
    // An autoscaler's change: ignored.
    run(
        &repo,
        &state,
        &["sim", "tamper", "e-01", "api", "replicas=12"],
    );
    let out = run(&repo, &state, &["drift"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("0 drifted"), "{}", text(&out));

    // Git changes e-01's log level: pending, not drift.
    let env = repo.join("environments/e-01.toml");
    let changed = std::fs::read_to_string(&env)
        .unwrap()
        .replace("log = \"info\"", "log = \"debug\"");
    std::fs::write(&env, changed).unwrap();
    commit_all(&repo, "debug logs on e-01");
    let json = |args: &[&str]| -> serde_json::Value {
        let out = run(&repo, &state, args);
        serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", text(&out)))
    };
    let state_of = |doc: &serde_json::Value| {
        let e = doc["envs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["env"] == "e-01")
            .unwrap()
            .clone();
        e["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["service"] == "api")
            .unwrap()
            .clone()
    };
    let pending = state_of(&json(&["drift", "--output", "json"]));
    assert_eq!(pending["state"], "pending", "{pending}");
    assert_eq!(pending["pending"][0]["key"], "log", "{pending}");
    // And someone changes it by hand too: a conflict, both sides named.
    run(
        &repo,
        &state,
        &["sim", "tamper", "e-01", "api", "log=\"warn\""],
    );
    let conflict = state_of(&json(&["drift", "--output", "json"]));
    assert_eq!(conflict["state"], "conflict", "{conflict}");
    assert_eq!(conflict["drift"][0]["to"], "warn", "{conflict}");
    assert_eq!(conflict["pending"][0]["to"], "debug", "{conflict}");
}

/// Exec scripts that keep live state in files (the fixture's services have no config);
/// observe prints them.
const APPLY: &str = r#"#!/bin/sh
set -eu
mkdir -p "$LIVE/$1"
printf '"%s": {"version": "%s", "revision": "%s"}' "$2" "$3" "$FLOTILLA_REVISION" > "$LIVE/$1/$2.json"
"#;

const OBSERVE: &str = r#"#!/bin/sh
printf '{"services": {'
first=1
for f in "$LIVE/$1"/*.json; do
  [ -e "$f" ] || continue
  [ $first = 1 ] || printf ','
  first=0
  cat "$f"
done
printf '}}'
"#;

#[test]
fn drift_through_the_exec_driver_is_reported_refused_reverted_and_held() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let live = dir.path().join("live");
    std::fs::create_dir_all(&live).unwrap();
    let mut f = Fixture::standard(2, &strategy("", "0"));
    f.fleet = f.fleet.replace(
        "[driver]\nkind = \"sim\"\n",
        "[driver]\nkind = \"exec\"\n[driver.exec]\napply = [\"./apply.sh\", \"{env}\", \"{service}\", \"{version}\", \"{config_file}\"]\nobserve = [\"./observe.sh\", \"{env}\"]\n",
    );
    f.extra.push(("apply.sh".into(), APPLY.into()));
    f.extra.push(("observe.sh".into(), OBSERVE.into()));
    f.load(&repo);
    for s in ["apply.sh", "observe.sh"] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(repo.join(s), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let state = dir.path().join("state.db");
    let go = cmd(&repo, &state, "ops")
        .env("LIVE", &live)
        .args(["rollout", "r1", "--approve-all"])
        .output()
        .unwrap();
    assert_eq!(go.status.code(), Some(0), "{}", text(&go));
    let drift = || {
        cmd(&repo, &state, "ops")
            .env("LIVE", &live)
            .arg("drift")
            .output()
            .unwrap()
    };
    let clean = drift();
    assert_eq!(clean.status.code(), Some(0), "{}", text(&clean));
    // A hand edit of what e-01's api runs.
    let file = live.join("e-01/api.json");
    let edited = std::fs::read_to_string(&file)
        .unwrap()
        .replace("\"version\": \"1.0\"", "\"version\": \"1.0-patched\"");
    std::fs::write(&file, edited).unwrap();
    let out = drift();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("+++ live 1.0-patched"),
        "{}",
        text(&out)
    );

    // The same flow as on the simulator: the next rollout's preflight refuses, a revert
    // puts the file back through the scripts, and a rollout that reaches an edited
    // environment holds it until the drift is accepted.
    let flotilla = |args: &[&str]| {
        cmd(&repo, &state, "ops")
            .env("LIVE", &live)
            .args(args)
            .output()
            .unwrap()
    };
    std::fs::write(
        repo.join("releases/r2.toml"),
        "[services]\nschema = \"1\"\napi = \"2.0\"\nweb = \"1.0\"\n",
    )
    .unwrap();
    commit_all(&repo, "r2");
    let refused = flotilla(&["rollout", "r2", "--approve-all"]);
    assert_eq!(refused.status.code(), Some(3), "{}", text(&refused));
    assert!(text(&refused).contains("drift.clean"), "{}", text(&refused));
    let reverted = flotilla(&["revert", "e-01"]);
    assert_eq!(reverted.status.code(), Some(0), "{}", text(&reverted));
    let api = || std::fs::read_to_string(&file).unwrap();
    assert!(api().contains("\"version\": \"1.0\""), "{}", api());
    let gate = flotilla(&["rollout", "r2"]);
    assert_eq!(gate.status.code(), Some(3), "{}", text(&gate));
    std::fs::write(&file, api().replace("\"1.0\"", "\"1.0-patched\"")).unwrap();
    let held = flotilla(&["rollout", "r2", "--approve", "canary"]);
    assert_eq!(held.status.code(), Some(3), "{}", text(&held));
    assert!(text(&held).contains("e-01 HELD"), "{}", text(&held));
    assert!(api().contains("1.0-patched"), "not overwritten: {}", api());
    let accept = flotilla(&[
        "drift", "accept", "e-01", "--for", "2h", "--reason", "vendor",
    ]);
    assert_eq!(accept.status.code(), Some(0), "{}", text(&accept));
    let done = flotilla(&["rollout", "r2"]);
    assert_eq!(done.status.code(), Some(0), "{}", text(&done));
    assert!(api().contains("\"version\": \"2.0\""), "{}", api());
}

#[test]
fn accepted_drift_is_still_reported_and_blocks_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, state) = rolled_out(dir.path(), 3, "");
    run(
        &repo,
        &state,
        &["sim", "tamper", "e-01", "api", "replicas=9"],
    );
    // Refused without a reason, or for too long.
    let no_reason = run(
        &repo,
        &state,
        &["drift", "accept", "e-01", "--for", "24h", "--reason", " "],
    );
    assert_eq!(no_reason.status.code(), Some(2), "{}", text(&no_reason));
    let too_long = run(
        &repo,
        &state,
        &["drift", "accept", "e-01", "--for", "90d", "--reason", "x"],
    );
    assert_eq!(too_long.status.code(), Some(2), "{}", text(&too_long));
    let typo = run(
        &repo,
        &state,
        &["drift", "accept", "e-1", "--for", "1h", "--reason", "x"],
    );
    assert!(
        text(&typo).contains("e-01"),
        "did you mean: {}",
        text(&typo)
    );

    let ok = run(
        &repo,
        &state,
        &[
            "drift",
            "accept",
            "e-01",
            "--service",
            "api",
            "--for",
            "24h",
            "--reason",
            "vendor hotfix, INC-123",
        ],
    );
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok));
    let out = run(&repo, &state, &["drift"]);
    assert_eq!(out.status.code(), Some(0), "accepted: {}", text(&out));
    let report = text(&out);
    assert!(
        report.contains("e-01/api: drifted (replicas), accepted by ops@"),
        "{report}"
    );
    assert!(report.contains("vendor hotfix, INC-123"), "{report}");
    // The preflight passes: a rollout goes ahead.
    let plan = run(&repo, &state, &["plan", "r1"]);
    let check = text(&plan);
    assert!(
        !check.contains("FAIL") || !check.contains("drift.clean"),
        "{check}"
    );
    // And the audit trail says who accepted it and why.
    let audit = run(&repo, &state, &["audit"]);
    assert!(
        text(&audit).contains("drift accepted by ops@"),
        "{}",
        text(&audit)
    );

    // For scripts: one document saying what was accepted, by whom, until when.
    let out = run(
        &repo,
        &state,
        &[
            "drift", "accept", "e-01", "--for", "2h", "--reason", "INC-124", "--output", "json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let doc = one_document(&out);
    assert_eq!(doc["kind"], "drift_accepted", "{doc}");
    assert_eq!(doc["env"], "e-01", "{doc}");
    assert_eq!(doc["service"], serde_json::Value::Null, "{doc}");
    assert_eq!(doc["reason"], "INC-124", "{doc}");
    assert!(doc["by"].as_str().unwrap().starts_with("ops@"), "{doc}");
    assert!(!doc["until"].as_str().unwrap().is_empty(), "{doc}");
    assert_eq!(
        doc["told"],
        serde_json::Value::Null,
        "no rollout to tell: {doc}"
    );
    let out = run(
        &repo,
        &state,
        &[
            "drift", "accept", "e-01", "--for", "90d", "--reason", "x", "--output", "json",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert_eq!(one_document(&out)["kind"], "error");
}

fn git_out(repo: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .current_dir(repo)
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn adopt_commits_the_live_values_as_an_emergency_layer_and_drift_is_then_clean() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, state) = rolled_out(dir.path(), 3, "");
    run(
        &repo,
        &state,
        &[
            "sim",
            "tamper",
            "e-01",
            "api",
            "replicas=9",
            "version=1.0-hotfix",
        ],
    );
    let head = git_out(&repo, &["rev-parse", "HEAD"]);

    // Uncommitted changes to the layer's file: refused, nothing written or committed.
    std::fs::create_dir_all(repo.join("emergency")).unwrap();
    std::fs::write(repo.join("emergency/e-01.toml"), "# mine\n").unwrap();
    let dirty = run(&repo, &state, &["adopt", "e-01"]);
    assert_eq!(dirty.status.code(), Some(3), "{}", text(&dirty));
    assert!(
        text(&dirty).contains("uncommitted changes"),
        "{}",
        text(&dirty)
    );
    assert_eq!(
        std::fs::read_to_string(repo.join("emergency/e-01.toml")).unwrap(),
        "# mine\n"
    );
    assert_eq!(git_out(&repo, &["rev-parse", "HEAD"]), head);
    std::fs::remove_file(repo.join("emergency/e-01.toml")).unwrap();
    // A detached HEAD: refused too.
    git_out(&repo, &["checkout", "-q", "--detach"]);
    let detached = run(&repo, &state, &["adopt", "e-01"]);
    assert_eq!(detached.status.code(), Some(3), "{}", text(&detached));
    assert!(
        text(&detached).contains("not a branch"),
        "{}",
        text(&detached)
    );
    git_out(&repo, &["checkout", "-q", "-"]);

    let out = run(&repo, &state, &["adopt", "e-01"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // One commit on the branch, with the layer alone, naming keys and both values.
    assert_eq!(git_out(&repo, &["rev-parse", "HEAD~1"]), head);
    let message = git_out(&repo, &["log", "-1", "--format=%B"]);
    assert!(
        message.contains("e-01") && message.contains("api: replicas 3 -> 9"),
        "{message}"
    );
    assert!(
        message.contains("api: version \"1.0\" -> \"1.0-hotfix\""),
        "{message}"
    );
    assert_eq!(
        git_out(&repo, &["show", "--name-only", "--format=", "HEAD"]).trim(),
        "emergency/e-01.toml"
    );
    assert_eq!(
        git_out(&repo, &["status", "--porcelain"]).trim(),
        "",
        "the work tree is clean"
    );
    // The rendered desired state now equals live for those keys: drift is clean.
    let explain = run(
        &repo,
        &state,
        &["explain", "e-01", "api.replicas", "--release", "r1"],
    );
    assert!(
        text(&explain).contains("api.replicas = 9  emergency/e-01.toml"),
        "{}",
        text(&explain)
    );
    let drift = run(&repo, &state, &["drift"]);
    assert_eq!(drift.status.code(), Some(0), "{}", text(&drift));
    // plan names the layer, so it gets folded back.
    let plan = run(&repo, &state, &["plan", "r1"]);
    assert!(
        text(&plan).contains("emergency layers (1)") && text(&plan).contains("e-01: 2 value(s)"),
        "{}",
        text(&plan)
    );
    // A rollout now keeps the fix.
    let again = run(&repo, &state, &["rollout", "r1", "--approve-all"]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    assert_eq!(live_api(&state, "e-01").0, "1.0-hotfix");
    assert!(
        live_api(&state, "e-01").1.contains("\"replicas\":9"),
        "{:?}",
        live_api(&state, "e-01")
    );
    // Nothing left to adopt.
    let nothing = run(&repo, &state, &["adopt", "e-01"]);
    assert_eq!(nothing.status.code(), Some(2), "{}", text(&nothing));
    assert!(text(&nothing).contains("no drift"), "{}", text(&nothing));
}

#[test]
fn revert_applies_again_what_flotilla_last_applied_through_the_engine() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, state) = rolled_out(dir.path(), 3, "");
    let before = live_api(&state, "e-01");
    let clean = run(&repo, &state, &["revert", "e-01"]);
    assert_eq!(
        clean.status.code(),
        Some(2),
        "nothing to revert: {}",
        text(&clean)
    );
    run(
        &repo,
        &state,
        &["sim", "tamper", "e-01", "api", "replicas=9"],
    );
    assert_ne!(live_api(&state, "e-01"), before);
    let out = run(&repo, &state, &["revert", "e-01"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("1 environments in 1 waves"),
        "e-01 alone: {}",
        text(&out)
    );
    assert_eq!(
        live_api(&state, "e-01").1,
        before.1,
        "back to what was applied"
    );
    let drift = run(&repo, &state, &["drift"]);
    assert_eq!(drift.status.code(), Some(0), "{}", text(&drift));
    // Through the engine: journaled as a rollout of its own, steps and all.
    let audit = run(&repo, &state, &["audit", "--output", "json"]);
    let rows = String::from_utf8_lossy(&audit.stdout).to_string();
    assert!(
        rows.contains("\"rollout\":2") || rows.contains("\"rollout\": 2"),
        "{rows}"
    );
    // Only e-01 was touched by it: the others were applied once, by the first rollout.
    let db = rusqlite::Connection::open(&state).unwrap();
    let others: i64 = db
        .query_row(
            "SELECT count(*) FROM journal_events WHERE rollout = 2 AND kind = 'step_started' AND json_extract(event, '$.env') != 'e-01'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(others, 0);

    // One service alone: the other's change stays.
    run(
        &repo,
        &state,
        &["sim", "tamper", "e-01", "api", "replicas=7"],
    );
    run(
        &repo,
        &state,
        &["sim", "tamper", "e-01", "web", "version=1.0-hand"],
    );
    let out = run(&repo, &state, &["revert", "e-01", "--service", "web"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let web: String = db
        .query_row(
            "SELECT version FROM sim_live WHERE env = 'e-01' AND service = 'web'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(web, "1.0");
    assert!(live_api(&state, "e-01").1.contains("\"replicas\":7"));
    let applied: Vec<String> = {
        let mut stmt = db
            .prepare("SELECT DISTINCT json_extract(event, '$.service') FROM journal_events WHERE rollout = 3 AND kind = 'step_started'")
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert_eq!(applied, ["web"]);
    let bad = run(&repo, &state, &["revert", "e-01", "--service", "wbe"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(text(&bad).contains("did you mean"), "{}", text(&bad));
}

#[test]
fn revert_and_adopt_report_one_json_document() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, state) = rolled_out(dir.path(), 3, "");
    let before = live_api(&state, "e-01");
    let out = run(
        &repo,
        &state,
        &[
            "sim",
            "tamper",
            "e-01",
            "api",
            "replicas=9",
            "--output",
            "json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let doc = one_document(&out);
    assert_eq!(doc["kind"], "tampered", "{doc}");
    assert_eq!(doc["changed"], serde_json::json!(["replicas"]), "{doc}");
    assert_ne!(live_api(&state, "e-01"), before, "tampered");
    let out = run(&repo, &state, &["revert", "e-01", "--output", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let doc = one_document(&out);
    assert_eq!(doc["kind"], "reverted", "{doc}");
    assert_eq!(doc["env"], "e-01", "{doc}");
    assert_eq!(doc["to"]["rollout"], 1, "{doc}");
    assert_eq!(doc["to"]["release"], "r1", "{doc}");
    assert_eq!(doc["rollout"], 2, "{doc}");
    assert_eq!(doc["exit"], 0, "{doc}");
    let kinds = kinds_of(&doc["events"]);
    assert_eq!(
        kinds.first().map(String::as_str),
        Some("rollout_started"),
        "{doc}"
    );
    assert_eq!(
        kinds.last().map(String::as_str),
        Some("rollout_completed"),
        "{doc}"
    );
    assert_eq!(live_api(&state, "e-01"), before, "reverted");

    run(
        &repo,
        &state,
        &["sim", "tamper", "e-01", "api", "replicas=5"],
    );
    let out = run(&repo, &state, &["adopt", "e-01", "--output", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let doc = one_document(&out);
    assert_eq!(doc["kind"], "adopted", "{doc}");
    assert_eq!(doc["file"], "emergency/e-01.toml", "{doc}");
    assert_eq!(
        doc["commit"].as_str(),
        Some(git_out(&repo, &["rev-parse", "HEAD"]).trim()),
        "{doc}"
    );
    assert!(
        doc["keys"].to_string().contains("replicas"),
        "the adopted keys: {doc}"
    );
    assert_eq!(
        doc["told"],
        serde_json::Value::Null,
        "no rollout to tell: {doc}"
    );
    assert_eq!(doc["exit"], 0, "{doc}");

    // Nothing left to adopt: the refusal is one document too.
    let out = run(&repo, &state, &["adopt", "e-01", "--output", "json"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let doc = one_document(&out);
    assert_eq!(doc["kind"], "error", "{doc}");
    assert_eq!(doc["exit"], 2, "{doc}");
    assert!(
        doc["message"].as_str().unwrap().contains("no drift"),
        "{doc}"
    );
}

/// Release r2 (api 2.0) committed and its rollout started: it stops at the canary's gate.
fn r2_waiting_at_the_canary(repo: &Path, state: &Path) {
    std::fs::write(
        repo.join("releases/r2.toml"),
        "[services]\nschema = \"1\"\napi = \"2.0\"\nweb = \"1.0\"\n",
    )
    .unwrap();
    commit_all(repo, "r2");
    let gate = run(repo, state, &["rollout", "r2"]);
    assert_eq!(gate.status.code(), Some(3), "{}", text(&gate));
}

/// Release r2 (api 2.0) committed, its rollout stopped at the canary gate, and e-01
/// changed out of band before the rollout reaches it: what the held-environment tests
/// start from.
fn held_midway(dir: &Path) -> (PathBuf, PathBuf) {
    let (repo, state) = rolled_out(dir, 3, "");
    r2_waiting_at_the_canary(&repo, &state);
    let tamper = run(
        &repo,
        &state,
        &["sim", "tamper", "e-01", "api", "replicas=9"],
    );
    assert_eq!(tamper.status.code(), Some(0), "{}", text(&tamper));
    (repo, state)
}

/// `flotilla rollout ARGS --wait --output json` run in the background, its events read
/// line by line as they come; a watchdog kills it after a minute.
struct Streamed {
    child: std::process::Child,
    lines: std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
    _watchdog: Watchdog,
}

impl Streamed {
    fn start(repo: &Path, state: &Path, args: &[&str]) -> Streamed {
        use std::io::BufRead;
        let mut child = cmd(repo, state, "ops")
            .arg("rollout")
            .args(args)
            .args(["--wait", "--output", "json"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let watchdog = Watchdog::new(&child);
        let lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        Streamed {
            child,
            lines,
            _watchdog: watchdog,
        }
    }

    /// Reads up to the first line `done` accepts (the end of the output otherwise) and
    /// returns the lines read, that one included.
    fn until(&mut self, done: impl Fn(&str) -> bool) -> Vec<String> {
        let mut seen = Vec::new();
        for line in self.lines.by_ref() {
            let line = line.unwrap();
            let last = done(&line);
            seen.push(line);
            if last {
                break;
            }
        }
        seen
    }

    /// Reads the rest, waits for the rollout to end and says how it ended.
    fn finish(mut self) -> (Option<i32>, Vec<String>) {
        let rest = self.until(|_| false);
        (self.child.wait().unwrap().code(), rest)
    }
}

/// Kills a child that outlives a minute, so a test reading its output ends even when the
/// child hangs (the read then sees the end of the output and the test fails).
struct Watchdog(std::sync::mpsc::Sender<()>);

impl Watchdog {
    fn new(child: &std::process::Child) -> Watchdog {
        let pid = child.id().to_string();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            if rx.recv_timeout(std::time::Duration::from_secs(60)).is_err() {
                let _ = std::process::Command::new("kill")
                    .args(["-9", &pid])
                    .status();
            }
        });
        Watchdog(tx)
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

/// The kinds of rollout `rollout`'s journal rows, in order.
fn rollout_kinds(state: &Path, rollout: i64) -> Vec<String> {
    let db = rusqlite::Connection::open(state).unwrap();
    let mut stmt = db
        .prepare("SELECT kind FROM journal_events WHERE rollout = ?1 ORDER BY seq, idx")
        .unwrap();
    stmt.query_map([rollout], |r| r.get::<_, String>(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn a_rollout_holds_an_environment_that_drifted_and_adopt_releases_it_with_the_fix_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, state) = held_midway(dir.path());
    let before = live_api(&state, "e-01");

    // The resumed rollout reaches e-01, finds it changed and applies nothing there; the
    // rest of the wave goes on, and headless it ends with exit 3 naming what releases it.
    let held = run(&repo, &state, &["rollout", "r2", "--approve", "canary"]);
    assert_eq!(held.status.code(), Some(3), "{}", text(&held));
    let said = text(&held);
    assert!(said.contains("e-01 HELD"), "{said}");
    assert!(said.contains("held: e-01 changed out of band"), "{said}");
    assert!(
        said.contains("flotilla adopt e-01")
            && said.contains("flotilla revert e-01")
            && said.contains("flotilla drift accept e-01"),
        "{said}"
    );
    assert_eq!(live_api(&state, "e-01"), before, "not overwritten");
    assert_eq!(live_api(&state, "e-02").0, "2.0", "the others went on");
    let kinds = rollout_kinds(&state, 2);
    assert!(
        kinds.contains(&"drift_detected".to_string()) && kinds.contains(&"env_held".to_string()),
        "{kinds:?}"
    );
    let status = run(&repo, &state, &["status"]);
    assert!(text(&status).contains("held"), "{}", text(&status));

    // Adopt commits the live value and tells the rollout, which then rolls e-01 out with it.
    let adopt = run(&repo, &state, &["adopt", "e-01"]);
    assert_eq!(adopt.status.code(), Some(0), "{}", text(&adopt));
    assert!(
        text(&adopt).contains("has yet to finish e-01"),
        "{}",
        text(&adopt)
    );
    let done = run(&repo, &state, &["rollout", "r2"]);
    assert_eq!(done.status.code(), Some(0), "{}", text(&done));
    assert!(text(&done).contains("e-01 released"), "{}", text(&done));
    let (version, config) = live_api(&state, "e-01");
    assert_eq!(version, "2.0", "the release arrived");
    assert!(
        config.contains("\"replicas\":9"),
        "the fix stayed: {config}"
    );
    let drift = run(&repo, &state, &["drift"]);
    assert_eq!(drift.status.code(), Some(0), "{}", text(&drift));
}

#[test]
fn revert_of_a_held_environment_lets_a_waiting_rollout_apply_over_the_change() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, state) = held_midway(dir.path());
    let mut rollout = Streamed::start(&repo, &state, &["r2", "--approve", "canary"]);
    let seen = rollout.until(|l| l.contains("\"rollout_held\""));
    assert!(
        seen.iter().any(|l| l.contains("\"env_held\"")),
        "held before waiting: {seen:?}"
    );
    // The engine waits; the revert tells it, and it applies r2 over the change. In JSON:
    // one document saying the rollout was told, with the engine's answer.
    let revert = run(&repo, &state, &["revert", "e-01", "--output", "json"]);
    assert_eq!(revert.status.code(), Some(0), "{}", text(&revert));
    let doc = one_document(&revert);
    assert_eq!(doc["kind"], "reverted", "{doc}");
    assert_eq!(doc["told"]["command"], "release", "{doc}");
    assert_eq!(doc["told"]["env"], "e-01", "{doc}");
    assert_eq!(doc["told"]["result"], "answered", "{doc}");
    assert!(
        kinds_of(&doc["told"]["answer"]).contains(&"env_released".to_string()),
        "the engine answered: {doc}"
    );
    assert!(
        text(&revert).contains("has yet to finish e-01"),
        "said for people on stderr: {}",
        text(&revert)
    );
    let (code, rest) = rollout.finish();
    assert_eq!(code, Some(0), "{rest:?}");
    assert!(rest.iter().any(|l| l.contains("\"rollout_completed\"")));
    let (version, config) = live_api(&state, "e-01");
    assert_eq!(version, "2.0");
    assert!(
        config.contains("\"replicas\":3"),
        "the change is gone: {config}"
    );
}

#[test]
fn accepting_a_held_environments_drift_releases_it() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, state) = held_midway(dir.path());
    let held = run(&repo, &state, &["rollout", "r2", "--approve", "canary"]);
    assert_eq!(held.status.code(), Some(3), "{}", text(&held));
    // Run again undecided: held again, and the drift is not journaled twice.
    let again = run(&repo, &state, &["rollout", "r2"]);
    assert_eq!(again.status.code(), Some(3), "{}", text(&again));
    assert!(text(&again).contains("e-01 HELD"), "{}", text(&again));
    let detected = drift_events(&state)
        .iter()
        .filter(|e| e["kind"] == "drift_detected")
        .count();
    assert_eq!(detected, 1);
    let accept = run(
        &repo,
        &state,
        &[
            "drift",
            "accept",
            "e-01",
            "--for",
            "1h",
            "--reason",
            "load test",
        ],
    );
    assert_eq!(accept.status.code(), Some(0), "{}", text(&accept));
    assert!(
        text(&accept).contains("queued for rollout"),
        "{}",
        text(&accept)
    );
    let done = run(&repo, &state, &["rollout", "r2"]);
    assert_eq!(done.status.code(), Some(0), "{}", text(&done));
    assert_eq!(live_api(&state, "e-01").0, "2.0");
}

#[test]
fn the_demo_starts_with_two_drifted_environments_the_rollout_holds_until_decided() {
    let home = tempfile::tempdir().unwrap();
    let data = home.path().join("data");
    let flotilla = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_flotilla"))
            .args(args)
            .env("HOME", home.path())
            .env("XDG_DATA_HOME", &data)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    };
    // Without a terminal the demo runs headless: everything else rolls out, the two
    // environments changed by hand are held, and it says how to decide.
    let demo = flotilla(&["demo", "--envs", "3"]);
    let said = text(&demo);
    assert_eq!(demo.status.code(), Some(3), "{said}");
    assert!(said.contains("changed by hand since"), "{said}");
    assert!(said.contains("held: "), "{said}");
    assert!(
        said.contains("Next: decide on the held environments"),
        "{said}"
    );
    let repo = data.join("flotilla/demo");
    let state = data.join("flotilla/demo-state.db");
    let dir = |args: &[&str]| {
        let mut all = vec![
            "--repo",
            repo.to_str().unwrap(),
            "--state",
            state.to_str().unwrap(),
        ];
        all.extend_from_slice(args);
        flotilla(&all)
    };
    let drift = dir(&["drift", "--output", "json"]);
    assert_eq!(drift.status.code(), Some(1), "{}", text(&drift));
    let doc: serde_json::Value = serde_json::from_slice(&drift.stdout).unwrap();
    let drifted: Vec<String> = doc["envs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["services"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["state"] == "drifted" || s["state"] == "conflict")
        })
        .map(|e| e["env"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(drifted.len(), 2, "{doc}");
    // One adopted, one accepted: the rollout then finishes everywhere.
    let adopt = dir(&["adopt", &drifted[0]]);
    assert_eq!(adopt.status.code(), Some(0), "{}", text(&adopt));
    let accept = dir(&[
        "drift",
        "accept",
        &drifted[1],
        "--for",
        "1h",
        "--reason",
        "demo",
    ]);
    assert_eq!(accept.status.code(), Some(0), "{}", text(&accept));
    let done = dir(&["rollout", "2026.11.2"]);
    assert_eq!(done.status.code(), Some(0), "{}", text(&done));
    let clean = dir(&["drift"]);
    assert_eq!(clean.status.code(), Some(0), "{}", text(&clean));
}

#[test]
fn a_decision_on_part_of_the_drift_releases_nothing_and_a_second_decision_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, state) = held_midway(dir.path());
    run(
        &repo,
        &state,
        &["sim", "tamper", "e-01", "web", "version=1.0-hand"],
    );
    let held = run(&repo, &state, &["rollout", "r2", "--approve", "canary"]);
    assert_eq!(held.status.code(), Some(3), "{}", text(&held));
    assert!(text(&held).contains("(api, web)"), "{}", text(&held));
    // Accepting the api's drift alone would let the rollout overwrite the web's.
    let part = run(
        &repo,
        &state,
        &[
            "drift",
            "accept",
            "e-01",
            "--service",
            "api",
            "--for",
            "1h",
            "--reason",
            "x",
        ],
    );
    assert_eq!(part.status.code(), Some(0), "{}", text(&part));
    assert!(text(&part).contains("stays held"), "{}", text(&part));
    let still = run(&repo, &state, &["rollout", "r2"]);
    assert_eq!(still.status.code(), Some(3), "{}", text(&still));
    // Adopting all of it releases it; a second decision queued after it is refused.
    let adopt = run(&repo, &state, &["adopt", "e-01"]);
    assert_eq!(adopt.status.code(), Some(0), "{}", text(&adopt));
    let again = run(
        &repo,
        &state,
        &["drift", "accept", "e-01", "--for", "1h", "--reason", "y"],
    );
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    let done = run(&repo, &state, &["rollout", "r2"]);
    assert_eq!(done.status.code(), Some(0), "{}", text(&done));
    assert!(text(&done).contains("released already"), "{}", text(&done));
    let (_, config) = live_api(&state, "e-01");
    assert!(config.contains("\"replicas\":9"), "adopted: {config}");
    let db = rusqlite::Connection::open(&state).unwrap();
    let web: String = db
        .query_row(
            "SELECT version FROM sim_live WHERE env = 'e-01' AND service = 'web'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(web, "1.0-hand", "the adopted version stays");
}

#[test]
fn a_wave_whose_environments_are_all_held_stops_the_rollout_before_the_next_wave() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, state) = rolled_out(dir.path(), 3, "");
    r2_waiting_at_the_canary(&repo, &state);
    // The canary is changed by hand: held, it proves nothing, so the rest waits.
    run(
        &repo,
        &state,
        &["sim", "tamper", "e-00", "api", "replicas=5"],
    );
    let held = run(&repo, &state, &["rollout", "r2", "--approve", "canary"]);
    assert_eq!(held.status.code(), Some(3), "{}", text(&held));
    assert!(text(&held).contains("held: e-00"), "{}", text(&held));
    assert_eq!(
        live_api(&state, "e-01").0,
        "1.0",
        "the next wave did not start"
    );
    assert!(
        !text(&held).contains("wave rest: started"),
        "{}",
        text(&held)
    );
}

#[test]
fn an_environment_released_while_a_later_gate_waits_is_rolled_out_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    // Three waves: the canary, e-01 and e-02, then e-03 behind an approval gate.
    let strategy = strategy("", "0").replace(
        "[[strategy.wave]]\nname = \"rest\"",
        "[[strategy.wave]]\nname = \"mid\"\nselect = \"region in (r1, r2)\"\n[[strategy.wave]]\nname = \"rest\"\ngate = \"approval\"",
    );
    let mut f = Fixture::standard(4, &strategy);
    f.fleet = f
        .fleet
        .replace("latency = \"100ms..2s\"", "latency = \"0ms\"");
    f.load(&repo);
    let state = dir.path().join("state.db");
    let first = run(&repo, &state, &["rollout", "r1", "--approve-all"]);
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    r2_waiting_at_the_canary(&repo, &state);
    run(
        &repo,
        &state,
        &["sim", "tamper", "e-01", "api", "replicas=9"],
    );
    let mut rollout = Streamed::start(&repo, &state, &["r2", "--approve", "canary"]);
    let seen = rollout.until(|l| l.contains("\"gate_waiting\"") && l.contains("\"rest\""));
    assert!(seen.iter().any(|l| l.contains("\"env_held\"")), "{seen:?}");
    // Released while the rest's gate waits: e-01 is rolled out now, the gate still waits.
    let revert = run(&repo, &state, &["revert", "e-01"]);
    assert_eq!(revert.status.code(), Some(0), "{}", text(&revert));
    rollout.until(|l| {
        l.contains("\"step_succeeded\"") && l.contains("\"e-01\"") && l.contains("\"web\"")
    });
    assert_eq!(live_api(&state, "e-01").0, "2.0");
    assert_eq!(
        live_api(&state, "e-03").0,
        "1.0",
        "the gate still holds the rest"
    );
    let approve = run(&repo, &state, &["approve", "rest"]);
    assert_eq!(approve.status.code(), Some(0), "{}", text(&approve));
    let (code, rest) = rollout.finish();
    assert_eq!(code, Some(0), "{rest:?}");
    assert_eq!(live_api(&state, "e-03").0, "2.0");
}
