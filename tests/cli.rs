//! The real `flotilla` binary, as scripts and operators run it.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::*;

fn flotilla(repo: &Path, state: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flotilla"))
        .arg("--repo")
        .arg(repo)
        .arg("--state")
        .arg(state)
        .args(args)
        .env("USER", "tester")
        .env("FLOTILLA_CONFIG", NO_CONFIG)
        .output()
        .unwrap()
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// A fixture repo without latency, so the binary finishes quickly in real time.
fn quick(
    n: usize,
    extra_release: &str,
) -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let mut f = Fixture::standard(n, &strategy("", "0"));
    f.fleet = f
        .fleet
        .replace("latency = \"100ms..2s\"", "latency = \"0ms\"");
    if !extra_release.is_empty() {
        f = f.with_release_sim(extra_release);
    }
    f.load(&repo);
    let state = dir.path().join("fleet.json");
    (dir, repo, state)
}

#[test]
fn an_invalid_intent_exits_2_with_file_line_and_column_and_blocks_a_rollout_as_intent_valid() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let mut f = Fixture::standard(2, "");
    f.fleet = f
        .fleet
        .replace("depends_on = [\"api\"]", "depends_on = [\"apy\"]");
    flotilla::intent::write::write_repo(&repo, &f.commits()).unwrap();
    let out = flotilla(&repo, &dir.path().join("s.json"), &["validate"]);
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--> flotilla.toml:16:15"), "{err}");
    assert!(err.contains("did you mean `api`?"), "{err}");
    // A rollout refuses to start on the same intent: its first check failed.
    let out = flotilla(
        &repo,
        &dir.path().join("s.json"),
        &["rollout", "r1", "--approve-all"],
    );
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("--> flotilla.toml:16:15"), "{err}");
    assert!(
        err.contains("preflight FAILED: intent.valid: 1 error(s) in the intent"),
        "{err}"
    );
    assert!(!dir.path().join("s.json").exists(), "nothing was changed");
}

#[test]
fn a_dependency_cycle_blocks_a_rollout_as_deps_acyclic() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let mut f = Fixture::standard(2, "");
    f.fleet = f.fleet.replace(
        "name = \"schema\"\n",
        "name = \"schema\"\ndepends_on = [\"web\"]\n",
    );
    flotilla::intent::write::write_repo(&repo, &f.commits()).unwrap();
    let out = flotilla(&repo, &dir.path().join("s.json"), &["rollout", "r1"]);
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("dependency cycle"), "{err}");
    assert!(err.contains("preflight FAILED: deps.acyclic"), "{err}");
    assert!(!dir.path().join("s.json").exists(), "nothing was changed");
}

#[test]
fn malformed_toml_in_an_environment_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let mut f = Fixture::standard(2, "");
    f.envs[1].1 = "labels = { ring = \"general\"\n".into();
    flotilla::intent::write::write_repo(&repo, &f.commits()).unwrap();
    let (_, err) = text(&flotilla(&repo, &dir.path().join("s"), &["validate"]));
    assert!(err.contains("--> environments/e-01.toml:1:"), "{err}");
}

#[test]
fn a_directory_that_is_not_a_git_repository_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = flotilla(dir.path(), &dir.path().join("s"), &["validate"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).1.contains("is not a Git repository"),
        "{}",
        text(&out).1
    );
}

#[test]
fn uncommitted_intent_changes_are_reported_and_ignored() {
    let (_dir, repo, state) = quick(2, "");
    std::fs::write(repo.join("environments/e-01.toml"), "labels = {").unwrap();
    let out = flotilla(&repo, &state, &["validate"]);
    let (stdout, err) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("environments/e-01.toml") && err.contains("uncommitted"),
        "{err}"
    );
    assert!(stdout.contains("is valid"), "{stdout}");
}

