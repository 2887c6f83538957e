//! The fleet grid: every environment as a cell with its state glyph and name, grouped by
//! wave. Only the rows on screen are built, so 10,000 environments draw as fast as 10.

use ratatui::layout::{Constraint, Rect};
use ratatui::style::Modifier;
use ratatui::widgets::Block;
use ratatui::Frame;

use super::{page_of, Change, Pane, Placed, Slot, View};
use crate::console::actions::Act;
use crate::console::model::Model;

/// Modifiers that show on a blank cell too, so a blank cannot take a style that has them.
const SHOWS_ON_BLANK: Modifier = Modifier::REVERSED.union(Modifier::UNDERLINED);

/// The widest name a cell shows; longer names are cut (the detail pane has them whole).
const MAX_NAME: usize = 18;

/// Columns of one cell: mark, glyph, space, name, space; compact cells are mark and glyph.
pub fn cell_width(model: &Model, compact: bool) -> usize {
    if compact {
        2
    } else {
        model.name_width.min(MAX_NAME) + 4
    }
}

/// One row of the fleet grid: a wave's heading or a run of cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GridRow {
    Heading {
        wave: usize,
        shown: usize,
    },
    /// Positions `from..to` of the visible list.
    Cells {
        from: usize,
        to: usize,
    },
}

/// The grid's rows for `cols` cells per row: a heading per wave, then its cells.
pub fn rows(visible: &[usize], model: &Model, cols: usize) -> Vec<GridRow> {
    let cols = cols.max(1);
    let mut rows = Vec::new();
    let mut start = 0;
    while start < visible.len() {
        let wave = model.envs[visible[start]].wave;
        let end = start
            + visible[start..]
                .iter()
                .take_while(|&&i| model.envs[i].wave == wave)
                .count();
        rows.push(GridRow::Heading {
            wave,
            shown: end - start,
        });
        let mut from = start;
        while from < end {
            let to = (from + cols).min(end);
            rows.push(GridRow::Cells { from, to });
            from = to;
        }
        start = end;
    }
    rows
}

/// The fleet grid pane; the selection it moves is the console's.
#[derive(Debug, Default)]
pub struct Grid {
    /// Cells per row, rows on screen and the first row shown, from the last frame.
    placed: Placed,
}

impl Pane for Grid {
    fn title(&self) -> &'static str {
        "Fleet"
    }

    fn title_extra(&self, view: View) -> String {
        let (model, ui) = (view.model, view.ui);
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
        match ui.selected().filter(|_| ui.compact) {
            Some(i) => format!("{extra}  [{}]", model.envs[i].name),
            None => extra,
        }
    }

    fn slot(&self) -> Slot {
        Slot {
            bottom: false,
            column: 1,
            width: Constraint::Min(20),
        }
    }

    fn moved(&mut self, act: Act, rows: usize, view: View) -> Option<usize> {
        let (model, ui) = (view.model, view.ui);
        let cursor = ui.cursor;
        let last = ui.visible.len().saturating_sub(1);
        Some(match act {
            Act::Left => cursor.saturating_sub(1),
            Act::Right => (cursor + 1).min(last),
            Act::Top => 0,
            Act::Bottom => last,
            Act::Up | Act::Down => {
                let cells: Vec<(usize, usize)> = self::rows(&ui.visible, model, self.placed.cols)
                    .into_iter()
                    .filter_map(|r| match r {
                        GridRow::Cells { from, to } => Some((from, to)),
                        GridRow::Heading { .. } => None,
                    })
                    .collect();
                let row = cells.iter().position(|(f, t)| (*f..*t).contains(&cursor))?;
                let col = cursor - cells[row].0;
                let target = if act == Act::Up {
                    row.saturating_sub(rows)
                } else {
                    (row + rows).min(cells.len() - 1)
                };
                (cells[target].0 + col).min(cells[target].1 - 1)
            }
            _ => return None,
        })
    }

    fn page(&self) -> usize {
        page_of(self.placed.rows)
    }

    fn changed(&mut self, what: Change, _view: View) {
        if what == Change::Environments {
            self.placed.top = 0;
        }
    }

    fn draw(&self, frame: &mut Frame, area: Rect, block: Block, view: View) -> Placed {
        draw(frame, area, block, view, self.placed.top)
    }

    fn placed(&mut self, placed: Placed) {
        self.placed = placed;
    }
}

