//! The detail pane: the selected environment's labels, each service's desired and live
//! version, its last events and errors, and the drift diff of desired against live config.

use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Wrap};
use ratatui::Frame;

use crate::console::model::Model;
use crate::console::ui::{Observed, Ui};
use crate::drift::DiffLine;
use crate::engine::fold::{RollbackState, StepView};

/// How many of the last lines of a command's stdout, and of its stderr, the detail shows.
const OUTPUT_LINES: usize = 4;

/// The detail's lines for environment `i` (a pure function, so tests can read it).
pub fn lines(model: &Model, ui: &Ui, i: usize) -> Vec<Line<'static>> {
    let t = &ui.theme;
    let env = &model.envs[i];
    let mut out = Vec::new();
    out.push(Line::from(vec![
        Span::styled(env.name.clone(), t.title),
        Span::styled(
            format!("  wave {}  ", model.plan.waves[env.wave].name),
            t.dim,
        ),
        Span::styled(ui.glyph(env.state), ui.state_style(env.state)),
        Span::styled(format!(" {}", env.state.name()), ui.state_style(env.state)),
    ]));
    if let Some(reason) = model.view.skipped.get(&env.name) {
        out.push(Line::from(Span::styled(
            format!("skipped: {reason}"),
            t.skipped,
        )));
    }
    let intent_env = model.intent.environment(&env.name);
    if let Some(e) = intent_env {
        let labels: Vec<String> = e
            .labels
            .iter()
            .filter(|(k, _)| k.as_str() != "name")
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        out.push(Line::from(Span::styled(
            format!("labels: {}", labels.join(" ")),
            t.dim,
        )));
    }
    let desired = model
        .intent
        .release(&model.plan.release)
        .zip(intent_env)
        .map(|(r, e)| crate::intent::layers::render(&model.intent, r, e).desired);
    let observed = match &ui.observed {
        Some(Observed::Done(name, report)) if *name == env.name => Some(report),
        _ => None,
    };
    out.push(Line::from(Span::styled(
        format!("{:<10} {:<10} {:<10} step", "service", "desired", "live"),
        t.dim,
    )));
    for svc in &model.intent.services {
        let want = desired
            .as_ref()
            .and_then(|d| d.services.get(&svc.name))
            .map_or("?".to_string(), |d| d.version.clone());
        let live = match (&ui.observed, observed) {
            (_, Some(report)) => report
                .iter()
                .find(|r| r.service == svc.name)
                .and_then(|r| r.live_version.clone())
                .unwrap_or_else(|| "-".into()),
            (Some(Observed::Loading(n)), _) if *n == env.name => "...".into(),
            _ => "?".into(),
        };
        let step = model
            .view
            .steps
            .get(&(env.name.clone(), svc.name.clone()))
            .map(|(s, _, attempts)| {
                let name = match s {
                    StepView::Pending => "pending",
                    StepView::Intended => "next",
                    StepView::Running => "running",
                    StepView::Succeeded => "succeeded",
                    StepView::Failed => "FAILED",
                    StepView::Blocked => "blocked",
                };
                if *attempts > 1 {
                    format!("{name} ({attempts} attempts)")
                } else {
                    name.to_string()
                }
            })
            .unwrap_or_else(|| "pending".into());
        // A rollback says what became of the services it put back.
        let step = match model.view.rollbacks.get(&env.name) {
            Some(r) if r.services.contains(&svc.name) => match r.state {
                RollbackState::Done => format!("rolled back to {}", r.to),
                RollbackState::InFlight => format!("rolling back to {}", r.to),
                _ => step,
            },
            _ => step,
        };
        let live_style = if live == want { t.ok } else { t.warn };
        out.push(Line::from(vec![
            Span::styled(format!("{:<10} ", svc.name), t.text),
            Span::styled(format!("{want:<10} "), t.text),
            Span::styled(format!("{live:<10} "), live_style),
            Span::styled(step, t.dim),
        ]));
    }
    if let Some(err) = &env.last_error {
        out.push(Line::from(Span::styled(format!("error: {err}"), t.fail)));
    }
    // The newest few events about this environment.
    let recent: Vec<String> = model
        .log
        .iter()
        .rev()
        .filter(|e| e.kind.subject().1 == Some(env.name.as_str()))
        .take(5)
        .map(super::log::line_of)
        .collect();
    if !recent.is_empty() {
        out.push(Line::from(Span::styled("recent events", t.dim)));
        for line in recent {
            out.push(Line::from(Span::styled(format!("  {line}"), t.text)));
        }
    }
    // What the newest command that printed anything printed: its last lines.
    let printed = model.log.iter().rev().find_map(|e| {
        let (_, env_name, service, _) = e.kind.subject();
        (env_name == Some(env.name.as_str()))
            .then(|| e.kind.output().map(|o| (service.unwrap_or(""), o)))
            .flatten()
    });
    if let Some((service, output)) = printed {
        out.push(Line::from(Span::styled(
            format!("output of {service} (last lines)"),
            t.dim,
        )));
        for (tag, text, style) in [
            ("out", &output.stdout, t.text),
            ("err", &output.stderr, t.warn),
        ] {
            let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
            for line in &lines[lines.len().saturating_sub(OUTPUT_LINES)..] {
                out.push(Line::from(vec![
                    Span::styled(format!("  {tag} "), t.dim),
                    // The terminal would drop a tab: it shows as spaces.
                    Span::styled(line.replace('\t', "    "), style),
                ]));
            }
        }
    }
    out.push(Line::from(Span::styled("drift (live -> desired)", t.dim)));
    match &ui.observed {
        Some(Observed::Failed(n, why)) if *n == env.name => {
            out.push(Line::from(Span::styled(
                format!("  cannot observe: {why}"),
                t.fail,
            )));
        }
        _ => match observed {
            None => out.push(Line::from(Span::styled("  observing...", t.dim))),
            Some(report) if report.iter().all(|r| !r.drifted()) => {
                out.push(Line::from(Span::styled("  none: live matches Git", t.ok)));
            }
            Some(report) => {
                for r in report.iter().filter(|r| r.drifted()) {
                    if r.live_version.is_none() {
                        // Never deployed there: the whole config would be "drift".
                        out.push(Line::from(Span::styled(
                            format!("  {}: not running there yet", r.service),
                            t.dim,
                        )));
                        continue;
                    }
                    out.push(Line::from(Span::styled(
                        format!(
                            "--- {} live {}",
                            r.service,
                            r.live_version.as_deref().unwrap_or("(not running)")
                        ),
                        t.fail,
                    )));
                    out.push(Line::from(Span::styled(
                        format!("+++ {} desired {}", r.service, r.desired_version),
                        t.ok,
                    )));
                    for d in &r.diff {
                        out.push(match d {
                            DiffLine::Hunk(h) => Line::from(Span::styled(h.clone(), t.title)),
                            DiffLine::Same(s) => Line::from(Span::styled(format!(" {s}"), t.text)),
                            DiffLine::Desired(s) => Line::from(Span::styled(format!("+{s}"), t.ok)),
                            DiffLine::Live(s) => Line::from(Span::styled(format!("-{s}"), t.fail)),
                        });
                    }
                }
            }
        },
    }
    out
}

pub fn draw(frame: &mut Frame, area: Rect, block: Block, model: &Model, ui: &Ui) {
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let Some(i) = ui.selected() else {
        frame.render_widget(
            Paragraph::new(Span::styled("no environment selected", ui.theme.dim)),
            inner,
        );
        return;
    };
    frame.render_widget(
        Paragraph::new(lines(model, ui, i))
            .wrap(Wrap { trim: false })
            .scroll((ui.detail_scroll, 0)),
        inner,
    );
}
