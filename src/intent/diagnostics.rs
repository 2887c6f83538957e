//! Errors and warnings about the intent, each pointing at a file, line and column.

use std::fmt;
use std::ops::Range;

/// How serious a diagnostic is: errors stop every command that would change anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One problem in the intent, located precisely enough for an editor to jump to it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    /// Path of the file inside the intent repo, `/`-separated.
    pub file: String,
    /// 1-based line; 0 when the problem is about the file as a whole.
    pub line: usize,
    /// 1-based column in characters.
    pub col: usize,
    pub message: String,
    /// What would be right, when we can say.
    pub help: Option<String>,
    /// The source line the diagnostic points at, and how wide the marker is.
    #[serde(skip)]
    pub snippet: Option<(String, usize)>,
}

impl Diagnostic {
    /// A diagnostic at `span` (byte offsets) of `source`, the text of `file`.
    pub fn at(
        severity: Severity,
        file: &str,
        source: &str,
        span: Range<usize>,
        message: impl Into<String>,
    ) -> Self {
        let (line, col, text) = locate(source, span.start);
        let width = source
            .get(span.start.min(source.len())..span.end.min(source.len()))
            .map(|s| s.lines().next().unwrap_or("").chars().count())
            .unwrap_or(1)
            .max(1);
        Diagnostic {
            severity,
            file: file.to_string(),
            line,
            col,
            message: message.into(),
            help: None,
            snippet: Some((text.to_string(), width)),
        }
    }

    /// A diagnostic about a whole file (no position).
    pub fn file(severity: Severity, file: &str, message: impl Into<String>) -> Self {
        Diagnostic {
            severity,
            file: file.to_string(),
            line: 0,
            col: 0,
            message: message.into(),
            help: None,
            snippet: None,
        }
    }

    /// An error at `span` of `source`.
    pub fn error(file: &str, source: &str, span: Range<usize>, message: impl Into<String>) -> Self {
        Self::at(Severity::Error, file, source, span, message)
    }

    /// A warning at `span` of `source`.
    pub fn warning(
        file: &str,
        source: &str,
        span: Range<usize>,
        message: impl Into<String>,
    ) -> Self {
        Self::at(Severity::Warning, file, source, span, message)
    }

    /// Adds what would be right.
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// True for errors, which make the intent unusable.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// `file:line:col`, or just `file` when there is no position.
    pub fn location(&self) -> String {
        if self.line == 0 {
            self.file.clone()
        } else {
            format!("{}:{}:{}", self.file, self.line, self.col)
        }
    }
}

/// 1-based line and column (in characters) of byte `offset`, and the text of that line.
pub fn locate(source: &str, offset: usize) -> (usize, usize, &str) {
    let mut offset = offset.min(source.len());
    // An offset inside a multi-byte character points at that character.
    while !source.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &source[..offset];
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let line_end = source[line_start..]
        .find('\n')
        .map(|i| line_start + i)
        .unwrap_or(source.len());
    let line = before.matches('\n').count() + 1;
    let col = before[line_start..].chars().count() + 1;
    (
        line,
        col,
        source[line_start..line_end].trim_end_matches('\r'),
    )
}

impl fmt::Display for Diagnostic {
    /// Rendered the way cargo renders errors, so the shape is familiar.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let label = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        writeln!(f, "{label}: {}", self.message)?;
        write!(f, "  --> {}", self.location())?;
        if let Some((text, width)) = &self.snippet {
            let gutter = self.line.to_string();
            let pad = " ".repeat(gutter.len());
            write!(f, "\n{pad} |\n{gutter} | {text}\n{pad} | ")?;
            write!(
                f,
                "{}{}",
                " ".repeat(self.col.saturating_sub(1)),
                "^".repeat(*width)
            )?;
        }
        if let Some(help) = &self.help {
            write!(f, "\n  = help: {help}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_line_and_column_in_characters() {
        let src = "a = 1\nbé = \"x\"\n";
        let offset = src.find("\"x\"").unwrap();
        assert_eq!(locate(src, offset), (2, 6, "bé = \"x\""));
    }

    #[test]
    fn an_offset_inside_a_multibyte_character_does_not_panic() {
        let src = "select = \"\u{a0},\"\n";
        let inside = src.find('\u{a0}').unwrap() + 1;
        assert_eq!(locate(src, inside).0, 1);
        let d = Diagnostic::error("f.toml", src, inside..inside + 1, "bad");
        assert!(d.to_string().contains("--> f.toml:1:11"), "{d}");
    }

    #[test]
    fn renders_location_snippet_and_help() {
        let src = "[fleet]\nname = 3\n";
        let d = Diagnostic::error("flotilla.toml", src, 15..16, "expected a string")
            .with_help("write name = \"acme\"");
        let text = d.to_string();
        assert!(text.contains("--> flotilla.toml:2:8"), "{text}");
        assert!(text.contains("2 | name = 3"), "{text}");
        assert!(text.contains("|        ^"), "{text}");
        assert!(text.contains("help: write name"), "{text}");
    }
}
