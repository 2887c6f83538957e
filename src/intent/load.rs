//! Turning the raw files of a snapshot into a validated [`Intent`], collecting every problem
//! with its location instead of stopping at the first.

use std::collections::BTreeMap;
use std::ops::Range;
use std::time::Duration;

use toml::Spanned;

use super::diagnostics::{Diagnostic, Severity};
use super::freeze::{Freeze, Weekly, Window};
use super::model::*;
use super::schema::{self, FleetFile};
use super::source::SourceFile;
use crate::selector::Selector;

/// The wave name flotilla gives to environments no configured wave takes.
pub const REMAINING_WAVE: &str = "remaining";

/// Builds the intent from its files, or returns every error found (warnings included).
pub fn parse(
    revision: Revision,
    files: &[SourceFile],
) -> Result<(Intent, Vec<Diagnostic>), Vec<Diagnostic>> {
    let mut cx = Checker::default();
    let intent = cx.intent(revision, files);
    if cx.diags.iter().any(Diagnostic::is_error) {
        Err(cx.diags)
    } else {
        Ok((
            intent.expect("no errors means the intent was built"),
            cx.diags,
        ))
    }
}

/// The `[[notify]]` targets of the operator's own config file (`path` is shown in errors;
/// unnamed targets are `personal-N`), or every problem found in it.
pub fn personal_notify(
    path: &str,
    text: &str,
) -> Result<Vec<crate::notify::Target>, Vec<Diagnostic>> {
    let mut cx = Checker::default();
    let f = File { path, text };
    let targets = cx
        .toml::<schema::PersonalFile>(f)
        .map(|file| cx.notify(f, &file.notify, "personal"));
    match targets {
        Some(targets) if !cx.diags.iter().any(Diagnostic::is_error) => Ok(targets),
        _ => Err(cx.diags),
    }
}

/// Collects diagnostics while reading one file at a time.
#[derive(Default)]
struct Checker {
    diags: Vec<Diagnostic>,
}

/// The file being checked, so spans can be turned into positions.
#[derive(Clone, Copy)]
struct File<'a> {
    path: &'a str,
    text: &'a str,
}

impl Checker {
    fn error(&mut self, f: File, span: Range<usize>, msg: impl Into<String>) -> &mut Diagnostic {
        self.diags
            .push(Diagnostic::error(f.path, f.text, span, msg));
        self.diags.last_mut().expect("just pushed")
    }

    fn warn(&mut self, f: File, span: Range<usize>, msg: impl Into<String>) -> &mut Diagnostic {
        self.diags
            .push(Diagnostic::warning(f.path, f.text, span, msg));
        self.diags.last_mut().expect("just pushed")
    }

    fn toml<T: serde::de::DeserializeOwned>(&mut self, f: File) -> Option<T> {
        match toml::from_str::<T>(f.text) {
            Ok(v) => Some(v),
            Err(e) => {
                let span = e.span().unwrap_or(0..0);
                let message = e.message().trim().to_string();
                let help = toml_help(&message);
                let d = self.error(f, span, message);
                if let Some(h) = help {
                    d.help = Some(h);
                }
                None
            }
        }
    }

    fn intent(&mut self, revision: Revision, files: &[SourceFile]) -> Option<Intent> {
        let Some(fleet_src) = files.iter().find(|f| f.path == "flotilla.toml") else {
            self.diags.push(
                Diagnostic::file(
                    Severity::Error,
                    "flotilla.toml",
                    "there is no flotilla.toml at the root of the repository",
                )
                .with_help("commit a flotilla.toml with a [fleet] table, or scaffold one with `flotilla init DIR`"),
            );
            return None;
        };
        let ff = File {
            path: &fleet_src.path,
            text: &fleet_src.text,
        };
        let fleet: Option<FleetFile> = self.toml(ff);

        let mut environments = Vec::new();
        let mut overlays = Vec::new();
        let mut releases = Vec::new();
        let mut emergencies = Vec::new();
        for src in files {
            let f = File {
                path: &src.path,
                text: &src.text,
            };
            let stem = src
                .path
                .rsplit('/')
                .next()
                .unwrap_or("")
                .trim_end_matches(".toml")
                .to_string();
            if src.path.starts_with("environments/") {
                if let Some(e) = self.environment(f, stem) {
                    environments.push(e);
                }
            } else if src.path.starts_with("overlays/") {
                if let Some(o) = self.overlay(f, stem) {
                    overlays.push(o);
                }
            } else if src.path.starts_with("releases/") {
                if let Some(r) = self.release(f, stem) {
                    releases.push(r);
                }
            } else if src.path.starts_with("emergency/") {
                if let Some(e) = self.emergency(f, stem) {
                    emergencies.push(e);
                }
            }
        }
        let fleet = fleet?;
        let services = self.services(ff, &fleet.services);
        let service_names: Vec<&str> = services.iter().map(|s| s.name.as_str()).collect();
        self.release_services(files, &mut releases, &service_names);
        for e in &environments {
            self.config_keys(files, &e.file, &e.config, &service_names);
        }
        for o in &overlays {
            self.config_keys(files, &o.file, &o.config, &service_names);
        }
        for r in &releases {
            self.config_keys(files, &r.file, &r.config, &service_names);
        }
        for e in &emergencies {
            self.config_keys(files, &e.file, &e.config, &service_names);
            if environments.iter().all(|x: &Environment| x.name != e.env) {
                self.diags.push(
                    Diagnostic::file(
                        Severity::Error,
                        &e.file,
                        format!(
                            "emergency layer for `{}`, which is not an environment",
                            e.env
                        ),
                    )
                    .with_help("remove it, or name the file after the environment it patches"),
                );
            }
            for s in e.versions.keys() {
                if !service_names.contains(&s.as_str()) {
                    self.diags.push(
                        Diagnostic::file(
                            Severity::Error,
                            &e.file,
                            format!(
                                "emergency layer sets a version for `{s}`, which is not a service"
                            ),
                        )
                        .with_help(did_you_mean(s, &service_names)),
                    );
                }
            }
        }
        emergencies.sort_by(|a: &Emergency, b| a.env.cmp(&b.env));
        environments.sort_by(|a: &Environment, b| a.name.cmp(&b.name));
        overlays.sort_by(|a: &Overlay, b| (a.priority, &a.file).cmp(&(b.priority, &b.file)));
        releases.sort_by(|a: &Release, b| version_cmp(&a.name, &b.name));

        let driver = self.driver(ff, fleet.driver.as_ref(), &environments);
        let strategy = self.strategy(ff, fleet.strategy.as_ref(), &environments);
        let policy = self.policy(ff, fleet.policy.as_ref());
        let notify = self.notify(ff, &fleet.notify, "notify");
        if !valid_name(fleet.fleet.name.get_ref()) {
            // The name also names the fleet's state file, so it must be a safe file name.
            let msg = format!("`{}` is not a valid fleet name", fleet.fleet.name.get_ref());
            self.error(ff, fleet.fleet.name.span(), msg).help =
                Some(format!("{NAME_HELP}, e.g. name = \"acme-cloud\""));
        }
        if self.diags.iter().any(Diagnostic::is_error) {
            return None;
        }
        Some(Intent {
            revision,
            fleet: fleet.fleet.name.into_inner(),
            driver: driver?,
            services,
            strategy: strategy?,
            policy: policy?,
            environments,
            overlays,
            releases,
            emergencies,
            notify,
        })
    }

