//! Crash safety with the real binary: `kill -9` at seeded random moments of a forward
//! rollout, of rollbacks queued against a halted rollout, and of a resume; then the journal
//! and the simulated fleet must show no step lost, none applied twice, and no forward-only
//! service moved after a rollback was asked for.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use common::*;
use rand::{Rng, SeedableRng};

/// Runs `args` to its end; one that has not ended within two minutes hung, and fails the
/// test instead of hanging it.
fn run(repo: &Path, state: &Path, args: &[&str]) -> Output {
    let child = cmd(repo, state, "ops")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if done_rx.recv_timeout(Duration::from_secs(120)).is_err() {
            // SAFETY: kill(2) on a child's pid; at worst it is gone already.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            return true;
        }
        false
    });
    let out = child.wait_with_output().unwrap();
    let _ = done_tx.send(());
    let hung = watchdog.join().unwrap();
    assert!(!hung, "`flotilla {}` hung: {}", args.join(" "), text(&out));
    out
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Twelve environments, schema (forward-only) <- api <- web, release r0 then r1; r1 is
/// broken in `broken` (its api crashes there), which halts the `rest` wave (budget 0).
fn fleet_repo(dir: &Path, broken: &[usize]) -> PathBuf {
    let repo = dir.join("repo");
    let mut f = Fixture::standard(12, &strategy("", "0")).with_earlier_release();
    f.fleet = f
        .fleet
        .replace("latency = \"100ms..2s\"", "latency = \"10ms..60ms\"")
        .replace(
            "name = \"schema\"\n",
            "name = \"schema\"\nrollback = \"forward-only\"\n",
        );
    if !broken.is_empty() {
        f = f.broken_at(broken);
        f.release = f
            .release
            .replace("[sim]\n", "[sim]\nbroken_services = [\"api\"]\n");
    }
    f.load(&repo);
    repo
}

/// Per (env, service): (version, revision, applies that changed it, apply calls).
type Fleet = BTreeMap<(String, String), (String, String, i64, i64)>;

