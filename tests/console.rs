//! The console driven by keys over a real engine on a simulated fleet, under paused time:
//! snapshots of what an operator sees, what each key does to the rollout, and how many
//! bytes a frame costs.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use flotilla::console::actions::KeyMap;
use flotilla::console::model::{CellState, Model};
use flotilla::console::panes;
use flotilla::console::screen::Screen;
use flotilla::console::theme::{ColorMode, Theme};
use flotilla::console::ui::{Effect, Mode, Ui};
use flotilla::drivers::sim::SimFleet;
use flotilla::drivers::Driver;
use flotilla::engine::{Command, Engine, Event, EventKind, OnHold, Outcome, TokioClock};
use flotilla::intent::Intent;
use flotilla::plan;
use ratatui::backend::TestBackend;
use ratatui::Terminal;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// A console over an engine, both driven by the test.
struct Harness {
    model: Model,
    ui: Ui,
    commands: mpsc::UnboundedSender<Command>,
    events: mpsc::UnboundedReceiver<Event>,
    engine: JoinHandle<Outcome>,
    fleet: Arc<SimFleet>,
    started: tokio::time::Instant,
    _dir: tempfile::TempDir,
}

impl Harness {
    fn new(fixture: Fixture, read_only: bool) -> Harness {
        Self::with_mode(fixture, read_only, ColorMode::Palette256)
    }

    fn with_mode(fixture: Fixture, read_only: bool, mode: ColorMode) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let intent: Arc<Intent> = Arc::new(fixture.load(dir.path()));
        let plan = plan::build(&intent, "r1", epoch()).unwrap();
        let fleet = Arc::new(SimFleet::new(
            intent.driver.sim.clone(),
            intent.release("r1"),
        ));
        let driver: Arc<dyn Driver> = fleet.clone();
        let (etx, erx) = mpsc::unbounded_channel();
        let (ctx, crx) = mpsc::unbounded_channel();
        let model = Model::new(intent.clone(), plan.clone());
        let theme = Theme::load("dark", mode).unwrap();
        let mut ui = Ui::new(
            &model,
            KeyMap::new(read_only),
            read_only,
            "tester@host".into(),
            theme,
        );
        ui.color_mode = mode;
        ui.now = epoch();
        let engine = tokio::spawn(
            Engine::new(
                intent,
                plan,
                driver,
                Arc::new(TokioClock::starting_at(epoch())),
                etx,
                crx,
                OnHold::Wait,
            )
            .run(),
        );
        Harness {
            model,
            ui,
            commands: ctx,
            events: erx,
            engine,
            fleet,
            started: tokio::time::Instant::now(),
            _dir: dir,
        }
    }

    /// Lets `secs` of (paused, auto-advancing) time pass and folds what the engine said.
    async fn wait(&mut self, secs: u64) {
        tokio::time::sleep(Duration::from_secs(secs)).await;
        while let Ok(e) = self.events.try_recv() {
            self.model.apply(&e);
            self.ui
                .events_arrived(&self.model, std::slice::from_ref(&e));
        }
        self.ui.now = epoch() + self.started.elapsed();
        self.ui.dirty = true;
    }

    /// Presses keys: plain characters, or <Enter>, <Esc>, <Tab>, <Space>, <Down>, <Up>,
    /// <Left>, <Right>, <C-l>. Commands go to the engine; the effects come back.
    fn press(&mut self, keys: &str) -> Vec<Effect> {
        let mut effects = Vec::new();
        let mut rest = keys;
        while !rest.is_empty() {
            let (key, used) = if rest.starts_with('<') {
                let end = rest.find('>').expect("closed <key>") + 1;
                let code = match &rest[1..end - 1] {
                    "Enter" => KeyCode::Enter,
                    "Esc" => KeyCode::Esc,
                    "Tab" => KeyCode::Tab,
                    "Space" => KeyCode::Char(' '),
                    "Down" => KeyCode::Down,
                    "Up" => KeyCode::Up,
                    "Left" => KeyCode::Left,
                    "Right" => KeyCode::Right,
                    "C-l" => {
                        effects.extend(
                            self.key(KeyEvent::new(KeyCode::Char('l'), KeyModifiers::CONTROL)),
                        );
                        rest = &rest[end..];
                        continue;
                    }
                    other => panic!("unknown key <{other}>"),
                };
                (code, end)
            } else {
                let c = rest.chars().next().unwrap();
                (KeyCode::Char(c), c.len_utf8())
            };
            effects.extend(self.key(KeyEvent::new(key, KeyModifiers::NONE)));
            rest = &rest[used..];
        }
        effects
    }

    fn key(&mut self, key: KeyEvent) -> Vec<Effect> {
        let effects = self.ui.key(&self.model, key);
        for e in &effects {
            if let Effect::Send(c) = e {
                self.commands.send(c.clone()).unwrap();
            }
        }
        effects
    }

    /// The screen as text at `width` x `height`.
    fn screen(&mut self, width: u16, height: u16) -> String {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        let mut geometry = None;
        terminal
            .draw(|f| geometry = Some(panes::draw(f, &self.model, &self.ui)))
            .unwrap();
        self.ui.placed(geometry.unwrap());
        format!("{}", terminal.backend())
    }

    fn count(&self, kind: &str) -> usize {
        self.model
            .log
            .iter()
            .filter(|e| e.kind.name() == kind)
            .count()
    }

    fn select(&mut self, env: &str) {
        let i = self.model.env_index(env).unwrap();
        self.ui.cursor = self.ui.visible.iter().position(|&v| v == i).unwrap();
    }
}

