//! The detail pane: the selected environment's labels, each service's desired, last-applied
//! and live version, its last events and errors, and its drift three ways: what changed
//! out of band (last applied against live) and what Git changed since. A held environment
//! says so first, with the keys that decide.

use ratatui::layout::{Constraint, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Wrap};
use ratatui::Frame;

use super::{page_of, Change, Pane, Placed, Slot, View};
use crate::console::actions::Act;
use crate::console::model::{CellState, Model};
use crate::console::ui::Ui;
use crate::drift::three_way::DriftState;
use crate::drift::DiffLine;
use crate::engine::fold::{RollbackState, StepView};

/// How many of the last lines of a command's stdout, and of its stderr, the detail shows.
const OUTPUT_LINES: usize = 4;

/// The detail's lines for environment `i` (a pure function, so tests can read it).
pub fn lines(model: &Model, ui: &Ui, i: usize) -> Vec<Line<'static>> {
    let t = &ui.theme;
    let env = &model.envs[i];
    let mut out = Vec::new();
    out.push(Line::from(vec![
        Span::styled(env.name.clone(), t.title),
        Span::styled(
            format!("  wave {}  ", model.plan.waves[env.wave].name),
            t.dim,
        ),
        Span::styled(ui.glyph(env.state), ui.state_style(env.state)),
        Span::styled(format!(" {}", env.state.name()), ui.state_style(env.state)),
    ]));
    if let Some(reason) = model.view.skipped.get(&env.name) {
        out.push(Line::from(Span::styled(
            format!("skipped: {reason}"),
            t.skipped,
        )));
    }
    let intent_env = model.intent.environment(&env.name);
    if let Some(e) = intent_env {
        let labels: Vec<String> = e
            .labels
            .iter()
            .filter(|(k, _)| k.as_str() != "name")
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        out.push(Line::from(Span::styled(
            format!("labels: {}", labels.join(" ")),
            t.dim,
        )));
    }
    if env.state == CellState::Held {
        let held = model.view.held.get(&env.name).cloned().unwrap_or_default();
        out.push(Line::from(Span::styled(
            format!(
                "HELD: {} changed out of band; nothing is applied until you decide:",
                held.join(", ")
            ),
            ui.state_style(CellState::Held),
        )));
        let key = |act: Act| ui.keymap.first_key(act).unwrap_or("-").to_string();
        out.push(Line::from(vec![
            Span::raw("  "),
            Span::styled(key(Act::Adopt), t.badge),
            Span::styled(" adopt: keep it in Git  ", t.text),
            Span::styled(key(Act::Revert), t.badge),
            Span::styled(" revert: apply over it  ", t.text),
            Span::styled(key(Act::AcceptDrift), t.badge),
            Span::styled(" accept for now", t.text),
        ]));
    }
    if let Some(r) = model.view.released.get(&env.name) {
        out.push(Line::from(Span::styled(
            format!("released by {} ({})", r.by, r.how),
            t.dim,
        )));
    }
    let desired = model
        .intent
        .release(&model.plan.release)
        .zip(intent_env)
        .map(|(r, e)| crate::intent::layers::desired(&model.intent, r, e));
    let report = model.drift.get(&env.name);
    out.push(Line::from(Span::styled(
        format!(
            "{:<10} {:<10} {:<10} {:<10} step",
            "service", "desired", "applied", "live"
        ),
        t.dim,
    )));
    for svc in &model.intent.services {
        let want = desired
            .as_ref()
            .and_then(|d| d.services.get(&svc.name))
            .map_or("?".to_string(), |d| d.version.clone());
        let scanned = report.and_then(|r| r.services.iter().find(|s| s.service == svc.name));
        // "-": the scan found none; "?": not scanned yet.
        let applied = match scanned {
            Some(s) => s
                .last
                .as_ref()
                .map_or("-".to_string(), |l| l.version.clone()),
            None => "?".to_string(),
        };
        let live = match (report, scanned) {
            (Some(r), _) if r.error.is_some() => "?".to_string(),
            (Some(_), Some(s)) => s
                .live
                .as_ref()
                .map_or("-".to_string(), |l| l.version.clone()),
            _ => "?".to_string(),
        };
        let step = model
            .view
            .steps
            .get(&(env.name.clone(), svc.name.clone()))
            .map(|(s, _, attempts)| {
                let name = match s {
                    StepView::Pending => "pending",
                    StepView::Intended => "next",
                    StepView::Running => "running",
                    StepView::Succeeded => "succeeded",
                    StepView::Failed => "FAILED",
                    StepView::Blocked => "blocked",
                };
                if *attempts > 1 {
                    format!("{name} ({attempts} attempts)")
                } else {
                    name.to_string()
                }
            })
            .unwrap_or_else(|| "pending".into());
        // A rollback says what became of the services it put back.
        let step = match model.view.rollbacks.get(&env.name) {
            Some(r) if r.services.contains(&svc.name) => match r.state {
                RollbackState::Done => format!("rolled back to {}", r.to),
                RollbackState::InFlight => format!("rolling back to {}", r.to),
                _ => step,
            },
            _ => step,
        };
        let state = scanned.map(|s| s.comparison.state);
        let live_style = match state {
            Some(s) if s.is_drift() => t.drifted,
            Some(DriftState::InSync) => t.ok,
            _ => t.text,
        };
        let mut row = vec![
            Span::styled(format!("{:<10} ", svc.name), t.text),
            Span::styled(format!("{want:<10} "), t.text),
            Span::styled(format!("{applied:<10} "), t.dim),
            Span::styled(format!("{live:<10} "), live_style),
            Span::styled(step, t.dim),
        ];
        // Pending is what the step column says already.
        if let Some(s) = state.filter(|s| s.is_drift() || *s == DriftState::Unknown) {
            row.push(Span::styled(format!("  {}", s.name()), live_style));
        }
        out.push(Line::from(row));
    }
    if let Some(err) = &env.last_error {
        out.push(Line::from(Span::styled(format!("error: {err}"), t.fail)));
    }
    // What changed out of band before the history: it is what waits for a decision.
    drift_lines(model, ui, &env.name, &mut out);
    // The newest few events about this environment.
    let recent: Vec<String> = model
        .log
        .iter()
        .rev()
        .filter(|e| e.kind.subject().1 == Some(env.name.as_str()))
        .take(5)
        .map(super::log::line_of)
        .collect();
    if !recent.is_empty() {
        out.push(Line::from(Span::styled("recent events", t.dim)));
        for line in recent {
            out.push(Line::from(Span::styled(format!("  {line}"), t.text)));
        }
    }
    // What the newest command that printed anything printed: its last lines.
    let printed = model.log.iter().rev().find_map(|e| {
        let (_, env_name, service, _) = e.kind.subject();
        (env_name == Some(env.name.as_str()))
            .then(|| e.kind.output().map(|o| (service.unwrap_or(""), o)))
            .flatten()
    });
    if let Some((service, output)) = printed {
        out.push(Line::from(Span::styled(
            format!("output of {service} (last lines)"),
            t.dim,
        )));
        for (tag, text, style) in [
            ("out", &output.stdout, t.text),
            ("err", &output.stderr, t.warn),
        ] {
            let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
            for line in &lines[lines.len().saturating_sub(OUTPUT_LINES)..] {
                out.push(Line::from(vec![
                    Span::styled(format!("  {tag} "), t.dim),
                    // The terminal would drop a tab: it shows as spaces.
                    Span::styled(line.replace('\t', "    "), style),
                ]));
            }
        }
    }
    out
}

