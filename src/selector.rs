//! Label selectors: which environments of the fleet a rollout step targets.
//!
//! The syntax is the Kubernetes label-selector syntax, so operators who already
//! know `kubectl -l` need to learn nothing new, plus `*` for "every environment":
//!
//! | form              | matches when                                   |
//! |-------------------|------------------------------------------------|
//! | `k=v`, `k==v`     | label `k` is present and equals `v`            |
//! | `k!=v`            | label `k` is absent or differs from `v`        |
//! | `k in (a, b)`     | label `k` is present and is one of the values  |
//! | `k notin (a, b)`  | label `k` is absent or is none of the values   |
//! | `k`               | label `k` is present (any value)               |
//! | `!k`              | label `k` is absent                            |
//! | `*`               | always (must be the whole selector)            |
//!
//! Requirements are separated by `,` and all of them must hold. Whitespace
//! between tokens is ignored, so `ring in (early, beta), tier!=free` is fine.
//!
//! Parsing is a small hand-written tokenizer plus a recursive-descent parser so
//! that every error can carry the byte offset of the offending token and a
//! concrete suggestion; callers use the offset to point at the exact column
//! inside the TOML string the selector came from.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// Kubernetes limits the name part of a key to 63 characters (a DNS label).
const MAX_NAME_LEN: usize = 63;
/// Kubernetes limits the key prefix to 253 characters (a DNS subdomain).
const MAX_PREFIX_LEN: usize = 253;

const KEY_HELP: &str = "a label key is an optional DNS prefix and `/`, then a name of letters, \
                        digits, `-`, `_` and `.` that starts and ends with a letter or digit, \
                        e.g. `app.kubernetes.io/name`";

/// A parsed label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// `*`: every environment. Kept distinct from an empty requirement list so
    /// that "select everything" is always an explicit choice in the config.
    All,
    /// Requirements that must all hold. [`Selector::parse`] never produces an
    /// empty list (an empty selector is an error), and `Display` only promises
    /// to round-trip selectors that `parse` could have produced.
    Terms(Vec<Requirement>),
}

/// One comma-separated requirement of a [`Selector`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    /// `key=value` (or `key==value`): the label is present and equal.
    Eq { key: String, value: String },
    /// `key!=value`: the label is absent or different.
    NotEq { key: String, value: String },
    /// `key in (a, b)`: the label is present and one of the values.
    In { key: String, values: Vec<String> },
    /// `key notin (a, b)`: the label is absent or none of the values.
    NotIn { key: String, values: Vec<String> },
    /// `key`: the label is present, whatever its value.
    Exists { key: String },
    /// `!key`: the label is absent.
    NotExists { key: String },
}

/// Why a selector did not parse; `offset` is the byte offset in the input where the problem starts,
/// so callers can point at the exact column inside a TOML string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SelectorError {
    /// What is wrong, in lowercase like compiler diagnostics (no trailing period).
    pub message: String,
    /// Byte offset into the parsed string; always on a char boundary and at
    /// most the input length (the length itself means "at the end").
    pub offset: usize,
    /// A concrete fix, when there is an obvious one.
    pub help: Option<String>,
}

impl SelectorError {
    fn new(message: impl Into<String>, offset: usize, help: Option<String>) -> Self {
        SelectorError {
            message: message.into(),
            offset,
            help,
        }
    }
}

impl Requirement {
    fn key(&self) -> &str {
        match self {
            Requirement::Eq { key, .. }
            | Requirement::NotEq { key, .. }
            | Requirement::In { key, .. }
            | Requirement::NotIn { key, .. }
            | Requirement::Exists { key }
            | Requirement::NotExists { key } => key,
        }
    }

    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let actual = labels.get(self.key()).map(String::as_str);
        match self {
            Requirement::Eq { value, .. } => actual == Some(value.as_str()),
            // Kubernetes semantics: the negative forms also match environments
            // that do not carry the label at all.
            Requirement::NotEq { value, .. } => actual != Some(value.as_str()),
            Requirement::In { values, .. } => actual.is_some_and(|a| values.iter().any(|v| v == a)),
            Requirement::NotIn { values, .. } => {
                !actual.is_some_and(|a| values.iter().any(|v| v == a))
            }
            Requirement::Exists { .. } => actual.is_some(),
            Requirement::NotExists { .. } => actual.is_none(),
        }
    }
}

impl Selector {
    /// Parses selector syntax; see the module docs for the grammar.
    pub fn parse(s: &str) -> Result<Selector, SelectorError> {
        if s.trim().is_empty() {
            // An empty string in a config is more likely a mistake than a wish
            // to target the whole fleet, so the whole fleet must be spelled out.
            return Err(SelectorError::new(
                "empty selector",
                0,
                Some("use `*` to select all environments".into()),
            ));
        }
        Parser {
            tokens: tokenize(s),
            pos: 0,
        }
        .selector()
    }

