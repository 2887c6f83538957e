//! The exec driver against its peers, side by side in one run: the same apply command for
//! every environment through flotilla's engine, through a bare `xargs -P` with the same
//! parallelism, and through ansible-core with the same waves (`serial`) and failure budget
//! (`max_fail_percentage`). Run with `cargo run --release --example exec_bench`
//! (`-- --envs N --parallel P`, `--no-ansible` for the xargs figure alone); it prints figures and ratios rather than asserting.
//!
//! Targets: flotilla's wall time at most 1.3x xargs's; at least 50x faster than ansible.
//! ansible-core is installed with pip into a venv this bench makes next to the target dir;
//! without network or Python the ansible figure is skipped with a message.

mod common;
use common::{arg, engine_run};

use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};

use std::time::{Duration, Instant};

use flotilla::demo::DemoCommit;

use flotilla::intent;

/// The apply command: a little work, as a real deploy's client would do before returning.
const APPLY: &str = "#!/bin/sh\nsleep 0.02\n";

fn repo(envs: usize, parallel: usize) -> Vec<DemoCommit> {
    let fleet = format!(
        r#"[fleet]
name = "exec-bench"
[driver]
kind = "exec"
[driver.exec]
apply = ["./deploy/apply.sh", "{{env}}", "{{service}}", "{{version}}"]
[[service]]
name = "api"
[strategy]
max_parallel = {parallel}
retries = 0
step_timeout = "1m"
[[strategy.wave]]
name = "canary"
select = "ring=canary"
failure_budget = 0
[[strategy.wave]]
name = "rest"
select = "*"
failure_budget = "5%"
"#
    );
    let mut files = vec![
        ("flotilla.toml".to_string(), fleet),
        ("deploy/apply.sh".to_string(), APPLY.to_string()),
        (
            "releases/1.0.toml".to_string(),
            "[services]\napi = \"1.0\"\n".to_string(),
        ),
    ];
    for i in 0..envs {
        let ring = if i == 0 { "canary" } else { "general" };
        files.push((
            format!("environments/e-{i:04}.toml"),
            format!("labels = {{ ring = \"{ring}\" }}\n"),
        ));
    }
    vec![DemoCommit {
        message: "exec bench".into(),
        files,
    }]
}

/// The same commands through `xargs -P`.
fn xargs_run(dir: &Path, envs: usize, parallel: usize) -> Duration {
    let input: String = (0..envs).map(|i| format!("e-{i:04}\n")).collect();
    let started = Instant::now();
    let mut child = Process::new("xargs")
        .args([
            "-P",
            &parallel.to_string(),
            "-I{}",
            "./deploy/apply.sh",
            "{}",
            "api",
            "1.0",
        ])
        .current_dir(dir)
        .stdin(Stdio::piped())
        .spawn()
        .expect("xargs");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());
    started.elapsed()
}

/// ansible-core in a venv of its own, made once.
fn ansible(venv: &Path) -> Option<PathBuf> {
    let bin = venv.join("bin").join("ansible-playbook");
    if bin.exists() {
        return Some(bin);
    }
    println!("installing ansible-core into {} (once)...", venv.display());
    let made = Process::new("python3")
        .args(["-m", "venv"])
        .arg(venv)
        .status()
        .ok()?
        .success();
    let pip = venv.join("bin").join("pip");
    let installed = made
        && Process::new(&pip)
            .args(["install", "-q", "ansible-core"])
            .status()
            .ok()?
            .success();
    (installed && bin.exists()).then_some(bin)
}

/// The same waves and budget as an ansible play: the canary first, then the rest, forks as
/// the parallelism, at most 5% failing.
fn ansible_run(playbook: &Path, dir: &Path, envs: usize, parallel: usize) -> Option<Duration> {
    let inventory: String = std::iter::once("[fleet]\n".to_string())
        .chain((0..envs).map(|i| format!("e-{i:04} ansible_connection=local\n")))
        .collect();
    std::fs::write(dir.join("inventory.ini"), inventory).ok()?;
    let play = format!(
        r#"- hosts: fleet
  gather_facts: false
  serial: [1, "100%"]
  max_fail_percentage: 5
  tasks:
    - name: apply
      ansible.builtin.command: "{}/deploy/apply.sh {{{{ inventory_hostname }}}} api 1.0"
"#,
        dir.display()
    );
    std::fs::write(dir.join("play.yml"), play).ok()?;
    let python = playbook.parent()?.join("python");
    let started = Instant::now();
    let ok = Process::new(playbook)
        .args([
            "-i",
            "inventory.ini",
            "play.yml",
            "-f",
            &parallel.to_string(),
        ])
        .arg("-e")
        .arg(format!("ansible_python_interpreter={}", python.display()))
        .current_dir(dir)
        .env("ANSIBLE_HOST_KEY_CHECKING", "False")
        .stdout(Stdio::null())
        .status()
        .ok()?
        .success();
    ok.then(|| started.elapsed())
}

fn main() {
    let envs = arg("--envs", 200);
    let parallel = arg("--parallel", 20);
    let dir = tempfile::tempdir().expect("tempdir");
    let repo_dir = dir.path().join("repo");
    intent::write::write_repo(&repo_dir, &repo(envs, parallel)).expect("repo");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            repo_dir.join("deploy/apply.sh"),
            std::fs::Permissions::from_mode(0o755),
        )
        .expect("chmod");
    }
    println!("{envs} environments, parallelism {parallel}, apply = sleep 20ms");

    // Interleaved, median of 3, so load on a shared machine hits both alike.
    let mut ours = Vec::new();
    let mut bare = Vec::new();
    for _ in 0..3 {
        ours.push(engine_run(&repo_dir, "1.0"));
        bare.push(xargs_run(&repo_dir, envs, parallel));
    }
    ours.sort();
    bare.sort();
    let (ours, bare) = (ours[1], bare[1]);
    // The waves make flotilla wait for the canary first; xargs has none.
    println!(
        "exec driver: {:.0} ms wall; xargs -P {parallel}: {:.0} ms; ratio {:.2}x (target <= 1.3x)",
        ours.as_secs_f64() * 1e3,
        bare.as_secs_f64() * 1e3,
        ours.as_secs_f64() / bare.as_secs_f64()
    );

    if std::env::args().any(|a| a == "--no-ansible") {
        return;
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-venv");
    match ansible(&venv).and_then(|bin| ansible_run(&bin, &repo_dir, envs, parallel)) {
        Some(theirs) => println!(
            "ansible-core (serial [1, 100%], max_fail_percentage 5, forks {parallel}): {:.0} ms; flotilla {:.0}x faster (target >= 50x)",
            theirs.as_secs_f64() * 1e3,
            theirs.as_secs_f64() / ours.as_secs_f64()
        ),
        None => println!("ansible-core: skipped (could not install it with pip or run it here)"),
    }
}