    /// `[[notify]]` targets: a URL or the variable that holds it, a known format, known
    /// event kinds, a selector. Unnamed ones are called `{unnamed}-N`.
    fn notify(
        &mut self,
        f: File,
        defs: &[schema::NotifyDef],
        unnamed: &str,
    ) -> Vec<crate::notify::Target> {
        use crate::notify::{Format, Target, Url, DEFAULT_ON, KINDS};
        let mut targets: Vec<Target> = Vec::new();
        for (i, d) in defs.iter().enumerate() {
            let name = d
                .name
                .as_ref()
                .map_or_else(|| format!("{unnamed}-{}", i + 1), |n| n.get_ref().clone());
            if targets.iter().any(|t| t.name == name) {
                let span = d.name.as_ref().map_or(0..0, |n| n.span());
                self.error(f, span, format!("notify target `{name}` is defined twice"));
            }
            let url = match (&d.url, &d.url_env) {
                (Some(u), None) => {
                    let text = u.get_ref().trim();
                    if !(text.starts_with("http://") || text.starts_with("https://")) {
                        self.error(
                            f,
                            u.span(),
                            "a notify url must start with http:// or https://",
                        )
                        .help = Some(
                            "or name the variable that holds it: url_env = \"ONCALL_WEBHOOK\""
                                .into(),
                        );
                    }
                    Url::Given(text.to_string())
                }
                (None, Some(v)) => Url::Env(v.get_ref().clone()),
                (Some(u), Some(_)) => {
                    self.error(f, u.span(), "set url or url_env, not both");
                    Url::Given(String::new())
                }
                (None, None) => {
                    let span = d.name.as_ref().map_or(0..0, |n| n.span());
                    self.error(f, span, format!("notify target `{name}` has no url"))
                        .help = Some(
                        "set url = \"https://...\", or url_env = \"VAR\" for a secret URL".into(),
                    );
                    Url::Given(String::new())
                }
            };
            let format = match d.format.as_ref().map(|x| (x, x.get_ref().as_str())) {
                None | Some((_, "json")) => Format::Json,
                Some((_, "slack")) => Format::Slack,
                Some((x, other)) => {
                    let msg = format!("unknown notify format `{other}`");
                    self.error(f, x.span(), msg).help =
                        Some(hint_one_of(other, &["json", "slack"]));
                    Format::Json
                }
            };
            let on = match &d.on {
                None => DEFAULT_ON.iter().map(|k| k.to_string()).collect(),
                Some(kinds) => {
                    for k in kinds {
                        if !KINDS.contains(&k.get_ref().as_str()) {
                            let msg = format!("no event kind `{}`", k.get_ref());
                            self.error(f, k.span(), msg).help =
                                Some(did_you_mean(k.get_ref(), KINDS));
                        }
                    }
                    kinds.iter().map(|k| k.get_ref().clone()).collect()
                }
            };
            let select = d.select.as_ref().and_then(|s| self.selector(f, s));
            targets.push(Target {
                name,
                url,
                format,
                on,
                select,
                secret_env: d.secret_env.as_ref().map(|s| s.get_ref().clone()),
            });
        }
        targets
    }

    fn driver(
        &mut self,
        f: File,
        d: Option<&schema::DriverSection>,
        envs: &[Environment],
    ) -> Option<DriverConfig> {
        let mut cfg = DriverConfig {
            kind: DriverKind::Sim,
            sim: Default::default(),
            exec: None,
            http: None,
        };
        let Some(d) = d else { return Some(cfg) };
        if let Some(kind) = &d.kind {
            cfg.kind = match kind.get_ref().as_str() {
                "sim" => DriverKind::Sim,
                "exec" => DriverKind::Exec,
                "http" => DriverKind::Http,
                other => {
                    let msg = format!("unknown driver kind `{other}`");
                    self.error(f, kind.span(), msg).help =
                        Some(hint_one_of(other, &["sim", "exec", "http"]));
                    return None;
                }
            };
        }
        // The simulator checks its own settings.
        if let Some(sim) = &d.sim {
            let (config, problems) = crate::drivers::sim::check_config(sim);
            for (span, msg, help) in problems {
                self.error(f, span, msg).help = Some(help);
            }
            cfg.sim = config;
        }
        if let Some(exec) = &d.exec {
            cfg.exec = Some(self.exec(f, exec, envs));
        }
        if let Some(http) = &d.http {
            let (config, problems) = crate::drivers::http::check_config(http);
            for (span, msg, help) in problems {
                self.error(f, span, msg).help = Some(help);
            }
            cfg.http = Some(config);
        }
        if cfg.kind == DriverKind::Http {
            self.http_targets(f, d, cfg.http.as_ref(), envs);
        }
        if cfg.kind == DriverKind::Exec && cfg.exec.as_ref().is_none_or(|e| e.apply.is_empty()) {
            let span = d.kind.as_ref().map_or(0..0, |k| k.span());
            self.error(f, span, "the exec driver needs an apply command").help = Some(
                "add [driver.exec] with apply = [\"./deploy/apply.sh\", \"{env}\", \"{service}\", \"{version}\"]".into(),
            );
        }
        Some(cfg)
    }