    /// True when every requirement holds for these labels.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            Selector::All => true,
            Selector::Terms(terms) => terms.iter().all(|r| r.matches(labels)),
        }
    }

    /// Label keys this selector mentions (for "did you mean" checks by callers).
    ///
    /// Each key appears once, in order of first mention; `*` mentions none.
    pub fn keys(&self) -> Vec<&str> {
        let mut keys: Vec<&str> = Vec::new();
        if let Selector::Terms(terms) = self {
            for term in terms {
                if !keys.contains(&term.key()) {
                    keys.push(term.key());
                }
            }
        }
        keys
    }
}

impl FromStr for Selector {
    type Err = SelectorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Selector::parse(s)
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Requirement::Eq { key, value } => write!(f, "{key}={value}"),
            Requirement::NotEq { key, value } => write!(f, "{key}!={value}"),
            Requirement::In { key, values } => write!(f, "{key} in ({})", values.join(", ")),
            Requirement::NotIn { key, values } => write!(f, "{key} notin ({})", values.join(", ")),
            Requirement::Exists { key } => write!(f, "{key}"),
            Requirement::NotExists { key } => write!(f, "!{key}"),
        }
    }
}

/// Canonical form: terms joined by `", "`, lists as `(a, b)`, `*` for all.
impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Selector::All => f.write_str("*"),
            Selector::Terms(terms) => {
                for (i, term) in terms.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{term}")?;
                }
                Ok(())
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Tokenizer

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A run of key/value characters; `in` and `notin` are words too and only
    /// become operators by position, so they stay usable as keys and values.
    Word,
    Eq,
    DoubleEq,
    NotEq,
    Bang,
    LParen,
    RParen,
    Comma,
    Star,
    /// A character that can never appear in a selector. Kept as a token rather
    /// than failing at once so that an earlier syntax error is reported first.
    Invalid,
    End,
}

#[derive(Debug, Clone, Copy)]
struct Token<'a> {
    kind: Kind,
    text: &'a str,
    offset: usize,
}

impl Token<'_> {
    /// How the token is named in "found ..." parts of messages.
    fn describe(&self) -> String {
        match self.kind {
            Kind::End => "end of selector".into(),
            _ => format!("`{}`", self.text),
        }
    }
}

/// Characters of keys and values. `/` is included so that a prefixed key is a
/// single token; values containing it are rejected with a precise message.
fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/')
}

fn tokenize(input: &str) -> Vec<Token<'_>> {
    let mut tokens = Vec::new();
    let mut chars = input.char_indices().peekable();
    while let Some((start, c)) = chars.next() {
        let mut end = start + c.len_utf8();
        let kind = match c {
            c if c.is_whitespace() => continue,
            '=' if chars.next_if(|&(_, c)| c == '=').is_some() => {
                end += 1;
                Kind::DoubleEq
            }
            '=' => Kind::Eq,
            '!' if chars.next_if(|&(_, c)| c == '=').is_some() => {
                end += 1;
                Kind::NotEq
            }
            '!' => Kind::Bang,
            '(' => Kind::LParen,
            ')' => Kind::RParen,
            ',' => Kind::Comma,
            '*' => Kind::Star,
            c if is_word_char(c) => {
                while let Some((i, c)) = chars.next_if(|&(_, c)| is_word_char(c)) {
                    end = i + c.len_utf8();
                }
                Kind::Word
            }
            _ => Kind::Invalid,
        };
        tokens.push(Token {
            kind,
            text: &input[start..end],
            offset: start,
        });
    }
    tokens.push(Token {
        kind: Kind::End,
        text: "",
        offset: input.len(),
    });
    tokens
}

fn invalid_char_error(token: Token<'_>) -> SelectorError {
    let help = match token.text {
        "\"" | "'" | "`" => {
            "selectors are not quoted: write `tier=free`, not `tier=\"free\"`".to_string()
        }
        "&" | ";" => "separate requirements with `,` (all of them must hold)".to_string(),
        "|" => "requirements cannot be OR-ed; to accept several values of one label \
                write `key in (a, b)`"
            .to_string(),
        "<" | ">" => {
            "labels are compared only for (in)equality; there is no `<` or `>`".to_string()
        }
        _ => "label keys and values may contain only ASCII letters, digits, `-`, `_` and `.` \
              (keys may also have one `/` after a DNS prefix)"
            .to_string(),
    };
    SelectorError::new(
        format!("unexpected character `{}`", token.text),
        token.offset,
        Some(help),
    )
}

// ---------------------------------------------------------------------------
// Parser
//
// selector    := '*' | requirement (',' requirement)*
// requirement := '!' key
//              | key ( ('=' | '==' | '!=') value? | ('in' | 'notin') list )?
// list        := '(' value (',' value)* ')'

