//! The console's panes, one file each, and the layout that places them: every pane at once
//! on a large terminal, tabs on a small one (80x24).

pub mod detail;
pub mod footer;
pub mod grid;
pub mod header;
pub mod log;
pub mod overlay;
pub mod waves;

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph};
use ratatui::Frame;

use super::model::Model;
use super::ui::{Pane, Ui};

/// Room for every pane at once from this size up.
pub const WIDE: (u16, u16) = (110, 30);

fn block<'a>(ui: &Ui, pane: Pane, extra: String) -> Block<'a> {
    let focused = ui.focus == pane;
    let t = &ui.theme;
    ui.bordered()
        .border_style(if focused { t.border_focused } else { t.border })
        .title(Span::styled(
            format!(" {}{extra} ", pane.title()),
            if focused { t.title } else { t.text },
        ))
}

fn draw_pane(frame: &mut Frame, area: Rect, pane: Pane, model: &Model, ui: &mut Ui) {
    match pane {
        Pane::Grid => {
            let extra = match &ui.filter {
                Some(f) => format!(" [{}] {}/{}", f.text(), ui.visible.len(), model.envs.len()),
                None => format!(" {}", model.envs.len()),
            };
            let extra = if ui.marks.is_empty() {
                extra
            } else {
                format!("{extra}  {} marked", ui.marks.len())
            };
            // Compact cells have no names: the title names the selected one.
            let extra = match ui.selected().filter(|_| ui.compact) {
                Some(i) => format!("{extra}  [{}]", model.envs[i].name),
                None => extra,
            };
            let b = block(ui, pane, extra);
            grid::draw(frame, area, b, model, ui)
        }
        Pane::Waves => waves::draw(frame, area, block(ui, pane, String::new()), model, ui),
        Pane::Detail => detail::draw(frame, area, block(ui, pane, String::new()), model, ui),
        Pane::Log => {
            let order = if ui.newest_first {
                " newest first"
            } else {
                " newest last"
            };
            let extra = match &ui.event_filter {
                Some(f) => format!("{order} [{}]", f.text),
                None => order.to_string(),
            };
            log::draw(frame, area, block(ui, pane, extra), model, ui)
        }
    }
}

/// Draws one whole frame.
pub fn draw(frame: &mut Frame, model: &Model, ui: &mut Ui) {
    let area = frame.area();
    ui.wide = area.width >= WIDE.0 && area.height >= WIDE.1;
    frame.render_widget(Block::new().style(ui.theme.text), area);
    if ui.wide {
        let [head, body, flash, foot] = Layout::vertical([
            Constraint::Length(2),
            Constraint::Min(8),
            Constraint::Length(1),
            Constraint::Length(1),
        ])
        .areas(area);
        header::draw(frame, head, model, ui);
        let [top, bottom] =
            Layout::vertical([Constraint::Percentage(62), Constraint::Percentage(38)]).areas(body);
        let [waves_area, grid_area] =
            Layout::horizontal([Constraint::Length(44), Constraint::Min(20)]).areas(top);
        let [detail_area, log_area] =
            Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)])
                .areas(bottom);
        draw_pane(frame, waves_area, Pane::Waves, model, ui);
        draw_pane(frame, grid_area, Pane::Grid, model, ui);
        draw_pane(frame, detail_area, Pane::Detail, model, ui);
        draw_pane(frame, log_area, Pane::Log, model, ui);
        footer::draw_flash(frame, flash, ui);
        footer::draw_hints(frame, foot, model, ui);
    } else {
        let [head, tabs, body, flash, foot] = Layout::vertical([
            Constraint::Length(2),
            Constraint::Length(1),
            Constraint::Min(3),
            Constraint::Length(1),
            Constraint::Length(1),
        ])
        .areas(area);
        header::draw(frame, head, model, ui);
        let t = &ui.theme;
        let mut spans = Vec::new();
        for (n, p) in Pane::ALL.iter().enumerate() {
            let style = if *p == ui.focus { t.cursor } else { t.dim };
            spans.push(Span::styled(format!(" {} {} ", n + 1, p.title()), style));
            spans.push(Span::raw(" "));
        }
        spans.push(Span::styled("Tab switches", t.dim));
        frame.render_widget(Paragraph::new(Line::from(spans)), tabs);
        let focus = ui.focus;
        draw_pane(frame, body, focus, model, ui);
        footer::draw_flash(frame, flash, ui);
        footer::draw_hints(frame, foot, model, ui);
    }
    overlay::draw(frame, ui);
}
