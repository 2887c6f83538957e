//! The exec driver: the commands a team already uses (helm, kubectl, terraform, ssh), run once
//! per environment and service.
//!
//! Commands are argv arrays, never a shell unless argv itself starts one. Placeholders expand
//! inside one argument, so a value with spaces, quotes, `;` or a leading `-` stays one
//! argument. Each process runs in its own process group from the intent repo's root; a step
//! timeout (the engine drops the call) kills the whole group. Output is kept bounded (the
//! last 4 KiB of each stream) and a failure quotes the end of stderr.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde::Deserialize;
use tokio::io::AsyncReadExt;
use toml::Spanned;

use super::text::{excerpt, shown};
use super::{ApplyRequest, Driver, DriverError, DriverFuture, Health, LiveState, Printed};
use crate::intent::Environment;

/// `[driver.exec]` as written in `flotilla.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecDef {
    pub apply: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub observe: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub health: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub ping: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub transient_exit_codes: Vec<i32>,
}

/// The exec driver's settings, checked.
#[derive(Debug, Clone, Default)]
pub struct ExecConfig {
    pub apply: Vec<String>,
    pub observe: Option<Vec<String>>,
    pub health: Option<Vec<String>>,
    pub ping: Option<Vec<String>>,
    /// Exit codes that mean "try again"; any other non-zero exit is permanent.
    pub transient_exit_codes: Vec<i32>,
}

impl ExecConfig {
    /// The commands set, apply first.
    pub fn commands(&self) -> Vec<&Vec<String>> {
        [
            Some(&self.apply),
            self.observe.as_ref(),
            self.health.as_ref(),
            self.ping.as_ref(),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

/// The program of `argv` when it is a path inside the repo (`./deploy/apply.sh`),
/// repo-relative.
pub fn repo_program(argv: &[String]) -> Option<String> {
    argv.first()
        .filter(|p| p.contains('/') && Path::new(p.as_str()).is_relative())
        .map(|p| p.trim_start_matches("./").to_string())
}

/// Which command a placeholder appears in: each knows only what it is run for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Apply,
    Health,
    Observe,
    Ping,
    /// A wave's `check`: about a wave, not one environment.
    Check,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Apply => "apply",
            Role::Health => "health",
            Role::Observe => "observe",
            Role::Ping => "ping",
            Role::Check => "check",
        }
    }

    /// Whether `{label.KEY}` means something here: only for a command about one environment.
    fn has_labels(self) -> bool {
        self != Role::Check
    }

    /// The placeholders as a help line.
    pub fn help(self) -> String {
        let mut all: Vec<String> = self
            .placeholders()
            .iter()
            .map(|p| format!("{{{p}}}"))
            .collect();
        if self.has_labels() {
            all.push("{label.KEY}".into());
        }
        format!("placeholders: {}", all.join(" "))
    }

    /// The placeholders this command may use.
    fn placeholders(self) -> &'static [&'static str] {
        match self {
            Role::Apply => &[
                "env",
                "service",
                "version",
                "revision",
                "config_file",
                "target",
            ],
            Role::Health => &["env", "service", "target"],
            Role::Observe | Role::Ping => &["env", "target"],
            Role::Check => &["wave", "release", "revision", "envs"],
        }
    }
}

/// One piece of a command argument as written.
enum Piece<'a> {
    /// Literal text (`{{` and `}}` each become one brace).
    Text(&'a str),
    /// `{name}`, with the byte range of the whole placeholder, braces included.
    Placeholder(std::ops::Range<usize>, &'a str),
    /// A `{` without its `}`, at this byte; the rest of the argument follows as text.
    Unclosed(usize),
}

/// Splits an argument into text and placeholders: the one reading of the placeholder syntax
/// that checking, label lookup and expansion share.
fn pieces(arg: &str) -> Vec<Piece<'_>> {
    let bytes = arg.as_bytes();
    let mut out = Vec::new();
    let (mut i, mut text) = (0, 0);
    // Braces are ASCII, so byte offsets found here are always character boundaries.
    while i < bytes.len() {
        let doubled = bytes.get(i + 1) == Some(&bytes[i]);
        match bytes[i] {
            b'{' | b'}' if doubled => {
                out.push(Piece::Text(&arg[text..i]));
                out.push(Piece::Text(&arg[i..i + 1]));
                i += 2;
                text = i;
            }
            b'{' => {
                out.push(Piece::Text(&arg[text..i]));
                match arg[i..].find('}') {
                    Some(len) => {
                        out.push(Piece::Placeholder(i..i + len + 1, &arg[i + 1..i + len]));
                        i += len + 1;
                    }
                    None => {
                        out.push(Piece::Unclosed(i));
                        out.push(Piece::Text(&arg[i..]));
                        i = bytes.len();
                    }
                }
                text = i;
            }
            _ => i += 1,
        }
    }
    out.push(Piece::Text(&arg[text..]));
    out
}