struct Parser<'a> {
    /// Always ends with an `End` token, which `bump` never moves past.
    tokens: Vec<Token<'a>>,
    pos: usize,
}

impl<'a> Parser<'a> {
    /// The next token. Invalid characters are reported here, the first time the
    /// parser looks at them, which is exactly when they become the first problem.
    fn peek(&self) -> Result<Token<'a>, SelectorError> {
        let token = self.tokens[self.pos.min(self.tokens.len() - 1)];
        if token.kind == Kind::Invalid {
            return Err(invalid_char_error(token));
        }
        Ok(token)
    }

    fn bump(&mut self) -> Result<Token<'a>, SelectorError> {
        let token = self.peek()?;
        if token.kind != Kind::End {
            self.pos += 1;
        }
        Ok(token)
    }

    fn selector(&mut self) -> Result<Selector, SelectorError> {
        let first = self.peek()?;
        if first.kind == Kind::Star {
            self.bump()?;
            if self.peek()?.kind != Kind::End {
                return Err(star_error(first));
            }
            return Ok(Selector::All);
        }

        // `last` is kept apart from `terms` so that an error after it can
        // tailor its help to the kind of requirement just parsed.
        let mut terms = Vec::new();
        let mut last = self.requirement()?;
        loop {
            let token = self.bump()?;
            match token.kind {
                Kind::End => {
                    terms.push(last);
                    return Ok(Selector::Terms(terms));
                }
                Kind::Comma if self.peek()?.kind == Kind::End => {
                    return Err(SelectorError::new(
                        "trailing comma",
                        token.offset,
                        Some("remove the `,` or add another requirement after it".into()),
                    ));
                }
                Kind::Comma => {
                    terms.push(last);
                    last = self.requirement()?;
                }
                _ => return Err(unexpected_after(token, &last)),
            }
        }
    }

    fn requirement(&mut self) -> Result<Requirement, SelectorError> {
        let token = self.bump()?;
        match token.kind {
            Kind::Bang => {
                let key = self.key("after `!`")?;
                let next = self.peek()?;
                let is_operator = matches!(next.kind, Kind::Eq | Kind::DoubleEq | Kind::NotEq)
                    || (next.kind == Kind::Word && matches!(next.text, "in" | "notin"));
                if is_operator {
                    // `!k=v` reads naturally but means nothing in this syntax.
                    return Err(SelectorError::new(
                        format!("`!{key}` cannot be followed by an operator"),
                        next.offset,
                        Some(format!(
                            "`!{key}` alone matches environments without a `{key}` label; \
                             to exclude values write `{key}!=value` or `{key} notin (a, b)`"
                        )),
                    ));
                }
                Ok(Requirement::NotExists { key })
            }
            Kind::Word => {
                let key = validate_key(token)?;
                self.operator(key)
            }
            Kind::Star => Err(star_error(token)),
            _ => {
                let help = match token.kind {
                    Kind::Comma => "remove the extra `,`".to_string(),
                    Kind::LParen => {
                        "parentheses only enclose the value list of `in` and `notin`".to_string()
                    }
                    Kind::Eq | Kind::DoubleEq | Kind::NotEq => {
                        format!(
                            "write the key before the operator, e.g. `tier{}free`",
                            token.text
                        )
                    }
                    _ => KEY_HELP.to_string(),
                };
                Err(SelectorError::new(
                    format!("expected a label key, found {}", token.describe()),
                    token.offset,
                    Some(help),
                ))
            }
        }
    }

    /// Parses what follows a key; a bare key is an existence test.
    fn operator(&mut self, key: String) -> Result<Requirement, SelectorError> {
        let next = self.peek()?;
        Ok(match (next.kind, next.text) {
            (Kind::Eq | Kind::DoubleEq, _) => {
                self.bump()?;
                let value = self.single_value(next)?;
                Requirement::Eq { key, value }
            }
            (Kind::NotEq, _) => {
                self.bump()?;
                let value = self.single_value(next)?;
                Requirement::NotEq { key, value }
            }
            (Kind::Word, "in") => {
                self.bump()?;
                let values = self.value_list("in", &key)?;
                Requirement::In { key, values }
            }
            (Kind::Word, "notin") => {
                self.bump()?;
                let values = self.value_list("notin", &key)?;
                Requirement::NotIn { key, values }
            }
            // Whatever follows is checked by the caller, which knows what may
            // come after a complete requirement.
            _ => Requirement::Exists { key },
        })
    }

    fn key(&mut self, context: &str) -> Result<String, SelectorError> {
        let token = self.bump()?;
        if token.kind != Kind::Word {
            return Err(SelectorError::new(
                format!("expected a label key {context}, found {}", token.describe()),
                token.offset,
                Some(KEY_HELP.into()),
            ));
        }
        validate_key(token)
    }

    /// The value after `=`, `==` or `!=`. It may be empty, as in Kubernetes
    /// (`tier=` matches an empty `tier` label).
    fn single_value(&mut self, op: Token<'a>) -> Result<String, SelectorError> {
        let token = self.peek()?;
        match token.kind {
            Kind::Word => {
                self.bump()?;
                validate_value(token)
            }
            Kind::Comma | Kind::End => Ok(String::new()),
            _ => {
                let help = match token.kind {
                    Kind::LParen => "to accept any of several values write `key in (a, b)`",
                    Kind::Eq | Kind::DoubleEq | Kind::NotEq => "use a single operator",
                    _ => "label values may contain only ASCII letters, digits, `-`, `_` and `.`",
                };
                Err(SelectorError::new(
                    format!(
                        "expected a value after `{}`, found {}",
                        op.text,
                        token.describe()
                    ),
                    token.offset,
                    Some(help.into()),
                ))
            }
        }
    }

    /// `( value, ... )` after `in` / `notin`.
    fn value_list(&mut self, op: &str, key: &str) -> Result<Vec<String>, SelectorError> {
        let open = self.bump()?;
        if open.kind != Kind::LParen {
            let example = if open.kind == Kind::Word {
                open.text
            } else {
                "a, b"
            };
            return Err(SelectorError::new(
                format!("expected `(` after `{op}`, found {}", open.describe()),
                open.offset,
                Some(format!("write `{key} {op} ({example})`")),
            ));
        }
        if self.peek()?.kind == Kind::RParen {
            return Err(SelectorError::new(
                "empty value list",
                open.offset,
                Some(format!(
                    "list at least one value, e.g. `{key} {op} (a)`; \
                     to test only whether the label is set, write `{key}` or `!{key}`"
                )),
            ));
        }

        let unclosed = || {
            SelectorError::new(
                "unclosed `(`",
                open.offset,
                Some("add `)` after the last value".into()),
            )
        };
        let mut values = Vec::new();
        loop {
            let token = self.bump()?;
            match token.kind {
                Kind::Word => values.push(validate_value(token)?),
                Kind::End => return Err(unclosed()),
                _ => {
                    let help = match token.kind {
                        Kind::Comma => "remove the extra `,`",
                        Kind::LParen => "value lists cannot be nested",
                        _ => {
                            "label values may contain only ASCII letters, digits, `-`, `_` and `.`"
                        }
                    };
                    return Err(SelectorError::new(
                        format!("expected a value, found {}", token.describe()),
                        token.offset,
                        Some(help.into()),
                    ));
                }
            }

            let sep = self.bump()?;
            match sep.kind {
                Kind::RParen => return Ok(values),
                Kind::Comma if self.peek()?.kind == Kind::RParen => {
                    return Err(SelectorError::new(
                        "trailing comma in value list",
                        sep.offset,
                        Some("remove the `,` before `)`".into()),
                    ));
                }
                Kind::Comma => {}
                Kind::End => return Err(unclosed()),
                _ => {
                    let help = if sep.kind == Kind::Word {
                        "separate values with `,`; values cannot contain spaces"
                    } else {
                        "is a `)` missing before this?"
                    };
                    return Err(SelectorError::new(
                        format!(
                            "expected `,` or `)` in value list, found {}",
                            sep.describe()
                        ),
                        sep.offset,
                        Some(help.into()),
                    ));
                }
            }
        }
    }
}