/// Twelve environments, two broken in the rest wave whose budget allows one: approved and
/// left to halt.
async fn halted_on_budget() -> Harness {
    let mut h = Harness::new(
        Fixture::standard(12, &strategy("", "1")).broken_at(&[3, 7]),
        false,
    );
    h.wait(1).await;
    h.press("a<Enter>");
    h.wait(120).await;
    assert_eq!(h.model.view.state.name(), "halted");
    h
}

fn fleet(n: usize) -> Fixture {
    Fixture::standard(n, &strategy("", "1"))
}

#[tokio::test(start_paused = true)]
async fn snapshots_of_the_plan_mid_rollout_and_the_approval_dialog() {
    let mut h = Harness::new(fleet(12), false);
    h.wait(1).await;
    insta::assert_snapshot!("plan_80x24", h.screen(80, 24));
    insta::assert_snapshot!("plan_160x48", h.screen(160, 48));

    h.press("a");
    assert!(matches!(h.ui.mode, Mode::Input { .. }));
    h.press("canary looks fine");
    insta::assert_snapshot!("approval_dialog_80x24", h.screen(80, 24));
    insta::assert_snapshot!("approval_dialog_160x48", h.screen(160, 48));
    h.press("<Enter>");
    // Mid-rollout: canary done, the rest under way.
    h.wait(16).await;
    assert!(h.model.envs.iter().any(|e| e.state == CellState::Succeeded));
    assert!(h.model.envs.iter().any(|e| e.state == CellState::Running));
    insta::assert_snapshot!("mid_rollout_80x24", h.screen(80, 24));
    insta::assert_snapshot!("mid_rollout_160x48", h.screen(160, 48));

    h.press("?");
    insta::assert_snapshot!("help_80x24", h.screen(80, 24));
    insta::assert_snapshot!("help_160x48", h.screen(160, 48));
}

#[tokio::test(start_paused = true)]
async fn a_failure_budget_halt_is_shown_with_what_failed() {
    let mut h = halted_on_budget().await;
    let wide = h.screen(160, 48);
    assert!(wide.contains("HALTED"), "{wide}");
    assert!(wide.contains("failures 2/"), "{wide}");
    insta::assert_snapshot!("halted_80x24", h.screen(80, 24));
    insta::assert_snapshot!("halted_160x48", wide);
}

/// What the harness's rollout applied, as a drift baseline: the engine's own events.
fn baseline_of(h: &Harness) -> flotilla::drift::scan::Known {
    let intent = h.model.intent.clone();
    let release = intent.release(&h.model.plan.release).unwrap();
    let mut baseline = flotilla::drift::scan::Baseline::default();
    for e in &h.model.log {
        if let EventKind::StepSucceeded {
            env,
            service,
            version,
            revision,
            ..
        } = &e.kind
        {
            let environment = intent.environment(env).unwrap();
            let rendered = flotilla::intent::layers::render(&intent, release, environment)
                .desired
                .services[service.as_str()]
            .clone();
            let applied = flotilla::store::Applied {
                version: version.to_string(),
                revision: revision.to_string(),
                commit: intent.revision.commit.clone(),
                release: release.name.clone(),
                rollout: 1,
                ts: e.ts.to_string(),
            };
            baseline.record(env, service, applied, rendered);
        }
    }
    flotilla::drift::scan::Known {
        baseline,
        accepted: Vec::new(),
        reported: Default::default(),
        now: epoch(),
    }
}

/// The harness's fleet scanned for drift against `known`, the way the console's scans do.
async fn scan(h: &mut Harness, known: &Arc<flotilla::drift::scan::Known>) {
    let envs = h.model.envs.iter().map(|e| e.name.clone()).collect();
    let driver: Arc<dyn Driver> = h.fleet.clone();
    let report = flotilla::drift::scan::scan(
        h.model.intent.clone(),
        h.model.plan.release.clone(),
        envs,
        known.clone(),
        driver,
        8,
        Duration::from_secs(5),
    )
    .await;
    let at = h.ui.now;
    h.model.scanned(report, at);
}

