//! Durable state with the real binary: crashes, resume, steering from a second terminal, the
//! audit chain and one engine at a time.

mod common;

use std::io::{BufRead, BufReader, Lines};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Output, Stdio};

use common::*;

fn run(repo: &Path, state: &Path, user: &str, args: &[&str]) -> Output {
    cmd(repo, state, user).args(args).output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A rollout in the background with JSON events on a pipe.
struct Background {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    seen: Vec<String>,
}

impl Background {
    fn start(repo: &Path, state: &Path, args: &[&str]) -> Background {
        let mut child = cmd(repo, state, "runner")
            .args(args)
            .args(["--output", "json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Background {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Reads events until one matches `pred`; panics if the stream ends first.
    fn until(
        &mut self,
        what: &str,
        mut pred: impl FnMut(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        for line in self.lines.by_ref() {
            let line = line.unwrap();
            self.seen.push(line.clone());
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            if pred(&v) {
                return v;
            }
        }
        panic!("the rollout ended before {what}; saw {:?}", self.seen);
    }

    fn finish(mut self) -> (i32, Vec<String>) {
        let rest: Vec<String> = self.lines.map(|l| l.unwrap()).collect();
        self.seen.extend(rest);
        let status = self.child.wait().unwrap();
        (status.code().unwrap_or(-1), self.seen)
    }
}

fn kind_is(kind: &'static str) -> impl Fn(&serde_json::Value) -> bool {
    move |v| v["kind"] == kind
}

fn fixture(envs: usize, latency: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let mut f = Fixture::standard(envs, &strategy("", "0"));
    f.fleet = f.fleet.replace(
        "latency = \"100ms..2s\"",
        &format!("latency = \"{latency}\""),
    );
    f.load(&repo);
    (dir, repo)
}

/// (env, service, version, revision, apply calls) of the simulated fleet.
fn fleet(state: &Path) -> Vec<(String, String, String, String, i64)> {
    let db = rusqlite::Connection::open(state).unwrap();
    let mut stmt = db
        .prepare(
            "SELECT env, service, version, revision, calls FROM sim_live ORDER BY env, service",
        )
        .unwrap();
    stmt.query_map([], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

#[test]
fn a_rollout_killed_mid_wave_resumes_without_applying_anything_twice() {
    let (dir, repo) = fixture(24, "20ms..120ms");
    let reference = dir.path().join("reference.db");
    let out = run(
        &repo,
        &reference,
        "ops",
        &["rollout", "r1", "--approve-all"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    let state = dir.path().join("state.db");
    let mut bg = Background::start(&repo, &state, &["rollout", "r1", "--approve-all"]);
    let mut done_in_rest = 0;
    bg.until("ten steps of the second wave", |v| {
        if v["kind"] == "step_succeeded" && v["wave"] == "rest" {
            done_in_rest += 1;
        }
        done_in_rest >= 10
    });
    bg.child.kill().unwrap(); // SIGKILL: no chance to clean up
    bg.child.wait().unwrap();

    let status = run(&repo, &state, "ops", &["status"]);
    assert!(
        text(&status).contains("no engine running"),
        "{}",
        text(&status)
    );

    let out = run(&repo, &state, "ops", &["rollout", "r1", "--approve-all"]);
    let output = text(&out);
    assert_eq!(out.status.code(), Some(0), "{output}");
    assert!(output.contains("rollout of r1 resumed"), "{output}");

    let after = fleet(&state);
    assert!(after.iter().all(|s| s.4 == 1), "applied twice: {after:?}");
    let strip =
        |v: Vec<(String, String, String, String, i64)>| -> Vec<(String, String, String, String)> {
            v.into_iter()
                .map(|(e, s, ver, rev, _)| (e, s, ver, rev))
                .collect()
        };
    assert_eq!(
        strip(after),
        strip(fleet(&reference)),
        "same end state as an uninterrupted run"
    );
    let status = run(&repo, &state, "ops", &["status"]);
    assert!(
        text(&status).contains("state: completed"),
        "{}",
        text(&status)
    );
    let verify = run(&repo, &state, "ops", &["audit", "--verify"]);
    assert_eq!(verify.status.code(), Some(0), "{}", text(&verify));
}

#[test]
fn a_second_terminal_approves_a_gate_and_pauses_and_resumes_the_rollout() {
    let (dir, repo) = fixture(16, "50ms..150ms");
    let state = dir.path().join("state.db");
    let mut bg = Background::start(&repo, &state, &["rollout", "r1", "--wait"]);
    bg.until("the canary gate", kind_is("gate_waiting"));

    // One engine at a time: a second one is refused and names the holder.
    let second = run(&repo, &state, "mallory", &["rollout", "r1"]);
    assert_eq!(second.status.code(), Some(3), "{}", text(&second));
    assert!(
        text(&second).contains("another engine is running rollout 1: runner@"),
        "{}",
        text(&second)
    );

    let approve = run(
        &repo,
        &state,
        "alice",
        &["approve", "canary", "--note", "dashboards green"],
    );
    assert_eq!(approve.status.code(), Some(0), "{}", text(&approve));
    assert!(
        text(&approve).contains("approved by alice@"),
        "{}",
        text(&approve)
    );
    let approved = bg.until("the approval", kind_is("gate_approved"));
    assert_eq!(approved["note"], "dashboards green");

    bg.until("the second wave", |v| {
        v["kind"] == "wave_started" && v["wave"] == "rest"
    });
    let pause = run(&repo, &state, "bob", &["pause"]);
    assert_eq!(pause.status.code(), Some(0), "{}", text(&pause));
    assert!(text(&pause).contains("paused by bob@"), "{}", text(&pause));
    let status = run(&repo, &state, "bob", &["status"]);
    assert!(text(&status).contains("state: paused"), "{}", text(&status));

    let again = run(&repo, &state, "bob", &["pause"]);
    assert_eq!(
        again.status.code(),
        Some(2),
        "a refused command says so: {}",
        text(&again)
    );
    assert!(text(&again).contains("already paused"), "{}", text(&again));

    let resume = run(&repo, &state, "bob", &["resume"]);
    assert_eq!(resume.status.code(), Some(0), "{}", text(&resume));
    let (code, events) = bg.finish();
    assert_eq!(code, 0, "{events:?}");
    assert!(events.last().unwrap().contains("rollout_completed"));

    let audit = run(
        &repo,
        &state,
        "x",
        &["audit", "--actor", "alice", "--output", "json"],
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&audit.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<&str> = lines.iter().map(|l| l["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["command_received", "gate_approved"], "{lines:?}");
}

#[test]
fn audit_verify_names_the_row_that_was_edited() {
    let (dir, repo) = fixture(3, "0ms");
    let state = dir.path().join("state.db");
    let out = run(&repo, &state, "ops", &["rollout", "r1", "--approve-all"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let ok = run(&repo, &state, "ops", &["audit", "--verify"]);
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok));

    // Rewrite who approved the canary, as someone covering their tracks would.
    let db = rusqlite::Connection::open(&state).unwrap();
    let row: i64 = db
        .query_row(
            "SELECT seq FROM journal WHERE body LIKE '%gate_approved%' ORDER BY seq LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let changed = db
        .execute(
            "UPDATE journal SET body = replace(body, 'ops@', 'someone-else@') WHERE seq = ?1",
            [row],
        )
        .unwrap();
    assert_eq!(changed, 1);
    let bad = run(&repo, &state, "ops", &["audit", "--verify"]);
    assert_eq!(bad.status.code(), Some(1), "{}", text(&bad));
    let expected = format!("journal broken at row {row}:");
    assert!(text(&bad).contains(&expected), "{}", text(&bad));
}

#[test]
fn rows_cut_off_the_journal_are_found_and_nothing_more_is_appended() {
    for cut in [1, 50, 100_000] {
        let (dir, repo) = fixture(6, "0ms");
        let state = dir.path().join("state.db");
        let out = run(&repo, &state, "ops", &["rollout", "r1", "--approve-all"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let head = run(&repo, &state, "ops", &["audit", "--export-head"]);
        let head = String::from_utf8_lossy(&head.stdout).trim().to_string();
        let verified = run(
            &repo,
            &state,
            "ops",
            &["audit", "--verify", "--expect-head", &head],
        );
        assert_eq!(verified.status.code(), Some(0), "{}", text(&verified));
        assert!(
            text(&verified).contains(&format!("head: {head}")),
            "{}",
            text(&verified)
        );

        let db = rusqlite::Connection::open(&state).unwrap();
        db.execute(
            "DELETE FROM journal WHERE seq > (SELECT max(seq) FROM journal) - ?1",
            [cut],
        )
        .unwrap();
        let bad = run(&repo, &state, "ops", &["audit", "--verify"]);
        assert_eq!(bad.status.code(), Some(1), "cut {cut}: {}", text(&bad));
        assert!(text(&bad).contains("missing"), "cut {cut}: {}", text(&bad));
        // The checkpoints gone too: the rollout that ran still has no rows, and the kept
        // head still tells.
        db.execute("DELETE FROM checkpoints", []).unwrap();
        let bad = run(
            &repo,
            &state,
            "ops",
            &["audit", "--verify", "--expect-head", &head],
        );
        assert_eq!(bad.status.code(), Some(1), "cut {cut}: {}", text(&bad));

        // Even so: the rollout recorded as completed no longer ends in its journal, or has
        // none left.
        let status = run(&repo, &state, "ops", &["status"]);
        assert!(text(&status).contains("deleted"), "{}", text(&status));
        db.execute(
            "INSERT INTO checkpoints (seq, hash, ts, reason) VALUES (?1, 'x', 't', 'kept')",
            [head.split(':').next().unwrap().parse::<i64>().unwrap()],
        )
        .unwrap();
        let status = run(&repo, &state, "ops", &["status"]);
        assert!(
            text(&status).contains("rows were deleted"),
            "{}",
            text(&status)
        );
        assert!(
            text(&status).contains("state: completed"),
            "{}",
            text(&status)
        );
        let next = run(&repo, &state, "ops", &["rollout", "r1", "--approve-all"]);
        assert_eq!(next.status.code(), Some(2), "{}", text(&next));
        assert!(
            text(&next).contains("nothing was appended"),
            "{}",
            text(&next)
        );
    }
}

#[test]
fn a_keyed_audit_chain_verifies_only_with_its_key_and_the_key_is_never_stored() {
    let (dir, repo) = fixture(4, "0ms");
    let state = dir.path().join("state.db");
    let key = "k3y-that-must-stay-secret-7f2c";
    let keyed = |args: &[&str]| {
        cmd(&repo, &state, "ops")
            .args(args)
            .env("FLOTILLA_AUDIT_KEY", key)
            .output()
            .unwrap()
    };
    let out = keyed(&["rollout", "r1", "--approve-all"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let ok = keyed(&["audit", "--verify"]);
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok));
    assert!(text(&ok).contains("keyed: HMAC-SHA256"), "{}", text(&ok));
    let no_key = run(&repo, &state, "ops", &["audit", "--verify"]);
    assert_eq!(no_key.status.code(), Some(1), "{}", text(&no_key));
    assert!(
        text(&no_key).contains("set FLOTILLA_AUDIT_KEY"),
        "{}",
        text(&no_key)
    );
    let wrong = cmd(&repo, &state, "ops")
        .args(["audit", "--verify"])
        .env("FLOTILLA_AUDIT_KEY", "guess")
        .output()
        .unwrap();
    assert_eq!(wrong.status.code(), Some(1), "{}", text(&wrong));
    // Writing without the key, or with another, would break the chain: refused.
    for env_key in [None, Some("guess")] {
        let mut c = cmd(&repo, &state, "ops");
        c.args(["rollout", "r1", "--approve-all"]);
        if let Some(k) = env_key {
            c.env("FLOTILLA_AUDIT_KEY", k);
        }
        let out = c.output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(text(&out).contains("FLOTILLA_AUDIT_KEY"), "{}", text(&out));
    }
    let still = keyed(&["audit", "--verify"]);
    assert_eq!(still.status.code(), Some(0), "{}", text(&still));
    let db = rusqlite::Connection::open(&state).unwrap();
    let rollouts: i64 = db
        .query_row("SELECT count(*) FROM rollouts", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rollouts, 1, "a refused rollout was recorded");
    drop(db);
    for out in [&out, &ok, &no_key, &wrong] {
        assert!(
            !text(out).contains(key),
            "the key was printed: {}",
            text(out)
        );
    }
    assert_not_stored(dir.path(), key);
}

#[test]
fn another_release_is_refused_while_one_is_unfinished_and_abort_is_the_way_out() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let mut f = Fixture::standard(3, &strategy("", "0"));
    f.fleet = f
        .fleet
        .replace("latency = \"100ms..2s\"", "latency = \"0ms\"");
    f.load(&repo);
    let state = dir.path().join("state.db");
    // Blocked at the canary gate: unfinished.
    assert_eq!(
        run(&repo, &state, "ops", &["rollout", "r1"]).status.code(),
        Some(3)
    );
    let other = run(&repo, &state, "ops", &["rollout", "r2"]);
    assert_eq!(other.status.code(), Some(3));
    assert!(
        text(&other).contains("rollout 1 of release r1"),
        "{}",
        text(&other)
    );
    assert!(text(&other).contains("flotilla abort"), "{}", text(&other));

    let abort = run(&repo, &state, "ops", &["abort"]);
    assert_eq!(abort.status.code(), Some(0), "{}", text(&abort));
    assert!(
        text(&abort).contains("aborted rollout 1"),
        "{}",
        text(&abort)
    );
    let status = run(&repo, &state, "ops", &["status"]);
    assert!(
        text(&status).contains("state: aborted"),
        "{}",
        text(&status)
    );
}

#[test]
fn an_approval_queued_while_no_engine_runs_counts_when_the_rollout_resumes() {
    let (dir, repo) = fixture(3, "0ms");
    let state = dir.path().join("state.db");
    assert_eq!(
        run(&repo, &state, "ops", &["rollout", "r1"]).status.code(),
        Some(3)
    );
    let approve = run(&repo, &state, "alice", &["approve", "canary"]);
    assert!(
        text(&approve).contains("no engine is running"),
        "{}",
        text(&approve)
    );
    let out = run(&repo, &state, "ops", &["rollout", "r1"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("approved by alice@"), "{}", text(&out));
}

#[test]
fn after_a_rollout_the_plan_estimates_risk_from_history() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let mut f = Fixture::standard(4, &strategy("", "0"));
    f.fleet = f
        .fleet
        .replace("latency = \"100ms..2s\"", "latency = \"0ms\"")
        .replace("success_rate = 1.0", "success_rate = 0.99");
    f.load(&repo);
    let state = dir.path().join("state.db");
    let risk_of = |out: &Output| -> (String, f64) {
        let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (
            plan["risk_basis"].as_str().unwrap().to_string(),
            plan["waves"][1]["risk"]["without_retries"]
                .as_f64()
                .unwrap(),
        )
    };
    let (basis, before) = risk_of(&run(
        &repo,
        &state,
        "ops",
        &["plan", "r1", "--output", "json"],
    ));
    // Before any history: the strategy's expected success rate, never the simulator's.
    assert!(
        basis.contains("expected_success_rate 0.99 per attempt"),
        "{basis}"
    );
    let out = run(&repo, &state, "ops", &["rollout", "r1", "--approve-all"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let (basis, after) = risk_of(&run(
        &repo,
        &state,
        "ops",
        &["plan", "r1", "--output", "json"],
    ));
    assert!(basis.contains("history of 12 past attempts"), "{basis}");
    // Clean attempts lower the estimate, but a short history is no proof of perfection.
    assert!(
        after < before && after > 0.0,
        "before {before}, after {after}"
    );
}

#[test]
fn commands_from_other_terminals_record_who_and_where_from() {
    let (dir, repo) = fixture(6, "50ms..150ms");
    let state = dir.path().join("state.db");
    let mut bg = Background::start(&repo, &state, &["rollout", "r1", "--wait"]);
    bg.until("the canary gate", kind_is("gate_waiting"));
    let approve = cmd(&repo, &state, "carol")
        .env("SSH_CONNECTION", "203.0.113.9 51234 10.0.0.2 22")
        .args(["approve", "canary"])
        .output()
        .unwrap();
    assert_eq!(approve.status.code(), Some(0), "{}", text(&approve));
    let (code, _) = bg.finish();
    assert_eq!(code, 0);
    let audit = run(
        &repo,
        &state,
        "x",
        &["audit", "--kind", "command_received", "--output", "json"],
    );
    let row: serde_json::Value = serde_json::from_str(
        String::from_utf8_lossy(&audit.stdout)
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert!(
        row["actor"].as_str().unwrap().starts_with("carol@"),
        "{row}"
    );
    assert_eq!(row["event"]["origin"], "ssh from 203.0.113.9");
    assert!(row["ts"].is_string());
}

#[test]
fn a_second_terminal_rolls_an_environment_back_and_the_rollout_waits_for_a_decision() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let mut f = Fixture::standard(6, &strategy("", "0")).with_earlier_release();
    f.fleet = f
        .fleet
        .replace("latency = \"100ms..2s\"", "latency = \"50ms..150ms\"");
    f.load(&repo);
    let state = dir.path().join("state.db");
    let mut bg = Background::start(
        &repo,
        &state,
        &["rollout", "r1", "--wait", "--approve", "canary"],
    );
    bg.until("the canary done", |v| {
        v["kind"] == "wave_completed" && v["wave"] == "canary"
    });

    let refused = run(&repo, &state, "carol", &["rollback", "--wave", "nope"]);
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    assert!(
        text(&refused).contains("no wave `nope`"),
        "{}",
        text(&refused)
    );

    let rollback = run(&repo, &state, "carol", &["rollback", "e-00"]);
    assert_eq!(rollback.status.code(), Some(0), "{}", text(&rollback));
    assert!(
        text(&rollback).contains("rolling back e-00 to r0 (web, api, schema) asked by carol@"),
        "{}",
        text(&rollback)
    );
    // Everything the command did is said, the pause that follows too.
    assert!(
        text(&rollback).contains("paused by carol@"),
        "{}",
        text(&rollback)
    );
    bg.until("the rollback", kind_is("env_rolled_back"));
    let status = run(&repo, &state, "carol", &["status"]);
    assert!(text(&status).contains("state: paused"), "{}", text(&status));
    assert!(
        text(&status).contains("rolled back e-00 to r0 (asked by carol@"),
        "{}",
        text(&status)
    );
    let e00: Vec<(String, String)> = fleet(&state)
        .into_iter()
        .filter(|s| s.0 == "e-00")
        .map(|s| (s.1, s.2))
        .collect();
    assert_eq!(
        e00,
        [
            ("api".to_string(), "0.9".to_string()),
            ("schema".to_string(), "0".to_string()),
            ("web".to_string(), "0.9".to_string())
        ]
    );

    let resume = run(&repo, &state, "carol", &["resume"]);
    assert_eq!(resume.status.code(), Some(0), "{}", text(&resume));
    // Completed, but the release is not everywhere: a script can tell.
    let (code, events) = bg.finish();
    assert_eq!(code, 1, "{events:?}");
    let last: serde_json::Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(last["kind"], "rollout_completed");
    assert_eq!(last["rolled_back"], 1);
    assert_eq!(last["succeeded"], 5);
}

#[test]
fn rollback_after_the_rollout_finished_says_how_to_put_the_fleet_back() {
    let (dir, repo) = fixture(3, "0ms");
    let state = dir.path().join("state.db");
    let out = run(&repo, &state, "ops", &["rollout", "r1", "--approve-all"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let rollback = run(&repo, &state, "ops", &["rollback", "e-00"]);
    assert_eq!(rollback.status.code(), Some(2), "{}", text(&rollback));
    assert!(
        text(&rollback).contains("roll the earlier release out: `flotilla rollout RELEASE`"),
        "{}",
        text(&rollback)
    );
}

#[test]
fn a_second_engine_is_refused_in_json_when_json_is_asked_for() {
    let (dir, repo) = fixture(4, "0ms");
    let state = dir.path().join("state.db");
    let mut bg = Background::start(&repo, &state, &["rollout", "r1", "--wait"]);
    bg.until("the canary gate", kind_is("gate_waiting"));
    let second = run(
        &repo,
        &state,
        "mallory",
        &["rollout", "r1", "--output", "json"],
    );
    assert_eq!(second.status.code(), Some(3), "{}", text(&second));
    let stdout = String::from_utf8_lossy(&second.stdout);
    let last: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap())
        .unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"));
    assert_eq!(last["kind"], "refused", "{last}");
    assert_eq!(last["exit"], 3, "{last}");
    assert!(
        last["message"]
            .as_str()
            .unwrap()
            .contains("another engine is running rollout 1"),
        "{last}"
    );
    let abort = run(&repo, &state, "ops", &["abort"]);
    assert_eq!(abort.status.code(), Some(0), "{}", text(&abort));
    bg.finish();
}

#[test]
fn an_engine_that_loses_its_lease_says_who_took_it_and_when() {
    let (dir, repo) = fixture(4, "0ms");
    let state = dir.path().join("state.db");
    let mut child = cmd(&repo, &state, "runner")
        .args(["rollout", "r1", "--wait", "--output", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for line in lines.by_ref() {
        if line.unwrap().contains("\"kind\":\"gate_waiting\"") {
            break;
        }
    }
    // Someone else's engine takes the lease (as a takeover after missed heartbeats does).
    let db = rusqlite::Connection::open(&state).unwrap();
    let taken = db
        .execute(
            "UPDATE lease SET user = 'mallory', host = 'elsewhere', pid = 1, acquired = 1796000000000",
            [],
        )
        .unwrap();
    assert_eq!(taken, 1);
    drop(db);
    // The engine notices at its next heartbeat and stops; draining stdout lets it end.
    let _rest: Vec<_> = lines.collect();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(
            "lost its lease: mallory@elsewhere (pid 1) took it over at 2026-11-30T00:53:20Z"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("out of space"), "{stderr}");
}

/// The kinds of a steering document's answer.
fn answered(doc: &serde_json::Value) -> Vec<String> {
    kinds_of(&doc["answer"])
}

fn json(repo: &Path, state: &Path, user: &str, args: &[&str]) -> (Output, serde_json::Value) {
    let out = cmd(repo, state, user)
        .args(args)
        .args(["--output", "json"])
        .output()
        .unwrap();
    let doc = one_document(&out);
    (out, doc)
}

#[test]
fn each_steering_command_answers_a_running_engine_in_one_json_document() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let strategy =
        strategy("", "0").replace("select = \"*\"\n", "select = \"*\"\ngate = \"approval\"\n");
    let mut f = Fixture::standard(5, &strategy).with_earlier_release();
    f.fleet = f
        .fleet
        .replace("latency = \"100ms..2s\"", "latency = \"0ms\"");
    f.load(&repo);
    let state = dir.path().join("state.db");
    let mut bg = Background::start(&repo, &state, &["rollout", "r1", "--wait"]);
    bg.until("the canary gate", kind_is("gate_waiting"));

    let (_, doc) = json(
        &repo,
        &state,
        "alice",
        &["approve", "canary", "--note", "dashboards green"],
    );
    assert_eq!(doc["kind"], "steered", "{doc}");
    assert_eq!(doc["command"], "approve", "{doc}");
    assert_eq!(doc["wave"], "canary", "{doc}");
    assert_eq!(doc["note"], "dashboards green", "{doc}");
    assert_eq!(doc["rollout"], 1, "{doc}");
    assert_eq!(doc["release"], "r1", "{doc}");
    assert_eq!(doc["result"], "answered", "{doc}");
    assert!(
        doc["engine"].as_str().unwrap().starts_with("runner@"),
        "{doc}"
    );
    assert!(answered(&doc).contains(&"gate_approved".into()), "{doc}");
    assert_eq!(
        doc["answer"][0]["by"]
            .as_str()
            .map(|b| b.starts_with("alice@")),
        Some(true),
        "{doc}"
    );

    bg.until("the second gate", |v| {
        v["kind"] == "gate_waiting" && v["wave"] == "rest"
    });
    let (_, doc) = json(
        &repo,
        &state,
        "bob",
        &["skip", "e-04", "--reason", "customer offboarding"],
    );
    assert_eq!(
        (&doc["command"], &doc["env"], &doc["result"]),
        (&"skip".into(), &"e-04".into(), &"answered".into()),
        "{doc}"
    );
    assert_eq!(answered(&doc), ["env_skipped"], "{doc}");

    let (_, doc) = json(&repo, &state, "carol", &["rollback", "e-00"]);
    assert_eq!(doc["command"], "rollback", "{doc}");
    assert_eq!(doc["envs"], serde_json::json!(["e-00"]), "{doc}");
    let kinds = answered(&doc);
    assert!(kinds.iter().any(|k| k.starts_with("rollback_")), "{doc}");
    assert!(kinds.contains(&"rollout_paused".into()), "{doc}");

    // Refused by the engine: exit 2, and the document says why.
    let (out, doc) = json(&repo, &state, "bob", &["pause"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert_eq!(doc["result"], "rejected", "{doc}");
    assert_eq!(answered(&doc), ["command_rejected"], "{doc}");
    assert!(doc.to_string().contains("already paused"), "{doc}");

    let (_, doc) = json(&repo, &state, "bob", &["resume"]);
    assert_eq!(
        (&doc["command"], &doc["result"]),
        (&"resume".into(), &"answered".into()),
        "{doc}"
    );
    assert!(answered(&doc).contains(&"rollout_resumed".into()), "{doc}");

    let (_, doc) = json(&repo, &state, "ops", &["abort"]);
    assert_eq!(
        (&doc["command"], &doc["result"]),
        (&"abort".into(), &"answered".into()),
        "{doc}"
    );
    assert!(answered(&doc).contains(&"rollout_aborted".into()), "{doc}");
    let (code, events) = bg.finish();
    assert_eq!(code, 1, "aborted: {events:?}");
}

#[test]
fn steering_without_an_engine_queues_aborts_or_resumes_here_in_one_json_document() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let mut f = Fixture::standard(4, &strategy("", "0")).broken_at(&[2]);
    f.fleet = f
        .fleet
        .replace("latency = \"100ms..2s\"", "latency = \"0ms\"");
    f.load(&repo);
    let state = dir.path().join("state.db");
    let halted = run(&repo, &state, "ops", &["rollout", "r1", "--approve-all"]);
    assert_eq!(halted.status.code(), Some(1), "{}", text(&halted));

    // A name the rollout does not know: refused before anything is queued.
    let (out, doc) = json(&repo, &state, "ops", &["retry", "e-9"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert_eq!(doc["kind"], "error", "{doc}");
    assert!(
        doc["message"]
            .as_str()
            .unwrap()
            .contains("no environment `e-9`"),
        "{doc}"
    );

    let (_, doc) = json(&repo, &state, "ops", &["retry", "e-02"]);
    assert_eq!(doc["command"], "retry", "{doc}");
    assert_eq!(doc["result"], "queued", "{doc}");
    assert_eq!(doc["engine"], serde_json::Value::Null, "{doc}");
    assert_eq!(answered(&doc), Vec::<String>::new(), "{doc}");

    // Resumed here: the rollout runs in this process, and its notable events are the
    // answer (e-02 is still broken: it fails again, within nothing, and halts).
    let (out, doc) = json(&repo, &state, "ops", &["resume"]);
    assert_eq!(doc["result"], "resumed_here", "{doc}");
    let kinds = answered(&doc);
    assert_eq!(
        kinds.first().map(String::as_str),
        Some("rollout_started"),
        "{doc}"
    );
    assert!(
        kinds
            .iter()
            .any(|k| k == "rollout_completed" || k == "rollout_halted"),
        "{doc}"
    );
    assert_ne!(
        out.status.code(),
        Some(0),
        "e-02 does not run r1: {}",
        text(&out)
    );

    // Blocked at the gate, then aborted with no engine: done here, and said so.
    let dir2 = tempfile::tempdir().unwrap();
    let repo2 = dir2.path().join("repo");
    Fixture::standard(2, &strategy("", "0")).load(&repo2);
    let state2 = dir2.path().join("state.db");
    let blocked = run(&repo2, &state2, "ops", &["rollout", "r1"]);
    assert_eq!(blocked.status.code(), Some(3), "{}", text(&blocked));
    let (_, doc) = json(&repo2, &state2, "alice", &["approve", "canary"]);
    assert_eq!(doc["result"], "queued", "{doc}");
    let (_, doc) = json(&repo2, &state2, "ops", &["abort"]);
    assert_eq!(doc["result"], "aborted", "{doc}");
    assert_eq!(answered(&doc), ["rollout_aborted"], "{doc}");
    let status = run(&repo2, &state2, "ops", &["status"]);
    assert!(
        text(&status).contains("state: aborted"),
        "{}",
        text(&status)
    );
}