#[test]
fn rollout_json_prints_one_event_per_line_and_completes() {
    let (_dir, repo, state) = quick(5, "");
    let out = flotilla(
        &repo,
        &state,
        &["rollout", "r1", "--approve-all", "--output", "json"],
    );
    let (stdout, err) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let events: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(events
        .iter()
        .all(|e| e["ts"].is_string() && e["kind"].is_string()));
    let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds.first(), Some(&"rollout_started"));
    assert_eq!(kinds.last(), Some(&"rollout_completed"));
    assert_eq!(kinds.iter().filter(|k| **k == "step_succeeded").count(), 15);
    let step = events.iter().find(|e| e["kind"] == "step_started").unwrap();
    assert!(step["wave"].is_string() && step["env"].is_string() && step["service"].is_string());
}

#[test]
fn an_unapproved_gate_exits_3_and_says_how_to_approve() {
    let (_dir, repo, state) = quick(3, "");
    let out = flotilla(&repo, &state, &["rollout", "r1"]);
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("--approve canary"), "{err}");
}

#[test]
fn a_halted_rollout_exits_1_and_names_what_failed() {
    let (_dir, repo, state) = quick(4, "broken = \"name=e-02\"");
    let out = flotilla(&repo, &state, &["rollout", "r1", "--approve", "canary"]);
    let (stdout, err) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{err}");
    assert!(stdout.contains("FAILED e-02/schema"), "{stdout}");
    assert!(
        err.contains("halted in wave `rest`") && err.contains("e-02"),
        "{err}"
    );
}

#[test]
fn the_fleet_state_persists_and_a_second_rollout_applies_nothing_twice() {
    let (_dir, repo, state) = quick(3, "");
    for _ in 0..2 {
        let out = flotilla(&repo, &state, &["rollout", "r1", "--approve-all"]);
        assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    }
    let db = rusqlite::Connection::open(&state).unwrap();
    let applies: Vec<(String, String, i64)> = db
        .prepare("SELECT env, service, applies FROM sim_live ORDER BY env, service")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(applies.len(), 9, "{applies:?}");
    assert!(applies.iter().all(|a| a.2 == 1), "{applies:?}");
}

#[test]
fn a_corrupt_state_file_is_refused_and_left_alone() {
    let (_dir, repo, state) = quick(2, "");
    std::fs::write(&state, "garbage").unwrap();
    let out = flotilla(&repo, &state, &["rollout", "r1", "--approve-all"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("corrupt"), "{:?}", text(&out));
    assert_eq!(std::fs::read_to_string(&state).unwrap(), "garbage");
}

#[test]
fn plan_prints_waves_risk_and_preflight_in_plain_and_json() {
    let (_dir, repo, state) = quick(6, "");
    let out = flotilla(&repo, &state, &["plan", "r1"]);
    let (stdout, err) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        stdout.contains("canary") && stdout.contains("rest"),
        "{stdout}"
    );
    assert!(stdout.contains("schema -> api -> web"), "{stdout}");
    assert!(stdout.contains("pass  targets.reachable"), "{stdout}");

    let out = flotilla(&repo, &state, &["plan", "r1", "--output", "json"]);
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let waves = plan["waves"].as_array().unwrap();
    assert_eq!(waves.len(), 2);
    assert_eq!(waves[0]["envs"], serde_json::json!(["e-00"]));
    assert_eq!(waves[1]["envs"].as_array().unwrap().len(), 5);
    assert!(waves[1]["risk"]["with_retries"].as_f64().is_some());
    assert!(!state.exists(), "plan changes nothing");

    let out = flotilla(&repo, &state, &["plan", "r9"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("releases: r1"), "{:?}", text(&out));
}

#[test]
fn explain_shows_the_layer_that_set_each_key() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    flotilla::intent::write::write_repo(&repo, &flotilla::demo::demo_commits(12)).unwrap();
    let out = flotilla(
        &repo,
        &dir.path().join("s"),
        &["explain", "acme-eu-1", "api.replicas"],
    );
    let (stdout, err) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(stdout.contains("api.replicas = 4"), "{stdout}");
    assert!(stdout.contains("environments/acme-eu-1.toml"), "{stdout}");
    assert!(stdout.contains("overrides 2 from releases/"), "{stdout}");
}

