//! Telling the operator whose eyes are elsewhere: when a gate starts waiting or a rollout
//! halts or completes, the terminal bell rings and, where the terminal shows them, a
//! desktop notification goes out (OSC 777 or OSC 9). `bell = false` in console.toml
//! turns it off.

use crate::engine::EventKind;

/// How this terminal shows a desktop notification, if it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Desktop {
    None,
    /// `ESC ] 777 ; notify ; TITLE ; BODY BEL`: rxvt-unicode, foot, Ghostty, WezTerm, VTE.
    Osc777,
    /// `ESC ] 9 ; BODY BEL`: iTerm2, Windows Terminal, ConEmu.
    Osc9,
}

impl Desktop {
    /// From the variables terminals set; unknown terminals get the bell alone (an escape
    /// they do not know could show as garbage).
    pub fn detect() -> Desktop {
        let var = |k: &str| std::env::var(k).unwrap_or_default();
        let (term, program) = (var("TERM"), var("TERM_PROGRAM"));
        if program == "iTerm.app" || !var("WT_SESSION").is_empty() || !var("ConEmuPID").is_empty() {
            Desktop::Osc9
        } else if term.starts_with("rxvt")
            || term.starts_with("foot")
            || program == "WezTerm"
            || program == "ghostty"
            || !var("VTE_VERSION").is_empty()
        {
            Desktop::Osc777
        } else {
            Desktop::None
        }
    }
}

/// What to tell of `kind`, if it is worth a bell.
pub fn worth_telling(kind: &EventKind) -> Option<String> {
    match kind {
        EventKind::GateWaiting { wave, reason } => Some(format!("wave {wave} waits for {reason}")),
        EventKind::RolloutHalted { wave, reason, .. } => {
            Some(format!("rollout halted in wave {wave}: {reason}"))
        }
        EventKind::RolloutCompleted {
            succeeded, failed, ..
        } => Some(format!(
            "rollout completed: {succeeded} succeeded, {failed} failed"
        )),
        _ => None,
    }
}

/// The bytes that ring the bell and, on `desktop`, show `text`. Control characters are
/// taken out of the text: it must not end the escape early or start another.
pub fn ring(desktop: Desktop, text: &str) -> Vec<u8> {
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() || c == ';' { ' ' } else { c })
        .take(200)
        .collect();
    let mut out = b"\x07".to_vec();
    match desktop {
        Desktop::None => {}
        Desktop::Osc777 => out.extend(format!("\x1b]777;notify;flotilla;{clean}\x07").bytes()),
        Desktop::Osc9 => out.extend(format!("\x1b]9;flotilla: {clean}\x07").bytes()),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_cannot_break_out_of_its_escape() {
        let bytes = ring(Desktop::Osc777, "evil\x07\x1b]0;title\x07;x");
        let text = String::from_utf8(bytes).unwrap();
        assert_eq!(text, "\x07\x1b]777;notify;flotilla;evil  ]0 title  x\x07");
        assert_eq!(ring(Desktop::None, "x"), b"\x07");
    }
}