    /// The http driver needs a token source and, on every environment, an agent's URL.
    fn http_targets(
        &mut self,
        f: File,
        d: &schema::DriverSection,
        http: Option<&crate::drivers::http::HttpConfig>,
        envs: &[Environment],
    ) {
        use crate::drivers::http::TokenSource;
        if http.is_none_or(|h| h.token == TokenSource::Missing) {
            let span = d.kind.as_ref().map_or(0..0, |k| k.span());
            self.error(f, span, "the http driver needs the agents' token").help = Some(
                "add [driver.http] with token_file = \"/etc/flotilla/agent-token\" or token_env = \"FLOTILLA_AGENT_TOKEN\" (never the token itself)".into(),
            );
        }
        for env in envs {
            let target = env.target.as_deref().unwrap_or("");
            let shown = crate::drivers::http::shown_target(target);
            let url = reqwest::Url::parse(target)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some());
            let Some(url) = url else {
                let msg = if target.is_empty() {
                    format!("environment `{}` has no target", env.name)
                } else {
                    format!(
                        "environment `{}` has target `{shown}`, which is not an agent's URL",
                        env.name
                    )
                };
                self.diags.push(
                    Diagnostic::file(Severity::Error, &env.file, msg).with_help(
                        "the http driver reaches each environment's agent: target = \"https://HOST:PORT\"",
                    ),
                );
                continue;
            };
            let host = url.host_str().unwrap_or("");
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let loopback = host == "localhost"
                || host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            if url.scheme() == "http" && !loopback {
                self.diags.push(
                    Diagnostic::file(
                        Severity::Warning,
                        &env.file,
                        format!(
                            "environment `{}` reaches its agent over plain http: the token crosses the network in clear",
                            env.name
                        ),
                    )
                    .with_help("serve the agent with --tls-cert and --tls-key and use https://"),
                );
            }
        }
    }

    /// `[driver.exec]`: argv arrays whose placeholders are known to the command they are in.
    fn exec(
        &mut self,
        f: File,
        d: &crate::drivers::exec::ExecDef,
        envs: &[Environment],
    ) -> crate::drivers::exec::ExecConfig {
        use crate::drivers::exec::{ExecConfig, Role};
        let mut argv = |cmd: &Option<Vec<Spanned<String>>>, role: Role| -> Option<Vec<String>> {
            let cmd = cmd.as_ref()?;
            if cmd.is_empty() {
                return None;
            }
            for arg in cmd {
                self.placeholders_known(f, arg, role);
                // A label some environment lacks would expand to nothing there.
                for key in crate::drivers::exec::labels_used(arg.get_ref()) {
                    let lacking: Vec<&str> = envs
                        .iter()
                        .filter(|e| !e.labels.contains_key(&key))
                        .map(|e| e.name.as_str())
                        .collect();
                    if let Some(first) = lacking.first() {
                        let placeholder = format!("{{label.{key}}}");
                        let raw = &f.text[arg.span()];
                        let at = raw.find(&placeholder).map_or(arg.span(), |i| {
                            arg.span().start + i..arg.span().start + i + placeholder.len()
                        });
                        let more = match lacking.len() {
                            1 => String::new(),
                            n => format!(" and {} more", n - 1),
                        };
                        let msg = format!(
                            "`{placeholder}` would be empty for environment `{first}`{more}: it has no label `{key}`"
                        );
                        self.error(f, at, msg).help = Some(format!(
                            "give every environment the label `{key}`, or use another placeholder"
                        ));
                    }
                }
            }
            Some(cmd.iter().map(|a| a.get_ref().clone()).collect())
        };
        ExecConfig {
            apply: argv(&d.apply, Role::Apply).unwrap_or_default(),
            observe: argv(&d.observe, Role::Observe),
            health: argv(&d.health, Role::Health),
            ping: argv(&d.ping, Role::Ping),
            transient_exit_codes: d.transient_exit_codes.clone(),
        }
    }

    fn services(&mut self, f: File, defs: &[schema::ServiceDef]) -> Vec<Service> {
        let mut seen: BTreeMap<&str, Range<usize>> = BTreeMap::new();
        for s in defs {
            let name = s.name.get_ref().as_str();
            if !valid_name(name) {
                self.error(
                    f,
                    s.name.span(),
                    format!("`{name}` is not a valid service name"),
                )
                .help = Some(NAME_HELP.into());
            } else if let Some(first) = seen.get(name) {
                let (line, _, _) = super::diagnostics::locate(f.text, first.start);
                self.error(
                    f,
                    s.name.span(),
                    format!("service `{name}` is defined twice"),
                )
                .help = Some(format!(
                    "the first definition is on line {line}; rename or remove one"
                ));
            } else {
                seen.insert(name, s.name.span());
            }
        }
        if defs.is_empty() {
            self.diags.push(
                Diagnostic::file(Severity::Error, f.path, "no services are defined").with_help(
                    "add at least one [[service]] table with a name, e.g. [[service]] name = \"api\"",
                ),
            );
        }
        let names: Vec<&str> = seen.keys().copied().collect();
        let mut services = Vec::new();
        for s in defs {
            for dep in &s.depends_on {
                let d = dep.get_ref().as_str();
                if !seen.contains_key(d) {
                    let msg = format!(
                        "service `{}` depends on `{d}`, which is not a service",
                        s.name.get_ref()
                    );
                    self.error(f, dep.span(), msg).help = Some(did_you_mean(d, &names));
                }
            }
            for key in s.secret_keys.iter().chain(&s.drift_ignore) {
                let k = key.get_ref();
                if k.is_empty() || k.split('.').any(str::is_empty) {
                    let msg = format!("`{k}` is not a config key");
                    self.error(f, key.span(), msg).help = Some(
                        "name a dotted key of this service's config, e.g. \"replicas\" or \"auth.*\"".into(),
                    );
                }
            }
            let forward_only = match s.rollback.as_ref().map(|r| (r, r.get_ref().as_str())) {
                None | Some((_, "auto")) => false,
                Some((_, "forward-only")) => true,
                Some((r, other)) => {
                    let msg = format!("unknown rollback mode `{other}`");
                    self.error(f, r.span(), msg).help =
                        Some(hint_one_of(other, &["auto", "forward-only"]));
                    false
                }
            };
            let strategy = self.service_strategy(f, s);
            let min_from = s.min_from.as_ref().and_then(|m| {
                let v = m.get_ref().trim();
                if v.is_empty() {
                    self.error(f, m.span(), "min_from is empty").help = Some(
                        "name the lowest version this service upgrades from, e.g. \"1.4\"".into(),
                    );
                    None
                } else {
                    Some(v.to_string())
                }
            });
            services.push(Service {
                name: s.name.get_ref().clone(),
                depends_on: s.depends_on.iter().map(|d| d.get_ref().clone()).collect(),
                forward_only,
                secret_keys: s.secret_keys.iter().map(|k| k.get_ref().clone()).collect(),
                drift_ignore: s.drift_ignore.iter().map(|k| k.get_ref().clone()).collect(),
                strategy,
                min_from,
            });
        }
        if let Some(cycle) = find_cycle(&services) {
            let first = &cycle[0];
            let second = &cycle[1];
            let span = defs
                .iter()
                .find(|d| d.name.get_ref() == first)
                .and_then(|d| d.depends_on.iter().find(|x| x.get_ref() == second))
                .map(|x| x.span())
                .unwrap_or(0..0);
            self.error(f, span, format!("dependency cycle: {}", cycle.join(" -> ")))
                .help = Some(
                "services must form a graph without cycles; remove one of these depends_on entries"
                    .into(),
            );
        }
        services
    }

    fn strategy(
        &mut self,
        f: File,
        def: Option<&Spanned<schema::StrategyDef>>,
        envs: &[Environment],
    ) -> Option<Strategy> {
        let Some(def) = def else {
            return Some(default_strategy(envs.len()));
        };
        let d = def.get_ref();
        let mut ok = true;
        let mut strategy = default_strategy(envs.len());
        strategy.defaulted = false;
        if let Some(mp) = &d.max_parallel {
            if *mp.get_ref() == 0 {
                self.error(f, mp.span(), "max_parallel must be at least 1");
                ok = false;
            }
            strategy.max_parallel = (*mp.get_ref()).max(1) as usize;
        }
        strategy.seed = d.seed;
        if let Some(rate) = &d.expected_success_rate {
            let r = *rate.get_ref();
            if r > 0.0 && r <= 1.0 {
                strategy.expected_success_rate = r;
            } else {
                self.error(
                    f,
                    rate.span(),
                    format!("expected_success_rate {r} is out of range"),
                )
                .help = Some("use a probability above 0 and at most 1, e.g. 0.99".into());
                ok = false;
            }
        }
        if let Some(r) = d.retries {
            if r > MAX_RETRIES {
                self.diags.push(Diagnostic::file(Severity::Error, f.path, format!("retries = {r} is more than {MAX_RETRIES}"))
                    .with_help("a step that fails this often needs a fix, not more retries; use at most 10 or so"));
                ok = false;
            }
            strategy.retries = r.min(MAX_RETRIES);
        }
        if let Some(r) = &d.requeue_failed {
            if *r.get_ref() > MAX_RETRIES {
                self.error(f, r.span(), format!("requeue_failed = {} is more than {MAX_RETRIES}", r.get_ref()))
                    .help = Some("an environment that keeps failing needs a person; 1 or 2 clears transient causes".into());
                ok = false;
            }
            strategy.requeue_failed = (*r.get_ref()).min(MAX_RETRIES);
        }
        if let Some(b) = &d.backoff {
            strategy.backoff = self.duration(f, b).unwrap_or_else(|| {
                ok = false;
                Duration::ZERO
            });
        }
        if let Some(t) = &d.step_timeout {
            match self.positive_duration(f, "step_timeout", t) {
                Some(t) => strategy.step_timeout = t,
                None => ok = false,
            }
        }
        if let Some(m) = &d.max_failures {
            match self.amount(f, m) {
                Some(a) => strategy.max_failures = a,
                None => ok = false,
            }
        }
        if d.wave.is_empty() {
            // Keeping the default waves is the safe reading of "every key optional": a
            // strategy that only tunes retries must not roll out to the whole fleet at once.
            self.warn(f, def.span(), "[strategy] defines no waves; using the default waves (one canary behind approval, 10%, 50%, the rest)")
                .help = Some("add [[strategy.wave]] tables to choose your own".into());
            return ok.then_some(strategy);
        }
        let mut waves = Vec::new();
        let mut names: BTreeMap<&str, ()> = BTreeMap::new();
        let mut claimed = vec![false; envs.len()];
        for w in &d.wave {
            let name = w.name.get_ref().as_str();
            if name == REMAINING_WAVE {
                self.error(
                    f,
                    w.name.span(),
                    "`remaining` is the name flotilla gives to environments no wave takes",
                )
                .help = Some("choose another name for this wave".into());
                ok = false;
            } else if !valid_name(name) {
                self.error(
                    f,
                    w.name.span(),
                    format!("`{name}` is not a valid wave name"),
                )
                .help = Some(NAME_HELP.into());
                ok = false;
            } else if names.insert(name, ()).is_some() {
                self.error(f, w.name.span(), format!("wave `{name}` is defined twice"));
                ok = false;
            }
            let Some(select) = self.selector(f, &w.select) else {
                ok = false;
                continue;
            };
            let approvers = w.approvers.as_ref().map(|a| *a.get_ref());
            let kinds = w
                .gate
                .as_ref()
                .map(|g| g.get_ref().kinds())
                .unwrap_or_default();
            let mut approval = approvers.is_some() && w.gate.is_none();
            let mut recheck_health = false;
            for kind in &kinds {
                match *kind {
                    "auto" => {}
                    "approval" => approval = true,
                    "healthy" => recheck_health = true,
                    other => {
                        let g = w.gate.as_ref().expect("kinds come from the gate");
                        let msg = format!("unknown gate `{other}`");
                        self.error(f, g.span(), msg).help =
                            Some(hint_one_of(other, &["approval", "healthy", "auto"]));
                        ok = false;
                    }
                }
            }
            if let (Some(g), true) = (&w.gate, kinds.is_empty()) {
                self.error(f, g.span(), "gate lists no kind").help = Some(
                    "write gate = \"auto\" for no gate, or list \"healthy\" and \"approval\""
                        .into(),
                );
                ok = false;
            }
            if kinds.contains(&"auto") && kinds.len() > 1 {
                let g = w.gate.as_ref().expect("kinds come from the gate");
                self.error(f, g.span(), "`auto` means no gate; it cannot be combined")
                    .help = Some(
                    "list only the gates the wave has, e.g. [\"healthy\", \"approval\"]".into(),
                );
                ok = false;
            }
            let gate = if approval {
                Gate::Approval {
                    approvers: approvers.unwrap_or(1),
                }
            } else {
                if let Some(a) = &w.approvers {
                    self.error(
                        f,
                        a.span(),
                        "approvers is set but the wave has no approval gate",
                    )
                    .help = Some("add \"approval\" to gate or remove approvers".into());
                    ok = false;
                }
                Gate::Auto
            };
            if let (Some(a), Gate::Approval { approvers: 0 }) = (&w.approvers, gate) {
                self.error(f, a.span(), "approvers must be at least 1");
                ok = false;
            }
            let soak = match &w.soak {
                Some(s) => self.duration(f, s).unwrap_or_else(|| {
                    ok = false;
                    Duration::ZERO
                }),
                None => Duration::ZERO,
            };
            let failure_budget = match &w.failure_budget {
                Some(b) => self.amount(f, b).unwrap_or_else(|| {
                    ok = false;
                    Amount::Count(0)
                }),
                None => Amount::Count(0),
            };
            let take = match &w.take {
                Some(t) => {
                    let a = self.amount(f, t);
                    if a.is_none() {
                        ok = false;
                    }
                    a
                }
                None => None,
            };
            // Warn about waves that can take nothing: usually a typo in a selector.
            let mut matched = 0;
            for (i, e) in envs.iter().enumerate() {
                if !claimed[i] && select.matches(&e.labels) {
                    matched += 1;
                    // A sampled wave leaves the rest for later waves.
                    claimed[i] = take.is_none();
                }
            }
            if matched == 0 && !envs.is_empty() {
                self.warn(f, w.select.span(), format!("wave `{name}` matches no environment that an earlier wave has not taken"))
                    .help = Some("check the selector against the environments' labels (`flotilla plan` lists them per wave)".into());
            }
            for key in &w.spread_by {
                if !envs.iter().any(|e| e.labels.contains_key(key)) {
                    self.warn(
                        f,
                        w.name.span(),
                        format!("wave `{name}` spreads by `{key}`, a label no environment has"),
                    );
                }
            }
            let note_required = match w.note.as_ref().map(|n| (n, n.get_ref().as_str())) {
                None | Some((_, "optional")) => false,
                Some((n, "required")) => {
                    if gate == Gate::Auto {
                        self.error(f, n.span(), "note = \"required\" needs an approval gate")
                            .help = Some("set gate = \"approval\" or remove note".into());
                        ok = false;
                    }
                    true
                }
                Some((n, other)) => {
                    let msg = format!("unknown note setting `{other}`");
                    self.error(f, n.span(), msg).help =
                        Some(hint_one_of(other, &["required", "optional"]));
                    ok = false;
                    false
                }
            };
            let check = self.wave_check(f, w, &strategy, &mut ok);
            waves.push(WaveSpec {
                name: name.to_string(),
                select,
                gate,
                recheck_health,
                check,
                soak,
                failure_budget,
                take,
                spread_by: w.spread_by.clone(),
                note_required,
            });
        }
        strategy.waves = waves;
        ok.then_some(strategy)
    }

    /// A wave's `check` with its timeout and retries (the strategy's unless it sets them).
    fn wave_check(
        &mut self,
        f: File,
        w: &schema::WaveDef,
        strategy: &Strategy,
        ok: &mut bool,
    ) -> Option<WaveCheck> {
        use crate::drivers::exec::Role;
        let Some(argv) = &w.check else {
            for (set, key) in [
                (w.check_timeout.as_ref().map(|t| t.span()), "check_timeout"),
                (w.check_retries.as_ref().map(|r| r.span()), "check_retries"),
            ] {
                if let Some(span) = set {
                    self.error(f, span, format!("{key} is set but the wave has no check"))
                        .help = Some(format!(
                        "add check = [\"./smoke.sh\", \"{{wave}}\"] or remove {key}"
                    ));
                    *ok = false;
                }
            }
            return None;
        };
        if argv.get_ref().is_empty() {
            self.error(f, argv.span(), "check is an empty command").help = Some(
                "write the command as an argv array: check = [\"./smoke.sh\", \"{wave}\"]".into(),
            );
            *ok = false;
            return None;
        }
        for arg in argv.get_ref() {
            if !self.placeholders_known(f, arg, Role::Check) {
                *ok = false;
            }
        }
        let timeout = match &w.check_timeout {
            Some(t) => self
                .positive_duration(f, "check_timeout", t)
                .unwrap_or_else(|| {
                    *ok = false;
                    strategy.step_timeout
                }),
            None => strategy.step_timeout,
        };
        let retries = match &w.check_retries {
            Some(r) if *r.get_ref() > MAX_RETRIES => {
                self.error(
                    f,
                    r.span(),
                    format!("check_retries = {} is more than {MAX_RETRIES}", r.get_ref()),
                )
                .help = Some(
                    "a check that keeps failing needs a person; 2 or 3 ride out a blip".into(),
                );
                *ok = false;
                MAX_RETRIES
            }
            Some(r) => *r.get_ref(),
            None => strategy.retries,
        };
        Some(WaveCheck {
            argv: argv.get_ref().iter().map(|a| a.get_ref().clone()).collect(),
            timeout,
            retries,
            backoff: strategy.backoff,
        })
    }

    /// Whether the placeholders of `arg` are known to `role`'s command; if not, an error
    /// pointing at the placeholder as written.
    fn placeholders_known(
        &mut self,
        f: File,
        arg: &Spanned<String>,
        role: crate::drivers::exec::Role,
    ) -> bool {
        let Err((range, msg)) = crate::drivers::exec::check_placeholders(arg.get_ref(), role)
        else {
            return true;
        };
        // Point at the placeholder as written (escapes and quotes make the decoded
        // string's offsets differ from the file's).
        let raw = &f.text[arg.span()];
        let bad = &arg.get_ref()[range.clone()];
        let at = match raw.find(bad) {
            Some(i) => arg.span().start + i..arg.span().start + i + bad.len(),
            None => arg.span(),
        };
        self.error(f, at, msg).help = Some(role.help());
        false
    }

    fn policy(&mut self, f: File, def: Option<&schema::PolicyDef>) -> Option<Policy> {
        let Some(d) = def else {
            return Some(Policy::default());
        };
        let mut ok = true;
        let mut p = Policy {
            block_on_drift: d.block_on_drift,
            ..Policy::default()
        };
        if let Some(m) = &d.max_wave_fraction {
            let v = *m.get_ref();
            if !(v > 0.0 && v <= 1.0) {
                self.error(
                    f,
                    m.span(),
                    format!("max_wave_fraction {v} is out of range"),
                )
                .help = Some("use a fraction above 0 and at most 1, e.g. 0.5".into());
                ok = false;
            }
            p.max_wave_fraction = Some(v);
        }
        if let Some(m) = &d.max_wave_risk {
            let v = *m.get_ref();
            if !(v > 0.0 && v < 1.0) {
                self.error(f, m.span(), format!("max_wave_risk {v} is out of range"))
                    .help = Some(
                    "use a chance above 0 and below 1 that a wave fails somewhere, e.g. 0.05"
                        .into(),
                );
                ok = false;
            }
            p.max_wave_risk = Some(v);
        }
        if let Some(s) = &d.require_approval {
            p.require_approval = self.selector(f, s);
            ok &= p.require_approval.is_some();
        }
        for fr in &d.freeze {
            let name = fr.name.get_ref().clone();
            let select = match &fr.select {
                Some(s) => self.selector(f, s),
                None => Some(Selector::All),
            };
            let window = match (&fr.start, &fr.end, &fr.weekly) {
                (Some(start), Some(end), None) => {
                    match (self.timestamp(f, start), self.timestamp(f, end)) {
                        (Some(s), Some(e)) if e <= s => {
                            self.error(
                                f,
                                end.span(),
                                format!("freeze `{name}` ends before it starts"),
                            );
                            None
                        }
                        (Some(start), Some(end)) => Some(Window::Between { start, end }),
                        _ => None,
                    }
                }
                (None, None, Some(weekly)) => {
                    let tz = fr.timezone.as_ref().map(|t| t.get_ref().as_str());
                    match Weekly::parse(weekly.get_ref(), tz) {
                        Ok(w) => Some(Window::Weekly(w)),
                        Err((what, help)) => {
                            let span = match (&fr.timezone, what.starts_with("unknown time zone")) {
                                (Some(t), true) => t.span(),
                                _ => weekly.span(),
                            };
                            self.error(f, span, what).help = Some(help);
                            None
                        }
                    }
                }
                _ => {
                    self.error(
                        f,
                        fr.name.span(),
                        format!("freeze `{name}` needs either start and end, or weekly"),
                    )
                    .help = Some("e.g. start = \"2026-11-27T00:00:00Z\" and end = \"2026-11-30T00:00:00Z\", or weekly = \"sat 00:00-24:00\" with timezone = \"Europe/Berlin\"".into());
                    None
                }
            };
            if let (Some(t), None) = (&fr.timezone, &fr.weekly) {
                self.error(f, t.span(), "timezone applies to a weekly freeze only").help =
                    Some("start and end carry their own offset (RFC 3339, e.g. 2026-11-27T00:00:00+01:00)".into());
                ok = false;
            }
            match (window, select) {
                (Some(window), Some(select)) => p.freezes.push(Freeze {
                    name,
                    window,
                    select,
                }),
                _ => ok = false,
            }
        }
        ok.then_some(p)
    }

    fn environment(&mut self, f: File, name: String) -> Option<Environment> {
        let raw: schema::EnvFile = self.toml(f)?;
        if !valid_name(&name) {
            self.diags.push(
                Diagnostic::file(
                    Severity::Error,
                    f.path,
                    format!("`{name}` is not a valid environment name"),
                )
                .with_help(format!("rename the file; {NAME_HELP}")),
            );
            return None;
        }
        let span = raw.labels.as_ref().map(|l| l.span()).unwrap_or(0..0);
        let mut labels = raw.labels.map(Spanned::into_inner).unwrap_or_default();
        if let Some(given) = labels.get("name") {
            if *given != name {
                self.error(f, span, format!("label `name` is `{given}` but the file names the environment `{name}`"))
                    .help = Some("every environment has the label `name` set to its file name; remove this label".into());
            }
        }
        labels.insert("name".into(), name.clone());
        Some(Environment {
            name,
            labels,
            target: raw.target,
            config: raw.config.map(Spanned::into_inner).unwrap_or_default(),
            file: f.path.to_string(),
        })
    }

    fn emergency(&mut self, f: File, env: String) -> Option<Emergency> {
        let raw: schema::EmergencyFile = self.toml(f)?;
        Some(Emergency {
            env,
            file: f.path.to_string(),
            versions: raw.services.map(Spanned::into_inner).unwrap_or_default(),
            config: raw.config.map(Spanned::into_inner).unwrap_or_default(),
            adopted: raw.adopted,
            by: raw.by,
        })
    }

    fn overlay(&mut self, f: File, name: String) -> Option<Overlay> {
        let raw: schema::OverlayFile = self.toml(f)?;
        let select = self.selector(f, &raw.select)?;
        Some(Overlay {
            name,
            file: f.path.to_string(),
            select,
            priority: raw.priority,
            config: raw.config.map(Spanned::into_inner).unwrap_or_default(),
        })
    }

    fn release(&mut self, f: File, name: String) -> Option<Release> {
        let raw: schema::ReleaseFile = self.toml(f)?;
        let mut services = BTreeMap::new();
        for (k, v) in raw.services.get_ref() {
            if v.get_ref().trim().is_empty() {
                self.error(
                    f,
                    v.span(),
                    format!("the version of `{}` is empty", k.get_ref()),
                );
            }
            services.insert(k.get_ref().clone(), v.get_ref().clone());
        }
        Some(Release {
            name,
            file: f.path.to_string(),
            services,
            config: raw.config.map(Spanned::into_inner).unwrap_or_default(),
            // Set by `release_services`, which knows the services.
            sim: Default::default(),
        })
    }

    /// Every release names a version for exactly the fleet's services; the simulator checks
    /// its `[sim]` table.
    fn release_services(&mut self, files: &[SourceFile], releases: &mut [Release], names: &[&str]) {
        for r in releases {
            let Some(src) = files.iter().find(|s| s.path == r.file) else {
                continue;
            };
            let f = File {
                path: &src.path,
                text: &src.text,
            };
            // Re-parse for spans: the model keeps plain strings.
            let Ok(raw) = toml::from_str::<schema::ReleaseFile>(f.text) else {
                continue;
            };
            for k in raw.services.get_ref().keys() {
                if !names.contains(&k.get_ref().as_str()) {
                    let msg = format!(
                        "release `{}` sets a version for `{}`, which is not a service",
                        r.name,
                        k.get_ref()
                    );
                    self.error(f, k.span(), msg).help = Some(did_you_mean(k.get_ref(), names));
                }
            }
            // The simulator checks its own table.
            if let Some(def) = &raw.sim {
                let (sim, problems) =
                    crate::drivers::sim::check_release(def, names, |s| self.selector(f, s));
                for (span, msg, help) in problems {
                    self.error(f, span, msg).help = Some(help);
                }
                r.sim = sim;
            }
            for s in names {
                if !r.services.contains_key(*s) {
                    let msg = format!("release `{}` has no version for service `{s}`", r.name);
                    self.error(f, raw.services.span(), msg).help =
                        Some(format!("add {s} = \"VERSION\" under [services]"));
                }
            }
        }
    }

    /// Top-level config keys name services; anything else is most likely a typo.
    fn config_keys(
        &mut self,
        files: &[SourceFile],
        file: &str,
        config: &toml::Table,
        names: &[&str],
    ) {
        for key in config.keys() {
            if names.contains(&key.as_str()) {
                continue;
            }
            let Some(src) = files.iter().find(|s| s.path == file) else {
                continue;
            };
            let f = File {
                path: &src.path,
                text: &src.text,
            };
            let span = find_key(f.text, key);
            let msg = format!(
                "config key `{key}` does not start with a service name, so no service receives it"
            );
            self.warn(f, span, msg).help = Some(did_you_mean(key, names));
        }
    }

    fn selector(&mut self, f: File, s: &Spanned<String>) -> Option<Selector> {
        match Selector::parse(s.get_ref()) {
            Ok(sel) => Some(sel),
            Err(e) => {
                // Point inside the string when its source text is the value itself (no
                // escapes, one-quote delimiters); otherwise at the whole string.
                let span = s.span();
                let inner = f.text.get(span.start + 1..span.end.saturating_sub(1));
                let at = if inner == Some(s.get_ref().as_str()) {
                    let start = span.start + 1 + e.offset;
                    start..start + 1
                } else {
                    span
                };
                let d = self.error(f, at, format!("invalid selector: {}", e.message));
                d.help = Some(e.help.unwrap_or_else(|| {
                    "selectors look like `ring=canary`, `region in (eu-west, us-east)`, `tier!=free`, `*`".into()
                }));
                None
            }
        }
    }

    /// A service's own retries, backoff and timeouts, checked as `[strategy]`'s are.
    fn service_strategy(&mut self, f: File, s: &schema::ServiceDef) -> ServiceStrategy {
        let name = s.name.get_ref();
        if let Some(r) = s.retries.filter(|r| *r > MAX_RETRIES) {
            self.error(
                f,
                s.name.span(),
                format!("service `{name}`: retries = {r} is more than {MAX_RETRIES}"),
            )
            .help = Some("a step that fails this often needs a fix, not more retries".into());
        }
        let step_timeout = s
            .step_timeout
            .as_ref()
            .and_then(|d| self.positive_duration(f, "step_timeout", d));
        let health_timeout = s
            .health_timeout
            .as_ref()
            .and_then(|d| self.positive_duration(f, "health_timeout", d));
        ServiceStrategy {
            retries: s.retries.map(|r| r.min(MAX_RETRIES)),
            backoff: s.backoff.as_ref().and_then(|b| self.duration(f, b)),
            step_timeout,
            health_timeout,
        }
    }

    /// A duration that must be longer than zero (a timeout): `field` names it in the error.
    fn positive_duration(&mut self, f: File, field: &str, s: &Spanned<String>) -> Option<Duration> {
        let d = self.duration(f, s)?;
        if d.is_zero() {
            self.error(f, s.span(), format!("{field} must be longer than zero"));
            return None;
        }
        Some(d)
    }

    fn duration(&mut self, f: File, s: &Spanned<String>) -> Option<Duration> {
        match humantime::parse_duration(s.get_ref().trim()) {
            Ok(d) if d > MAX_DURATION => {
                self.error(
                    f,
                    s.span(),
                    format!("duration `{}` is longer than 30 days", s.get_ref()),
                )
                .help = Some(
                    "soaks, backoffs and timeouts are minutes to hours; use at most \"30d\"".into(),
                );
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                self.error(
                    f,
                    s.span(),
                    format!("invalid duration `{}`: {e}", s.get_ref()),
                )
                .help = Some("write durations like \"30s\", \"5m\", \"1h 30m\"".into());
                None
            }
        }
    }

    fn timestamp(&mut self, f: File, s: &Spanned<String>) -> Option<std::time::SystemTime> {
        match humantime::parse_rfc3339_weak(s.get_ref().trim()) {
            Ok(t) => Some(t),
            Err(e) => {
                self.error(
                    f,
                    s.span(),
                    format!("invalid timestamp `{}`: {e}", s.get_ref()),
                )
                .help = Some("write an RFC 3339 time in UTC, e.g. \"2026-11-27T00:00:00Z\"".into());
                None
            }
        }
    }

    fn amount(&mut self, f: File, a: &Spanned<schema::Amount>) -> Option<Amount> {
        match parse_amount(a.get_ref()) {
            Ok(v) => Some(v),
            Err(msg) => {
                self.error(f, a.span(), msg).help =
                    Some("write a count like 3 or a share like \"5%\"".into());
                None
            }
        }
    }
}

