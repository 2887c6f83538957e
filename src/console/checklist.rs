//! The preflight checklist the console shows before a rollout starts when a check failed:
//! every check with its result and reason, and each failure that may be set aside
//! overridden with a typed reason (journaled with who and when, as `--override` is).
//! Nothing starts until every failure is overridden; quitting starts nothing.

use crossterm::event::{Event as TermEvent, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};
use ratatui::Frame;
use ratatui_textarea::TextArea;

use super::theme::{Glyphs, Theme};
use crate::plan::{Check, CheckStatus, CHECKS, NOT_OVERRIDABLE};

/// What the operator decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Start with these overrides: (check id, reason).
    Start(Vec<(String, String)>),
    /// Start nothing.
    Quit,
}

/// The checklist and what has been typed into it.
pub struct Checklist {
    release: String,
    checks: Vec<Check>,
    selected: usize,
    /// Reasons given so far, by check id.
    overrides: Vec<(String, String)>,
    /// The reason being typed for the selected check.
    typing: Option<TextArea<'static>>,
    flash: Option<String>,
    theme: Theme,
    glyphs: Glyphs,
}

impl Checklist {
    /// The checklist of `release`'s preflight, the first failure selected.
    pub fn new(release: &str, mut checks: Vec<Check>, theme: Theme, glyphs: Glyphs) -> Self {
        // In the order `plan` lists them, whatever order they ran in.
        checks.sort_by_key(|c| CHECKS.iter().position(|id| *id == c.name));
        let selected = checks
            .iter()
            .position(|c| c.status == CheckStatus::Fail)
            .unwrap_or(0);
        Checklist {
            release: release.to_string(),
            checks,
            selected,
            overrides: Vec::new(),
            typing: None,
            flash: None,
            theme,
            glyphs,
        }
    }

    /// With overrides already given (`--override` on the command line): kept, and shown.
    pub fn with_overrides(mut self, overrides: Vec<(String, String)>) -> Self {
        self.overrides = overrides;
        self
    }

    fn reason(&self, id: &str) -> Option<&str> {
        self.overrides
            .iter()
            .find(|(c, _)| c == id)
            .map(|(_, r)| r.as_str())
    }

    /// Failed checks no reason sets aside yet.
    fn blocking(&self) -> Vec<&str> {
        self.checks
            .iter()
            .filter(|c| c.status == CheckStatus::Fail && self.reason(&c.name).is_none())
            .map(|c| c.name.as_str())
            .collect()
    }

    /// Handles one key; Some once the operator has decided.
    pub fn key(&mut self, key: KeyEvent) -> Option<Decision> {
        if let Some(text) = &mut self.typing {
            match key.code {
                KeyCode::Esc => {
                    self.typing = None;
                    self.flash = Some("override cancelled".into());
                }
                KeyCode::Enter => {
                    let typed = text.lines().join(" ").trim().to_string();
                    let id = self.checks[self.selected].name.clone();
                    if typed.is_empty() {
                        self.flash =
                            Some(format!("an override of {id} needs a reason; Esc cancels"));
                        return None;
                    }
                    self.typing = None;
                    self.overrides.retain(|(c, _)| *c != id);
                    self.overrides.push((id.clone(), typed));
                    self.flash = Some(match self.blocking().len() {
                        0 => format!("{id} overridden; Enter starts the rollout"),
                        n => format!("{id} overridden; {n} more failed check(s) block the start"),
                    });
                }
                _ => {
                    text.input(key);
                    self.flash = None;
                }
            }
            return None;
        }
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        match key.code {
            KeyCode::Char('q') | KeyCode::Esc => return Some(Decision::Quit),
            KeyCode::Char('c') if ctrl => return Some(Decision::Quit),
            KeyCode::Up | KeyCode::Char('k') => self.selected = self.selected.saturating_sub(1),
            KeyCode::Down | KeyCode::Char('j') => {
                self.selected = (self.selected + 1).min(self.checks.len().saturating_sub(1))
            }
            KeyCode::Char('o') => {
                let check = self.checks.get(self.selected)?;
                if check.status != CheckStatus::Fail {
                    self.flash = Some(format!("{} did not fail: nothing to override", check.name));
                } else if NOT_OVERRIDABLE.contains(&check.name.as_str()) {
                    self.flash = Some(format!("{} cannot be overridden", check.name));
                } else {
                    let mut area = TextArea::default();
                    area.set_cursor_line_style(ratatui::style::Style::new());
                    self.typing = Some(area);
                    self.flash = None;
                }
            }
            KeyCode::Enter => {
                let blocking = self.blocking();
                if blocking.is_empty() {
                    return Some(Decision::Start(self.overrides.clone()));
                }
                self.flash = Some(format!(
                    "{} blocks the start: override it (o, with a reason) or quit (q)",
                    blocking.join(", ")
                ));
            }
            _ => {}
        }
        None
    }