#[test]
fn init_demo_writes_a_valid_repo_with_history() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("demo");
    let out = Command::new(env!("CARGO_BIN_EXE_flotilla"))
        .args(["init", "--demo", "--envs", "30"])
        .arg(&repo)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let log = Command::new("git")
        .arg("-C")
        .arg(&repo)
        .args(["log", "--oneline"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&log.stdout).lines().count() >= 3);
    let out = flotilla(&repo, &dir.path().join("s"), &["validate"]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    // Never over someone's files.
    let again = Command::new(env!("CARGO_BIN_EXE_flotilla"))
        .args(["init"])
        .arg(&repo)
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2));
}

#[test]
fn ctrl_c_finishes_steps_in_flight_and_starts_nothing_new() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let mut f = Fixture::standard(
        30,
        &strategy("", "0").replace("max_parallel = 4", "max_parallel = 2"),
    );
    f.fleet = f
        .fleet
        .replace("latency = \"100ms..2s\"", "latency = \"50ms..100ms\"");
    f.load(&repo);
    let mut child = Command::new(env!("CARGO_BIN_EXE_flotilla"))
        .arg("--repo")
        .arg(&repo)
        .arg("--state")
        .arg(dir.path().join("s.json"))
        .args(["rollout", "r1", "--approve-all", "--output", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // Wait until the second wave is under way, then interrupt.
    for line in lines.by_ref() {
        if line.unwrap().contains("\"wave\":\"rest\"") {
            break;
        }
    }
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    let status = child.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(130), "{err}");
    assert!(err.contains("starting nothing new"), "{err}");
    assert!(
        rest.last().unwrap().contains("rollout_interrupted"),
        "{rest:?}"
    );
    let succeeded = rest.iter().filter(|l| l.contains("step_succeeded")).count();
    assert!(
        succeeded < 80,
        "the rollout stopped early ({succeeded} steps after the interrupt)"
    );
}

#[test]
fn a_freeze_in_force_blocks_the_rollout_with_exit_3() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let mut f = Fixture::standard(3, &strategy("", "0"));
    f.fleet += "[policy]\n[[policy.freeze]]\nname = \"all-hands\"\nstart = \"2000-01-01T00:00:00Z\"\nend = \"2999-01-01T00:00:00Z\"\n";
    f.load(&repo);
    let state = dir.path().join("s.json");
    let out = flotilla(&repo, &state, &["rollout", "r1", "--approve-all"]);
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("freeze `all-hands`") && err.contains("is in force until 2999-01-01"),
        "{err}"
    );
    let status = flotilla(&repo, &state, &["status"]);
    assert!(
        text(&status).0.contains("no rollout has run"),
        "{:?}",
        text(&status)
    );
}

#[test]
fn validate_json_lists_errors_with_positions() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let mut f = Fixture::standard(2, "");
    f.release = "[services]\nschema = \"1\"\n".into();
    flotilla::intent::write::write_repo(&repo, &f.commits()).unwrap();
    let out = flotilla(
        &repo,
        &dir.path().join("s"),
        &["validate", "--output", "json"],
    );
    assert_eq!(out.status.code(), Some(2));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["valid"], false);
    let errors = doc["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2, "{errors:?}"); // api and web have no version
    assert_eq!(errors[0]["file"], "releases/r1.toml");
    assert_eq!(errors[0]["line"], 1);
}

