//! What drivers quote of what a command or an agent said: safe on a terminal, short where it
//! goes into one line, and never holding a secret.

/// What a command printed, safe to show on a terminal: escape sequences (colours, cursor
/// moves, titles) and other control characters are removed; newlines and tabs stay.
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => match chars.next() {
                // CSI: parameters up to a final byte.
                Some('[') => {
                    for c in chars.by_ref() {
                        if ('\x40'..='\x7e').contains(&c) {
                            break;
                        }
                    }
                }
                // OSC: up to BEL or ST (ESC \).
                Some(']') => {
                    while let Some(c) = chars.next() {
                        if c == '\x07' || (c == '\x1b' && chars.next_if_eq(&'\\').is_some()) {
                            break;
                        }
                    }
                }
                _ => {}
            },
            '\n' | '\t' => out.push(c),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// `text` with every secret value in it replaced by the mask; the longest first, so a
/// secret inside a longer one does not leave the rest of the longer one showing.
pub fn mask(mut text: String, secrets: &[String]) -> String {
    let mut secrets: Vec<&String> = secrets.iter().filter(|s| !s.is_empty()).collect();
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    for secret in secrets {
        text = text.replace(secret.as_str(), crate::secrets::MASK);
    }
    text
}

/// What a command printed, to show: printable, with `secrets` masked. Masked before and
/// after removing escape sequences, so neither a secret holding a control character nor one
/// printed with colour codes inside it is missed.
pub fn shown(text: &str, secrets: &[String]) -> String {
    mask(printable(&mask(text.to_string(), secrets)), secrets)
}

/// A short, one-line excerpt of what a command or a server said.
pub fn excerpt(text: &str) -> String {
    let one_line: String = printable(text)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    if one_line.chars().count() > 80 {
        format!("{}...", one_line.chars().take(80).collect::<String>())
    } else {
        one_line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_sequences_and_control_characters_never_reach_the_terminal() {
        let raw =
            "\x1b[1;31mError:\x1b[0m bad\x1b]0;owned\x07 chart\r\n\tnext\x08\x1b]8;;x\x1b\\ok\n";
        assert_eq!(printable(raw), "Error: bad chart\n\tnextok\n");
    }

    #[test]
    fn a_secret_is_masked_with_colour_codes_inside_it_or_control_characters_in_it() {
        let secrets = vec!["hunter2".to_string(), "a\x07b".to_string()];
        assert_eq!(
            shown("pw=hun\x1b[1mter2 and a\x07b", &secrets),
            format!("pw={m} and {m}", m = crate::secrets::MASK)
        );
    }

    #[test]
    fn a_secret_inside_a_longer_one_does_not_leave_the_longer_one_showing() {
        let secrets = vec!["abc".to_string(), "xxabcxx".to_string()];
        assert_eq!(
            mask("=xxabcxx=".into(), &secrets),
            format!("={}=", crate::secrets::MASK)
        );
    }
}
