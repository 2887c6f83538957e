//! The waves pane: per wave a progress bar, counts, gate state, budget left and risk.

use ratatui::layout::{Constraint, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph};
use ratatui::Frame;

use super::{page_of, Change, Pane, Placed, Slot, Target, View};
use crate::console::actions::Act;
use crate::console::model::CellState;
use crate::engine::text::percent;
use crate::engine::RolloutState;
use crate::intent::Gate;

/// Lines each wave takes.
const PER_WAVE: usize = 4;

/// The waves pane; its cursor picks the wave a rollback in it acts on.
#[derive(Debug, Default)]
pub struct Waves {
    /// The selected wave (plan index).
    cursor: usize,
    /// Lines on screen in the last frame.
    rows: usize,
}

impl Pane for Waves {
    fn title(&self) -> &'static str {
        "Waves"
    }

    fn slot(&self) -> Slot {
        Slot {
            bottom: false,
            column: 0,
            width: Constraint::Length(44),
        }
    }

    fn moved(&mut self, act: Act, rows: usize, view: View) -> Option<usize> {
        let n = view.model.plan.waves.len();
        self.cursor = match act {
            Act::Up | Act::Left => self.cursor.saturating_sub(rows),
            Act::Down | Act::Right => (self.cursor + rows).min(n.saturating_sub(1)),
            Act::Top => 0,
            Act::Bottom => n.saturating_sub(1),
            _ => self.cursor,
        };
        // The grid follows: its cursor goes to the wave's first environment.
        let (model, ui) = (view.model, view.ui);
        ui.visible
            .iter()
            .position(|&i| model.envs[i].wave == self.cursor)
    }

    fn page(&self) -> usize {
        page_of(self.rows / PER_WAVE)
    }

    fn changed(&mut self, what: Change, view: View) {
        // The selection moved elsewhere (the grid): the wave follows it.
        if what == Change::Selection {
            if let Some(i) = view.ui.selected() {
                self.cursor = view.model.envs[i].wave;
            }
        }
    }

    fn target(&self) -> Target {
        Target::Wave(self.cursor)
    }

    fn draw(&self, frame: &mut Frame, area: Rect, block: Block, view: View) -> Placed {
        draw(frame, area, block, view, self.cursor)
    }

    fn placed(&mut self, placed: Placed) {
        self.rows = placed.rows;
    }
}