/// The three-way drift of environment `env` as the newest scan found it: per service that
/// changed out of band, a diff of what flotilla last applied (`-`) against live (`+`), what
/// Git changed since, and who accepted it if anyone did.
fn drift_lines(model: &Model, ui: &Ui, env: &str, out: &mut Vec<Line<'static>>) {
    let t = &ui.theme;
    let rescan = ui.keymap.first_key(Act::Rescan).unwrap_or(":rescan");
    let when = match (model.drift_at, model.scanning) {
        (_, true) => "scanning...".to_string(),
        (Some(at), false) => {
            let ago = ui.now.duration_since(at).unwrap_or_default();
            format!(
                "scanned {} ago, {rescan} rescans",
                super::header::coarse(ago)
            )
        }
        (None, false) => format!("not scanned yet, {rescan} scans"),
    };
    out.push(Line::from(Span::styled(
        format!("drift: last applied -> live ({when})"),
        t.dim,
    )));
    let Some(report) = model.drift.get(env) else {
        let why = match &model.drift_error {
            Some(why) => format!("  the scan failed: {why}"),
            None if model.drift_at.is_some() => {
                "  the rollout changed it since the scan: not scanned since".into()
            }
            None => return,
        };
        out.push(Line::from(Span::styled(why, t.dim)));
        return;
    };
    if let Some(why) = &report.error {
        out.push(Line::from(Span::styled(
            format!("  cannot observe: {why}"),
            t.fail,
        )));
        return;
    }
    let drifted: Vec<_> = report
        .services
        .iter()
        .filter(|s| s.comparison.state.is_drift())
        .collect();
    if drifted.is_empty() {
        out.push(Line::from(Span::styled(
            "  none: live is what flotilla applied, or what Git wants",
            t.ok,
        )));
    }
    for s in drifted {
        let live = s
            .live
            .as_ref()
            .map_or("(not running)", |l| l.version.as_str());
        let last = s.last.as_ref().map_or("?", |l| l.version.as_str());
        out.push(Line::from(Span::styled(
            format!("--- {} last applied {last}", s.service),
            t.fail,
        )));
        out.push(Line::from(Span::styled(
            format!("+++ {} live {live}", s.service),
            t.ok,
        )));
        for d in s.drift_diff().unwrap_or_default() {
            out.push(match d {
                DiffLine::Hunk(h) => Line::from(Span::styled(h, t.title)),
                DiffLine::Same(x) => Line::from(Span::styled(format!(" {x}"), t.text)),
                DiffLine::Desired(x) => Line::from(Span::styled(format!("+{x}"), t.ok)),
                DiffLine::Live(x) => Line::from(Span::styled(format!("-{x}"), t.fail)),
            });
        }
        for c in &s.comparison.pending {
            out.push(Line::from(Span::styled(
                format!("  and Git changed {}", c.line()),
                t.warn,
            )));
        }
        if let Some(a) = &s.accepted {
            out.push(Line::from(Span::styled(
                format!("  accepted by {} until {}: {}", a.by, a.until, a.reason),
                t.dim,
            )));
        }
    }
}