#[test]
fn rev_reads_the_intent_of_an_older_commit() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    flotilla::intent::write::write_repo(&repo, &flotilla::demo::demo_commits(10)).unwrap();
    let state = dir.path().join("s");
    // The newest commit adds 2026.11.2 and 2026.11.3; one commit earlier only 2026.11.1 exists.
    let now = flotilla(&repo, &state, &["plan", "2026.11.3"]);
    assert_eq!(now.status.code(), Some(0), "{:?}", text(&now));
    let before = flotilla(&repo, &state, &["--rev", "HEAD~1", "plan", "2026.11.3"]);
    assert_eq!(before.status.code(), Some(2));
    assert!(
        text(&before).1.contains("releases: 2026.11.1"),
        "{:?}",
        text(&before)
    );
    let bad = flotilla(&repo, &state, &["--rev", "no-such-branch", "validate"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        text(&bad)
            .1
            .contains("cannot resolve revision `no-such-branch`"),
        "{:?}",
        text(&bad)
    );
}

#[test]
fn a_state_path_that_cannot_be_opened_is_a_clear_error() {
    let (dir, repo, _) = quick(2, "");
    // A directory where the database should be: SQLite cannot open it as a file.
    let out = flotilla(&repo, dir.path(), &["rollout", "r1", "--approve-all"]);
    assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
    assert!(
        text(&out).1.contains("cannot open the state database"),
        "{:?}",
        text(&out)
    );
}

#[test]
fn the_scaffolded_repo_validates_rolls_out_and_reports_status() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("fleet");
    let out = Command::new(env!("CARGO_BIN_EXE_flotilla"))
        .arg("init")
        .arg(&repo)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let state = dir.path().join("s.db");
    assert_eq!(
        flotilla(&repo, &state, &["validate"]).status.code(),
        Some(0)
    );
    let rollout = flotilla(&repo, &state, &["rollout", "1.0.0", "--approve-all"]);
    assert_eq!(rollout.status.code(), Some(0), "{:?}", text(&rollout));
    let status = flotilla(&repo, &state, &["status", "--output", "json"]);
    let doc: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(doc["state"], "completed");
    let approver = doc["waves"][0]["approvals"][0].as_str().unwrap();
    assert!(approver.starts_with("tester@"), "{approver}");
    assert_eq!(doc["waves"][1]["succeeded"], 1);
}