#[tokio::test(start_paused = true)]
async fn the_detail_pane_shows_drift_three_ways_and_a_held_environment_waits_for_a_decision() {
    let mut f = fleet(4);
    f.extra.push((
        "releases/r2.toml".into(),
        "[services]\nschema = \"1\"\napi = \"2.0\"\nweb = \"1.0\"\n".into(),
    ));
    let mut h = Harness::new(f, false);
    h.wait(1).await;
    h.press("a<Enter>");
    h.wait(60).await;
    assert_eq!(h.model.view.state.name(), "completed");
    let known = Arc::new(baseline_of(&h));
    // Clean: the cells stay as they are.
    scan(&mut h, &known).await;
    let i = h.model.env_index("e-01").unwrap();
    assert_eq!(h.model.envs[i].state, CellState::Succeeded);
    assert_eq!(h.model.drifted(), 0);
    // Someone scales e-01's api by hand; the next scan shows it three ways.
    h.fleet
        .tamper(
            "e-01",
            "api",
            None,
            &[("replicas".into(), toml::Value::Integer(9))],
        )
        .unwrap();
    scan(&mut h, &known).await;
    assert_eq!(h.model.envs[i].state, CellState::Drifted);
    assert_eq!(h.model.drifted(), 1);
    assert!(h.screen(80, 24).contains("≠ e-01"));
    assert!(
        h.screen(160, 48).contains("drifted 1"),
        "the header counts it"
    );
    h.select("e-01");
    h.press("3");
    let narrow = h.screen(80, 24);
    assert!(narrow.contains("+replicas = 9"), "{narrow}");
    assert!(narrow.contains("--- api last applied 1.0"), "{narrow}");
    insta::assert_snapshot!("drift_80x24", narrow);
    insta::assert_snapshot!("drift_160x48", h.screen(160, 48));

    // The next release's rollout holds e-01 instead of overwriting it.
    let intent = h.model.intent.clone();
    let plan = plan::build(&intent, "r2", epoch()).unwrap();
    let driver: Arc<dyn Driver> = h.fleet.clone();
    let (etx, erx) = mpsc::unbounded_channel();
    let (ctx, crx) = mpsc::unbounded_channel();
    h.engine = tokio::spawn(
        Engine::new(
            intent.clone(),
            plan.clone(),
            driver,
            Arc::new(TokioClock::starting_at(epoch())),
            etx,
            crx,
            OnHold::Wait,
        )
        .guard_drift(known.clone())
        .run(),
    );
    h.commands = ctx;
    h.events = erx;
    h.model = Model::new(intent, plan);
    h.ui.refilter(&h.model);
    h.wait(1).await;
    h.press("2a<Enter>");
    h.wait(60).await;
    assert_eq!(h.model.envs[i].state, CellState::Held);
    assert_eq!(h.count("env_held"), 1);
    assert_eq!(h.count("rollout_held"), 1, "everything else is done");
    scan(&mut h, &known).await;
    h.select("e-01");
    h.press("3");
    let held = h.screen(80, 24);
    assert!(
        held.contains("A adopt"),
        "the footer offers the decisions: {held}"
    );
    assert!(held.contains("HELD"), "{held}");
    insta::assert_snapshot!("held_80x24", held);
    insta::assert_snapshot!("held_160x48", h.screen(160, 48));

    // Adopt asks first, naming the keys, then hands the work to the console's runtime.
    h.press("A");
    let Mode::Confirm { prompt, .. } = &h.ui.mode else {
        panic!("adopt asks first");
    };
    assert!(prompt.contains("api.replicas"), "{prompt}");
    assert_eq!(h.press("y"), [Effect::Adopt("e-01".into())]);
    // Accept asks how long and why; without a reason it is refused on the flash line.
    h.press("C<Enter>");
    assert!(h.ui.flash.as_ref().unwrap().error);
    h.press("C");
    assert_eq!(
        h.press("vendor hotfix<Enter>"),
        [Effect::AcceptDrift {
            env: "e-01".into(),
            duration: Duration::from_secs(24 * 3600),
            reason: "vendor hotfix".into(),
        }]
    );
    // An environment without drift has nothing to decide.
    h.select("e-02");
    assert!(h.press("A").is_empty());
    assert!(h.ui.flash.as_ref().unwrap().text.contains("no drift"));
    h.select("e-01");

    // Revert: confirmed, the engine is told, and it rolls r2 out over the change.
    h.press("V");
    assert!(matches!(h.ui.mode, Mode::Confirm { .. }));
    h.press("y");
    h.wait(30).await;
    assert_eq!(h.count("env_released"), 1);
    assert_eq!(h.model.view.state.name(), "completed");
    let live = h.fleet.snapshot();
    let api = &live.envs["e-01"]["api"].live;
    assert_eq!(api.version, "2.0");
    assert_eq!(api.config.get("replicas"), None, "the change is gone");
}

#[tokio::test(start_paused = true)]
async fn read_only_removes_every_action_that_changes_anything() {
    let mut h = Harness::new(fleet(6), true);
    h.wait(1).await;
    assert!(h.press("a").is_empty());
    assert!(h.press("p").is_empty());
    assert!(h.press("X").is_empty());
    assert!(matches!(h.ui.mode, Mode::Normal));
    h.press(":abort<Enter>");
    assert!(h.ui.flash.as_ref().unwrap().error);
    h.wait(5).await;
    assert_eq!(h.count("gate_approved"), 0);
    let screen = h.screen(80, 24);
    assert!(screen.contains(" RO "), "{screen}");
    assert!(!screen.contains("approve"), "{screen}");
    insta::assert_snapshot!("read_only_80x24", screen);
    insta::assert_snapshot!("read_only_160x48", h.screen(160, 48));
}

/// Each row of the buffer with a row of marks under it: b bold, r reversed, d dim, - none.
fn modifiers(buffer: &ratatui::buffer::Buffer) -> String {
    use ratatui::style::{Color, Modifier};
    let area = buffer.area;
    let mut out = String::new();
    for y in 0..area.height {
        let mut text = String::new();
        let mut marks = String::new();
        for x in 0..area.width {
            let cell = &buffer[(x, y)];
            text.push_str(cell.symbol());
            assert!(
                matches!(cell.fg, Color::Reset) && matches!(cell.bg, Color::Reset),
                "colour under NO_COLOR at {x},{y}: {cell:?}"
            );
            marks.push(if cell.modifier.contains(Modifier::REVERSED) {
                'r'
            } else if cell.modifier.contains(Modifier::BOLD) {
                'b'
            } else if cell.modifier.contains(Modifier::DIM) {
                'd'
            } else {
                '-'
            });
        }
        out.push_str(&text);
        out.push('\n');
        out.push_str(&marks);
        out.push('\n');
    }
    out
}