/// The safe defaults of a fleet without `[strategy]`: one canary behind a manual gate, then 10%
/// and 50% of the fleet, then the rest; no failures tolerated; 2 retries; 5 minute timeout.
pub fn default_strategy(fleet_size: usize) -> Strategy {
    let share = |p: f64| Amount::Count(((fleet_size as f64 * p).ceil() as u64).max(1));
    let wave = |name: &str, gate, take| WaveSpec {
        name: name.into(),
        select: Selector::All,
        gate,
        soak: Duration::ZERO,
        failure_budget: Amount::Count(0),
        take: Some(take),
        spread_by: Vec::new(),
        note_required: false,
        recheck_health: false,
        check: None,
    };
    Strategy {
        max_parallel: 10,
        retries: 2,
        requeue_failed: 1,
        backoff: Duration::from_secs(2),
        step_timeout: Duration::from_secs(300),
        // Wave budgets (0 by default) are what stop a bad release; the rollout-wide budget
        // only adds a limit when set.
        max_failures: Amount::Percent(100.0),
        waves: vec![
            wave("canary", Gate::Approval { approvers: 1 }, Amount::Count(1)),
            wave("ten-percent", Gate::Auto, share(0.10)),
            wave("half", Gate::Auto, share(0.50)),
        ],
        defaulted: true,
        seed: None,
        expected_success_rate: 0.99,
    }
}

