//! The event log: the newest events of the rollout, newest first or last.

use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph};
use ratatui::Frame;

use crate::console::model::Model;
use crate::console::ui::Ui;
use crate::engine::{Event, EventKind};

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

pub fn draw(frame: &mut Frame, area: Rect, block: Block, model: &Model, ui: &Ui) {
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
        .skip(ui.log_scroll)
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
}
