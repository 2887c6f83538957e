//! The console's panes, one file each, and the layout that places them: every pane at once
//! on a large terminal, tabs on a small one (80x24).
//!
//! A pane is a [`Pane`]: it owns its title, its scroll state and what the movement keys do
//! in it, and draws from a read-only [`View`]. [`all`] lists them in Tab order: a new pane
//! is its file and one line there. Drawing changes nothing: [`draw`] returns where each pane
//! was placed ([`Geometry`]) and the UI takes that in afterwards ([`Ui::placed`]).

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

use super::actions::Act;
use super::model::Model;
use super::ui::Ui;

/// Room for every pane at once from this size up.
pub const WIDE: (u16, u16) = (110, 30);

/// Every pane, in Tab order (the `1`..`4` keys follow it).
pub fn all() -> Vec<Box<dyn Pane>> {
    vec![
        Box::new(grid::Grid::default()),
        Box::new(waves::Waves::default()),
        Box::new(detail::Detail::default()),
        Box::new(log::Log::default()),
    ]
}

/// What a pane draws from and reads when a key moves it: the rollout and the console's
/// state, neither of which it may change.
#[derive(Clone, Copy)]
pub struct View<'a> {
    pub model: &'a Model,
    pub ui: &'a Ui,
}

/// What the last frame gave a pane: the rows it showed and, for the grid, its columns and
/// first row. Keys read it (a page is a screenful; up and down move by grid rows).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Placed {
    pub rows: usize,
    pub cols: usize,
    /// The first row on screen.
    pub top: usize,
}

/// Where each pane was placed by a frame (by its index in [`all`]); panes not drawn (other
/// tabs) are not in it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Geometry {
    pub placed: Vec<(usize, Placed)>,
}

/// Where a pane goes when every pane is on screen: the top or bottom row, its column in
/// that row (left first), and its width.
#[derive(Debug, Clone, Copy)]
pub struct Slot {
    pub bottom: bool,
    pub column: u8,
    pub width: Constraint,
}

/// What changed in what the panes show; each pane decides what it resets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The selected environment.
    Selection,
    /// Which environments the grid shows, or how (the filter, compact cells).
    Environments,
    /// Which events the log shows, or in what order.
    Events,
}

/// What an action on "this" acts on when the pane has the focus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The marked environments, or the selected one.
    Selection,
    /// A whole wave (by plan index).
    Wave(usize),
}

/// One pane of the console.
pub trait Pane {
    /// Its name, on its tab and border.
    fn title(&self) -> &'static str;

    /// What its border title says after the name: counts, a filter, an order.
    fn title_extra(&self, _view: View) -> String {
        String::new()
    }

    /// Where it goes when every pane is on screen.
    fn slot(&self) -> Slot;

    /// Moves its cursor or scroll for a movement action (Up, Down, Left, Right, Top,
    /// Bottom), Up and Down `rows` rows at once. Returns where the selection (shared by every
    /// pane, a position in the visible environments) moves to, if this moves it.
    fn moved(&mut self, act: Act, rows: usize, view: View) -> Option<usize>;

    /// The rows a page key moves: a screenful, less one row to keep the place.
    fn page(&self) -> usize;

    /// What it shows changed elsewhere: a key, a filter, another pane moving the selection.
    fn changed(&mut self, _what: Change, _view: View) {}

    /// Events arrived (already in the model).
    fn arrived(&mut self, _batch: &[crate::engine::Event], _view: View) {}

    /// What an action on "this" means while it has the focus.
    fn target(&self) -> Target {
        Target::Selection
    }

    /// Draws itself inside `block` at `area`; returns what it placed.
    fn draw(&self, frame: &mut Frame, area: Rect, block: Block, view: View) -> Placed;

    /// Takes what its last draw placed.
    fn placed(&mut self, _placed: Placed) {}
}

/// A screenful of `rows`, less one row to keep the place; at least one.
pub fn page_of(rows: usize) -> usize {
    rows.max(2) - 1
}

fn block<'a>(view: View, i: usize) -> Block<'a> {
    let ui = view.ui;
    let pane = &ui.panes[i];
    let focused = ui.focus == i;
    let t = &ui.theme;
    ui.bordered()
        .border_style(if focused { t.border_focused } else { t.border })
        .title(Span::styled(
            format!(" {}{} ", pane.title(), pane.title_extra(view)),
            if focused { t.title } else { t.text },
        ))
}

fn draw_pane(frame: &mut Frame, area: Rect, i: usize, view: View, geometry: &mut Geometry) {
    let placed = view.ui.panes[i].draw(frame, area, block(view, i), view);
    geometry.placed.push((i, placed));
}

/// Draws one whole frame; returns where the panes went.
pub fn draw(frame: &mut Frame, model: &Model, ui: &Ui) -> Geometry {
    let view = View { model, ui };
    let mut geometry = Geometry::default();
    let area = frame.area();
    let wide = area.width >= WIDE.0 && area.height >= WIDE.1;
    frame.render_widget(Block::new().style(ui.theme.text), area);
    if wide {
        let [head, body, flash, foot] = Layout::vertical([
            Constraint::Length(2),
            Constraint::Min(8),
            Constraint::Length(1),
            Constraint::Length(1),
        ])
        .areas(area);
        header::draw(frame, head, model, ui);
        let rows: [Rect; 2] =
            Layout::vertical([Constraint::Percentage(62), Constraint::Percentage(38)]).areas(body);
        for (r, row) in rows.into_iter().enumerate() {
            let mut here: Vec<(u8, usize, Constraint)> = (0..ui.panes.len())
                .filter_map(|i| {
                    let s = ui.panes[i].slot();
                    (s.bottom == (r == 1)).then_some((s.column, i, s.width))
                })
                .collect();
            here.sort_by_key(|(column, i, _)| (*column, *i));
            let areas = Layout::horizontal(here.iter().map(|(.., w)| *w)).split(row);
            for ((_, i, _), a) in here.iter().zip(areas.iter()) {
                draw_pane(frame, *a, *i, view, &mut geometry);
            }
        }
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
        for (n, p) in ui.panes.iter().enumerate() {
            let style = if n == ui.focus { t.cursor } else { t.dim };
            spans.push(Span::styled(format!(" {} {} ", n + 1, p.title()), style));
            spans.push(Span::raw(" "));
        }
        spans.push(Span::styled("Tab switches", t.dim));
        frame.render_widget(Paragraph::new(Line::from(spans)), tabs);
        draw_pane(frame, body, ui.focus, view, &mut geometry);
        footer::draw_flash(frame, flash, ui);
        footer::draw_hints(frame, foot, model, ui);
    }
    overlay::draw(frame, ui);
    geometry
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pane_has_its_own_title_and_place_on_a_wide_screen() {
        let panes = all();
        let mut titles: Vec<&str> = panes.iter().map(|p| p.title()).collect();
        let mut slots: Vec<(bool, u8)> = panes
            .iter()
            .map(|p| (p.slot().bottom, p.slot().column))
            .collect();
        titles.sort();
        titles.dedup();
        slots.sort();
        slots.dedup();
        assert_eq!(titles.len(), panes.len(), "two panes share a title");
        assert_eq!(slots.len(), panes.len(), "two panes share a place");
        // The 1..4 keys show the panes by their place in the list.
        assert!(panes.len() <= 9);
    }
}