/// Draws the grid, its first row `top` or less (so the cursor's row shows).
fn draw(frame: &mut Frame, area: Rect, block: Block, view: View, top: usize) -> Placed {
    let (model, ui) = (view.model, view.ui);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if inner.width == 0 || inner.height == 0 {
        return Placed::default();
    }
    let cell_w = cell_width(model, ui.compact);
    let cols = (inner.width as usize / cell_w).max(1);
    let height = inner.height as usize;
    let rows = rows(&ui.visible, model, cols);
    let mut top = top;
    // Keep the cursor's row (and its wave heading, when there is room) on screen.
    if let Some(r) = rows.iter().position(
        |row| matches!(row, GridRow::Cells { from, to } if (*from..*to).contains(&ui.cursor)),
    ) {
        let with_heading = if r > 0 && matches!(rows[r - 1], GridRow::Heading { .. }) {
            r - 1
        } else {
            r
        };
        if with_heading < top {
            top = with_heading;
        } else if r >= top + height {
            top = r + 1 - height;
        }
    }
    let top = top.min(rows.len().saturating_sub(height));
    let placed = Placed {
        rows: height,
        cols,
        top,
    };
    let t = &ui.theme;
    let buf = frame.buffer_mut();
    if rows.is_empty() {
        buf.set_string(inner.x, inner.y, "no environment matches the filter", t.dim);
        return placed;
    }
    // What does not fit is said on the bottom border, so nobody takes it for the whole fleet.
    let above = top;
    let below = rows.len().saturating_sub(top + height);
    let border_y = area.y + area.height.saturating_sub(1);
    if (above > 0 || below > 0) && border_y > inner.y + inner.height.saturating_sub(1) {
        let g = ui.glyphs;
        let mut parts = Vec::new();
        if above > 0 {
            parts.push(format!("{} {above} rows above", g.pick("↑", "^")));
        }
        if below > 0 {
            parts.push(format!("{} {below} rows below", g.pick("↓", "v")));
        }
        let text = format!(" {} ", parts.join(", "));
        buf.set_stringn(
            inner.x + 1,
            border_y,
            &text,
            inner.width.saturating_sub(2) as usize,
            t.dim,
        );
    }
    let name_w = cell_w.saturating_sub(4);
    let mut line = String::with_capacity(inner.width as usize);
    for (y, row) in rows.iter().skip(top).take(height).enumerate() {
        let y = inner.y + y as u16;
        match *row {
            GridRow::Heading { wave, shown } => {
                let w = &model.plan.waves[wave];
                line.clear();
                let total = w.envs.len();
                let count = if shown == total {
                    format!("{total}")
                } else {
                    format!("{shown} of {total}")
                };
                line.push_str(&format!(
                    "{} {} ({count}) ",
                    ui.glyphs.pick("──", "--"),
                    w.name
                ));
                buf.set_stringn(inner.x, y, &line, inner.width as usize, t.title);
                let used = line.chars().count() as u16;
                if used < inner.width {
                    let rule = ui
                        .glyphs
                        .pick("─", "-")
                        .repeat((inner.width - used) as usize);
                    buf.set_string(inner.x + used, y, rule, t.border);
                }
            }
            GridRow::Cells { from, to } => {
                for (c, pos) in (from..to).enumerate() {
                    let i = ui.visible[pos];
                    let env = &model.envs[i];
                    let x = inner.x + (c * cell_w) as u16;
                    let selected = pos == ui.cursor;
                    let marked = ui.marks.contains(&i);
                    let mut style = ui.state_style(env.state);
                    if selected {
                        style = style.patch(t.cursor);
                    }
                    let (mark, mark_style) = if marked {
                        (
                            ui.glyphs.pick("•", "*"),
                            if selected { t.cursor } else { t.warn },
                        )
                    } else if selected || style.add_modifier.intersects(SHOWS_ON_BLANK) {
                        (" ", if selected { t.cursor } else { t.warn })
                    } else {
                        // A blank looks the same in the glyph's style, and a row of cells of
                        // one state then needs no colour change between them: a full repaint
                        // of a large fleet sends far fewer bytes.
                        (" ", style)
                    };
                    // Cells of one column each: set directly, not as strings to segment.
                    if let Some(cell) = buf.cell_mut((x, y)) {
                        cell.set_symbol(mark).set_style(mark_style);
                    }
                    if let Some(cell) = buf.cell_mut((x + 1, y)) {
                        cell.set_symbol(ui.glyph(env.state)).set_style(style);
                    }
                    if ui.compact {
                        continue;
                    }
                    let name: String = env.name.chars().take(name_w).collect();
                    let name_style = if selected {
                        t.text.patch(t.cursor)
                    } else if marked {
                        t.text.add_modifier(Modifier::UNDERLINED)
                    } else {
                        t.text
                    };
                    buf.set_string(
                        x + 2,
                        y,
                        format!(" {name:<width$}", width = name_w),
                        name_style,
                    );
                }
            }
        }
    }
    placed
}