#[tokio::test(start_paused = true)]
async fn no_color_draws_with_bold_and_reverse_only() {
    let mut h = Harness::with_mode(
        Fixture::standard(6, &strategy("", "3")).broken_at(&[2]),
        false,
        ColorMode::None,
    );
    h.wait(1).await;
    h.press("a<Enter>");
    h.wait(60).await;
    for (w, hgt) in [(80, 24), (160, 48)] {
        let mut terminal = Terminal::new(TestBackend::new(w, hgt)).unwrap();
        terminal
            .draw(|f| {
                panes::draw(f, &h.model, &h.ui);
            })
            .unwrap();
        insta::assert_snapshot!(
            format!("no_color_{w}x{hgt}"),
            modifiers(terminal.backend().buffer())
        );
    }
}

#[tokio::test(start_paused = true)]
async fn approving_with_the_key_and_a_note_starts_the_wave() {
    let mut h = Harness::new(fleet(6), false);
    h.wait(1).await;
    assert_eq!(h.model.waiting_for_approval(), Some("canary"));
    assert!(h.screen(80, 24).contains("gate canary waits for approval"));
    h.press("a");
    h.press("checked the dashboards<Enter>");
    h.wait(60).await;
    let note = h.model.log.iter().find_map(|e| match &e.kind {
        EventKind::GateApproved { by, note, .. } => Some((by.clone(), note.clone())),
        _ => None,
    });
    assert_eq!(
        note,
        Some((
            "tester@host".to_string(),
            Some("checked the dashboards".to_string())
        ))
    );
    assert_eq!(h.model.view.state.name(), "completed");
    assert!(h.model.envs.iter().all(|e| e.state == CellState::Succeeded));
}

#[tokio::test(start_paused = true)]
async fn command_arguments_are_read_as_the_action_table_says() {
    let mut h = Harness::new(fleet(6), false);
    h.wait(1).await;
    let flash = |h: &Harness| {
        h.ui.flash
            .as_ref()
            .map(|f| f.text.clone())
            .unwrap_or_default()
    };
    for (line, said) in [
        (":pause now", "`pause` takes nothing after its name"),
        (":retry e-99 e-01 e-98", "no environment e-99, e-98"),
        (":rollback wave nope", "no wave `nope` in the plan"),
        (":approve nope", "no wave `nope` in the plan"),
        (":theme dark light", "`theme` takes one name"),
        (":skip e-01", "e-01 not skipped: a reason is needed"),
    ] {
        assert!(h.press(&format!("{line}<Enter>")).is_empty(), "{line}");
        assert!(matches!(h.ui.mode, Mode::Normal), "{line}");
        assert!(flash(&h).contains(said), "{line}: {}", flash(&h));
    }
    let skip = h.press(":skip e-01 vendor window<Enter>");
    assert!(
        matches!(&skip[..], [Effect::Send(Command::Skip { env, reason, .. })]
            if env == "e-01" && reason == "vendor window"),
        "{skip:?}"
    );
    h.press(":filter e-0<Enter>");
    assert!(h.ui.filter.is_some(), "{}", flash(&h));
    // The table says how each asks: a retry y/n, an abort its release's name typed.
    h.press(":retry e-02<Enter>");
    assert!(matches!(h.ui.mode, Mode::Confirm { .. }));
    h.press("n");
    h.press(":abort<Enter>");
    assert!(matches!(
        h.ui.mode,
        Mode::Input {
            purpose: flotilla::console::ui::Purpose::TypeToConfirm { .. },
            ..
        }
    ));
    h.press("<Esc>?");
    let help = h.screen(160, 48);
    assert!(
        help.contains("every failed one; asks y/n") && help.contains(":skip [ENV REASON...]"),
        "{help}"
    );
}

#[tokio::test(start_paused = true)]
async fn approving_with_the_command_line_and_completion() {
    let mut h = Harness::new(fleet(6), false);
    h.wait(1).await;
    // Tab completes `app` to `approve `.
    h.press(":app<Tab>canary by command<Enter>");
    h.wait(60).await;
    assert_eq!(h.count("gate_approved"), 1);
    assert_eq!(h.model.view.state.name(), "completed");
    // An unknown command says so and sends nothing.
    assert!(h.press(":launch<Enter>").is_empty());
    assert!(h
        .ui
        .flash
        .as_ref()
        .unwrap()
        .text
        .contains("no command `launch`"));
}

#[tokio::test(start_paused = true)]
async fn pause_stops_new_steps_and_resume_goes_on() {
    let mut h = Harness::new(fleet(24), false);
    h.wait(1).await;
    h.press("a<Enter>");
    h.wait(4).await;
    assert_eq!(h.model.view.state.name(), "running");
    let effects = h.press("p");
    h.wait(30).await;
    let kinds: Vec<&str> = h.model.log.iter().map(|e| e.kind.name()).collect();
    assert_eq!(
        h.model.view.state.name(),
        "paused",
        "{effects:?} {:?} {kinds:?}",
        h.ui.flash
    );
    let started = h.count("step_started");
    h.wait(300).await;
    assert_eq!(
        h.count("step_started"),
        started,
        "nothing starts while paused"
    );
    assert!(h.model.envs.iter().any(|e| e.state == CellState::Pending));
    h.press("r");
    h.wait(600).await;
    assert_eq!(h.model.view.state.name(), "completed");
}