/// Whether the placeholders of `arg` are ones `role` knows; if not, the byte range of the
/// first bad one inside `arg` and what is wrong.
pub fn check_placeholders(arg: &str, role: Role) -> Result<(), (std::ops::Range<usize>, String)> {
    for piece in pieces(arg) {
        match piece {
            Piece::Text(_) => {}
            Piece::Unclosed(start) => {
                return Err((
                    start..arg.len(),
                    "a `{` without its `}`: placeholders are written `{env}`".into(),
                ))
            }
            Piece::Placeholder(range, name) => {
                let known = role.placeholders().contains(&name)
                    || (role.has_labels()
                        && name.strip_prefix("label.").is_some_and(|k| !k.is_empty()));
                if !known {
                    let all = role.placeholders().join("}, {");
                    let labels = if role.has_labels() {
                        " and {label.KEY}"
                    } else {
                        ""
                    };
                    return Err((
                        range,
                        format!(
                            "unknown placeholder `{{{name}}}` in the {} command (it may use {{{all}}}{labels})",
                            role.name()
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The label keys `arg` uses (`{label.KEY}`), so validate can check every environment has
/// them.
pub fn labels_used(arg: &str) -> Vec<String> {
    let mut keys: Vec<String> = Vec::new();
    for piece in pieces(arg) {
        if let Piece::Placeholder(_, name) = piece {
            if let Some(key) = name.strip_prefix("label.").filter(|k| !k.is_empty()) {
                if !keys.iter().any(|k| k == key) {
                    keys.push(key.to_string());
                }
            }
        }
    }
    keys
}

/// One argument with each placeholder replaced by `value` of its name (`{{` and `}}` are
/// literal braces): always exactly one argument.
pub fn expand(arg: &str, value: impl Fn(&str) -> String) -> String {
    let mut out = String::with_capacity(arg.len());
    for piece in pieces(arg) {
        match piece {
            Piece::Text(text) => out.push_str(text),
            Piece::Placeholder(_, name) => out.push_str(&value(name)),
            // Refused by validate; what follows is kept as text.
            Piece::Unclosed(_) => {}
        }
    }
    out
}

/// What placeholders expand to for one call.
struct Values<'a> {
    env: &'a Environment,
    service: Option<&'a str>,
    version: Option<&'a str>,
    revision: Option<&'a str>,
    config_file: Option<&'a Path>,
}

impl<'a> Values<'a> {
    /// For a command about the environment as a whole (observe, ping).
    fn for_env(env: &'a Environment) -> Self {
        Values {
            env,
            service: None,
            version: None,
            revision: None,
            config_file: None,
        }
    }

    fn get(&self, name: &str) -> String {
        match name {
            "env" => self.env.name.clone(),
            "service" => self.service.unwrap_or_default().to_string(),
            "version" => self.version.unwrap_or_default().to_string(),
            "revision" => self.revision.unwrap_or_default().to_string(),
            "config_file" => self
                .config_file
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            "target" => self.env.target.clone().unwrap_or_default(),
            other => other
                .strip_prefix("label.")
                .and_then(|k| self.env.labels.get(k))
                .cloned()
                .unwrap_or_default(),
        }
    }

    fn expand(&self, arg: &str) -> String {
        expand(arg, |name| self.get(name))
    }

    fn env_vars(&self) -> Vec<(&'static str, String)> {
        vec![
            ("FLOTILLA_ENV", self.get("env")),
            ("FLOTILLA_SERVICE", self.get("service")),
            ("FLOTILLA_VERSION", self.get("version")),
            ("FLOTILLA_REVISION", self.get("revision")),
            ("FLOTILLA_CONFIG_FILE", self.get("config_file")),
            ("FLOTILLA_TARGET", self.get("target")),
        ]
    }
}

/// How much of each stream is kept.
const KEEP: usize = 4096;

/// How a command ended.
pub struct Ran {
    /// None: killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    /// What the command printed, for the step's events, with `secrets` masked.
    pub fn output(&self, secrets: &[String]) -> Printed {
        Printed {
            stdout: shown(&self.stdout, secrets),
            stderr: shown(&self.stderr, secrets),
        }
    }

    /// How it ended, in words, with the last lines of its stderr: "exited 1: no such
    /// release".
    pub fn ending(&self, secrets: &[String]) -> String {
        let stderr = shown(&self.stderr, secrets);
        let last: Vec<&str> = stderr.lines().rev().take(3).collect();
        let said = last.into_iter().rev().collect::<Vec<_>>().join(" / ");
        let code = self.code.map_or("was killed by a signal".to_string(), |c| {
            format!("exited {c}")
        });
        if said.is_empty() {
            code
        } else {
            format!("{code}: {said}")
        }
    }
}

/// Kills a process group when dropped before its leader was reaped: a step timeout drops
/// the call, and nothing the command started may outlive it.
struct Group {
    pgid: Option<i32>,
}

impl Drop for Group {
    fn drop(&mut self) {
        if let Some(pgid) = self.pgid {
            // SAFETY: kill(2) on our own child's process group.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
    }
}

/// The most of `observe`'s output read: live state is read whole, up to this.
const OBSERVE_LIMIT: usize = 16 << 20;

/// Reads a stream to its end, keeping only its last `keep` bytes. When it had to cut, the
/// first line kept is dropped: it is a piece of a line, which may end a secret that the
/// masking could then not recognise.
async fn tail(mut stream: impl tokio::io::AsyncRead + Unpin, keep: usize) -> Vec<u8> {
    let mut cut = false;
    let mut kept = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                kept.extend_from_slice(&buf[..n]);
                if kept.len() > 2 * keep {
                    kept.drain(..kept.len() - keep);
                    cut = true;
                }
            }
        }
    }
    if kept.len() > keep {
        kept.drain(..kept.len() - keep);
        cut = true;
    }
    if cut {
        match kept.iter().position(|&b| b == b'\n') {
            Some(nl) => drop(kept.drain(..=nl)),
            // One long line, cut: nothing of it can be shown safely.
            None => kept = b"(the output's end is one line longer than 4 KiB; not kept)\n".to_vec(),
        }
    }
    kept
}

/// How long the output of a command that has exited is still read: something it left in
/// the background may hold its pipes open, and the step must not wait for that.
const DRAIN_AFTER_EXIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Runs argv commands from the intent repo's root, each in its own process group, marked
/// as this engine's: the exec driver's hooks and the waves' checks.
pub struct Runner {
    /// Relative programs are found here, and commands run here.
    root: PathBuf,
    /// `PID:PLACE` in every command's environment ([`ENGINE_MARK`]).
    mark: String,
}

/// The environment variable that marks a command (and what it starts) as an engine's.
pub const ENGINE_MARK: &str = "FLOTILLA_ENGINE";

impl Runner {
    /// A runner for commands run from `root`; `place` names the state they belong to (the
    /// state database), for [`kill_orphans`].
    pub fn new(root: &Path, place: &str) -> Self {
        Runner {
            root: root.to_path_buf(),
            mark: format!("{}:{place}", std::process::id()),
        }
    }

    /// Runs `argv`, each argument expanded by `expand`, with `vars` in its environment.
    /// `subject` (an environment, a wave) goes into the errors. Dropping the call kills the
    /// command's whole process group.
    pub async fn run(
        &self,
        what: &str,
        subject: &str,
        argv: &[String],
        expand: impl Fn(&str) -> String,
        vars: Vec<(&'static str, String)>,
    ) -> Result<Ran, DriverError> {
        let args: Vec<String> = argv.iter().map(|a| expand(a)).collect();
        // A value may not turn an argument into an option the command line did not write.
        if let Some((template, arg)) = argv
            .iter()
            .zip(&args)
            .skip(1)
            .find(|(t, a)| a.starts_with('-') && !t.starts_with('-'))
        {
            return Err(DriverError::permanent(format!(
                "the {what} command for {subject}: `{template}` expands to `{}`, which would read as an option; write it after `--` or inside another argument (`--flag={template}`)",
                excerpt(arg)
            )));
        }
        let Some((program, rest)) = args.split_first() else {
            return Err(DriverError::permanent(format!(
                "the {what} command is empty"
            )));
        };
        // A relative path names a script in the repo; a bare name is looked up on PATH.
        let program = if program.contains('/') && Path::new(program).is_relative() {
            self.root.join(program)
        } else {
            PathBuf::from(program)
        };
        if program.components().count() > 1 && !program.exists() {
            return Err(DriverError::permanent(format!(
                "the {what} command `{}` for {subject} does not exist",
                program.display(),
            )));
        }
        let mut cmd = tokio::process::Command::new(&program);
        cmd.args(rest)
            .current_dir(&self.root)
            .envs(vars)
            // Marks the command and everything it starts as this engine's: if the engine
            // is killed, the next one on this state kills what is left before it observes.
            .env(ENGINE_MARK, &self.mark)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = cmd.spawn().map_err(|e| {
            DriverError::permanent(format!(
                "cannot run the {what} command `{}` for {subject}: {e}",
                program.display(),
            ))
        })?;
        let mut group = Group {
            pgid: child.id().map(|p| p as i32),
        };
        let keep_out = if what == "observe" {
            OBSERVE_LIMIT
        } else {
            KEEP
        };
        let out = tokio::spawn(tail(child.stdout.take().expect("piped"), keep_out));
        let err = tokio::spawn(tail(child.stderr.take().expect("piped"), KEEP));
        let status = child.wait().await;
        // Reaped: the group's leader is gone; what it left in the background is its own
        // business, and its output is read only a moment longer.
        group.pgid = None;
        let read = |h: tokio::task::JoinHandle<Vec<u8>>| async move {
            match tokio::time::timeout(DRAIN_AFTER_EXIT, h).await {
                Ok(Ok(bytes)) => bytes,
                _ => Vec::new(),
            }
        };
        let (stdout, stderr) = tokio::join!(read(out), read(err));
        let status = status.map_err(|e| {
            DriverError::transient(format!(
                "the {what} command for {subject} failed to run: {e}"
            ))
        })?;
        tracing::debug!(
            "{what} for {subject}: `{}` ended with {status}",
            program.display()
        );
        Ok(Ran {
            code: status.code(),
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        })
    }
}

/// The exec driver.
pub struct ExecDriver {
    config: ExecConfig,
    runner: Runner,
}

impl ExecDriver {
    /// A driver for commands run from `root`; `place` names the state they belong to (the
    /// state database), for [`kill_orphans`].
    pub fn new(config: ExecConfig, root: &Path, place: &str) -> Self {
        ExecDriver {
            config,
            runner: Runner::new(root, place),
        }
    }

    /// Whether an apply command is set (an agent may run only some of its hooks).
    pub fn applies(&self) -> bool {
        !self.config.apply.is_empty()
    }

    /// Whether an observe command is set.
    pub fn observes(&self) -> bool {
        self.config.observe.is_some()
    }

    /// Whether a health command is set.
    pub fn checks_health(&self) -> bool {
        self.config.health.is_some()
    }

    /// Runs `argv` with `values`, in its own process group.
    async fn run(
        &self,
        what: &str,
        argv: &[String],
        values: &Values<'_>,
    ) -> Result<Ran, DriverError> {
        self.runner
            .run(
                what,
                &values.env.name,
                argv,
                |a| values.expand(a),
                values.env_vars(),
            )
            .await
    }

    /// The error for a command that exited non-zero: transient when its code says so.
    fn failure(&self, what: &str, env: &str, ran: &Ran, secrets: &[String]) -> DriverError {
        let message = format!("{what} for {env} {}", ran.ending(secrets));
        let error = match ran.code {
            Some(c) if self.config.transient_exit_codes.contains(&c) => {
                DriverError::transient(message)
            }
            _ => DriverError::permanent(message),
        };
        error.with_output(ran.output(secrets))
    }
}

/// Kills the process groups of commands whose engine, of the same `place`, is gone (a
/// `kill -9`): they would otherwise go on applying while a new engine observes and applies
/// again. Only processes of this user on this host are seen; a live engine's are left.
/// Called by the engine that holds the lease, before it observes anything.
pub fn kill_orphans(place: &str) {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    let me = std::process::id();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        let prefix = format!("{ENGINE_MARK}=");
        let Some(mark) = environ
            .split(|b| *b == 0)
            .find_map(|var| var.strip_prefix(prefix.as_bytes()))
        else {
            continue;
        };
        let mark = String::from_utf8_lossy(mark);
        let Some((engine, their_place)) = mark.split_once(':') else {
            continue;
        };
        let Ok(engine) = engine.parse::<i32>() else {
            continue;
        };
        // SAFETY: signal 0 only asks whether the engine still exists. Only "no such
        // process" means gone (not permitted: someone else's, alive).
        let engine_alive = unsafe { libc::kill(engine, 0) } == 0
            || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH);
        if their_place == place && engine as u32 != me && !engine_alive {
            // SAFETY: getpgid/kill on a process found just above; at worst it is gone.
            unsafe {
                let pgid = libc::getpgid(pid);
                if pgid > 0 {
                    libc::kill(-pgid, libc::SIGKILL);
                }
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
}

/// The clear values of a request's secrets, to keep them out of what a command printed.
/// Each in the forms a command may print it: as is, as the config file's JSON writes it
/// (escaped), and line by line for a value of several lines (a key in PEM), whose lines a
/// cut output may hold without the rest.
fn secret_values(req: &ApplyRequest) -> Vec<String> {
    let mut values = Vec::new();
    for path in &req.secrets {
        let Some(value) = crate::secrets::value_at(&req.config, path) else {
            continue;
        };
        let json = serde_json::to_value(value).unwrap_or_default();
        let text = match value {
            toml::Value::String(s) => s.clone(),
            _ => json.to_string(),
        };
        if let serde_json::Value::String(_) = json {
            let escaped = json.to_string();
            values.push(escaped[1..escaped.len() - 1].to_string());
        }
        // Short lines and a PEM's delimiters would mask ordinary text: only lines of
        // substance.
        values.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| l.len() >= 8 && !l.starts_with("-----") && *l != text)
                .map(str::to_string),
        );
        values.push(text);
    }
    values
}

impl Driver for ExecDriver {
    fn ping<'a>(&'a self, env: &'a Environment) -> DriverFuture<'a, ()> {
        Box::pin(async move {
            let Some(argv) = &self.config.ping else {
                return Ok(());
            };
            let values = Values::for_env(env);
            let ran = self.run("ping", argv, &values).await?;
            match ran.code {
                Some(0) => Ok(()),
                _ => Err(self.failure("ping", &env.name, &ran, &[])),
            }
        })
    }

    fn observe<'a>(&'a self, env: &'a Environment) -> DriverFuture<'a, LiveState> {
        Box::pin(async move {
            let Some(argv) = &self.config.observe else {
                return Err(DriverError::permanent(
                    "no observe command is configured ([driver.exec] observe)",
                ));
            };
            let values = Values::for_env(env);
            let ran = self.run("observe", argv, &values).await?;
            if ran.code != Some(0) {
                return Err(self.failure("observe", &env.name, &ran, &[]));
            }
            super::live_doc::parse(&ran.stdout).map_err(|why| {
                DriverError::permanent(format!(
                    "observe for {} (`{}`) printed {why}; it must print {}",
                    env.name,
                    argv.join(" "),
                    super::live_doc::SHAPE
                ))
            })
        })
    }

    fn apply<'a>(
        &'a self,
        env: &'a Environment,
        req: &'a ApplyRequest,
    ) -> DriverFuture<'a, Printed> {
        Box::pin(async move {
            // The step's desired state, for the command to read; readable by us only (it
            // holds the secrets the command needs), removed when the call ends however.
            let dir = tempfile::Builder::new()
                .prefix("flotilla-step-")
                .tempdir()
                .map_err(|e| {
                    DriverError::transient(format!("cannot make a temporary directory: {e}"))
                })?;
            let file = dir.path().join("desired.json");
            let doc = serde_json::json!({
                "env": env.name,
                "service": req.service,
                "version": req.version,
                "revision": req.revision,
                "config": req.config,
            });
            write_private(&file, doc.to_string().as_bytes()).map_err(|e| {
                DriverError::transient(format!("cannot write {}: {e}", file.display()))
            })?;
            let values = Values {
                env,
                service: Some(&req.service),
                version: Some(&req.version),
                revision: Some(&req.revision),
                config_file: Some(&file),
            };
            let ran = self.run("apply", &self.config.apply, &values).await?;
            match ran.code {
                Some(0) => Ok(ran.output(&secret_values(req))),
                _ => Err(self.failure(
                    &format!("apply of {} {}", req.service, req.version),
                    &env.name,
                    &ran,
                    &secret_values(req),
                )),
            }
        })
    }

    fn health<'a>(&'a self, env: &'a Environment, service: &'a str) -> DriverFuture<'a, Health> {
        Box::pin(async move {
            let Some(argv) = &self.config.health else {
                return Ok(Health::Healthy);
            };
            let values = Values {
                env,
                service: Some(service),
                version: None,
                revision: None,
                config_file: None,
            };
            let ran = self.run("health", argv, &values).await?;
            Ok(match ran.code {
                Some(0) => Health::Healthy,
                _ => {
                    let said = excerpt(ran.stderr.lines().last().unwrap_or(""));
                    Health::Unhealthy(if said.is_empty() {
                        format!("the health command exited {}", ran.code.unwrap_or(-1))
                    } else {
                        said
                    })
                }
            })
        })
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_cut_tail_starts_at_a_whole_line_so_no_piece_of_a_line_is_kept() {
        // The cut falls inside the secret on the first line: what is kept of that line is
        // the secret's end, which masking the whole value would not find.
        let mut text = b"password=s3cr3t-value\n".to_vec();
        text.extend(std::iter::repeat_n(b'x', 30).chain(*b"\nlast line\n"));
        let kept = tail(&text[..], text.len() - 10).await;
        assert_eq!(
            String::from_utf8(kept).unwrap(),
            format!("{}\nlast line\n", "x".repeat(30))
        );
        // Nothing cut: everything kept.
        assert_eq!(tail(&b"a\nb\n"[..], 100).await, b"a\nb\n");
        // One long line cut: none of it.
        let long = tail(&[b'y'; 100][..], 50).await;
        assert!(!long.contains(&b'y'), "{}", String::from_utf8_lossy(&long));
    }

    #[test]
    fn secrets_are_masked_as_json_writes_them_and_line_by_line() {
        let pem = "-----BEGIN KEY-----\nMIIEvQIBADANBgkq\nhkiG9w0BAQEFAASC\n-----END KEY-----";
        let mut config = toml::Table::new();
        config.insert("tls_key".into(), toml::Value::String(pem.into()));
        config.insert("password".into(), toml::Value::String("a\"b\\c".into()));
        let req = ApplyRequest {
            service: "api".into(),
            version: "1".into(),
            config,
            revision: "r".into(),
            secrets: vec!["tls_key".into(), "password".into()],
        };
        let values = secret_values(&req);
        // The config file's JSON escapes the quote and the backslash.
        let printed = "{\"password\":\"a\\\"b\\\\c\"} and a cut key: hkiG9w0BAQEFAASC";
        let shown = shown(printed, &values);
        assert!(!shown.contains("a\\\"b"), "{shown}");
        assert!(!shown.contains("hkiG9w0BAQEFAASC"), "{shown}");
        // A PEM's delimiter lines are not secrets (they would mask ordinary text).
        assert!(
            !values.iter().any(|v| v == "-----BEGIN KEY-----"),
            "{values:?}"
        );
    }

    #[tokio::test]
    async fn a_value_that_would_read_as_an_option_is_refused() {
        let env = Environment {
            name: "e".into(),
            labels: Default::default(),
            target: Some("-oProxyCommand=evil".into()),
            config: Default::default(),
            file: String::new(),
        };
        let config = ExecConfig {
            ping: Some(vec!["true".into(), "{target}".into()]),
            ..ExecConfig::default()
        };
        let driver = ExecDriver::new(config, Path::new("."), "test");
        let err = driver.ping(&env).await.unwrap_err();
        assert!(
            err.message.contains("would read as an option"),
            "{}",
            err.message
        );
        // Inside another argument it is only a value.
        let config = ExecConfig {
            ping: Some(vec![
                "true".into(),
                "--host={target}".into(),
                "{{literal}}".into(),
            ]),
            ..ExecConfig::default()
        };
        let driver = ExecDriver::new(config, Path::new("."), "test");
        assert!(driver.ping(&env).await.is_ok());
    }

    #[test]
    fn braces_doubled_are_literal() {
        assert!(check_placeholders("awk '{{print $1}}'", Role::Apply).is_ok());
        let env = Environment {
            name: "e".into(),
            labels: Default::default(),
            target: None,
            config: Default::default(),
            file: String::new(),
        };
        let values = Values::for_env(&env);
        assert_eq!(values.expand("{{x}}-{env}"), "{x}-e");
    }

    #[test]
    fn placeholders_are_checked_per_command() {
        assert!(check_placeholders("--set=image.tag={version}", Role::Apply).is_ok());
        assert!(check_placeholders("{label.region}-{env}", Role::Ping).is_ok());
        let (span, msg) = check_placeholders("x{servce}", Role::Apply).unwrap_err();
        assert_eq!(span, 1..9);
        assert!(msg.contains("unknown placeholder `{servce}`"), "{msg}");
        assert!(check_placeholders("{service}", Role::Observe).is_err());
        assert!(check_placeholders("{env", Role::Apply).is_err());
    }
}
