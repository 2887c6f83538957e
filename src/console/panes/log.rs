//! The event log: the newest events of the rollout, newest first or last.

use ratatui::layout::{Constraint, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph};
use ratatui::Frame;

use super::{page_of, Change, Pane, Placed, Slot, View};
use crate::console::actions::Act;
use crate::console::model::LOG_CAPACITY;
use crate::console::ui::Ui;
use crate::engine::{Event, EventKind};

/// The event log pane.
#[derive(Debug, Default)]
pub struct Log {
    /// How many (shown) events back from the newest it starts.
    scroll: usize,
    /// Lines on screen in the last frame.
    rows: usize,
}

/// The events the log's filter lets through.
fn shown<'a>(ui: &Ui, events: impl IntoIterator<Item = &'a Event>) -> usize {
    events
        .into_iter()
        .filter(|e| ui.event_filter.as_ref().is_none_or(|f| f.matches(e)))
        .count()
}

impl Pane for Log {
    fn title(&self) -> &'static str {
        "Events"
    }

    fn title_extra(&self, view: View) -> String {
        let ui = view.ui;
        let order = if ui.newest_first {
            " newest first"
        } else {
            " newest last"
        };
        match &ui.event_filter {
            Some(f) => format!("{order} [{}]", f.text),
            None => order.to_string(),
        }
    }

    fn slot(&self) -> Slot {
        Slot {
            bottom: true,
            column: 1,
            width: Constraint::Percentage(50),
        }
    }

    fn moved(&mut self, act: Act, rows: usize, view: View) -> Option<usize> {
        // The scroll counts events back from the newest; with the newest last, down on
        // screen is towards the newest.
        let oldest = shown(view.ui, &view.model.log).saturating_sub(1);
        let (older, newer, oldest_end) = if view.ui.newest_first {
            (Act::Down, Act::Up, Act::Bottom)
        } else {
            (Act::Up, Act::Down, Act::Top)
        };
        self.scroll = if act == older {
            (self.scroll + rows).min(oldest)
        } else if act == newer {
            self.scroll.saturating_sub(rows)
        } else if act == oldest_end {
            oldest
        } else if matches!(act, Act::Top | Act::Bottom) {
            0
        } else {
            self.scroll
        };
        None
    }

    fn page(&self) -> usize {
        page_of(self.rows)
    }

    fn changed(&mut self, what: Change, _view: View) {
        if what == Change::Events {
            self.scroll = 0;
        }
    }

    /// Scrolled back, it keeps showing the same events.
    fn arrived(&mut self, batch: &[Event], view: View) {
        if self.scroll > 0 {
            self.scroll = (self.scroll + shown(view.ui, batch)).min(LOG_CAPACITY);
        }
    }

    fn draw(&self, frame: &mut Frame, area: Rect, block: Block, view: View) -> Placed {
        draw(frame, area, block, view, self.scroll)
    }

    fn placed(&mut self, placed: Placed) {
        self.rows = placed.rows;
    }
}

/// One line for an event: the plain output's line, or a short one for the frequent kinds.
pub fn line_of(event: &Event) -> String {
    if let Some(line) = crate::engine::text::event_line(&event.kind) {
        return line.trim_start().to_string();
    }
    match &event.kind {
        EventKind::EnvStarted { env, .. } => format!("{env}: intent recorded"),
        EventKind::StepStarted {
            env,
            service,
            version,
            attempt,
            ..
        } => format!("{env}/{service}: applying {version} (attempt {attempt})"),
        EventKind::StepSucceeded {
            env,
            service,
            version,
            ..
        } => format!("{env}/{service}: {version} healthy"),
        other => other.name().replace('_', " "),
    }
}

/// The clock part of an event's timestamp (HH:MM:SS).
fn time_of(ts: &str) -> String {
    ts.split('T').nth(1).unwrap_or(ts).chars().take(8).collect()
}

fn draw(frame: &mut Frame, area: Rect, block: Block, view: View, scroll: usize) -> Placed {
    let (model, ui) = (view.model, view.ui);
    let t = &ui.theme;
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let height = inner.height as usize;
    let shown = |e: &&Event| ui.event_filter.as_ref().is_none_or(|f| f.matches(e));
    // Only the lines on screen are formatted (a filter reads the rest, newest first).
    let mut picked: Vec<&Event> = model
        .log
        .iter()
        .rev()
        .filter(shown)
        .skip(scroll)
        .take(height)
        .collect();
    if !ui.newest_first {
        picked.reverse();
    }
    let lines: Vec<Line> = picked
        .into_iter()
        .map(|e| {
            let style = match &e.kind {
                EventKind::StepFailed { .. }
                | EventKind::RolloutHalted { .. }
                | EventKind::CommandRejected { .. } => t.fail,
                EventKind::StepRetrying { .. }
                | EventKind::GateWaiting { .. }
                | EventKind::DriftDetected { .. } => t.warn,
                EventKind::WaveCompleted { .. }
                | EventKind::RolloutCompleted { .. }
                | EventKind::GateApproved { .. } => t.ok,
                _ => t.text,
            };
            Line::from(vec![
                Span::styled(format!("{} ", time_of(&e.ts)), t.dim),
                Span::styled(line_of(e), style),
            ])
        })
        .collect();
    if lines.is_empty() {
        frame.render_widget(Paragraph::new(Span::styled("no events yet", t.dim)), inner);
    } else {
        frame.render_widget(Paragraph::new(lines), inner);
    }
    Placed {
        rows: height,
        cols: 1,
        top: scroll,
    }
}