/// Upper bounds that keep arithmetic on user-given values far from overflow.
const MAX_DURATION: Duration = Duration::from_secs(30 * 24 * 3600);
const MAX_RETRIES: u32 = 100;

const NAME_HELP: &str =
    "names use letters, digits, `-`, `_` and `.`, and start with a letter or digit";

/// Whether `s` is a valid name for a service, an environment, a release or a fleet.
pub fn valid_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn parse_amount(a: &schema::Amount) -> Result<Amount, String> {
    match a {
        schema::Amount::Count(n) if *n >= 0 => Ok(Amount::Count(*n as u64)),
        schema::Amount::Count(n) => Err(format!("{n} is negative")),
        schema::Amount::Text(t) => {
            let p = t
                .trim()
                .strip_suffix('%')
                .and_then(|n| n.trim().parse::<f64>().ok())
                .ok_or_else(|| format!("`{t}` is neither a count nor a percentage"))?;
            if (0.0..=100.0).contains(&p) {
                Ok(Amount::Percent(p))
            } else {
                Err(format!("`{t}` is not between 0% and 100%"))
            }
        }
    }
}

/// Finds a cycle in the dependency graph and returns it closed (`[a, b, a]`).
pub fn find_cycle(services: &[Service]) -> Option<Vec<String>> {
    let index: BTreeMap<&str, usize> = services
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), i))
        .collect();
    // 0 = unvisited, 1 = on the current path, 2 = done.
    let mut state = vec![0u8; services.len()];
    let mut path: Vec<usize> = Vec::new();
    fn visit(
        i: usize,
        services: &[Service],
        index: &BTreeMap<&str, usize>,
        state: &mut [u8],
        path: &mut Vec<usize>,
    ) -> Option<Vec<String>> {
        state[i] = 1;
        path.push(i);
        for dep in &services[i].depends_on {
            let Some(&j) = index.get(dep.as_str()) else {
                continue;
            };
            if state[j] == 1 {
                let start = path.iter().position(|&p| p == j).unwrap_or(0);
                let mut cycle: Vec<String> = path[start..]
                    .iter()
                    .map(|&p| services[p].name.clone())
                    .collect();
                cycle.push(services[j].name.clone());
                return Some(cycle);
            }
            if state[j] == 0 {
                if let Some(c) = visit(j, services, index, state, path) {
                    return Some(c);
                }
            }
        }
        path.pop();
        state[i] = 2;
        None
    }
    for i in 0..services.len() {
        if state[i] == 0 {
            if let Some(c) = visit(i, services, &index, &mut state, &mut path) {
                return Some(c);
            }
        }
    }
    None
}

