//! The real binary's console in a real terminal (tmux): the demo starts, the canary gate is
//! approved with keys, the rollout proceeds, `q` quits and the terminal is restored.

use std::process::Command;
use std::time::{Duration, Instant};

struct Tmux {
    socket: String,
}

impl Tmux {
    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux runs (CI installs it; `apt-get install tmux` here)");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "e2e"])
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "e2e"];
        args.extend(keys);
        self.run(&args);
    }

    /// Waits until the screen shows `text` (the process runs on its own clock).
    fn wait_for(&self, text: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let screen = self.screen();
            if screen.contains(text) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "the screen never showed {text:?}; it shows:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}

#[test]
fn the_demo_console_approves_the_canary_with_keys_and_quits_restoring_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_flotilla");
    let script = format!(
        "XDG_DATA_HOME={d}/data XDG_CONFIG_HOME={d}/config LANG=C.UTF-8 TERM=xterm-256color {bin} demo --envs 12; \
         echo EXIT=$?; stty -a | tr ' ;' '\\n\\n' | grep -x -e '-\\?icanon' -e '-\\?echo'; sleep 600",
        d = dir.path().display()
    );
    let tmux = Tmux {
        socket: format!("flotilla-e2e-{}", std::process::id()),
    };
    tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "e2e",
        "-x",
        "100",
        "-y",
        "30",
        "sh",
        "-c",
        &script,
    ]);
    let long = Duration::from_secs(60);
    let screen = tmux.wait_for("gate canary waits for approval", long);
    assert!(screen.contains("release 2026.11.2"), "{screen}");
    assert!(screen.contains("q quit"), "{screen}");

    tmux.keys(&["a"]);
    tmux.wait_for("approve wave canary", long);
    tmux.keys(&["checked in e2e", "Enter"]);
    // The rollout proceeds: the canary wave finishes, soaks, and the next gate is reached.
    let screen = tmux.wait_for("gate early waits for approval", long);
    assert!(!screen.contains("failures 1"), "{screen}");

    tmux.keys(&["q"]);
    tmux.wait_for("Quit now?", long);
    tmux.keys(&["y"]);
    tmux.wait_for("EXIT=", long);
    // The terminal's modes are printed just after the exit code: wait for them too (either
    // spelling, `icanon` or `-icanon`), then say which.
    let after = tmux.wait_for("icanon", long);
    assert!(after.contains("stopped when you quit"), "{after}");
    assert!(
        after.contains("EXIT=130"),
        "an interrupted rollout exits 130:\n{after}"
    );
    // Raw mode is off again: the terminal reads lines and echoes.
    let lines: Vec<&str> = after.lines().map(str::trim).collect();
    assert!(lines.contains(&"icanon"), "{after}");
    assert!(lines.contains(&"echo"), "{after}");
    assert!(
        !after.contains("Fleet 12"),
        "the alternate screen was left:\n{after}"
    );
}

#[test]
fn the_console_attaches_to_a_rollout_another_process_runs_and_steers_it() {
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_flotilla");
    let repo = dir.path().join("repo");
    let state = dir.path().join("state.db");
    let init = Command::new(bin)
        .args(["init", "--demo", "--envs", "6"])
        .arg(&repo)
        .output()
        .unwrap();
    assert!(init.status.success(), "{init:?}");
    // The engine: a headless rollout waiting at its gates for someone to approve.
    let log = std::fs::File::create(dir.path().join("engine.log")).unwrap();
    let mut engine = Command::new(bin)
        .arg("--repo")
        .arg(&repo)
        .arg("--state")
        .arg(&state)
        .args(["rollout", "2026.11.2", "--wait"])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    // The console attaches once the engine has started the rollout.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(dir.path().join("engine.log")).unwrap_or_default();
        if text.contains("waiting for approval") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the engine never started:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let tmux = Tmux {
        socket: format!("flotilla-attach-{}", std::process::id()),
    };
    let script = format!(
        "LANG=C.UTF-8 {bin} --repo {} --state {} console; echo EXIT=$?; sleep 600",
        repo.display(),
        state.display()
    );
    tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "e2e",
        "-x",
        "120",
        "-y",
        "40",
        "sh",
        "-c",
        &script,
    ]);
    let long = Duration::from_secs(60);
    let screen = tmux.wait_for("gate canary waits for approval", long);
    assert!(screen.contains("q detaches"), "{screen}");
    tmux.keys(&["a"]);
    tmux.wait_for("approve wave canary", long);
    tmux.keys(&["from the other terminal", "Enter"]);
    tmux.wait_for("wave canary: done", long);
    tmux.keys(&["p"]);
    tmux.wait_for("PAUSED", long);
    tmux.keys(&["q"]);
    let after = tmux.wait_for("EXIT=", long);
    assert!(after.contains("detached"), "{after}");
    assert!(after.contains("EXIT=0"), "{after}");
    // The engine went on without the console and heard both commands.
    let _ = engine.kill();
    let _ = engine.wait();
    let text = std::fs::read_to_string(dir.path().join("engine.log")).unwrap();
    assert!(
        text.contains("approved by") && text.contains("from the other terminal"),
        "{text}"
    );
    assert!(text.contains("paused by"), "{text}");
}