fn draw(frame: &mut Frame, area: Rect, block: Block, view: View, cursor: usize) -> Placed {
    let (model, ui) = (view.model, view.ui);
    let t = &ui.theme;
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let width = inner.width as usize;
    let mut lines = Vec::new();
    for (w, wave) in model.plan.waves.iter().enumerate() {
        let view = model.view.waves.iter().find(|v| v.name == wave.name);
        let counts = model.wave_counts(w);
        let n = wave.envs.len().max(1);
        let count = |s: CellState| counts.get(&s).copied().unwrap_or(0);
        // Drifted environments no longer run what the rollout applied (or have yet to get
        // it): not done.
        let done = count(CellState::Succeeded) + count(CellState::Skipped);
        let failed = count(CellState::Failed) + count(CellState::Blocked);
        let running = count(CellState::Running);
        let rolled_back = count(CellState::RolledBack);
        let selected = cursor == w;
        let name_style = if selected { t.cursor } else { t.title };
        let gate = match (&wave.gate, view) {
            (_, Some(v)) if v.completed => Span::styled("done", t.ok),
            (_, Some(v)) if v.started && model.view.state == RolloutState::Halted => {
                Span::styled("HALTED", t.fail)
            }
            (_, Some(v)) if v.started && model.view.state == RolloutState::Paused => {
                Span::styled("paused", t.warn)
            }
            (_, Some(v)) if v.waiting.is_some() && !v.started => {
                let frozen = model.frozen().filter(|(w, ..)| *w == wave.name);
                match crate::console::panes::header::soak_left(model, ui, &wave.name) {
                    Some(left) => Span::styled(format!("soak {left} left"), t.warn),
                    // The end is 2026-12-02T23:00:00Z: the hour is what fits.
                    None if frozen.is_some() => {
                        let hour = frozen.and_then(|(_, _, until)| until.get(11..16));
                        let hour = hour.map(|h| format!(" until {h}Z")).unwrap_or_default();
                        Span::styled(format!("frozen{hour}"), t.warn)
                    }
                    None => Span::styled("waits for approval", t.warn),
                }
            }
            (Gate::Approval { .. }, Some(v)) if !v.approvals.is_empty() => {
                Span::styled(format!("approved by {}", v.approvals.join(", ")), t.ok)
            }
            (_, Some(v)) if v.started => Span::styled("running", t.running),
            (Gate::Approval { approvers }, _) => Span::styled(
                if *approvers > 1 {
                    format!("gate: {approvers} approvals")
                } else {
                    "gate: approval".into()
                },
                t.dim,
            ),
            (Gate::Auto, _) => Span::styled("auto", t.dim),
        };
        lines.push(Line::from(vec![
            Span::styled(format!("{:<12}", wave.name), name_style),
            Span::raw(" "),
            gate,
        ]));
        // The bar: succeeded, failed, running, rolled back, then what is left.
        let bar_w = width.saturating_sub(12).clamp(4, 40);
        let cells = |k: usize| (k * bar_w).div_ceil(n).min(bar_w);
        let mut room = bar_w;
        let mut take = |k: usize| {
            let w = cells(k).min(room);
            room -= w;
            w
        };
        let (ok_w, fail_w, run_w, back_w) =
            (take(done), take(failed), take(running), take(rolled_back));
        let rest = room;
        let g = ui.glyphs;
        lines.push(Line::from(vec![
            Span::raw(" "),
            Span::styled(g.pick("█", "#").repeat(ok_w), t.ok),
            // Failed and rolled back in the grid's glyphs, so no part reads by colour alone.
            Span::styled(g.pick("✗", "X").repeat(fail_w), t.fail),
            Span::styled(g.pick("▒", ">").repeat(run_w), t.running),
            Span::styled(g.pick("↺", "<").repeat(back_w), t.rolled_back),
            Span::styled(g.pick("░", ".").repeat(rest), t.pending),
            Span::styled(format!(" {done}/{}", wave.envs.len()), t.text),
        ]));
        // Failures a resume accepted do not use the budget up.
        let accepted = model.accepted_failed(Some(w));
        let counted = failed.saturating_sub(accepted);
        let left = wave.allowed_failures.saturating_sub(counted);
        let budget_style = if counted > wave.allowed_failures {
            t.fail
        } else if counted > 0 {
            t.warn
        } else {
            t.dim
        };
        let mut info = vec![Span::styled(
            format!(" budget {left}/{} left", wave.allowed_failures),
            budget_style,
        )];
        if failed > 0 || running > 0 {
            info.push(Span::styled(
                format!("  {failed} failed"),
                if failed > 0 { t.fail } else { t.dim },
            ));
            info.push(Span::styled(format!("  {running} running"), t.dim));
        }
        if rolled_back > 0 {
            info.push(Span::styled(
                format!("  {rolled_back} rolled back"),
                t.rolled_back,
            ));
        }
        lines.push(Line::from(info));
        lines.push(Line::from(Span::styled(
            format!(
                " risk {} ({} with retries)",
                percent(wave.risk.without_retries),
                percent(wave.risk.with_retries)
            ),
            t.dim,
        )));
    }
    // Keep the selected wave in view on short screens.
    let top =
        (cursor * PER_WAVE).saturating_sub(inner.height.saturating_sub(PER_WAVE as u16) as usize);
    frame.render_widget(Paragraph::new(lines).scroll((top as u16, 0)), inner);
    Placed {
        rows: inner.height as usize,
        cols: 1,
        top,
    }
}
