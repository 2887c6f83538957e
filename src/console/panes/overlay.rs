//! What draws on top of the panes: help, text entry (command, filter, note, reason, typed
//! confirmation) and y/n confirmation.

use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Paragraph};
use ratatui::Frame;

use crate::console::actions::ACTIONS;
use crate::console::ui::{Mode, Purpose, Ui};

/// Splits `text` into lines of at most `width` characters at spaces (a longer word is cut).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        let fits = line.chars().count() + 1 + word.chars().count() <= width;
        if !line.is_empty() && !fits {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
        while line.chars().count() > width {
            let head: String = line.chars().take(width).collect();
            line = line.chars().skip(width).collect();
            lines.push(head);
        }
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let [v] = Layout::vertical([Constraint::Length(height.min(area.height))])
        .flex(Flex::Center)
        .areas(area);
    let [h] = Layout::horizontal([Constraint::Length(width.min(area.width))])
        .flex(Flex::Center)
        .areas(v);
    h
}

pub fn draw(frame: &mut Frame, ui: &Ui) {
    let t = &ui.theme;
    let area = frame.area();
    match &ui.mode {
        Mode::Normal => {}
        Mode::Help(scroll) => {
            let mut lines = vec![Line::from(Span::styled(
                "Keys (from the live key map; `:` runs any action by name)",
                t.dim,
            ))];
            // Descriptions wrap under their own column, so nothing is cut at 80 columns.
            let inner = area.width.min(100).saturating_sub(2) as usize;
            let lead = 1 + 12 + 14;
            let room = inner.saturating_sub(lead).max(16);
            for a in ACTIONS {
                let Some(keys) = ui.keymap.keys_of(a.act) else {
                    continue;
                };
                let mut text = a.description.to_string();
                if let Some(said) = a.confirm.said() {
                    text.push_str(&format!("; {said}"));
                }
                let mut parts = wrap(&text, room);
                // The command's form on a line of its own, so it is never broken.
                if a.args != crate::console::actions::Args::Nothing {
                    parts.push(format!(":{} {}", a.name, a.args.usage()));
                }
                for (n, part) in parts.into_iter().enumerate() {
                    let mut spans = if n == 0 {
                        vec![
                            Span::styled(format!(" {keys:<12}"), t.title),
                            Span::styled(format!("{:<14}", a.name), t.text),
                        ]
                    } else {
                        vec![Span::raw(" ".repeat(lead))]
                    };
                    spans.push(Span::styled(part, t.dim));
                    lines.push(Line::from(spans));
                }
            }
            let h = (lines.len() as u16 + 2).min(area.height);
            let scroll = (*scroll).min((lines.len() as u16 + 2).saturating_sub(h));
            let rect = centered(area, 100, h);
            frame.render_widget(Clear, rect);
            frame.render_widget(
                Paragraph::new(lines).scroll((scroll, 0)).block(
                    ui.bordered()
                        .title(Span::styled(" Help ", t.title))
                        .title_bottom(Span::styled(" j/k scroll, Esc closes ", t.dim))
                        .border_style(t.border_focused),
                ),
                rect,
            );
        }
        Mode::Input { purpose, text } => {
            let (title, hint) = match purpose {
                Purpose::Command => (
                    " : command ".to_string(),
                    "Tab completes, Enter runs, Esc cancels",
                ),
                Purpose::Filter => (
                    " / filter: selector (ring=canary) or name ".to_string(),
                    "Enter applies (empty clears), Esc cancels",
                ),
                Purpose::EventFilter => (
                    " f filter events: env=NAME wave=NAME kind=KIND or words ".to_string(),
                    "Enter applies (empty clears), Esc cancels",
                ),
                Purpose::ApproveNote { wave } => (
                    format!(" approve wave {wave}: note (optional) "),
                    "Enter approves, Esc cancels",
                ),
                Purpose::SkipReason { envs } => (
                    if envs.len() == 1 {
                        format!(" skip {}: reason ", envs[0])
                    } else {
                        format!(" skip {} marked environments: reason ", envs.len())
                    },
                    "Enter skips, Esc cancels",
                ),
                Purpose::AcceptDrift { env } => (
                    format!(" accept the drift of {env}: how long, then why "),
                    "e.g. 24h vendor hotfix in flight; Enter accepts, Esc cancels",
                ),
                Purpose::TypeToConfirm { expected, .. } => (
                    format!(" type `{expected}` to confirm "),
                    "Enter confirms, Esc cancels",
                ),
            };
            // What a typed confirmation does goes above the box's line, wrapped, so that
            // nothing of it is cut at 80 columns.
            let above = match purpose {
                Purpose::TypeToConfirm { what, .. } => what.clone(),
                _ => String::new(),
            };
            let width = (title.chars().count() as u16 + 4)
                .max(50)
                .max(above.chars().count() as u16 + 2)
                .min(area.width);
            let above = if above.is_empty() {
                Vec::new()
            } else {
                wrap(&above, width.saturating_sub(2).max(1) as usize)
            };
            let rect = centered(area, width, 3 + above.len() as u16);
            frame.render_widget(Clear, rect);
            let block = ui
                .bordered()
                .title(Span::styled(title, t.title))
                .title_bottom(Span::styled(format!(" {hint} "), t.dim))
                .border_style(t.border_focused);
            let inner = block.inner(rect);
            frame.render_widget(block, rect);
            let [words, line] = Layout::vertical([
                Constraint::Length(above.len() as u16),
                Constraint::Length(1),
            ])
            .areas(inner);
            let lines: Vec<Line> = above
                .into_iter()
                .map(|l| Line::from(Span::styled(l, t.warn)))
                .collect();
            frame.render_widget(Paragraph::new(lines), words);
            frame.render_widget(&**text, line);
        }
        Mode::Confirm { prompt, .. } => {
            let width = (prompt.chars().count() as u16 + 6).max(40).min(area.width);
            // The prompt and the hint as they wrap inside the borders.
            let inner = width.saturating_sub(2).max(1) as usize;
            let mut lines: Vec<Line> = wrap(prompt, inner)
                .into_iter()
                .map(|l| Line::from(Span::styled(l, t.text)))
                .collect();
            lines.extend(
                wrap("y confirms, any other key cancels", inner)
                    .into_iter()
                    .map(|l| Line::from(Span::styled(l, t.dim))),
            );
            let rect = centered(area, width, lines.len() as u16 + 2);
            frame.render_widget(Clear, rect);
            frame.render_widget(
                Paragraph::new(lines).block(
                    ui.bordered()
                        .title(Span::styled(" confirm ", t.warn))
                        .border_style(t.warn),
                ),
                rect,
            );
        }
    }
}