#[test]
fn a_report_whose_reader_goes_away_ends_quietly() {
    let (_dir, repo, state) = quick(200, "");
    let mut child = Command::new(env!("CARGO_BIN_EXE_flotilla"))
        .arg("--repo")
        .arg(&repo)
        .arg("--state")
        .arg(&state)
        .args(["plan", "r1", "--output", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The reader closes at once, as `| head -1` does once it has its line.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// Runs git in `repo` with `input` on stdin and returns its trimmed output.
fn git(repo: &Path, args: &[&str], input: &str) -> String {
    use std::io::Write;
    let mut child = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(args)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "git {args:?} failed");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Files of a tree: (name, contents).
type Entries<'a> = &'a [(&'a str, &'a [u8])];

/// Commits, on top of HEAD, an `environments/` tree made of `entries`: names may repeat,
/// as `git mktree` allows.
fn commit_environments(repo: &Path, entries: Entries) {
    let mut listing = String::new();
    for (name, text) in entries {
        let path = repo.join("blob.tmp");
        std::fs::write(&path, text).unwrap();
        let blob = git(repo, &["hash-object", "-w", "blob.tmp"], "");
        std::fs::remove_file(&path).unwrap();
        listing.push_str(&format!("100644 blob {blob}\t{name}\n"));
    }
    let envs = git(repo, &["mktree"], &listing);
    let mut root = String::new();
    for line in git(repo, &["ls-tree", "HEAD"], "").lines() {
        if line.ends_with("\tenvironments") {
            root.push_str(&format!("040000 tree {envs}\tenvironments\n"));
        } else {
            root.push_str(line);
            root.push('\n');
        }
    }
    let tree = git(repo, &["mktree"], &root);
    let commit = git(
        repo,
        &[
            "commit-tree",
            tree.as_str(),
            "-p",
            "HEAD",
            "-m",
            "hand-made tree",
        ],
        "",
    );
    git(repo, &["update-ref", "HEAD", &commit], "");
}

#[test]
fn a_tree_with_an_environment_twice_or_names_equal_up_to_case_does_not_validate() {
    let labels = b"labels = { ring = \"general\" }\n";
    let cases: [(Entries, &str); 2] = [
        (
            &[
                ("e-00.toml", labels),
                ("e-01.toml", labels),
                ("e-01.toml", labels),
            ],
            "environments/e-01.toml is in the tree of commit",
        ),
        (
            &[
                ("E-01.toml", labels),
                ("e-00.toml", labels),
                ("e-01.toml", labels),
            ],
            "environments/e-01.toml and environments/E-01.toml differ only in case",
        ),
    ];
    for (entries, says) in cases {
        let (dir, repo, state) = quick(2, "");
        commit_environments(&repo, entries);
        let out = flotilla(&repo, &state, &["validate"]);
        let (_, err) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(says), "{err}");
        let plan = flotilla(&repo, &state, &["plan", "r1"]);
        assert_eq!(plan.status.code(), Some(2), "{}", text(&plan).1);
        drop(dir);
    }
}

#[test]
fn a_file_that_is_not_utf8_is_named_with_its_line_and_column() {
    let (_dir, repo, state) = quick(2, "");
    let latin1: &[u8] = b"labels = { ring = \"general\" }\n[config]\napi.city = \"K\xf6ln\"\n";
    let ok: &[u8] = b"labels = { ring = \"canary\" }\n";
    commit_environments(&repo, &[("e-00.toml", ok), ("e-01.toml", latin1)]);
    let out = flotilla(&repo, &state, &["validate"]);
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("environments/e-01.toml:3:14"), "{err}");
    assert!(err.contains("not valid UTF-8"), "{err}");
}

#[test]
fn secrets_are_masked_when_shown_and_never_stored_in_clear() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let mut f = Fixture::standard(3, &strategy("", "0"));
    f.fleet = f
        .fleet
        .replace("latency = \"100ms..2s\"", "latency = \"0ms\"")
        .replace(
            "name = \"api\"\n",
            "name = \"api\"\nsecret_keys = [\"dsn\"]\n",
        );
    let secrets = ["hunter2-db-pass", "tok-83jd7", "postgres://u:pw-77x@db"];
    f.release.push_str(&format!(
        "[config]\napi.db_password = \"{}\"\napi.auth.token = \"{}\"\napi.dsn = \"{}\"\napi.replicas = 2\n",
        secrets[0], secrets[1], secrets[2]
    ));
    f.load(&repo);
    let state = dir.path().join("state.db");
    let mut said = String::new();
    for args in [
        &["explain", "e-01"][..],
        &["explain", "e-01", "--output", "json"],
        &["explain", "e-01", "api.db_password"],
        &["rollout", "r1", "--approve-all", "--output", "json"],
        &["status", "--output", "json"],
        &["audit", "--output", "json"],
    ] {
        let out = flotilla(&repo, &state, args);
        let (o, e) = text(&out);
        assert!(out.status.success(), "{args:?}: {o}{e}");
        said.push_str(&o);
        said.push_str(&e);
    }
    assert!(said.contains("api.db_password = \"<secret>\""), "{said}");
    assert!(said.contains("api.replicas = 2"), "{said}");
    for secret in secrets {
        assert!(!said.contains(secret), "`{secret}` was shown: {said}");
        assert_not_stored(dir.path(), secret);
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&state).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the state database is {mode:o}");
    // While a connection writes, the WAL exists: it is no more readable than the database.
    let db = rusqlite::Connection::open(&state).unwrap();
    db.execute(
        "INSERT OR REPLACE INTO meta (key, value) VALUES ('t', 'x')",
        [],
    )
    .unwrap();
    let wal = dir.path().join("state.db-wal");
    let mode = std::fs::metadata(&wal).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the WAL is {mode:o}");
}

