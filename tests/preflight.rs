//! The preflight checks through the real binary, each passing and failing: a failed check
//! blocks the rollout with exit 3 and its id; risk, blast radius, upgrade paths and the
//! health of what moving services depend on.

mod common;

use std::path::Path;
use std::process::Output;

use common::exec::*;
use common::*;

fn flotilla(repo: &Path, state: &Path, args: &[&str]) -> Output {
    cmd(repo, state, "ops").args(args).output().unwrap()
}

fn said(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The checklist line of check `id` in `plan` output.
fn check_line<'a>(plan: &'a str, id: &str) -> &'a str {
    plan.lines()
        .find(|l| l.split_whitespace().nth(1) == Some(id))
        .unwrap_or_else(|| panic!("no {id} in:\n{plan}"))
}

/// A rollout refused by a failed check exits 3 and names it.
fn assert_blocked_by(out: &Output, id: &str) {
    assert_eq!(out.status.code(), Some(3), "{}", said(out));
    assert!(
        said(out).contains(&format!("preflight FAILED: {id}")),
        "{}",
        said(out)
    );
}

fn sim_repo(dir: &Path, n: usize, policy: &str, strategy_text: &str) -> std::path::PathBuf {
    let repo = dir.join("repo");
    let mut f = Fixture::standard(n, strategy_text);
    f.fleet = f
        .fleet
        .replace("latency = \"100ms..2s\"", "latency = \"0ms\"");
    f.fleet += policy;
    f.load(&repo);
    repo
}

#[test]
fn a_wave_above_max_wave_risk_fails_and_the_suggested_strategy_pasted_in_passes() {
    let dir = tempfile::tempdir().unwrap();
    // 3 steps per environment at 0.99 with 2 retries: each fails with a chance of about
    // 3e-6, so a wave of 19 is near 6e-5, above the limit; 6 fit under it.
    let policy = "[policy]\nmax_wave_risk = 0.00002\n";
    let repo = sim_repo(dir.path(), 20, policy, &strategy("", "0"));
    let state = dir.path().join("s.db");
    let plan = said(&flotilla(&repo, &state, &["plan", "r1"]));
    let line = check_line(&plan, "policy.risk");
    assert!(
        line.contains("FAIL") && line.contains("`rest`") && !line.contains("`canary`"),
        "{line}"
    );
    assert_blocked_by(
        &flotilla(&repo, &state, &["rollout", "r1", "--approve-all"]),
        "policy.risk",
    );

    let out = flotilla(&repo, &state, &["plan", "r1", "--suggest"]);
    assert_eq!(out.status.code(), Some(0), "{}", said(&out));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (_, snippet) = text
        .split_once("paste this over the [strategy] of flotilla.toml:\n\n")
        .unwrap_or_else(|| panic!("no snippet in:\n{text}"));
    assert!(snippet.starts_with("[strategy]\n"), "{snippet}");
    // The canary keeps its gate; the rest is cut into waves of at most 6.
    assert!(
        snippet.contains("name = \"canary\"\nselect = \"ring=canary\"\ngate = \"approval\""),
        "{snippet}"
    );
    assert_eq!(snippet.matches("take = 6").count(), 3, "{snippet}");

    let pasted = sim_repo(&dir.path().join("pasted"), 20, policy, snippet);
    let state = dir.path().join("pasted.db");
    let plan = said(&flotilla(&pasted, &state, &["plan", "r1"]));
    assert!(check_line(&plan, "policy.risk").contains("pass"), "{plan}");
    assert!(check_line(&plan, "waves.cover").contains("pass"), "{plan}");
    let out = flotilla(&pasted, &state, &["rollout", "r1", "--approve-all"]);
    assert_eq!(out.status.code(), Some(0), "{}", said(&out));
}