/// Its title: the enter key comes here.
pub const TITLE: &str = "Detail";

/// The detail pane, scrolled this many lines down.
#[derive(Debug, Default)]
pub struct Detail {
    scroll: u16,
    /// Lines on screen in the last frame.
    rows: usize,
}

impl Pane for Detail {
    fn title(&self) -> &'static str {
        TITLE
    }

    fn slot(&self) -> Slot {
        Slot {
            bottom: true,
            column: 0,
            width: Constraint::Percentage(50),
        }
    }

    fn moved(&mut self, act: Act, rows: usize, _view: View) -> Option<usize> {
        let rows = rows.min(u16::MAX as usize) as u16;
        self.scroll = match act {
            Act::Up => self.scroll.saturating_sub(rows),
            Act::Down => self.scroll.saturating_add(rows),
            Act::Top => 0,
            _ => self.scroll,
        };
        None
    }

    fn page(&self) -> usize {
        page_of(self.rows)
    }

    /// Another environment starts at its top.
    fn changed(&mut self, what: Change, _view: View) {
        if what == Change::Selection {
            self.scroll = 0;
        }
    }

    fn draw(&self, frame: &mut Frame, area: Rect, block: Block, view: View) -> Placed {
        let (model, ui) = (view.model, view.ui);
        let inner = block.inner(area);
        frame.render_widget(block, area);
        let placed = Placed {
            rows: inner.height as usize,
            cols: 1,
            top: self.scroll as usize,
        };
        let Some(i) = ui.selected() else {
            frame.render_widget(
                Paragraph::new(Span::styled("no environment selected", ui.theme.dim)),
                inner,
            );
            return placed;
        };
        frame.render_widget(
            Paragraph::new(lines(model, ui, i))
                .wrap(Wrap { trim: false })
                .scroll((self.scroll, 0)),
            inner,
        );
        placed
    }

    fn placed(&mut self, placed: Placed) {
        self.rows = placed.rows;
    }
}