#[test]
fn reports_asked_for_in_json_refuse_in_json() {
    let (_dir, repo, state) = quick(2, "");
    for args in [
        &["explain", "e-9", "--output", "json"][..],
        &["plan", "r9", "--output", "json"],
        &["status", "--output", "json"],
        &["audit", "--since", "yesterday", "--output", "json"],
    ] {
        let out = flotilla(&repo, &state, args);
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        let doc: serde_json::Value = serde_json::from_str(stdout.trim())
            .unwrap_or_else(|e| panic!("{args:?}: not one JSON document ({e}): {stdout}"));
        assert_eq!(doc["kind"], "error", "{args:?}: {doc}");
        assert_eq!(doc["exit"], 2, "{args:?}: {doc}");
        assert!(!doc["message"].as_str().unwrap().is_empty(), "{doc}");
    }
}

#[test]
fn a_root_tree_with_flotilla_toml_twice_does_not_validate() {
    let (_dir, repo, state) = quick(2, "");
    let mut root = String::new();
    for line in git(&repo, &["ls-tree", "HEAD"], "").lines() {
        root.push_str(line);
        root.push('\n');
        if line.ends_with("\tflotilla.toml") {
            root.push_str(line);
            root.push('\n');
        }
    }
    let tree = git(&repo, &["mktree"], &root);
    let commit = git(
        &repo,
        &["commit-tree", &tree, "-p", "HEAD", "-m", "twice"],
        "",
    );
    git(&repo, &["update-ref", "HEAD", &commit], "");
    let out = flotilla(&repo, &state, &["validate"]);
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("flotilla.toml is in the tree of commit"),
        "{err}"
    );
}

#[test]
fn a_failed_check_is_set_aside_only_with_a_reason_and_the_override_is_audited() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let mut f = Fixture::standard(3, &strategy("", "0"));
    f.fleet = f
        .fleet
        .replace("latency = \"100ms..2s\"", "latency = \"0ms\"");
    f.fleet += "[policy]\n[[policy.freeze]]\nname = \"all-hands\"\nstart = \"2000-01-01T00:00:00Z\"\nend = \"2999-01-01T00:00:00Z\"\n";
    f.load(&repo);
    let state = dir.path().join("s.db");
    // The checklist names every check by its id.
    let plan = flotilla(&repo, &state, &["plan", "r1"]);
    let (listed, _) = text(&plan);
    for id in [
        "intent.valid",
        "deps.acyclic",
        "waves.cover",
        "policy.freeze",
    ] {
        assert!(listed.contains(id), "{id}: {listed}");
    }
    let refused = |args: &[&str], says: &str| {
        let out = flotilla(&repo, &state, args);
        let (_, err) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    };
    let base = ["rollout", "r1", "--approve-all"];
    let with = |extra: &[&'static str]| [&base[..], extra].concat();
    refused(&with(&["--override", "policy.freeze"]), "needs --reason");
    refused(
        &with(&["--override", "policy.freze", "--reason", "x"]),
        "did you mean `policy.freeze`",
    );
    refused(
        &with(&["--override", "intent.valid", "--reason", "x"]),
        "cannot be overridden",
    );
    refused(
        &with(&["--override", "policy.freeze", "--reason", " "]),
        "needs a reason",
    );
    // Refused before anything was opened: not even the state database exists.
    assert!(!state.exists());

    let out = flotilla(
        &repo,
        &state,
        &with(&[
            "--override",
            "policy.freeze",
            "--reason",
            "CAB-7 approved the hotfix",
        ]),
    );
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("overridden: policy.freeze"), "{err}");
    let audit = flotilla(&repo, &state, &["audit"]);
    let (trail, _) = text(&audit);
    assert!(
        trail.contains("preflight policy.freeze overridden by")
            && trail.contains("CAB-7 approved the hotfix")
            && trail.contains("all-hands"),
        "{trail}"
    );
}

