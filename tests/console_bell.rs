//! The console in a real pseudo-terminal (util-linux `script`): the bell rings when the
//! demo's canary gate starts waiting, and does not with `bell = false` in console.toml;
//! the log goes to its file in the platform state directory, never to the console's screen.

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Everything the console (run with `-vv`) wrote to its terminal until the gate showed as
/// waiting, and what it logged meanwhile.
fn terminal_output(bell: Option<bool>) -> (Vec<u8>, String) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("console.toml");
    let text = match bell {
        Some(b) => format!("bell = {b}\n"),
        None => String::new(),
    };
    std::fs::write(&config, text).unwrap();
    let typescript = dir.path().join("typescript");
    let bin = env!("CARGO_BIN_EXE_flotilla");
    let mut child = Command::new("script")
        .args(["-q", "-f", "-e", "-c"])
        // The pseudo-terminal has no size of its own when the test has no terminal.
        .arg(format!("stty rows 24 cols 80; {bin} -vv demo --envs 6"))
        .arg(&typescript)
        .env("FLOTILLA_CONSOLE_CONFIG", &config)
        .env("XDG_DATA_HOME", dir.path().join("data"))
        .env("XDG_CONFIG_HOME", dir.path().join("config"))
        .env("XDG_STATE_HOME", dir.path().join("state"))
        .env_remove("FLOTILLA_LOG_DIR")
        .env_remove("RUST_LOG")
        .env("TERM", "xterm-256color")
        .env("LANG", "C.UTF-8")
        .env_remove("TERM_PROGRAM")
        .env_remove("VTE_VERSION")
        .env_remove("WT_SESSION")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("`script` runs (util-linux; CI installs it)");
    let deadline = Instant::now() + Duration::from_secs(60);
    let out = loop {
        let out = std::fs::read(&typescript).unwrap_or_default();
        if String::from_utf8_lossy(&out).contains("waits for approval") {
            break out;
        }
        assert!(
            Instant::now() < deadline,
            "the console never showed the gate:\n{}",
            String::from_utf8_lossy(&out)
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    // SAFETY: kill(2) on the process group this test started.
    unsafe {
        libc::kill(-(child.id() as i32), libc::SIGKILL);
    }
    let _ = child.wait();
    let log = dir.path().join("state/flotilla/log/flotilla.log");
    (out, std::fs::read_to_string(log).unwrap_or_default())
}

#[test]
fn the_bell_rings_when_a_gate_waits_and_not_with_bell_false() {
    let (rung, log) = terminal_output(None);
    assert!(rung.contains(&0x07), "no bell was sent");
    assert!(
        log.contains("\"kind\":\"gate_waiting\"") && log.contains("step_started"),
        "the console's rollout is logged, its steps too with -vv: {log}"
    );
    let screen = String::from_utf8_lossy(&rung);
    for word in [" INFO ", " DEBUG ", " TRACE ", "flotilla::"] {
        assert!(
            !screen.contains(word),
            "`{word}` on the console's screen: {screen}"
        );
    }
    let (quiet, _) = terminal_output(Some(false));
    assert!(!quiet.contains(&0x07), "a bell was sent with bell = false");
}
