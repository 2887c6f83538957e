//! The flash line (results of actions, warnings) and the key hints, both from the live key map.

use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use crate::console::actions::{Act, Action, ACTIONS};
use crate::console::model::{CellState, Model};
use crate::console::ui::Ui;

pub fn draw_flash(frame: &mut Frame, area: Rect, ui: &Ui) {
    let t = &ui.theme;
    let line = if let Some(w) = ui.warnings.first() {
        let more = if ui.warnings.len() > 1 {
            format!(" (+{} more)", ui.warnings.len() - 1)
        } else {
            String::new()
        };
        Line::from(Span::styled(format!(" warning: {w}{more}"), t.warn))
    } else if let Some(f) = &ui.flash {
        Line::from(Span::styled(
            format!(" {}", f.text),
            if f.error { t.fail } else { t.ok },
        ))
    } else {
        Line::default()
    };
    frame.render_widget(Paragraph::new(line), area);
}

pub fn draw_hints(frame: &mut Frame, area: Rect, model: &Model, ui: &Ui) {
    let t = &ui.theme;
    // Only the first key of each: the hint line is short; `?` lists them all. Help and quit
    // always fit; the others as many as there is room for, in table order.
    let hint = |a: &Action| {
        ui.keymap
            .first_key(a.act)
            .map(|key| (key.to_string(), a.name))
    };
    let last: Vec<(String, &str)> = ACTIONS
        .iter()
        .filter(|a| matches!(a.act, Act::Help | Act::Quit))
        .filter_map(hint)
        .collect();
    let width = |(k, n): &(String, &str)| k.chars().count() + n.chars().count() + 3;
    let mut room = (area.width as usize).saturating_sub(last.iter().map(width).sum());
    // What decides about the selected environment's drift comes first while it has some.
    let selected = ui.selected().map(|i| &model.envs[i]);
    let context: &[Act] = match selected {
        Some(e) if e.state == CellState::Held => &[Act::Adopt, Act::Revert, Act::AcceptDrift],
        Some(e) if e.drifted => &[Act::Adopt, Act::AcceptDrift],
        _ => &[],
    };
    let mut shown = Vec::new();
    for h in context
        .iter()
        .map(|act| crate::console::actions::info(*act))
        .chain(
            ACTIONS
                .iter()
                .filter(|a| a.hint && !matches!(a.act, Act::Help | Act::Quit)),
        )
        // Once the engine has ended nothing can change the rollout: offer only what works.
        .filter(|a| model.active() || !a.changes)
        .filter_map(hint)
    {
        if width(&h) > room {
            break;
        }
        room -= width(&h);
        shown.push(h);
    }
    shown.extend(last);
    let mut spans = Vec::new();
    for (key, name) in shown {
        spans.push(Span::styled(format!(" {key}"), t.title));
        spans.push(Span::styled(format!(" {name} "), t.dim));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}