#[test]
fn approve_all_does_not_approve_a_gate_a_policy_protects() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let mut f = Fixture::standard(4, &strategy("", "0"));
    f.fleet = f
        .fleet
        .replace("latency = \"100ms..2s\"", "latency = \"0ms\"");
    f.fleet += "[policy]\nrequire_approval = \"tier=enterprise\"\n";
    f.envs[2].1 = f.envs[2]
        .1
        .replace("ring =", "tier = \"enterprise\", ring =");
    f.load(&repo);
    let state = dir.path().join("s.db");
    let plan = flotilla(&repo, &state, &["plan", "r1"]);
    let (listed, _) = text(&plan);
    assert!(
        listed.contains("policy.approval") && listed.contains("not --approve-all: rest"),
        "{listed}"
    );
    // --approve-all gives the canary its approval, not the protected rest.
    let out = flotilla(&repo, &state, &["rollout", "r1", "--approve-all"]);
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("does not approve wave `rest`"), "{err}");
    assert!(err.contains("blocked: wave `rest`"), "{err}");
    // The way on it names is the one that works here, not the flag just refused.
    assert!(err.contains("--approve rest"), "{err}");
    assert!(!err.contains("(or --approve-all)"), "{err}");
    // Approved by name, it goes.
    let out = flotilla(&repo, &state, &["rollout", "r1", "--approve", "rest"]);
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
}

#[test]
fn completion_scripts_come_for_every_shell_and_the_man_page_renders() {
    let dir = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = flotilla(
            dir.path(),
            &dir.path().join("s"),
            &["completions", shell, "--static"],
        );
        let (script, err) = text(&out);
        assert_eq!(out.status.code(), Some(0), "{shell}: {err}");
        // Each knows the commands and their flags.
        for word in ["rollout", "approve", "approve-all", "override"] {
            assert!(script.contains(word), "{shell} completion lacks {word}");
        }
        // The dynamic one calls this very program back for what fits.
        let out = flotilla(dir.path(), &dir.path().join("s"), &["completions", shell]);
        let (script, err) = text(&out);
        assert_eq!(out.status.code(), Some(0), "{shell}: {err}");
        assert!(
            script.contains(env!("CARGO_BIN_EXE_flotilla")) && script.contains("COMPLETE"),
            "{shell}: {script}"
        );
    }
    let out = flotilla(dir.path(), &dir.path().join("s"), &["completions", "tcsh"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unknown shell is a usage error"
    );

    let out = flotilla(dir.path(), &dir.path().join("s"), &["man"]);
    let (page, _) = text(&out);
    assert_eq!(out.status.code(), Some(0));
    assert!(page.contains(".TH flotilla 1"), "{page}");
    assert!(
        page.contains(".SH SUBCOMMANDS") || page.contains("rollout"),
        "{page}"
    );
    // `man` itself reads it, where it is installed.
    if std::process::Command::new("man")
        .arg("--version")
        .output()
        .is_ok()
    {
        let path = dir.path().join("flotilla.1");
        std::fs::write(&path, &page).unwrap();
        let shown = std::process::Command::new("man")
            .args(["-l", "-P", "cat"])
            .arg(&path)
            .env("MANWIDTH", "80")
            .output()
            .unwrap();
        if shown.status.success() {
            let shown = String::from_utf8_lossy(&shown.stdout);
            assert!(shown.contains("rollout"), "{shown}");
        }
    }
}

/// What bash offers at Tab for `line` (the word under the cursor last), run in `cwd` with the
/// script `flotilla completions bash` printed, as a user's shell would.
fn bash_offers(script: &str, cwd: &Path, env: &[(&str, &str)], line: &[&str]) -> Vec<String> {
    let words: Vec<String> = line.iter().map(|w| format!("'{w}'")).collect();
    let current = line.last().unwrap();
    let previous = line[line.len() - 2];
    let program = format!(
        "{script}\nCOMP_WORDS=({}); COMP_CWORD={}; COMP_TYPE=9\n\
         _clap_complete_flotilla flotilla '{current}' '{previous}'\n\
         printf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
        words.join(" "),
        line.len() - 1,
    );
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &program])
        .current_dir(cwd)
        .env_remove("FLOTILLA_REPO")
        .envs(env.iter().copied())
        .output()
        .expect("bash runs");
    let (offered, err) = text(&out);
    assert!(out.status.success(), "{err}");
    assert_eq!(err, "", "completion prints nothing into the prompt");
    offered
        .lines()
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