fn star_error(star: Token<'_>) -> SelectorError {
    SelectorError::new(
        "`*` cannot be combined with other requirements",
        star.offset,
        Some("`*` alone selects every environment; remove either `*` or the rest".into()),
    )
}

/// Error for a token that follows a complete requirement but is not `,`.
fn unexpected_after(token: Token<'_>, last: &Requirement) -> SelectorError {
    match token.kind {
        Kind::RParen => {
            return SelectorError::new(
                "unmatched `)`",
                token.offset,
                Some("there is no `(` for it to close".into()),
            )
        }
        Kind::Star => return star_error(token),
        _ => {}
    }
    // A bare key could still have been followed by an operator, so say so.
    let expected = match last {
        Requirement::Exists { .. } => "an operator, `,` or end of selector",
        _ => "`,` or end of selector",
    };
    let lower = token.text.to_ascii_lowercase();
    let help = match (last, token.kind) {
        (Requirement::Exists { key }, Kind::Word) if lower == "in" || lower == "notin" => Some(
            format!("operators are lowercase: write `{key} {lower} (...)`"),
        ),
        (Requirement::Exists { key }, Kind::Word) if lower == "not" => {
            Some(format!("write `notin` as one word: `{key} notin (...)`"))
        }
        (Requirement::Exists { key }, Kind::Word) => Some(format!(
            "to compare the label write `{key}={}`; keys cannot contain spaces",
            token.text
        )),
        (Requirement::Exists { key }, Kind::LParen) => {
            Some(format!("to accept a list of values write `{key} in (...)`"))
        }
        (Requirement::Eq { .. } | Requirement::NotEq { .. }, Kind::Word) => {
            Some("label values cannot contain spaces; separate requirements with `,`".to_string())
        }
        (_, Kind::Word | Kind::Bang) => Some("separate requirements with `,`".to_string()),
        (_, Kind::Eq | Kind::DoubleEq | Kind::NotEq) => {
            Some("a requirement has a single operator; separate requirements with `,`".to_string())
        }
        _ => None,
    };
    SelectorError::new(
        format!("unexpected {}, expected {expected}", token.describe()),
        token.offset,
        help,
    )
}