#[tokio::test(start_paused = true)]
async fn filtering_by_selector_and_by_name() {
    let mut h = Harness::new(fleet(12), false);
    h.wait(1).await;
    h.press("/region=r1<Enter>");
    assert_eq!(h.ui.visible.len(), 4);
    let screen = h.screen(80, 24);
    assert!(screen.contains("[region=r1] 4/12"), "{screen}");
    assert!(
        screen.contains("e-01") && !screen.contains("e-02"),
        "{screen}"
    );
    h.press("/e-1<Enter>");
    assert_eq!(h.ui.visible.len(), 2);
    // A broken selector is an error on screen; the filter stays as it was.
    h.press("/region in (<Enter>");
    assert!(h.ui.flash.as_ref().unwrap().error);
    assert_eq!(h.ui.visible.len(), 2);
    h.press("/<Enter>");
    assert_eq!(h.ui.visible.len(), 12);
}

#[tokio::test(start_paused = true)]
async fn marked_environments_are_retried_after_confirmation() {
    let mut h = Harness::new(
        Fixture::standard(8, &strategy("", "0")).broken_at(&[3]),
        false,
    );
    h.wait(1).await;
    h.press("a<Enter>");
    h.wait(120).await;
    assert_eq!(h.model.view.state.name(), "halted");
    let attempts_before = h.count("step_started");
    h.select("e-03");
    h.press("<Space>");
    assert!(h.ui.marks.contains(&h.model.env_index("e-03").unwrap()));
    h.press("R");
    assert!(matches!(h.ui.mode, Mode::Confirm { .. }), "retry confirms");
    // Any key but y cancels, and the marks stay for another try.
    assert!(h.press("n").is_empty());
    assert_eq!(h.ui.marks.len(), 1);
    h.press("R");
    let effects = h.press("y");
    assert_eq!(
        effects,
        [Effect::Send(Command::Retry {
            envs: vec!["e-03".into()],
            by: "tester@host".into()
        })]
    );
    h.wait(120).await;
    let retried: Vec<&str> = h
        .model
        .log
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::EnvRetried { env, .. } => Some(env.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(retried, ["e-03"]);
    assert!(h.count("step_started") > attempts_before);
    assert!(h.ui.marks.is_empty());
}

#[tokio::test(start_paused = true)]
async fn abort_needs_the_release_name_typed() {
    let mut h = Harness::new(fleet(6), false);
    h.wait(1).await;
    h.press("X");
    assert!(h.press("nope<Enter>").is_empty());
    assert!(h.ui.flash.as_ref().unwrap().text.contains("type `r1`"));
    h.press("X");
    h.press("r1<Enter>");
    h.wait(10).await;
    let outcome = (&mut h.engine).await.unwrap();
    assert!(matches!(outcome, Outcome::Aborted { .. }), "{outcome:?}");
}

/// Counts what the console writes to the terminal.
#[derive(Default)]
struct Counter {
    bytes: usize,
    writes: usize,
}

impl std::io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.bytes += buf.len();
        self.writes += 1;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn an_unchanged_frame_writes_nothing_and_a_cursor_move_little() {
    let mut h = Harness::new(fleet(40), false);
    h.wait(1).await;
    let mut screen = Screen::fixed(Counter::default(), 80, 24).unwrap();
    assert!(screen.frame(&h.model, &mut h.ui).unwrap());
    let first = screen.output().bytes;
    assert!(first > 1000, "the first frame paints everything: {first}");
    assert_eq!(screen.output().writes, 1, "one write per frame");

    // Nothing changed: nothing written, even when asked to draw.
    assert!(!screen.frame(&h.model, &mut h.ui).unwrap());
    h.ui.dirty = true;
    assert!(!screen.frame(&h.model, &mut h.ui).unwrap());
    assert_eq!(screen.output().bytes, first);

    h.press("l");
    assert!(screen.frame(&h.model, &mut h.ui).unwrap());
    let moved = screen.output().bytes - first;
    assert!(moved < 300, "a cursor move wrote {moved} bytes");
    assert_eq!(screen.output().writes, 2);

    // Ctrl-L repaints everything.
    assert_eq!(h.press("<C-l>"), [Effect::Repaint]);
}

#[tokio::test(start_paused = true)]
async fn the_event_log_filters_by_env_wave_and_kind() {
    let mut h = Harness::new(fleet(6), false);
    h.wait(1).await;
    h.press("a<Enter>");
    h.wait(60).await;
    h.press("fenv=e-02 kind=step_succeeded<Enter>4");
    let screen = h.screen(80, 24);
    let shown: Vec<&str> = screen.lines().filter(|l| l.contains("healthy")).collect();
    assert_eq!(shown.len(), 3, "{screen}");
    assert!(shown.iter().all(|l| l.contains("e-02/")), "{screen}");
    assert!(
        screen.contains("[env=e-02 kind=step_succeeded]"),
        "{screen}"
    );
    // Plain words match the line; a bad field is an error and keeps the filter.
    h.press("fwave=rest FAILED<Enter>");
    assert!(!h.screen(80, 24).contains("healthy"));
    h.press("fcolour=red<Enter>");
    assert!(h.ui.flash.as_ref().unwrap().error);
    assert_eq!(h.ui.event_filter.as_ref().unwrap().text, "wave=rest FAILED");
}

#[tokio::test(start_paused = true)]
async fn marked_environments_are_skipped_with_one_reason() {
    let mut h = Harness::new(fleet(6), false);
    h.wait(1).await;
    h.select("e-04");
    h.press("<Space>");
    h.select("e-05");
    h.press("<Space>S");
    // A reason is required.
    assert!(h.press("<Enter>").is_empty());
    assert!(h.ui.flash.as_ref().unwrap().error);
    h.press("S");
    let effects = h.press("customer freeze<Enter>");
    assert_eq!(effects.len(), 2, "{effects:?}");
    h.press("a<Enter>");
    h.wait(120).await;
    for env in ["e-04", "e-05"] {
        let i = h.model.env_index(env).unwrap();
        assert_eq!(h.model.envs[i].state, CellState::Skipped, "{env}");
        assert_eq!(h.model.view.skipped[env], "customer freeze");
    }
    assert!(!h.model.log.iter().any(|e| matches!(
        &e.kind,
        EventKind::StepStarted { env, .. } if env == "e-04" || env == "e-05"
    )));
    assert_eq!(h.model.view.state.name(), "completed");
}

#[tokio::test(start_paused = true)]
async fn a_large_fleet_starts_as_a_compact_grid_and_z_shows_names() {
    let mut h = Harness::new(fleet(600), false);
    h.wait(1).await;
    assert!(h.ui.compact);
    h.press("l");
    let screen = h.screen(80, 24);
    // Glyphs only, the selected environment named in the title.
    assert!(screen.contains("[e-01]"), "{screen}");
    assert!(!screen.contains(" e-02 "), "{screen}");
    assert!(screen.contains("· · · ·"), "{screen}");
    h.press("z");
    let screen = h.screen(80, 24);
    assert!(screen.contains(" e-02 "), "{screen}");
}

#[tokio::test(start_paused = true)]
async fn the_cursor_moves_by_rows_across_wave_groups_and_stays_in_the_fleet() {
    let mut h = Harness::new(fleet(12), false);
    h.wait(1).await;
    h.screen(80, 24); // lays the grid out: 80 columns hold 9 cells of `e-NN`
    let name = |h: &Harness| h.model.envs[h.ui.selected().unwrap()].name.clone();
    assert_eq!(name(&h), "e-00");
    h.press("k");
    assert_eq!(name(&h), "e-00", "nothing above the first row");
    // Down from the canary's one cell lands in the first row of the next wave.
    h.press("j");
    assert_eq!(name(&h), "e-01");
    h.press("lll");
    assert_eq!(name(&h), "e-04");
    // The next row is shorter: the cursor keeps its column where it can, else the last.
    h.press("j");
    let below = name(&h);
    assert!(["e-10", "e-11"].contains(&below.as_str()), "{below}");
    h.press("G");
    assert_eq!(name(&h), "e-11");
    h.press("l");
    assert_eq!(name(&h), "e-11", "nothing after the last");
    h.press("g");
    assert_eq!(name(&h), "e-00");
    // Moving the selection asks nothing of the driver: drift comes from the scans.
    assert!(h.press("l").is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_refused_command_is_said_on_the_flash_line() {
    let mut h = Harness::new(fleet(6), false);
    h.wait(1).await;
    h.press(":approve canary<Enter>");
    h.wait(1).await;
    assert!(!h.ui.flash.clone().unwrap().error);
    // Approving a gate already passed is refused by the engine, and the console says so.
    h.press(":approve canary<Enter>");
    h.wait(1).await;
    let flash = h.ui.flash.clone().expect("a flash");
    assert!(flash.error, "{flash:?}");
    assert!(flash.text.starts_with("approve refused: "), "{flash:?}");
}

#[tokio::test(start_paused = true)]
async fn a_confirmation_fits_a_narrow_terminal() {
    let mut h = Harness::new(fleet(6), false);
    h.ui.mode = Mode::Confirm {
        prompt: "Retry all 3 failed environment(s)?".into(),
        then: Vec::new(),
        clear_marks: false,
    };
    let screen = h.screen(30, 12);
    assert!(screen.contains("y confirms"), "{screen}");
}

#[tokio::test(start_paused = true)]
async fn the_event_log_scrolls_the_way_it_reads() {
    let mut h = Harness::new(fleet(6), false);
    h.wait(1).await;
    h.press("a<Enter>");
    h.wait(30).await;
    h.press("4");
    // The log's lines as the screen shows them.
    let log = |h: &mut Harness| -> Vec<String> {
        let screen = h.screen(80, 24);
        let lines: Vec<String> = screen
            .lines()
            .skip(4)
            .take(17)
            .map(|l| {
                l.trim_matches(|c| c == '"' || c == '│' || c == ' ')
                    .to_string()
            })
            .collect();
        assert!(lines.iter().all(|l| !l.is_empty()), "{screen}");
        lines
    };
    let newest_first = log(&mut h);
    // Newest first: down goes back in time.
    h.press("jj");
    assert_eq!(log(&mut h)[0], newest_first[2]);
    h.press("k");
    assert_eq!(log(&mut h)[0], newest_first[1]);
    // Newest last: up goes back in time, G is the newest.
    h.press("o");
    let newest_last = log(&mut h);
    assert_eq!(newest_last.last(), newest_first.first());
    h.press("kkk");
    assert_eq!(log(&mut h).last(), newest_last.get(newest_last.len() - 4));
    h.press("G");
    assert_eq!(log(&mut h), newest_last);
}

#[tokio::test(start_paused = true)]
async fn an_environment_and_then_a_wave_are_rolled_back_from_the_keyboard() {
    // The rest waits behind approval too, so the rollout is still running after the canary.
    let strategy = strategy("", "0").replace(
        "name = \"rest\"\nselect = \"*\"",
        "name = \"rest\"\nselect = \"*\"\ngate = \"approval\"",
    );
    let mut h = Harness::new(
        Fixture::standard(6, &strategy).with_earlier_release(),
        false,
    );
    h.wait(1).await;
    h.press("a<Enter>");
    h.wait(20).await;
    h.select("e-00");
    assert_eq!(h.model.envs[0].state, CellState::Succeeded);
    h.press("B");
    let Mode::Confirm { prompt, .. } = &h.ui.mode else {
        panic!("a rollback asks first")
    };
    assert!(prompt.contains("(e-00) to r0"), "{prompt}");
    let effects = h.press("y");
    assert!(matches!(
        &effects[..],
        [Effect::Send(Command::Rollback { envs, wave: None, .. })] if envs == &["e-00"]
    ));
    h.wait(60).await;
    assert_eq!(h.model.envs[0].state, CellState::RolledBack);
    assert_eq!(h.model.view.state.name(), "paused");
    let screen = h.screen(160, 48);
    assert!(screen.contains("↺ e-00"), "{screen}");
    assert!(
        screen.contains("rolled back to r0"),
        "the detail says so: {screen}"
    );

    // Let the rest run part-way, then pause it.
    h.press(":approve rest<Enter>r");
    h.wait(3).await;
    h.press("p");
    h.wait(60).await;

    // The whole wave: from the waves pane, with the wave's name typed.
    h.press("2j");
    h.press("B");
    assert!(
        matches!(h.ui.mode, Mode::Input { .. }),
        "the name is asked for"
    );
    h.press("canary<Enter>");
    assert!(
        h.ui.flash.as_ref().unwrap().error,
        "a wrong name sends nothing"
    );
    h.press("B");
    let effects = h.press("rest<Enter>");
    assert!(matches!(
        &effects[..],
        [Effect::Send(Command::Rollback { wave: Some(w), .. })] if w == "rest"
    ));
    h.wait(120).await;
    let rest: Vec<CellState> = h.model.envs[1..].iter().map(|e| e.state).collect();
    assert!(
        rest.iter()
            .all(|s| matches!(s, CellState::RolledBack | CellState::Pending)),
        "{rest:?}"
    );
    assert!(rest.contains(&CellState::RolledBack), "{rest:?}");
}

#[tokio::test(start_paused = true)]
async fn wave_counts_kept_as_cells_change_match_a_recount() {
    let mut h = Harness::new(
        Fixture::standard(12, &strategy("", "1")).broken_at(&[3, 7]),
        false,
    );
    h.wait(1).await;
    h.press("a<Enter>");
    for _ in 0..12 {
        h.wait(5).await;
        for w in 0..h.model.plan.waves.len() {
            let mut recount = std::collections::BTreeMap::new();
            for e in h.model.envs.iter().filter(|e| e.wave == w) {
                *recount.entry(e.state).or_insert(0) += 1;
            }
            assert_eq!(h.model.wave_counts(w), recount);
        }
    }
    assert!(h.model.failed() > 0, "the broken environments fail");
}

#[tokio::test(start_paused = true)]
async fn a_wave_rollback_says_up_front_what_it_cannot_undo() {
    let mut fixture = Fixture::standard(6, &strategy("", "0"))
        .broken_at(&[3])
        .with_earlier_release();
    fixture.fleet = fixture.fleet.replace(
        "name = \"schema\"\n",
        "name = \"schema\"\nrollback = \"forward-only\"\n",
    );
    let mut h = Harness::new(fixture, false);
    h.wait(1).await;
    h.press("a<Enter>");
    h.wait(120).await;
    assert_eq!(h.model.view.state.name(), "halted");
    h.press("2j");
    h.press("B");
    let Mode::Input {
        purpose: flotilla::console::ui::Purpose::TypeToConfirm { what, .. },
        ..
    } = &h.ui.mode
    else {
        panic!("the wave's name is asked for");
    };
    assert!(
        // e-03 failed in its schema migration; the others stopped after theirs at the halt.
        what.contains("e-03")
            && what.contains("changed only forward-only services and stay as they are")
            && what.contains("The rollout stays halted."),
        "{what}"
    );
    let screen = h.screen(80, 24);
    assert!(screen.contains("forward-only"), "{screen}");
}

#[tokio::test(start_paused = true)]
async fn failures_accepted_by_a_resume_are_shown_apart_from_the_budget() {
    let mut h = halted_on_budget().await;
    h.press("r");
    h.wait(1).await;
    assert_eq!(
        h.model.view.accepted.iter().collect::<Vec<_>>(),
        ["e-03", "e-07"]
    );
    let screen = h.screen(80, 24);
    assert!(screen.contains("failures 0/100 +2 accepted"), "{screen}");
    let log: Vec<String> = h
        .model
        .log
        .iter()
        .filter_map(|e| flotilla::engine::text::event_line(&e.kind))
        .collect();
    assert!(
        log.iter()
            .any(|l| l.contains("accepting 2 failed environment(s)")),
        "{log:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn the_detail_shows_the_last_lines_a_command_printed() {
    let mut h = Harness::new(fleet(2), false);
    h.wait(1).await;
    // What an exec driver's apply reports: its stdout and stderr, more lines than shown.
    let output = flotilla::drivers::Printed {
        stdout: (1..=6).map(|n| format!("line {n}\n")).collect(),
        stderr: "warning: chart is deprecated\n".into(),
    };
    h.model.apply(&Event::new(
        epoch(),
        EventKind::StepSucceeded {
            wave: "canary".into(),
            env: "e-00".into(),
            service: "api".into(),
            attempts: 1,
            version: "1.0".into(),
            revision: "r".into(),
            output: output.for_event(),
        },
    ));
    h.select("e-00");
    h.press("3");
    let screen = h.screen(80, 24);
    assert!(screen.contains("output of api (last lines)"), "{screen}");
    assert!(
        screen.contains("out line 6") && screen.contains("out line 3"),
        "{screen}"
    );
    assert!(!screen.contains("line 2"), "only the last lines: {screen}");
    assert!(
        screen.contains("err warning: chart is deprecated"),
        "{screen}"
    );
}

#[tokio::test(start_paused = true)]
async fn an_approval_without_a_note_is_not_sent_where_the_gate_takes_one() {
    let fixture = Fixture::standard(
        4,
        &strategy("", "1").replace(
            "gate = \"approval\"\n",
            "gate = \"approval\"\nnote = \"required\"\n",
        ),
    );
    let mut h = Harness::new(fixture, false);
    h.wait(1).await;
    h.press("a<Enter>");
    h.wait(5).await;
    assert_eq!(h.count("gate_approved"), 0);
    assert!(
        h.screen(80, 24).contains("takes a note"),
        "{}",
        h.screen(80, 24)
    );
    h.press("aCAB-3 canary checked<Enter>");
    h.wait(5).await;
    assert_eq!(h.count("gate_approved"), 1);
}

#[tokio::test(start_paused = true)]
async fn a_wave_held_by_a_freeze_says_which_and_until_when() {
    // The clock starts Monday 09:00Z; the rest wave is due at 09:10, inside the freeze.
    let mut fixture = Fixture::standard(
        4,
        &strategy("", "1").replace("name = \"rest\"\n", "name = \"rest\"\nsoak = \"10m\"\n"),
    );
    fixture.fleet += "[policy]\n[[policy.freeze]]\nname = \"monday-standup\"\nweekly = \"mon 09:05-12:00\"\nselect = \"ring=general\"\n";
    let mut h = Harness::new(fixture, false);
    h.wait(1).await;
    h.press("aok<Enter>");
    h.wait(15 * 60).await;
    let screen = h.screen(80, 24);
    assert!(
        screen.contains("wave rest frozen by `monday-standup` until 2026-11-02T12:00:00Z"),
        "{screen}"
    );
    assert!(!screen.contains("waits for approval"), "{screen}");
    h.press("2");
    let screen = h.screen(80, 24);
    assert!(screen.contains("frozen until 12:00Z"), "{screen}");
    h.wait(3 * 3600).await;
    assert!(h.count("wave_started") >= 2);
}

/// Before a rollout whose preflight failed starts, the console shows the checklist: the
/// failure selected with its reason; nothing starts until it is overridden with a reason
/// typed in, and the override comes back to be journaled.
#[test]
fn the_checklist_shows_a_failed_check_and_starts_only_once_it_is_overridden_with_a_reason() {
    use flotilla::console::checklist::{Checklist, Decision};
    let dir = tempfile::tempdir().unwrap();
    let mut f = Fixture::standard(12, &strategy("", "0"));
    f.fleet += "[policy]\nmax_wave_fraction = 0.5\n";
    let intent = f.load(dir.path());
    let plan = flotilla::plan::build(&intent, "r1", epoch()).unwrap();
    let theme = flotilla::console::theme::Theme::load("mono", ColorMode::None).unwrap();
    let glyphs = flotilla::console::theme::Glyphs { unicode: true };
    let mut list = Checklist::new("r1", plan.checks.clone(), theme, glyphs);
    let screen = |list: &Checklist| {
        let mut terminal = Terminal::new(TestBackend::new(80, 24)).unwrap();
        terminal.draw(|f| list.draw(f)).unwrap();
        format!("{}", terminal.backend())
    };
    insta::assert_snapshot!("checklist_failed_80x24", screen(&list));

    let key =
        |list: &mut Checklist, code: KeyCode| list.key(KeyEvent::new(code, KeyModifiers::NONE));
    let typed = |list: &mut Checklist, text: &str| {
        for c in text.chars() {
            assert_eq!(key(list, KeyCode::Char(c)), None);
        }
    };
    // Enter does not start past a failure; an empty reason is no reason.
    assert_eq!(key(&mut list, KeyCode::Enter), None);
    assert!(screen(&list).contains("policy.blast-radius blocks the start"));
    key(&mut list, KeyCode::Char('o'));
    assert_eq!(key(&mut list, KeyCode::Enter), None);
    assert!(
        screen(&list).contains("needs a reason"),
        "{}",
        screen(&list)
    );
    typed(&mut list, "CAB-7 agreed");
    assert_eq!(key(&mut list, KeyCode::Enter), None);
    let shown = screen(&list);
    assert!(
        shown.contains("OVRD policy.blast-radius") && shown.contains("overridden: CAB-7 agreed"),
        "{shown}"
    );
    // A check that passed has nothing to override.
    key(&mut list, KeyCode::Up);
    key(&mut list, KeyCode::Char('o'));
    assert!(screen(&list).contains("did not fail: nothing to override"));
    assert_eq!(
        key(&mut list, KeyCode::Enter),
        Some(Decision::Start(vec![(
            "policy.blast-radius".into(),
            "CAB-7 agreed".into()
        )]))
    );
    assert_eq!(key(&mut list, KeyCode::Char('q')), Some(Decision::Quit));

    // An override given on the command line is kept: it does not block, and it is sent on.
    let theme = flotilla::console::theme::Theme::load("mono", ColorMode::None).unwrap();
    let given = vec![(
        "policy.blast-radius".to_string(),
        "from the CLI".to_string(),
    )];
    let mut list =
        Checklist::new("r1", plan.checks.clone(), theme, glyphs).with_overrides(given.clone());
    assert!(screen(&list).contains("OVRD policy.blast-radius"));
    assert_eq!(key(&mut list, KeyCode::Enter), Some(Decision::Start(given)));
}
