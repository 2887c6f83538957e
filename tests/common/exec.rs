//! An exec-driven fixture: real scripts that keep each environment's live state as files
//! under a directory of their own, for the exec driver's tests and the checks that read
//! what runs.

use std::path::{Path, PathBuf};
use std::process::Output;

use super::{cmd, strategy, Fixture};

/// Applies record the live state as one file per service, replaced atomically, with a count
/// of the applies that reached it; observe prints them back.
pub const APPLY: &str = r#"#!/bin/bash
set -eu
LIVE="${LIVE:-$PWD/../live}"
env="$1"; service="$2"; version="$3"; config="$4"
live="$LIVE/$env"; mkdir -p "$live"
printf '%s\n' "$@" > "$live/$service.args"
test -f "$config" || { echo "no config file" >&2; exit 1; }
flaky="$LIVE/flaky-$env-$service"   # holds how many applies fail (empty: one)
if [ -e "$flaky" ]; then n=$(cat "$flaky"); n=${n:-1}; if [ "$n" -le 1 ]; then rm "$flaky"; else echo $((n - 1)) > "$flaky"; fi; echo "busy, try later" >&2; exit 75; fi
if [ -e "$LIVE/hang-$env" ]; then sleep 3011 & sleep 3012; fi
if [ -e "$LIVE/broken-$env-$service" ]; then echo "image $version not found" >&2; exit 3; fi
sleep "${APPLY_SLEEP:-0}"
if [ "$env" = "${SLOW_ENV:-}" ]; then touch "$LIVE/started-$env-$service"; sleep 2; fi
n=0
if [ -f "$live/$service.json" ]; then n=$(sed -n 's/.*"applies": \([0-9]*\).*/\1/p' "$live/$service.json"); fi
printf '"%s": {"version": "%s", "revision": "%s", "applies": %s}' "$service" "$version" "$FLOTILLA_REVISION" $((n + 1)) > "$live/$service.json.tmp"
mv "$live/$service.json.tmp" "$live/$service.json"
echo "$(date +%s%N) $env $service" >> "$LIVE/order"
echo "applied $service $version to $env"
if [ -e "$LIVE/print-config" ]; then cat "$config" >&2; fi
"#;

pub const OBSERVE: &str = r#"#!/bin/bash
set -eu
LIVE="${LIVE:-$PWD/../live}"
live="$LIVE/$1"
if [ -e "$LIVE/garbage" ]; then echo "Error: cluster unreachable <html>"; exit 0; fi
printf '{"services": {'
first=1
for f in "$live"/*.json; do
  [ -e "$f" ] || continue
  [ $first = 1 ] || printf ','
  first=0
  cat "$f"
done
printf '}}'
"#;

/// A service is unhealthy while `$LIVE/unhealthy-ENV-SERVICE` exists.
pub const HEALTH: &str = r#"#!/bin/bash
LIVE="${LIVE:-$PWD/../live}"
if [ -e "$LIVE/unhealthy-$1-$2" ]; then echo "$2 answers 503" >&2; exit 1; fi
"#;

/// An environment answers the ping unless `$LIVE/down-ENV` exists.
pub const PING: &str = r#"#!/bin/bash
LIVE="${LIVE:-$PWD/../live}"
if [ -e "$LIVE/down-$1" ]; then echo "ssh: connect to host $1 port 22: Connection refused" >&2; exit 255; fi
"#;

/// An exec-driven repo of `n` environments (e-00 the canary) in `dir`; returns the repo and
/// the directory the scripts keep live state in.
pub fn exec_repo(dir: &Path, n: usize, budget: &str, target: &str) -> (PathBuf, PathBuf) {
    exec_repo_with(dir, n, &strategy("", budget), target, &[])
}

/// [`exec_repo`] with its own `[strategy]` and more scripts (path, text) of its own.
pub fn exec_repo_with(
    dir: &Path,
    n: usize,
    strategy_text: &str,
    target: &str,
    scripts: &[(&str, &str)],
) -> (PathBuf, PathBuf) {
    let repo = dir.join("repo");
    let live = dir.join("live");
    std::fs::create_dir_all(&live).unwrap();
    let mut f = Fixture::standard(n, strategy_text);
    f.fleet = f.fleet.replace(
        "[driver]\nkind = \"sim\"\n",
        r#"[driver]
kind = "exec"
[driver.exec]
apply = ["./deploy/apply.sh", "{env}", "{service}", "{version}", "{config_file}", "--target={target}"]
observe = ["./deploy/observe.sh", "{env}"]
health = ["./deploy/health.sh", "{env}", "{service}"]
ping = ["./deploy/ping.sh", "{env}"]
transient_exit_codes = [75]
"#,
    );
    if !target.is_empty() {
        f.envs[1].1.push_str(&format!(
            "target = {}\n",
            toml::Value::String(target.into())
        ));
    }
    f.extra.push(("deploy/apply.sh".into(), APPLY.into()));
    f.extra.push(("deploy/observe.sh".into(), OBSERVE.into()));
    f.extra.push(("deploy/health.sh".into(), HEALTH.into()));
    f.extra.push(("deploy/ping.sh".into(), PING.into()));
    for (path, text) in scripts {
        f.extra.push((path.to_string(), text.to_string()));
    }
    f.load(&repo);
    let mut paths = vec![
        "deploy/apply.sh",
        "deploy/observe.sh",
        "deploy/health.sh",
        "deploy/ping.sh",
    ];
    paths.extend(scripts.iter().map(|(p, _)| *p));
    for script in paths {
        use std::os::unix::fs::PermissionsExt;
        let path = repo.join(script);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    (repo, live)
}

pub fn run(repo: &Path, state: &Path, live: &Path, args: &[&str]) -> Output {
    cmd(repo, state, "ops")
        .env("LIVE", live)
        .args(args)
        .output()
        .unwrap()
}

pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
