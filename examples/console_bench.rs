//! Figures for the console's targets. Run with `cargo run --release --example console_bench`;
//! it prints figures rather than asserting, because shared machines are too noisy for timed
//! tests.
//!
//! Targets: one frame of a 10,000-environment fleet at 200x60 in under 2 ms; under 20 KB/s
//! written to the terminal while a 1,000-environment simulated rollout streams its events.

use std::io::Write;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use flotilla::console::actions::KeyMap;
use flotilla::console::model::Model;
use flotilla::console::screen::Screen;
use flotilla::console::theme::{ColorMode, Theme};
use flotilla::console::ui::Ui;
use flotilla::console::Pacer;
use flotilla::engine::{Command, Engine, OnHold, TokioClock};
use flotilla::intent::{self, Gate, Intent};
use flotilla::plan;
use tokio::sync::mpsc;

const RELEASE: &str = "2026.11.2";

/// Counts the bytes written to the "terminal".
#[derive(Default)]
struct Counter(usize);

impl Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn demo_intent(envs: usize, dir: &std::path::Path) -> Arc<Intent> {
    intent::write::write_repo(dir, &flotilla::demo::demo_commits(envs)).expect("write repo");
    Arc::new(intent::load(dir, "HEAD").expect("valid demo").intent)
}

fn ui_for(model: &Model) -> Ui {
    let mut ui = Ui::new(
        model,
        KeyMap::new(false),
        false,
        "bench@host".into(),
        Theme::load("dark", ColorMode::TrueColor).expect("theme"),
    );
    ui.color_mode = ColorMode::TrueColor;
    ui
}

fn key(c: char) -> KeyEvent {
    KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");

    // 1. Frames of a 10,000-environment fleet at 200x60.
    let intent = demo_intent(10_000, &dir.path().join("big"));
    let plan = plan::build(&intent, RELEASE, SystemTime::now()).expect("plan");
    let model = Model::new(intent.clone(), plan);
    for compact in [true, false] {
        let mut ui = ui_for(&model);
        ui.compact = compact;
        let mut screen = Screen::fixed(std::io::sink(), 200, 60).expect("screen");
        screen.frame(&model, &mut ui).expect("first frame");
        let (mut moves, mut full) = (Vec::new(), Vec::new());
        for i in 0..300 {
            // A cursor move: the common frame.
            ui.key(&model, key(if i % 40 < 20 { 'j' } else { 'k' }));
            let t = Instant::now();
            screen.frame(&model, &mut ui).expect("frame");
            moves.push(t.elapsed().as_secs_f64() * 1e3);
            // A full repaint (Ctrl-L, a resize): every cell sent again.
            screen.invalidate(&mut ui).expect("clear");
            let t = Instant::now();
            screen.frame(&model, &mut ui).expect("frame");
            full.push(t.elapsed().as_secs_f64() * 1e3);
        }
        println!(
            "frame, 10,000 environments at 200x60, {} grid: median {:.2} ms after a cursor move, {:.2} ms for a full repaint (target < 2 ms)",
            if compact { "compact (the default)" } else { "named" },
            median(moves),
            median(full)
        );
    }

    // 2. Bytes written while a 1,000-environment rollout streams, on the demo's latency, in
    // paused time: the pacing is the console's own, the clock virtual.
    let intent = demo_intent(1_000, &dir.path().join("mid"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime");
    let (bytes, frames, events, seconds) = runtime.block_on(async move {
        let plan = plan::build(&intent, RELEASE, SystemTime::now()).expect("plan");
        let place = flotilla::drivers::Place {
            repo: std::path::Path::new("."),
            state: None,
        };
        let fleet = flotilla::drivers::open(&intent, intent.release(RELEASE), place).expect("driver");
        let (etx, mut erx) = mpsc::unbounded_channel();
        let (ctx, crx) = mpsc::unbounded_channel();
        for w in plan.waves.iter().filter(|w| matches!(w.gate, Gate::Approval { .. })) {
            ctx.send(Command::Approve {
                wave: w.name.clone(),
                by: "bench".into(),
                note: None,
            })
            .expect("send");
        }
        let mut model = Model::new(intent.clone(), plan.clone());
        let mut ui = ui_for(&model);
        let mut screen = Screen::fixed(Counter::default(), 200, 60).expect("screen");
        screen.frame(&model, &mut ui).expect("first frame");
        let first = screen.output().0;
        let mut engine = tokio::spawn(
            Engine::new(
                intent.clone(),
                plan,
                fleet,
                Arc::new(TokioClock::new()),
                etx,
                crx,
                OnHold::Exit,
            )
            .run(),
        );
        let start = tokio::time::Instant::now();
        let mut pacer = Pacer::default();
        let (mut frames, mut events) = (0usize, 0usize);
        loop {
            let mut draw = false;
            tokio::select! {
                Some(e) = erx.recv() => {
                    model.apply(&e);
                    events += 1;
                    ui.dirty = true;
                }
                _ = tokio::time::sleep_until(pacer.due().unwrap_or_else(tokio::time::Instant::now)), if pacer.due().is_some() => draw = true,
                _ = &mut engine => break,
            }
            if ui.dirty && pacer.draw_now(draw) && screen.frame(&model, &mut ui).expect("frame") {
                frames += 1;
            }
        }
        let seconds = start.elapsed().as_secs_f64();
        (screen.output().0 - first, frames, events, seconds)
    });
    println!(
        "streaming, 1,000-environment rollout at 200x60: {events} events over {seconds:.0} s in {frames} frames, {:.1} KB/s written (target < 20 KB/s)",
        bytes as f64 / seconds / 1000.0
    );
}