/// Checks a key token against the Kubernetes rules: `[prefix/]name`.
fn validate_key(token: Token<'_>) -> Result<String, SelectorError> {
    let text = token.text;
    let key_error = |message: String, offset: usize| {
        Err(SelectorError::new(message, offset, Some(KEY_HELP.into())))
    };
    let (prefix, name, name_offset) = match text.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name, token.offset + prefix.len() + 1),
        None => (None, text, token.offset),
    };

    if let Some(prefix) = prefix {
        if let Some(i) = name.find('/') {
            return key_error(
                format!("label key `{text}` has more than one `/`"),
                name_offset + i,
            );
        }
        if prefix.is_empty() {
            return key_error(
                format!("label key `{text}` has an empty prefix"),
                token.offset,
            );
        }
        if prefix.len() > MAX_PREFIX_LEN {
            return key_error(
                format!("label key prefix is longer than {MAX_PREFIX_LEN} characters"),
                token.offset,
            );
        }
        // A DNS subdomain: dot-separated parts of lowercase letters, digits
        // and `-`, each starting and ending with a letter or digit.
        let mut part_offset = token.offset;
        for part in prefix.split('.') {
            let bad = part
                .char_indices()
                .find(|&(_, c)| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'));
            if let Some((i, c)) = bad {
                return key_error(
                    format!(
                        "label key prefix `{prefix}` must be a lowercase DNS name, \
                         found `{c}`"
                    ),
                    part_offset + i,
                );
            }
            if part.is_empty() || part.starts_with('-') || part.ends_with('-') {
                let at = if part.ends_with('-') && part.len() > 1 {
                    part_offset + part.len() - 1
                } else {
                    part_offset
                };
                return key_error(
                    format!(
                        "label key prefix `{prefix}` must be a DNS name: each `.`-separated \
                         part must start and end with a letter or digit"
                    ),
                    at,
                );
            }
            part_offset += part.len() + 1;
        }
    }

    if name.is_empty() {
        return key_error(format!("label key `{text}` has an empty name"), name_offset);
    }
    if name.len() > MAX_NAME_LEN {
        return key_error(
            format!("label key name is longer than {MAX_NAME_LEN} characters"),
            name_offset,
        );
    }
    // Word tokens only hold ASCII, so byte indexing below is safe.
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return key_error(
            format!("label key `{text}` must start with a letter or digit"),
            name_offset,
        );
    }
    if !name.ends_with(|c: char| c.is_ascii_alphanumeric()) {
        return key_error(
            format!("label key `{text}` must end with a letter or digit"),
            name_offset + name.len() - 1,
        );
    }
    Ok(text.to_string())
}