fn sim(state: &Path) -> Fleet {
    let db = rusqlite::Connection::open(state).unwrap();
    let mut stmt = db
        .prepare("SELECT env, service, version, revision, applies, calls FROM sim_live")
        .unwrap();
    stmt.query_map([], |r| {
        Ok((
            (r.get(0)?, r.get(1)?),
            (r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?),
        ))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

/// Every journaled event, oldest first, with its rollout.
fn journal(state: &Path) -> Vec<(i64, serde_json::Value)> {
    if !state.exists() {
        return Vec::new();
    }
    let db = rusqlite::Connection::open(state).unwrap();
    // Killed before the schema was made: nothing journaled yet.
    let Ok(mut stmt) = db.prepare("SELECT rollout, event FROM journal_events ORDER BY seq, idx")
    else {
        return Vec::new();
    };
    stmt.query_map([], |r| {
        let rollout: Option<i64> = r.get(0)?;
        let event: String = r.get(1)?;
        Ok((rollout.unwrap_or(0), serde_json::from_str(&event).unwrap()))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

/// Starts `args` and kills it (SIGKILL) after a seeded random delay of up to `within`.
/// Returns whether it was still running when killed.
fn kill_at_random(
    repo: &Path,
    state: &Path,
    args: &[&str],
    rng: &mut rand::rngs::StdRng,
    within: Duration,
) -> bool {
    let mut child = cmd(repo, state, "ops")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Choosing the moment to kill, not waiting for something to happen.
    let delay = rng.random_range(Duration::ZERO..within);
    std::thread::sleep(delay);
    let killed = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    child.wait().unwrap();
    killed
}

/// What every crash test checks once the rollout has finished.
/// `queued` is where the journal ended when the set-up had queued its rollbacks: from there
/// on, every environment they roll back counts as asked for, even before the journal says
/// so (a lost request never does).
fn assert_crash_safe(repo: &Path, state: &Path, reference: &Path, queued: usize, what: &str) {
    let fleet = sim(state);
    // None applied twice: every apply that reached the fleet changed what it runs.
    for ((env, service), (_, _, applies, calls)) in &fleet {
        assert_eq!(
            applies, calls,
            "{what}: {service} in {env} was applied {calls} times for {applies} changes"
        );
    }
    // None lost: the fleet ends as an uninterrupted run leaves it.
    let strip = |f: Fleet| -> BTreeMap<(String, String), (String, String)> {
        f.into_iter().map(|(k, (v, r, _, _))| (k, (v, r))).collect()
    };
    assert_eq!(
        strip(fleet),
        strip(sim(reference)),
        "{what}: the fleet ends differently from an uninterrupted run"
    );
    // No forward-only service moves in an environment once its rollback was asked for, and
    // no rollback step is done twice.
    let events = journal(state);
    let asked: std::collections::BTreeSet<(i64, String)> = events
        .iter()
        .filter(|(_, e)| e["kind"] == "env_rolled_back")
        .map(|(r, e)| (*r, e["env"].as_str().unwrap_or_default().to_string()))
        .collect();
    let mut asked_later = std::collections::BTreeSet::new();
    let mut rolled: BTreeMap<(i64, String, String), usize> = BTreeMap::new();
    for (i, (rollout, e)) in events.iter().enumerate() {
        let env = e["env"].as_str().unwrap_or_default().to_string();
        // Before the queueing, only what the journal says was asked for counts.
        let asked = if i >= queued { &asked } else { &asked_later };
        match e["kind"].as_str().unwrap_or_default() {
            "rollback_requested" | "rollback_started" => {
                asked_later.insert((*rollout, env));
            }
            "step_started" if e["service"] == "schema" => assert!(
                !asked.contains(&(*rollout, env.clone())),
                "{what}: schema (forward-only) started in {env} after its rollback was asked for"
            ),
            "step_rolled_back" => {
                let key = (*rollout, env, e["service"].as_str().unwrap().to_string());
                *rolled.entry(key).or_default() += 1;
            }
            _ => {}
        }
    }
    let twice: Vec<_> = rolled.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "{what}: rolled back twice: {twice:?}");
    let verify = run(repo, state, &["audit", "--verify"]);
    assert_eq!(verify.status.code(), Some(0), "{what}: {}", text(&verify));
}

/// The rollout of r0, then r1 halting on its broken environment.
fn halted_on_r1(repo: &Path, state: &Path) {
    let out = run(repo, state, &["rollout", "r0", "--approve-all"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = run(repo, state, &["rollout", "r1", "--approve-all"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("halted"), "{}", text(&out));
}

fn queue_rollbacks(repo: &Path, state: &Path) {
    for args in [&["rollback", "--wave", "rest"][..], &["rollback", "e-00"]] {
        let out = run(repo, state, args);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        assert!(text(&out).contains("queued"), "{}", text(&out));
    }
}

/// Whether the newest rollout's journal says it completed.
fn finished(state: &Path) -> bool {
    let events = journal(state);
    let newest = events.iter().map(|(r, _)| *r).max().unwrap_or(0);
    events
        .iter()
        .any(|(r, e)| *r == newest && e["kind"] == "rollout_completed")
}

/// Copies a state database (closed: its WAL checkpointed) to `to`.
fn copy_state(from: &Path, to: &Path) {
    if from.exists() {
        std::fs::copy(from, to).unwrap();
    }
    for ext in ["-wal", "-shm"] {
        let side = PathBuf::from(format!("{}{ext}", from.display()));
        if side.exists() {
            std::fs::copy(&side, format!("{}{ext}", to.display())).unwrap();
        }
    }
}

/// Rounds on fresh state databases (made by `setup`): in each, runs of `args` (in turn) are
/// killed at seeded random moments until the rollout finishes or `per_round` kills, then
/// `finish` runs it to the end, and `check` compares what is left with a copy of the same
/// set-up that `finish` ran without a kill. Stops once `kills` kills have been made in all.
fn crash_rounds(
    dir: &Path,
    seed: u64,
    kills: usize,
    setup: impl Fn(&Path),
    args: &[&[&str]],
    finish: &[&str],
    check: impl Fn(&Path, &Path, usize, &str),
) {
    let per_round = 12;
    let mut made = 0;
    for round in 0.. {
        if made >= kills {
            break;
        }
        let state = dir.join(format!("round-{round}.db"));
        setup(&state);
        let queued = journal(&state).len();
        // What was set up can differ between rounds (which environments a halt caught in
        // flight), so each round has its own uninterrupted reference.
        let reference = dir.join(format!("reference-{round}.db"));
        copy_state(&state, &reference);
        let out = run(&state_repo(dir), &reference, finish);
        assert!(finished(&reference), "reference: {}", text(&out));
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed * 1000 + round);
        let mut in_round = 0;
        // Bounded: a run that ends by itself without finishing counts as a turn too.
        for turn in 0..per_round * 2 {
            if finished(&state) || in_round >= per_round || made >= kills {
                break;
            }
            let args = args[turn % args.len()];
            if kill_at_random(&state_repo(dir), &state, args, &mut rng, KILL_WITHIN) {
                in_round += 1;
                made += 1;
            }
        }
        let what = format!("seed {seed}, round {round}, {in_round} kills");
        if !finished(&state) {
            let out = run(&state_repo(dir), &state, finish);
            assert!(finished(&state), "{what}: did not finish: {}", text(&out));
        }
        check(&state, &reference, queued, &what);
    }
}

/// The moments to kill at are drawn from the first this-long of a run: a rollout of the
/// fixture takes about as long.
const KILL_WITHIN: Duration = Duration::from_millis(350);

fn state_repo(dir: &Path) -> PathBuf {
    dir.join("repo")
}

#[test]
fn a_forward_rollout_killed_at_random_moments_loses_nothing_and_applies_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let repo = fleet_repo(dir.path(), &[]);
    let args = ["rollout", "r1", "--approve-all"];
    crash_rounds(
        dir.path(),
        1,
        40,
        |_| {},
        &[&args],
        &args,
        |state, reference, queued, what| {
            assert_crash_safe(&repo, state, reference, queued, &format!("forward, {what}"))
        },
    );
}

#[test]
fn rollbacks_queued_against_a_halted_rollout_survive_kills_at_random_moments() {
    let dir = tempfile::tempdir().unwrap();
    let repo = fleet_repo(dir.path(), &[3]);
    // As in the report: the rollout is run again, or resumed, and killed each time.
    crash_rounds(
        dir.path(),
        2,
        35,
        |state| {
            halted_on_r1(&repo, state);
            queue_rollbacks(&repo, state);
        },
        &[&["rollout", "r1"], &["resume"]],
        &["resume"],
        |state, reference, queued, what| {
            assert_crash_safe(
                &repo,
                state,
                reference,
                queued,
                &format!("rollbacks, {what}"),
            );
            // The rollbacks ran: the changed environments are back at r0, but for the
            // forward-only schema, which stays where r1 put it.
            let fleet = sim(state);
            assert_eq!(fleet[&("e-00".into(), "api".into())].0, "0.9", "{what}");
            assert_eq!(fleet[&("e-03".into(), "api".into())].0, "0.9", "{what}");
            assert_eq!(fleet[&("e-00".into(), "schema".into())].0, "1", "{what}");
        },
    );
}

#[test]
fn a_resume_of_a_halted_rollout_killed_at_random_moments_accepts_the_failure_once() {
    let dir = tempfile::tempdir().unwrap();
    let repo = fleet_repo(dir.path(), &[3]);
    crash_rounds(
        dir.path(),
        3,
        25,
        |state| halted_on_r1(&repo, state),
        &[&["resume"]],
        &["resume"],
        |state, reference, queued, what| {
            assert_crash_safe(&repo, state, reference, queued, &format!("resume, {what}"));
            // Accepted means not tried again: the broken api was attempted in one run only.
            let attempts = journal(state)
                .iter()
                .filter(|(_, e)| e["kind"] == "step_failed" && e["env"] == "e-03")
                .count();
            assert_eq!(attempts, 1, "{what}: the accepted failure was retried");
            let end = journal(state)
                .into_iter()
                .rev()
                .find(|(_, e)| e["kind"] == "rollout_completed")
                .unwrap()
                .1;
            assert_eq!(end["failed"], 1, "{what}: {end}");
        },
    );
}

#[test]
fn a_rollback_taken_from_the_queue_survives_a_kill_right_after_it_is_received() {
    let dir = tempfile::tempdir().unwrap();
    let repo = fleet_repo(dir.path(), &[3]);
    let state = dir.path().join("state.db");
    halted_on_r1(&repo, &state);
    let out = run(&repo, &state, &["rollback", "e-00"]);
    assert!(text(&out).contains("queued"), "{}", text(&out));

    // Events reach stdout only once committed: kill the moment the receipt is durable.
    let mut child = cmd(&repo, &state, "ops")
        .args(["rollout", "r1", "--output", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
    let mut received = false;
    for line in lines {
        if line.unwrap().contains("\"kind\":\"command_received\"") {
            received = true;
            break;
        }
    }
    let _ = child.kill();
    child.wait().unwrap();
    assert!(
        received,
        "the rollout ended without taking the queued rollback"
    );

    let out = run(&repo, &state, &["resume"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("rolled back e-00 to r0"),
        "the queued rollback was lost: {}",
        text(&out)
    );
    assert_eq!(sim(&state)[&("e-00".into(), "api".into())].0, "0.9");
}

#[test]
fn pause_then_resume_with_no_engine_running_does_not_hang() {
    let dir = tempfile::tempdir().unwrap();
    let repo = fleet_repo(dir.path(), &[]);
    let state = dir.path().join("state.db");
    // Blocked at the canary gate: unfinished, no engine running.
    let out = run(&repo, &state, &["rollout", "r1"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let out = run(&repo, &state, &["pause"]);
    assert!(text(&out).contains("queued"), "{}", text(&out));
    // `run` fails the test if this hangs.
    let out = run(&repo, &state, &["resume"]);
    let said = text(&out);
    assert!(said.contains("paused by ops@"), "{said}");
    assert!(said.contains("resumed by ops@"), "{said}");
    assert_eq!(
        out.status.code(),
        Some(3),
        "still waits for the canary: {said}"
    );
}

#[test]
fn bad_names_and_empty_reasons_are_refused_before_anything_is_queued_with_no_engine() {
    let dir = tempfile::tempdir().unwrap();
    let repo = fleet_repo(dir.path(), &[3]);
    let state = dir.path().join("state.db");
    halted_on_r1(&repo, &state);
    let refusals: [(&[&str], &str); 7] = [
        (
            &["skip", "e-3", "--reason", "x"],
            "no environment `e-3`; did you mean `e-03`?",
        ),
        (&["skip", "e-03", "--reason", " "], "a skip needs a reason"),
        (&["approve", "no-such-wave"], "no wave `no-such-wave`"),
        (
            &["approve", "canary"],
            "wave `canary` is already past its gate",
        ),
        (&["rollback", "no-such-env"], "no environment `no-such-env`"),
        (&["rollback", "e-03", "--to", "r9"], "no release `r9`"),
        (&["retry", "e-00"], "`e-00` has not failed"),
    ];
    for (args, says) in refusals {
        let out = run(&repo, &state, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        assert!(text(&out).contains(says), "{args:?}: {}", text(&out));
    }
    let db = rusqlite::Connection::open(&state).unwrap();
    let queued: i64 = db
        .query_row("SELECT count(*) FROM commands", [], |r| r.get(0))
        .unwrap();
    assert_eq!(queued, 0, "a refused command was queued");
    // Good names still queue.
    let out = run(
        &repo,
        &state,
        &["skip", "e-03", "--reason", "customer offboarding"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("queued"), "{}", text(&out));
}