    /// Draws the checklist over the whole frame.
    pub fn draw(&self, f: &mut Frame) {
        let t = &self.theme;
        let area = f.area();
        let detail_height = 5;
        let [list_area, detail_area, prompt_area, footer_area] = Layout::vertical([
            Constraint::Min(3),
            Constraint::Length(detail_height),
            Constraint::Length(1),
            Constraint::Length(1),
        ])
        .areas(area);

        let failed = self
            .checks
            .iter()
            .filter(|c| c.status == CheckStatus::Fail)
            .count();
        let title = format!(
            " Preflight of {}: {failed} of {} checks failed; nothing has started ",
            self.release,
            self.checks.len()
        );
        let block = self
            .glyphs
            .bordered()
            .border_style(t.border_focused)
            .title(Span::styled(title, t.title));
        let inner = block.inner(list_area);
        f.render_widget(block, list_area);
        let id_width = self.checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
        let rows = inner.height as usize;
        // Keep the selected row in view.
        let first = self.selected.saturating_sub(rows.saturating_sub(1));
        let lines: Vec<Line> = self
            .checks
            .iter()
            .enumerate()
            .skip(first)
            .take(rows)
            .map(|(i, c)| self.row(c, i == self.selected, id_width, inner.width))
            .collect();
        f.render_widget(Paragraph::new(lines), inner);

        if let Some(c) = self.checks.get(self.selected) {
            let mut text = vec![Line::from(vec![
                Span::styled(c.name.clone(), t.title),
                Span::styled(format!(" ({})", status_word(c.status)), t.dim),
            ])];
            text.push(Line::styled(c.detail.clone(), t.text));
            if let Some(reason) = self.reason(&c.name) {
                text.push(Line::styled(format!("overridden: {reason}"), t.warn));
            }
            let block = Block::default()
                .borders(Borders::TOP)
                .border_set(ratatui::symbols::border::Set {
                    horizontal_top: self.glyphs.pick("─", "-"),
                    ..ratatui::symbols::border::PLAIN
                })
                .border_style(t.border);
            f.render_widget(
                Paragraph::new(text).block(block).wrap(Wrap { trim: true }),
                detail_area,
            );
        }

        if let Some(text) = &self.typing {
            let label = format!(
                "reason for overriding {}: ",
                self.checks[self.selected].name
            );
            let [l, r] = Layout::horizontal([
                Constraint::Length(label.chars().count() as u16),
                Constraint::Min(1),
            ])
            .areas(prompt_area);
            f.render_widget(Span::styled(label, t.title), l);
            f.render_widget(text, r);
        } else if let Some(flash) = &self.flash {
            f.render_widget(Span::styled(flash.clone(), t.warn), prompt_area);
        }

        // While a reason is typed, what is wrong with it shows where the keys do.
        let footer = match (&self.typing, &self.flash) {
            (Some(_), Some(flash)) => Span::styled(flash.clone(), t.warn),
            (Some(_), None) => Span::styled("Enter set the reason  Esc cancel", t.dim),
            (None, _) => Span::styled(
                "j/k select  o override (type a reason)  Enter start  q quit",
                t.dim,
            ),
        };
        f.render_widget(footer, footer_area);
    }

    fn row(&self, c: &Check, selected: bool, id_width: usize, width: u16) -> Line<'static> {
        let t = &self.theme;
        let (word, style) = match (c.status, self.reason(&c.name)) {
            (CheckStatus::Fail, Some(_)) => ("OVRD", t.warn),
            (CheckStatus::Fail, None) => ("FAIL", t.fail.add_modifier(Modifier::BOLD)),
            (CheckStatus::Warn, _) => ("warn", t.warn),
            (CheckStatus::Pass, _) => ("pass", t.ok),
        };
        let marker = if selected { ">" } else { " " };
        let used = 1 + 4 + 1 + id_width + 2;
        let room = (width as usize).saturating_sub(used);
        let detail = truncate(&c.detail, room, self.glyphs.pick("…", "~"));
        let line = Line::from(vec![
            Span::raw(marker),
            Span::styled(word, style),
            Span::raw(" "),
            Span::styled(format!("{:<id_width$}  ", c.name), t.text),
            Span::styled(detail, t.dim),
        ]);
        if selected {
            line.style(t.cursor)
        } else {
            line
        }
    }
}

fn status_word(s: CheckStatus) -> &'static str {
    match s {
        CheckStatus::Pass => "pass",
        CheckStatus::Warn => "warn",
        CheckStatus::Fail => "failed",
    }
}

/// `text` cut to `room` characters, ending in `more` when cut.
fn truncate(text: &str, room: usize, more: &str) -> String {
    if text.chars().count() <= room {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(room.saturating_sub(1)).collect();
    cut.push_str(more);
    cut
}

/// Shows the checklist on the terminal until the operator starts or quits. Blocks: run it
/// off the async threads.
pub fn run(mut list: Checklist) -> std::io::Result<Decision> {
    super::screen::enter()?;
    let decided = (|| {
        let mut terminal =
            ratatui::Terminal::new(ratatui::backend::CrosstermBackend::new(std::io::stdout()))?;
        loop {
            terminal.draw(|f| list.draw(f))?;
            if let TermEvent::Key(key) = crossterm::event::read()? {
                if key.kind == KeyEventKind::Release {
                    continue;
                }
                if let Some(decision) = list.key(key) {
                    return Ok(decision);
                }
            }
        }
    })();
    super::screen::leave();
    decided
}