/// Compares release names so that `2026.11.10` sorts after `2026.11.9`.
pub fn version_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    fn parts(s: &str) -> Vec<Result<u64, &str>> {
        s.split(['.', '-', '_'])
            .map(|p| p.parse::<u64>().map_err(|_| p))
            .collect()
    }
    parts(a).cmp(&parts(b)).then_with(|| a.cmp(b))
}

/// The candidate closest to `word`, if any is close enough to be what was meant.
pub fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (strsim::normalized_damerau_levenshtein(word, c), *c))
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .filter(|(score, _)| *score >= 0.5)
        .map(|(_, c)| c)
}

/// "did you mean `x`?" when a candidate is close, otherwise the list of valid names.
pub fn did_you_mean(word: &str, candidates: &[&str]) -> String {
    match closest(word, candidates) {
        Some(c) => format!("did you mean `{c}`?"),
        None if candidates.is_empty() => "no services are defined".into(),
        None => format!("known services: {}", candidates.join(", ")),
    }
}

fn hint_one_of(word: &str, options: &[&str]) -> String {
    let close = options
        .iter()
        .find(|o| strsim::normalized_damerau_levenshtein(word, o) >= 0.5);
    match close {
        Some(c) => format!("did you mean `{c}`? (one of: {})", options.join(", ")),
        None => format!("use one of: {}", options.join(", ")),
    }
}