/// Values share the word characters of keys except `/`.
fn validate_value(token: Token<'_>) -> Result<String, SelectorError> {
    if let Some(i) = token.text.find('/') {
        return Err(SelectorError::new(
            format!("label value `{}` cannot contain `/`", token.text),
            token.offset + i,
            Some("label values may contain only ASCII letters, digits, `-`, `_` and `.`".into()),
        ));
    }
    Ok(token.text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(s: &str) -> Selector {
        match Selector::parse(s) {
            Ok(sel) => sel,
            Err(e) => panic!("{s:?} did not parse: {e} at {} ({:?})", e.offset, e.help),
        }
    }

    fn err(s: &str) -> SelectorError {
        match Selector::parse(s) {
            Ok(sel) => panic!("{s:?} parsed as {sel:?}, expected an error"),
            Err(e) => e,
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn strings(values: &[&str]) -> Vec<String> {
        values.iter().map(|v| v.to_string()).collect()
    }

    // Short constructors keep the expected values readable.
    fn eq(key: &str, value: &str) -> Requirement {
        Requirement::Eq {
            key: key.into(),
            value: value.into(),
        }
    }
    fn not_eq(key: &str, value: &str) -> Requirement {
        Requirement::NotEq {
            key: key.into(),
            value: value.into(),
        }
    }
    fn is_in(key: &str, values: &[&str]) -> Requirement {
        Requirement::In {
            key: key.into(),
            values: strings(values),
        }
    }
    fn not_in(key: &str, values: &[&str]) -> Requirement {
        Requirement::NotIn {
            key: key.into(),
            values: strings(values),
        }
    }
    fn exists(key: &str) -> Requirement {
        Requirement::Exists { key: key.into() }
    }
    fn not_exists(key: &str) -> Requirement {
        Requirement::NotExists { key: key.into() }
    }

    #[test]
    fn parses_each_form() {
        let cases = [
            ("k=v", eq("k", "v")),
            ("k==v", eq("k", "v")),
            ("k=", eq("k", "")),
            ("k!=v", not_eq("k", "v")),
            ("k!=", not_eq("k", "")),
            ("k in (a,b)", is_in("k", &["a", "b"])),
            ("k notin (a)", not_in("k", &["a"])),
            ("k", exists("k")),
            ("!k", not_exists("k")),
            (
                "app.kubernetes.io/name=web",
                eq("app.kubernetes.io/name", "web"),
            ),
            ("k8s.io/a_b.c-d=1.2_x-y", eq("k8s.io/a_b.c-d", "1.2_x-y")),
        ];
        for (input, expected) in cases {
            assert_eq!(parse(input), Selector::Terms(vec![expected]), "{input}");
        }
        assert_eq!(parse("*"), Selector::All);
        assert_eq!(parse("  *  "), Selector::All);
    }

    #[test]
    fn whitespace_and_conjunction() {
        assert_eq!(
            parse("  region = eu-west ,tier!=free, ring in ( early , beta ),! legacy,gpu "),
            Selector::Terms(vec![
                eq("region", "eu-west"),
                not_eq("tier", "free"),
                is_in("ring", &["early", "beta"]),
                not_exists("legacy"),
                exists("gpu"),
            ])
        );
        // `in` and `notin` are only operators by position.
        assert_eq!(
            parse("in in (in, notin), notin, notin=in"),
            Selector::Terms(vec![
                is_in("in", &["in", "notin"]),
                exists("notin"),
                eq("notin", "in"),
            ])
        );
        assert_eq!(parse("k in(a)"), parse("k in (a)"));
        assert_eq!(parse("k=,j"), parse("k=, j"));
    }

    #[test]
    fn display_is_canonical() {
        let sel = parse("a==1,b!=2 , c in(x,y),d notin (z),e,!f, g=");
        assert_eq!(
            sel.to_string(),
            "a=1, b!=2, c in (x, y), d notin (z), e, !f, g="
        );
        assert_eq!(parse(&sel.to_string()), sel);
        assert_eq!(Selector::All.to_string(), "*");
        assert_eq!(
            "ring in (early)".parse::<Selector>(),
            Ok(parse("ring in (early)"))
        );
    }

    #[test]
    fn matching_follows_kubernetes_semantics() {
        let eu = labels(&[("region", "eu"), ("tier", "free"), ("ring", "early")]);
        let bare = labels(&[]);
        let check = |sel: &str, env: &BTreeMap<String, String>, expected: bool| {
            assert_eq!(parse(sel).matches(env), expected, "{sel} on {env:?}");
        };
        check("*", &bare, true);
        check("region=eu", &eu, true);
        check("region=us", &eu, false);
        check("region=eu", &bare, false);
        // Negative forms match when the label is missing.
        check("region!=eu", &eu, false);
        check("region!=us", &eu, true);
        check("region!=eu", &bare, true);
        check("ring in (early, beta)", &eu, true);
        check("ring in (beta)", &eu, false);
        check("ring in (early)", &bare, false);
        check("ring notin (early)", &eu, false);
        check("ring notin (beta)", &eu, true);
        check("ring notin (early)", &bare, true);
        check("tier", &eu, true);
        check("tier", &bare, false);
        check("!tier", &eu, false);
        check("!tier", &bare, true);
        check("region=eu, tier!=free", &eu, false);
        check("region=eu, tier!=paid", &eu, true);
        // An empty value only matches a present, empty label.
        check("tier=", &labels(&[("tier", "")]), true);
        check("tier=", &bare, false);
    }

    #[test]
    fn keys_are_deduplicated_in_order() {
        assert_eq!(parse("b=1, a in (x), b!=2, !c").keys(), vec!["b", "a", "c"]);
        assert!(Selector::All.keys().is_empty());
    }

    /// (input, message, offset, fragment expected in the help if any)
    #[test]
    fn errors_point_at_the_problem() {
        #[rustfmt::skip]
        let cases: &[(&str, &str, usize, Option<&str>)] = &[
            ("", "empty selector", 0, Some("`*`")),
            ("   ", "empty selector", 0, Some("`*`")),
            ("ring in early", "expected `(` after `in`, found `early`", 8, Some("write `ring in (early)`")),
            ("ring notin", "expected `(` after `notin`, found end of selector", 10, Some("`ring notin (a, b)`")),
            ("ring=can ary", "unexpected `ary`, expected `,` or end of selector", 9, Some("spaces")),
            ("ring early", "unexpected `early`, expected an operator, `,` or end of selector", 5, Some("`ring=early`")),
            ("ring IN (a)", "unexpected `IN`, expected an operator, `,` or end of selector", 5, Some("`ring in (...)`")),
            ("ring not in (a)", "unexpected `not`, expected an operator, `,` or end of selector", 5, Some("one word")),
            ("=x", "expected a label key, found `=`", 0, Some("tier=free")),
            ("(k=v)", "expected a label key, found `(`", 0, None),
            ("k in ()", "empty value list", 5, Some("`k in (a)`")),
            ("k in (a, b", "unclosed `(`", 5, Some("add `)`")),
            ("k in (a b)", "expected `,` or `)` in value list, found `b`", 8, None),
            ("k in (a, b, c=d", "expected `,` or `)` in value list, found `=`", 13, None),
            ("k=v)", "unmatched `)`", 3, None),
            ("a=b,", "trailing comma", 3, Some("remove the `,`")),
            ("a=b, ", "trailing comma", 3, None),
            ("a=b,,c", "expected a label key, found `,`", 4, Some("extra")),
            (",a", "expected a label key, found `,`", 0, None),
            ("k in (a,)", "trailing comma in value list", 7, Some("before `)`")),
            ("k in (,a)", "expected a value, found `,`", 6, None),
            ("k in (a, (b))", "expected a value, found `(`", 9, Some("nested")),
            ("k=(a)", "expected a value after `=`, found `(`", 2, Some("in (a, b)")),
            ("k===v", "expected a value after `==`, found `=`", 3, None),
            ("k=v=w", "unexpected `=`, expected `,` or end of selector", 3, None),
            ("!k=v", "`!k` cannot be followed by an operator", 2, Some("`k!=value`")),
            ("!k in (a)", "`!k` cannot be followed by an operator", 3, None),
            ("!", "expected a label key after `!`, found end of selector", 1, None),
            ("!!k", "expected a label key after `!`, found `!`", 1, None),
            ("*, a=b", "`*` cannot be combined with other requirements", 0, None),
            ("a=b, *", "`*` cannot be combined with other requirements", 5, None),
            ("**", "`*` cannot be combined with other requirements", 0, None),
            ("tier=\"free\"", "unexpected character `\"`", 5, Some("not quoted")),
            ("tier=frée", "unexpected character `é`", 7, None),
            ("a=b && c=d", "unexpected character `&`", 4, Some("`,`")),
            ("é=1", "unexpected character `é`", 0, None),
            // The first problem wins, even when a bad character comes later.
            ("=x é", "expected a label key, found `=`", 0, None),
            ("k=a/b", "label value `a/b` cannot contain `/`", 3, None),
            ("-k=v", "label key `-k` must start with a letter or digit", 0, None),
            ("k-=v", "label key `k-` must end with a letter or digit", 1, None),
            ("a/b/c", "label key `a/b/c` has more than one `/`", 3, None),
            ("/k", "label key `/k` has an empty prefix", 0, None),
            ("x.io/", "label key `x.io/` has an empty name", 5, None),
            ("Example.com/k", "label key prefix `Example.com` must be a lowercase DNS name, found `E`", 0, None),
            ("a..b/k", "label key prefix `a..b` must be a DNS name: each `.`-separated part must start and end with a letter or digit", 2, None),
            ("a.b-/k", "label key prefix `a.b-` must be a DNS name: each `.`-separated part must start and end with a letter or digit", 3, None),
        ];
        for &(input, message, offset, help) in cases {
            let e = err(input);
            assert_eq!(
                (e.message.as_str(), e.offset),
                (message, offset),
                "input {input:?}"
            );
            assert_eq!(e.to_string(), message);
            if let Some(fragment) = help {
                let got = e.help.clone().unwrap_or_default();
                assert!(got.contains(fragment), "input {input:?}: help {got:?}");
            }
        }
    }

    #[test]
    fn length_limits_follow_kubernetes() {
        let name63 = "a".repeat(63);
        parse(&name63);
        assert_eq!(err(&"a".repeat(64)).offset, 0);
        let prefixed = format!("x.io/{}", "a".repeat(64));
        assert_eq!(err(&prefixed).offset, 5);
    }

    // -- property tests ----------------------------------------------------

    // Small alphabets so that generated selectors and label maps share keys
    // and values often enough for matching to be interesting.
    const KEYS: &[&str] = &["a", "b", "in", "notin", "app.kubernetes.io/name"];
    const VALUES: &[&str] = &["x", "y", "in", "1.0", "a_b-c"];

    fn key() -> impl Strategy<Value = String> {
        prop::sample::select(KEYS).prop_map(String::from)
    }

    /// Single values may be empty; list values may not (the parser rejects them).
    fn value(allow_empty: bool) -> impl Strategy<Value = String> {
        let mut pool = VALUES.to_vec();
        if allow_empty {
            pool.push("");
        }
        prop::sample::select(pool).prop_map(String::from)
    }

    fn requirement() -> impl Strategy<Value = Requirement> {
        let list = || prop::collection::vec(value(false), 1..4);
        prop_oneof![
            (key(), value(true)).prop_map(|(key, value)| Requirement::Eq { key, value }),
            (key(), value(true)).prop_map(|(key, value)| Requirement::NotEq { key, value }),
            (key(), list()).prop_map(|(key, values)| Requirement::In { key, values }),
            (key(), list()).prop_map(|(key, values)| Requirement::NotIn { key, values }),
            key().prop_map(|key| Requirement::Exists { key }),
            key().prop_map(|key| Requirement::NotExists { key }),
        ]
    }

    fn selector() -> impl Strategy<Value = Selector> {
        prop_oneof![
            1 => Just(Selector::All),
            9 => prop::collection::vec(requirement(), 1..5).prop_map(Selector::Terms),
        ]
    }

    fn label_map() -> impl Strategy<Value = BTreeMap<String, String>> {
        prop::collection::btree_map(key(), value(true), 0..KEYS.len())
    }

    /// Independent reference: the label is looked up by a linear scan, and each
    /// form is spelled out as "is present" / "value is listed" separately.
    fn naive_matches(sel: &Selector, labels: &BTreeMap<String, String>) -> bool {
        let Selector::Terms(terms) = sel else {
            return true;
        };
        for term in terms {
            let (key, listed): (&String, Vec<&String>) = match term {
                Requirement::Eq { key, value } | Requirement::NotEq { key, value } => {
                    (key, vec![value])
                }
                Requirement::In { key, values } | Requirement::NotIn { key, values } => {
                    (key, values.iter().collect())
                }
                Requirement::Exists { key } | Requirement::NotExists { key } => (key, vec![]),
            };
            let mut present = false;
            let mut value_listed = false;
            for (k, v) in labels {
                if k == key {
                    present = true;
                    value_listed = listed.contains(&v);
                }
            }
            let holds = match term {
                Requirement::Eq { .. } | Requirement::In { .. } => present && value_listed,
                Requirement::NotEq { .. } | Requirement::NotIn { .. } => !present || !value_listed,
                Requirement::Exists { .. } => present,
                Requirement::NotExists { .. } => !present,
            };
            if !holds {
                return false;
            }
        }
        true
    }

    /// Strings built from the selector's own tokens, which reach far more of
    /// the parser than arbitrary Unicode does.
    fn selector_soup() -> impl Strategy<Value = String> {
        let pieces = prop::sample::select(vec![
            "a", "k", "in", "notin", "x.io/", "-", ".", "/", "=", "==", "!=", "!", "(", ")", ",",
            " ", "*", "é", "\"",
        ]);
        prop::collection::vec(pieces, 0..20).prop_map(|p| p.concat())
    }

    fn check_error_offset(input: &str, result: &Result<Selector, SelectorError>) {
        if let Err(e) = result {
            assert!(e.offset <= input.len(), "{input:?}: offset {}", e.offset);
            assert!(
                input.is_char_boundary(e.offset),
                "{input:?}: offset {}",
                e.offset
            );
            assert!(!e.message.is_empty());
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn display_round_trips(sel in selector()) {
            prop_assert_eq!(Selector::parse(&sel.to_string()), Ok(sel));
        }

        #[test]
        fn matching_agrees_with_naive_evaluator(sel in selector(), env in label_map()) {
            let reparsed = Selector::parse(&sel.to_string());
            prop_assert_eq!(reparsed.as_ref(), Ok(&sel));
            prop_assert_eq!(sel.matches(&env), naive_matches(&sel, &env));
        }

        #[test]
        fn parse_never_panics_on_arbitrary_text(input in "\\PC{0,40}") {
            check_error_offset(&input, &Selector::parse(&input));
        }

        #[test]
        fn parse_never_panics_on_selector_soup(input in selector_soup()) {
            let result = Selector::parse(&input);
            check_error_offset(&input, &result);
            // Whatever parses must print to something that parses the same.
            if let Ok(sel) = result {
                prop_assert_eq!(Selector::parse(&sel.to_string()), Ok(sel));
            }
        }
    }
}
