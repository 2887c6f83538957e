//! The header: fleet, release, commit, rollout state, elapsed time, failures against budget.

use std::time::{Duration, SystemTime};

use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use crate::console::model::Model;
use crate::console::ui::Ui;
use crate::engine::RolloutState;

/// Time since `ts` (RFC 3339) at `now`.
pub fn since(ts: &str, now: SystemTime) -> Option<Duration> {
    let at = humantime::parse_rfc3339_weak(ts.trim_end_matches('Z')).ok()?;
    now.duration_since(at).ok()
}

/// A duration at coarse steps, so a countdown does not repaint every second: whole minutes
/// above two minutes, tens of seconds above ten, otherwise "<10s".
pub fn coarse(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 120 {
        format!("{}m", s.div_ceil(60))
    } else if s >= 10 {
        format!("{}s", s.div_ceil(10) * 10)
    } else {
        "<10s".into()
    }
}

/// Everything the header and waves pane derive from the clock: redraw only when it changes.
pub fn clock_texts(model: &Model, ui: &Ui) -> (Option<String>, Vec<Option<String>>) {
    // A rollout that ended stops the clock at its last event.
    let end = match (&model.finished, &model.view.last_event) {
        (Some(_), Some(last)) => humantime::parse_rfc3339_weak(last).unwrap_or(ui.now),
        _ => ui.now,
    };
    let elapsed = model
        .started_at
        .as_deref()
        .and_then(|t| since(t, end))
        .map(|d| {
            let m = d.as_secs() / 60;
            if m == 0 {
                "<1m".to_string()
            } else if m < 60 {
                format!("{m}m")
            } else {
                format!("{}h{:02}m", m / 60, m % 60)
            }
        });
    let soaks = model
        .plan
        .waves
        .iter()
        .map(|w| soak_left(model, ui, &w.name))
        .collect();
    (elapsed, soaks)
}

/// "soak 40s left" for a wave whose gate is soaking.
pub fn soak_left(model: &Model, ui: &Ui, wave: &str) -> Option<String> {
    let planned = model.plan.waves.iter().find(|w| w.name == wave)?;
    let view = model.view.waves.iter().find(|w| w.name == wave)?;
    if view.started || !view.waiting.as_deref()?.starts_with("soak") {
        return None;
    }
    let waited = since(model.waiting_since.get(wave)?, ui.now)?;
    Some(coarse(planned.soak.saturating_sub(waited)))
}

pub fn draw(frame: &mut Frame, area: Rect, model: &Model, ui: &Ui) {
    let t = &ui.theme;
    let rev = &model.plan.revision;
    let state = model.view.state;
    let state_style = match state {
        RolloutState::Halted | RolloutState::Aborted => t.fail,
        RolloutState::Waiting | RolloutState::Paused | RolloutState::Interrupted => t.warn,
        RolloutState::Completed => t.ok,
        _ => t.running,
    };
    let (elapsed, _) = clock_texts(model, ui);
    // The budget counts failures nobody accepted; the accepted ones are shown beside it.
    let accepted = model.accepted_failed(None);
    let failed = model.failed() - accepted;
    let budget = model.plan.max_failures;
    let mut first = vec![
        Span::styled(format!(" {} ", model.plan.fleet), t.title),
        Span::styled("release ", t.dim),
        Span::styled(model.plan.release.clone(), t.text),
        Span::styled(" @ ", t.dim),
        Span::styled(rev.short.clone(), t.text),
        Span::styled("  ", t.dim),
        Span::styled(state.name().to_uppercase(), state_style),
    ];
    // Failures before the clock: on a narrow terminal the end of the line is what goes.
    first.push(Span::styled("  failures ", t.dim));
    first.push(Span::styled(
        format!("{failed}/{budget}"),
        if failed > 0 { t.fail } else { t.text },
    ));
    if accepted > 0 {
        first.push(Span::styled(format!(" +{accepted} accepted"), t.dim));
    }
    let drifted = model.drifted();
    if drifted > 0 {
        first.push(Span::styled("  drifted ", t.dim));
        first.push(Span::styled(drifted.to_string(), t.drifted));
    }
    if let Some(e) = elapsed {
        first.push(Span::styled(format!("  {e}"), t.dim));
    }
    if ui.read_only {
        first.push(Span::raw("  "));
        first.push(Span::styled(" RO ", t.badge));
    }
    if ui.stopping {
        first.push(Span::raw("  "));
        first.push(Span::styled(" STOPPING (q again: leave now) ", t.badge));
    }
    // What needs the operator comes first on the second line; the commit's subject (quoted,
    // so it does not read as a state) and the engine watched come after, as room allows.
    let mut second = Vec::new();
    let halted = state == RolloutState::Halted && model.view.halt_reason.is_some();
    if let (true, Some(reason)) = (halted, &model.view.halt_reason) {
        second.push(Span::styled(format!(" HALTED when {reason}"), t.fail));
    } else if let Some(w) = model.waiting_for_approval() {
        second.push(Span::styled(
            format!(" gate {w} waits for approval"),
            t.warn,
        ));
        // Read-only has no approve action: then the line only informs.
        if let Some(key) = ui.keymap.first_key(crate::console::actions::Act::Approve) {
            second.push(Span::styled(": press ", t.warn));
            second.push(Span::styled(key.to_string(), t.badge));
        }
        second.push(Span::raw("  "));
    } else if let Some((w, name, until)) = model.frozen() {
        second.push(Span::styled(
            format!(" wave {w} frozen by `{name}` until {until}  "),
            t.warn,
        ));
    }
    // Held environments wait for someone too; said after a gate, which holds everything.
    if !halted && !model.view.held.is_empty() {
        let held: Vec<String> = model.view.held.keys().cloned().collect();
        second.push(Span::styled(
            format!(
                " HELD on drift: {}  ",
                crate::console::ui::short_list(&held)
            ),
            ui.state_style(crate::console::model::CellState::Held),
        ));
    }
    if let Some(engine) = &ui.attached_to {
        second.push(Span::styled(
            format!(" engine {engine}, q detaches  "),
            t.dim,
        ));
    }
    if !halted {
        second.push(Span::styled(format!(" \"{}\"", rev.subject), t.dim));
    }
    let lines = vec![Line::from(first), Line::from(second)];
    frame.render_widget(Paragraph::new(lines).style(t.text), area);
}