#[test]
fn bash_completes_release_environment_and_wave_names_from_the_intent() {
    let (dir, repo, state) = quick(3, "");
    commit_release(&repo, "r2");
    let out = flotilla(&repo, &state, &["completions", "bash"]);
    let (script, err) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let repo_text = repo.to_str().unwrap();

    // Names from the repository named on the line, newest release first.
    let offered = bash_offers(
        &script,
        dir.path(),
        &[],
        &["flotilla", "--repo", repo_text, "rollout", "r"],
    );
    assert_eq!(offered, ["r2", "r1"]);
    let offered = bash_offers(
        &script,
        dir.path(),
        &[],
        &["flotilla", "--repo", repo_text, "skip", "e-0"],
    );
    assert_eq!(offered, ["e-00", "e-01", "e-02"]);
    // From FLOTILLA_REPO, and from the current directory, as the commands default.
    let offered = bash_offers(
        &script,
        dir.path(),
        &[("FLOTILLA_REPO", repo_text)],
        &["flotilla", "approve", "c"],
    );
    assert_eq!(offered, ["canary"]);
    let offered = bash_offers(&script, &repo, &[], &["flotilla", "retry", "e-01", "e-0"]);
    assert!(offered.contains(&"e-02".to_string()), "{offered:?}");
    // --rev picks the revision: r2 is not at the first commit.
    let offered = bash_offers(
        &script,
        &repo,
        &[],
        &["flotilla", "--rev", "HEAD~1", "plan", "r"],
    );
    assert_eq!(offered, ["r1"]);

    // Where there is no intent there are no names, and no error in the prompt.
    let offered = bash_offers(&script, dir.path(), &[], &["flotilla", "skip", "e"]);
    assert!(offered.is_empty(), "{offered:?}");
    // Commands and flags still complete.
    let offered = bash_offers(&script, dir.path(), &[], &["flotilla", "rol"]);
    assert_eq!(offered, ["rollout", "rollback"]);
}

/// Adds release `name` (the same versions as r1) in a commit of its own.
fn commit_release(repo: &Path, name: &str) {
    std::fs::write(
        repo.join(format!("releases/{name}.toml")),
        "[services]\nschema = \"2\"\napi = \"2.0\"\nweb = \"2.0\"\n",
    )
    .unwrap();
    commit_all(repo, &format!("release {name}"));
}

#[test]
fn approving_in_advance_again_when_a_rollout_resumes_is_not_refused() {
    let (_dir, repo, state) = quick(4, "broken = \"name=e-02\"");
    let out = flotilla(&repo, &state, &["rollout", "r1", "--approve-all"]);
    assert_eq!(out.status.code(), Some(1), "{:?}", text(&out));
    // Run again as it was first run: the canary's gate was approved then, by the same person.
    let again = flotilla(&repo, &state, &["rollout", "r1", "--approve-all"]);
    let (stdout, err) = text(&again);
    assert!(
        !stdout.contains("already approved") && !err.contains("already approved"),
        "{stdout}{err}"
    );
    assert!(stdout.contains("resumed"), "{stdout}");
}

#[test]
fn preflight_over_many_environments_says_what_it_is_doing_and_how_long_it_took() {
    let (_dir, repo, state) = quick(1000, "");
    let out = flotilla(&repo, &state, &["plan", "r1"]);
    let (stdout, err) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{err}");
    assert!(
        err.contains("preflight: reaching 1000 environments, 64 at a time..."),
        "{err}"
    );
    assert!(
        err.contains("preflight: 1000 environments reached in "),
        "{err}"
    );
    // A small fleet is reached at once: nothing to say.
    let (_dir, repo, state) = quick(4, "");
    let (_, err) = text(&flotilla(&repo, &state, &["plan", "r1"]));
    assert!(!err.contains("preflight:"), "{err}");
}