/// Extra advice for toml's own messages where the fix is not obvious from them.
fn toml_help(message: &str) -> Option<String> {
    if message.contains("unknown field") {
        Some(
            "remove the key or fix its spelling; the keys this table takes are listed above".into(),
        )
    } else if message.contains("missing field") {
        Some("add the missing key".into())
    } else {
        None
    }
}

/// Best-effort position of a config key for a warning: the first line that starts with it.
fn find_key(text: &str, key: &str) -> Range<usize> {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        if trimmed.starts_with(key)
            && trimmed[key.len()..]
                .trim_start()
                .starts_with(['.', '=', ']'])
        {
            let start = offset + (line.len() - trimmed.len());
            return start..start + key.len();
        }
        offset += line.len();
    }
    0..0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rev() -> Revision {
        Revision {
            commit: "0".repeat(40),
            short: "0000000".into(),
            subject: "test".into(),
        }
    }

    fn files(list: &[(&str, &str)]) -> Vec<SourceFile> {
        list.iter()
            .map(|(p, t)| SourceFile {
                path: p.to_string(),
                text: t.to_string(),
            })
            .collect()
    }

    const FLEET: &str = "[fleet]\nname = \"t\"\n[[service]]\nname = \"schema\"\n[[service]]\nname = \"api\"\ndepends_on = [\"schema\"]\n";
    const RELEASE: &str = "[services]\nschema = \"1\"\napi = \"1.0\"\n";

    fn errors(list: &[(&str, &str)]) -> Vec<Diagnostic> {
        match parse(rev(), &files(list)) {
            Ok((_, w)) => panic!("expected errors, got an intent with warnings {w:?}"),
            Err(d) => d.into_iter().filter(|d| d.is_error()).collect(),
        }
    }

    const HTTP: &str = "[driver]\nkind = \"http\"\n[driver.http]\ntoken_env = \"AGENT_TOKEN\"\n";

    #[test]
    fn the_http_driver_needs_a_token_source_and_an_agent_url_everywhere() {
        let fleet = format!("{FLEET}[driver]\nkind = \"http\"\n");
        let d = errors(&[
            ("flotilla.toml", &fleet),
            (
                "environments/a.toml",
                "target = \"https://ops:hunter2@a.example:8443\"\n",
            ),
            ("environments/b.toml", "target = \"sim://b\"\n"),
            ("environments/c.toml", ""),
            ("releases/1.toml", RELEASE),
        ]);
        let text: Vec<String> = d.iter().map(|d| d.to_string()).collect();
        let text = text.join("\n");
        assert!(
            text.contains("the http driver needs the agents' token"),
            "{text}"
        );
        assert!(
            text.contains("`b` has target `sim://b`, which is not an agent's URL"),
            "{text}"
        );
        assert!(text.contains("`c` has no target"), "{text}");
        assert!(!text.contains("`a`"), "a is an agent's URL: {text}");
        assert!(!text.contains("hunter2"), "{text}");
    }

    #[test]
    fn plain_http_to_an_agent_off_this_machine_is_a_warning() {
        let fleet = format!("{FLEET}{HTTP}");
        let (_, warnings) = parse(
            rev(),
            &files(&[
                ("flotilla.toml", &fleet),
                ("environments/a.toml", "target = \"http://10.0.0.7:8080\"\n"),
                (
                    "environments/b.toml",
                    "target = \"http://127.0.0.1:8080\"\n",
                ),
                ("environments/c.toml", "target = \"http://[::1]:8080\"\n"),
                ("releases/1.toml", RELEASE),
            ]),
        )
        .unwrap();
        let text: Vec<String> = warnings.iter().map(|d| d.to_string()).collect();
        assert_eq!(text.len(), 1, "{text:?}");
        assert!(
            text[0].contains("`a` reaches its agent over plain http"),
            "{text:?}"
        );
    }

    #[test]
    fn a_service_s_own_timeouts_must_be_positive_durations_and_its_retries_few() {
        let fleet = FLEET.replace(
            "name = \"api\"\n",
            "name = \"api\"\nstep_timeout = \"0s\"\nhealth_timeout = \"soon\"\nretries = 101\n",
        );
        let d = errors(&[
            ("flotilla.toml", &fleet),
            ("environments/a.toml", ""),
            ("releases/1.toml", RELEASE),
        ]);
        let text = d
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            text.contains("step_timeout must be longer than zero"),
            "{text}"
        );
        assert!(text.contains("soon"), "{text}");
        assert!(text.contains("retries = 101 is more than"), "{text}");
    }

    #[test]
    fn an_emergency_layer_must_patch_an_environment_and_its_services() {
        let d = errors(&[
            ("flotilla.toml", FLEET),
            ("environments/a.toml", ""),
            ("emergency/b.toml", "[services]\napi = \"1.0-hotfix\"\n"),
            ("emergency/a.toml", "[services]\napx = \"1\"\n"),
            ("releases/1.toml", RELEASE),
        ]);
        let text: Vec<String> = d.iter().map(|d| d.to_string()).collect();
        let text = text.join("\n");
        assert!(
            text.contains("emergency layer for `b`, which is not an environment"),
            "{text}"
        );
        assert!(
            text.contains("sets a version for `apx`, which is not a service"),
            "{text}"
        );
    }

    #[test]
    fn a_minimal_intent_gets_the_safe_default_strategy() {
        let (intent, _) = parse(
            rev(),
            &files(&[
                ("flotilla.toml", FLEET),
                ("environments/a.toml", "labels = { ring = \"canary\" }\n"),
                ("releases/1.toml", RELEASE),
            ]),
        )
        .unwrap();
        assert!(intent.strategy.defaulted);
        assert_eq!(intent.strategy.retries, 2);
        assert_eq!(intent.strategy.step_timeout, Duration::from_secs(300));
        assert_eq!(
            intent.strategy.waves[0].gate,
            Gate::Approval { approvers: 1 }
        );
        assert_eq!(intent.environments[0].labels["name"], "a");
    }

    #[test]
    fn unknown_dependency_suggests_the_closest_service() {
        let fleet = FLEET.replace("depends_on = [\"schema\"]", "depends_on = [\"shema\"]");
        let d = errors(&[("flotilla.toml", &fleet)]);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].location(), "flotilla.toml:7:15");
        assert_eq!(d[0].help.as_deref(), Some("did you mean `schema`?"));
    }

    #[test]
    fn a_dependency_cycle_is_printed() {
        let fleet = FLEET.replace(
            "name = \"schema\"\n",
            "name = \"schema\"\ndepends_on = [\"api\"]\n",
        );
        let d = errors(&[("flotilla.toml", &fleet)]);
        assert!(
            d.iter()
                .any(|d| d.message == "dependency cycle: schema -> api -> schema"),
            "{d:?}"
        );
    }

    #[test]
    fn unknown_keys_are_errors_that_name_the_key() {
        let fleet = format!("{FLEET}[strategy]\nmax_paralel = 3\n");
        let d = errors(&[("flotilla.toml", &fleet)]);
        assert!(d[0].message.contains("max_paralel"), "{d:?}");
        assert_eq!(d[0].line, 9);
    }

    #[test]
    fn a_release_missing_a_service_version_is_an_error() {
        let d = errors(&[
            ("flotilla.toml", FLEET),
            ("releases/2.toml", "[services]\nschema = \"1\"\n"),
        ]);
        assert_eq!(d[0].message, "release `2` has no version for service `api`");
        assert_eq!(d[0].file, "releases/2.toml");
    }

    #[test]
    fn an_invalid_sim_selector_in_a_release_is_an_error_at_its_place() {
        let d = errors(&[
            ("flotilla.toml", FLEET),
            (
                "releases/2.toml",
                "[services]\nschema = \"1\"\napi = \"2\"\n[sim]\nhang = \"ring in canary\"\n",
            ),
        ]);
        assert!(d[0].message.starts_with("invalid selector"), "{:?}", d[0]);
        assert_eq!(d[0].file, "releases/2.toml");
        assert_eq!(d[0].line, 5, "{:?}", d[0]);
    }

    #[test]
    fn a_broken_service_that_does_not_exist_is_an_error_at_its_name() {
        let d = errors(&[
            ("flotilla.toml", FLEET),
            (
                "releases/2.toml",
                "[services]\nschema = \"1\"\napi = \"2\"\n[sim]\nbroken = \"*\"\nbroken_services = [\"apu\"]\n",
            ),
        ]);
        assert_eq!(
            d[0].message,
            "[sim] broken_services names `apu`, which is not a service"
        );
        assert_eq!((d[0].line, d[0].col), (6, 20), "{:?}", d[0]);
        assert!(
            d[0].help.as_deref().unwrap_or("").contains("api"),
            "{:?}",
            d[0]
        );
    }

    #[test]
    fn a_bad_selector_points_inside_the_string() {
        let fleet = format!(
            "{FLEET}[strategy]\n[[strategy.wave]]\nname = \"c\"\nselect = \"ring in canary\"\n"
        );
        let d = errors(&[("flotilla.toml", &fleet)]);
        assert_eq!(d[0].line, 11);
        assert!(d[0].col > 10, "{:?}", d[0]);
        assert!(d[0].message.starts_with("invalid selector"));
    }

    #[test]
    fn duplicate_services_and_waves_are_errors() {
        let fleet = format!(
            "{FLEET}[[service]]\nname = \"api\"\n[strategy]\n[[strategy.wave]]\nname = \"w\"\nselect = \"*\"\n[[strategy.wave]]\nname = \"w\"\nselect = \"*\"\n"
        );
        let d = errors(&[("flotilla.toml", &fleet)]);
        let msgs: Vec<&str> = d.iter().map(|d| d.message.as_str()).collect();
        assert!(msgs.contains(&"service `api` is defined twice"), "{msgs:?}");
        assert!(msgs.contains(&"wave `w` is defined twice"), "{msgs:?}");
    }

    #[test]
    fn a_wave_matching_nothing_is_a_warning() {
        let fleet = format!(
            "{FLEET}[strategy]\n[[strategy.wave]]\nname = \"c\"\nselect = \"ring=canary\"\n"
        );
        let (_, warnings) = parse(
            rev(),
            &files(&[
                ("flotilla.toml", &fleet),
                ("environments/a.toml", "labels = { ring = \"early\" }\n"),
            ]),
        )
        .unwrap();
        assert!(warnings
            .iter()
            .any(|w| w.message.contains("matches no environment")));
    }

    #[test]
    fn malformed_toml_names_line_and_column() {
        let d = errors(&[
            ("flotilla.toml", FLEET),
            ("environments/x.toml", "labels = {\n"),
        ]);
        assert_eq!(d[0].file, "environments/x.toml");
        assert!(d[0].line >= 1 && d[0].col >= 1);
    }

    #[test]
    fn a_strategy_without_waves_keeps_the_safe_default_waves() {
        let fleet = format!("{FLEET}[strategy]\nretries = 5\n");
        let (intent, warnings) = parse(
            rev(),
            &files(&[("flotilla.toml", &fleet), ("releases/1.toml", RELEASE)]),
        )
        .unwrap();
        assert_eq!(intent.strategy.retries, 5);
        assert_eq!(intent.strategy.waves[0].name, "canary");
        assert_eq!(
            intent.strategy.waves[0].gate,
            Gate::Approval { approvers: 1 }
        );
        assert!(warnings.iter().any(|w| w.message.contains("default waves")));
    }

    #[test]
    fn absurd_numbers_and_unsafe_names_are_errors_not_panics() {
        let fleet =
            format!("{FLEET}[strategy]\nretries = 4000000000\nbackoff = \"500000000000y\"\n")
                .replace("name = \"t\"", "name = \"../x\"");
        let msgs: Vec<String> = errors(&[("flotilla.toml", &fleet)])
            .into_iter()
            .map(|d| d.message)
            .collect();
        assert!(
            msgs.iter().any(|m| m.contains("not a valid fleet name")),
            "{msgs:?}"
        );
        assert!(msgs.iter().any(|m| m.contains("retries")), "{msgs:?}");
        assert!(
            msgs.iter()
                .any(|m| m.contains("longer than 30 days") || m.contains("invalid duration")),
            "{msgs:?}"
        );
    }

    #[test]
    fn a_selector_with_escapes_points_at_the_whole_string() {
        let fleet = format!(
            "{FLEET}[strategy]\n[[strategy.wave]]\nname = \"c\"\nselect = \"\\t\u{a0},\"\n"
        );
        let d = errors(&[("flotilla.toml", &fleet)]);
        assert_eq!((d[0].line, d[0].col), (11, 10), "{:?}", d[0]);
    }

    #[test]
    fn versions_sort_numerically() {
        let mut v = vec!["2026.11.10", "2026.11.9", "2026.2.1"];
        v.sort_by(|a, b| version_cmp(a, b));
        assert_eq!(v, ["2026.2.1", "2026.11.9", "2026.11.10"]);
    }

    #[test]
    fn amounts_round_as_budgets_and_samples_should() {
        assert_eq!(Amount::Percent(5.0).allowed(10), 0);
        assert_eq!(Amount::Percent(5.0).allowed(40), 2);
        assert_eq!(Amount::Percent(10.0).take(5), 1);
        assert_eq!(Amount::Percent(50.0).take(5), 3);
        assert_eq!(Amount::Count(9).take(5), 5);
    }
}