#[test]
fn suggest_without_a_risk_limit_says_what_to_set() {
    let dir = tempfile::tempdir().unwrap();
    let repo = sim_repo(dir.path(), 3, "", &strategy("", "0"));
    let out = flotilla(
        &repo,
        &dir.path().join("s.db"),
        &["plan", "r1", "--suggest"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", said(&out));
    assert!(said(&out).contains("max_wave_risk"), "{}", said(&out));
}

#[test]
fn a_wave_over_max_wave_fraction_blocks_and_one_under_it_passes() {
    let dir = tempfile::tempdir().unwrap();
    let repo = sim_repo(
        dir.path(),
        4,
        "[policy]\nmax_wave_fraction = 0.5\n",
        &strategy("", "0"),
    );
    let state = dir.path().join("s.db");
    let plan = said(&flotilla(&repo, &state, &["plan", "r1"]));
    assert!(
        check_line(&plan, "policy.blast-radius").contains("FAIL")
            && plan.contains("`rest` (3 of 4)"),
        "{plan}"
    );
    assert_blocked_by(
        &flotilla(&repo, &state, &["rollout", "r1", "--approve-all"]),
        "policy.blast-radius",
    );
    let repo = sim_repo(
        &dir.path().join("ok"),
        4,
        "[policy]\nmax_wave_fraction = 0.75\n",
        &strategy("", "0"),
    );
    let out = flotilla(&repo, &state, &["rollout", "r1", "--approve-all"]);
    assert_eq!(out.status.code(), Some(0), "{}", said(&out));
}

/// Adds release `name` with these versions of schema, api and web, and commits it.
fn release(repo: &Path, name: &str, api: &str) {
    std::fs::write(
        repo.join(format!("releases/{name}.toml")),
        format!("[services]\nschema = \"1\"\napi = \"{api}\"\nweb = \"1.0\"\n"),
    )
    .unwrap();
    commit_all(repo, &format!("release {name}"));
}

/// What `service` runs in `env`, as the scripts recorded it.
fn live_version(live: &Path, env: &str, service: &str) -> String {
    let text = std::fs::read_to_string(live.join(env).join(format!("{service}.json"))).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&format!("{{{text}}}")).unwrap();
    doc[service]["version"].as_str().unwrap().to_string()
}

#[test]
fn a_downgrade_fails_unless_allowed_and_a_version_below_min_from_always_fails() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, live) = exec_repo(dir.path(), 3, "0", "");
    let state = dir.path().join("s.db");
    let plan = said(&run(&repo, &state, &live, &["plan", "r1"]));
    assert!(
        check_line(&plan, "versions.upgrade-path").contains("pass"),
        "{plan}"
    );
    let out = run(&repo, &state, &live, &["rollout", "r1", "--approve-all"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // api 1.0 -> 0.9 is a downgrade: refused, unless asked for.
    release(&repo, "r2", "0.9");
    let plan = said(&run(&repo, &state, &live, &["plan", "r2"]));
    let line = check_line(&plan, "versions.upgrade-path");
    assert!(
        line.contains("FAIL") && line.contains("e-00: api 1.0 -> 0.9"),
        "{line}"
    );
    let allowed = said(&run(
        &repo,
        &state,
        &live,
        &["plan", "r2", "--allow-downgrade"],
    ));
    assert!(
        check_line(&allowed, "versions.upgrade-path").contains("WARN"),
        "{allowed}"
    );
    assert_blocked_by(
        &run(&repo, &state, &live, &["rollout", "r2", "--approve-all"]),
        "versions.upgrade-path",
    );
    assert_eq!(live_version(&live, "e-01", "api"), "1.0");
    let out = run(
        &repo,
        &state,
        &live,
        &["rollout", "r2", "--approve-all", "--allow-downgrade"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(live_version(&live, "e-01", "api"), "0.9");

    // api upgrades to 3.0 from 0.9 or later: from 0.9 it may; once 2.0 is needed, no flag
    // lets it.
    release(&repo, "r3", "3.0");
    let toml = repo.join("flotilla.toml");
    let with_min = |min: &str| {
        let text = std::fs::read_to_string(&toml).unwrap();
        let text = match text.find("min_from") {
            Some(_) => text
                .lines()
                .map(|l| {
                    if l.starts_with("min_from") {
                        format!("min_from = \"{min}\"")
                    } else {
                        l.to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join("\n"),
            None => text.replace(
                "name = \"api\"\n",
                &format!("name = \"api\"\nmin_from = \"{min}\"\n"),
            ),
        };
        std::fs::write(&toml, text).unwrap();
        commit_all(&repo, &format!("api needs {min}"));
    };
    with_min("0.9");
    let plan = said(&run(&repo, &state, &live, &["plan", "r3"]));
    assert!(
        check_line(&plan, "versions.upgrade-path").contains("pass"),
        "{plan}"
    );
    with_min("2.0");
    let plan = said(&run(
        &repo,
        &state,
        &live,
        &["plan", "r3", "--allow-downgrade"],
    ));
    let line = check_line(&plan, "versions.upgrade-path");
    assert!(
        line.contains("FAIL") && line.contains("api runs 0.9; going to 3.0 needs at least 2.0"),
        "{line}"
    );
    assert_blocked_by(
        &run(
            &repo,
            &state,
            &live,
            &["rollout", "r3", "--approve-all", "--allow-downgrade"],
        ),
        "versions.upgrade-path",
    );
    assert_eq!(live_version(&live, "e-02", "api"), "0.9");
}

#[test]
fn an_unhealthy_dependency_of_a_moving_service_blocks_until_it_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, live) = exec_repo(dir.path(), 3, "0", "");
    let state = dir.path().join("s.db");
    let out = run(&repo, &state, &live, &["rollout", "r1", "--approve-all"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // r2 moves api only; api depends on schema, which stays and is down in e-01.
    release(&repo, "r2", "1.1");
    std::fs::write(live.join("unhealthy-e-01-schema"), "").unwrap();
    // web is down too, but nothing that moves depends on it.
    std::fs::write(live.join("unhealthy-e-02-web"), "").unwrap();
    let plan = said(&run(&repo, &state, &live, &["plan", "r2"]));
    let line = check_line(&plan, "deps.healthy");
    assert!(
        line.contains("FAIL")
            && line.contains("e-01: schema (schema answers 503), needed by api")
            && !line.contains("e-02"),
        "{line}"
    );
    assert_blocked_by(
        &run(&repo, &state, &live, &["rollout", "r2", "--approve-all"]),
        "deps.healthy",
    );
    assert_eq!(live_version(&live, "e-00", "api"), "1.0");

    std::fs::remove_file(live.join("unhealthy-e-01-schema")).unwrap();
    std::fs::remove_file(live.join("unhealthy-e-02-web")).unwrap();
    let plan = said(&run(&repo, &state, &live, &["plan", "r2"]));
    assert!(check_line(&plan, "deps.healthy").contains("pass"), "{plan}");
    let out = run(&repo, &state, &live, &["rollout", "r2", "--approve-all"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(live_version(&live, "e-01", "api"), "1.1");
}

#[test]
fn a_gate_that_requires_a_note_takes_flotilla_approve_with_one() {
    let dir = tempfile::tempdir().unwrap();
    let strategy_text = strategy("", "0").replace(
        "gate = \"approval\"\n",
        "gate = \"approval\"\nnote = \"required\"\n",
    );
    let repo = sim_repo(dir.path(), 3, "", &strategy_text);
    let state = dir.path().join("s.db");
    // An approval in advance does not say why: the canary gate still waits.
    let out = flotilla(&repo, &state, &["rollout", "r1", "--approve-all"]);
    assert_eq!(out.status.code(), Some(3), "{}", said(&out));
    assert!(
        said(&out).contains("takes an approval with a note"),
        "{}",
        said(&out)
    );
    let out = flotilla(&repo, &state, &["rollout", "r1", "--approve", "canary"]);
    assert_eq!(out.status.code(), Some(2), "{}", said(&out));
    assert!(
        said(&out).contains("--approve canary: the wave takes an approval with a note"),
        "{}",
        said(&out)
    );
    let out = flotilla(&repo, &state, &["approve", "canary"]);
    assert_eq!(out.status.code(), Some(2), "{}", said(&out));
    assert!(said(&out).contains("--note"), "{}", said(&out));
    let out = flotilla(
        &repo,
        &state,
        &["approve", "canary", "--note", "CAB-9 agreed"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", said(&out));
    let out = flotilla(&repo, &state, &["rollout", "r1"]);
    assert_eq!(out.status.code(), Some(0), "{}", said(&out));
    let audit = said(&flotilla(&repo, &state, &["audit"]));
    assert!(audit.contains("CAB-9 agreed"), "{audit}");
}

#[test]
fn an_environment_that_does_not_answer_the_ping_blocks_as_targets_reachable() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, live) = exec_repo(dir.path(), 3, "0", "");
    let state = dir.path().join("s.db");
    std::fs::write(live.join("down-e-02"), "").unwrap();
    let plan = said(&run(&repo, &state, &live, &["plan", "r1"]));
    let line = check_line(&plan, "targets.reachable");
    assert!(
        line.contains("FAIL") && line.contains("e-02") && !line.contains("e-01"),
        "{line}"
    );
    assert!(plan.contains("Connection refused"), "{plan}");
    assert_blocked_by(
        &run(&repo, &state, &live, &["rollout", "r1", "--approve-all"]),
        "targets.reachable",
    );
    assert!(!live.join("e-00").exists(), "nothing was applied");

    std::fs::remove_file(live.join("down-e-02")).unwrap();
    let plan = said(&run(&repo, &state, &live, &["plan", "r1"]));
    assert!(
        check_line(&plan, "targets.reachable").contains("pass"),
        "{plan}"
    );
    let out = run(&repo, &state, &live, &["rollout", "r1", "--approve-all"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[test]
fn a_fleet_without_a_strategy_is_warned_of_and_one_with_a_strategy_passes() {
    let dir = tempfile::tempdir().unwrap();
    let defaulted = sim_repo(&dir.path().join("a"), 3, "", "");
    let state = dir.path().join("s.db");
    let plan = said(&flotilla(&defaulted, &state, &["plan", "r1"]));
    let line = check_line(&plan, "strategy.defaults");
    assert!(line.contains("WARN"), "{line}");
    let own = sim_repo(&dir.path().join("b"), 3, "", &strategy("", "0"));
    let plan = said(&flotilla(&own, &state, &["plan", "r1"]));
    assert!(
        check_line(&plan, "strategy.defaults").contains("pass"),
        "{plan}"
    );
}