/// A rollout whose preflight fails opens on the checklist at 80x24: quitting there starts
/// nothing (exit 3); overriding the failure with a typed reason starts the console, and
/// `audit` shows the override with who and why.
#[test]
fn a_failed_preflight_opens_the_checklist_and_an_override_typed_there_is_journaled() {
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_flotilla");
    let repo = dir.path().join("repo");
    let state = dir.path().join("state.db");
    let init = Command::new(bin)
        .args(["init", "--demo", "--envs", "12"])
        .arg(&repo)
        .output()
        .unwrap();
    assert!(init.status.success(), "{init:?}");
    let fleet = repo.join("flotilla.toml");
    let text = std::fs::read_to_string(&fleet).unwrap();
    std::fs::write(
        &fleet,
        text.replace("[policy]\n", "[policy]\nmax_wave_fraction = 0.2\n"),
    )
    .unwrap();
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .arg("-C")
            .arg(&repo)
            .args(["-c", "user.name=t", "-c", "user.email=t@t"])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    };
    git(&["commit", "-qam", "smaller waves"]);
    let tmux = Tmux {
        socket: format!("flotilla-checklist-{}", std::process::id()),
    };
    let script = format!(
        "NO_COLOR=1 LANG=C.UTF-8 {bin} --repo {} --state {} console 2026.11.2; echo EXIT=$?; sleep 600",
        repo.display(),
        state.display()
    );
    let open = |tmux: &Tmux| {
        tmux.run(&["kill-session", "-t", "e2e"]);
        tmux.run(&[
            "new-session",
            "-d",
            "-s",
            "e2e",
            "-x",
            "80",
            "-y",
            "24",
            "sh",
            "-c",
            &script,
        ]);
    };
    let long = Duration::from_secs(60);
    open(&tmux);
    let screen = tmux.wait_for("Preflight of 2026.11.2", long);
    assert!(screen.contains(">FAIL policy.blast-radius"), "{screen}");
    tmux.keys(&["q"]);
    let after = tmux.wait_for("EXIT=", long);
    assert!(after.contains("EXIT=3"), "{after}");
    assert!(
        after.contains("preflight FAILED: policy.blast-radius"),
        "{after}"
    );

    open(&tmux);
    tmux.wait_for("Preflight of 2026.11.2", long);
    tmux.keys(&["o"]);
    tmux.wait_for("reason for overriding policy.blast-radius", long);
    tmux.keys(&["CAB-7 agreed one wave", "Enter"]);
    tmux.wait_for("overridden; Enter starts the rollout", long);
    tmux.keys(&["Enter"]);
    tmux.wait_for("gate canary waits for approval", long);
    tmux.keys(&["q"]);
    tmux.wait_for("Quit now?", long);
    tmux.keys(&["y"]);
    tmux.wait_for("EXIT=", long);
    let audit = Command::new(bin)
        .arg("--repo")
        .arg(&repo)
        .arg("--state")
        .arg(&state)
        .arg("audit")
        .output()
        .unwrap();
    let audit = String::from_utf8_lossy(&audit.stdout);
    assert!(
        audit.contains("preflight policy.blast-radius overridden by")
            && audit.contains("CAB-7 agreed one wave"),
        "{audit}"
    );
}
