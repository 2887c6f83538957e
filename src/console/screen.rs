//! The terminal: raw mode and the alternate screen in and out (also on panic and signals),
//! and frames drawn only when something changed, each as one synchronized update written
//! with one write, so a slow SSH link carries as few bytes as possible.

use std::io::{self, Write};

use crossterm::event::{DisableBracketedPaste, EnableBracketedPaste};
use crossterm::terminal::{BeginSynchronizedUpdate, EndSynchronizedUpdate};
use crossterm::{cursor, execute, queue, terminal};
use ratatui::backend::CrosstermBackend;
use ratatui::Terminal;

use super::model::Model;
use super::ui::Ui;

/// Where the backend writes a frame: collected so the screen can hand it to the terminal in
/// one write when the frame is done (ratatui flushes mid-frame). A plain buffer the screen
/// reaches through the terminal: the backend writes to it once per cell.
type FrameBuffer = Vec<u8>;

/// What crossterm writes for `cursor::Hide`.
const HIDE_CURSOR: &str = "\x1b[?25l";

/// A terminal the console draws on.
pub struct Screen<W: Write> {
    pub terminal: Terminal<CrosstermBackend<FrameBuffer>>,
    /// What the backend writes for a frame in which no cell changed (it resets colours
    /// regardless): such a frame is not sent at all.
    idle: Vec<u8>,
    fixed: Option<ratatui::layout::Rect>,
    out: W,
}

impl<W: Write> Screen<W> {
    /// A screen the size of the terminal, following its resizes.
    pub fn new(out: W) -> io::Result<Self> {
        Self::with(out, None)
    }

    /// A screen of a fixed size that never asks the terminal (tests, benchmarks).
    pub fn fixed(out: W, width: u16, height: u16) -> io::Result<Self> {
        Self::with(out, Some(ratatui::layout::Rect::new(0, 0, width, height)))
    }

    fn with(out: W, fixed: Option<ratatui::layout::Rect>) -> io::Result<Self> {
        use ratatui::backend::Backend;
        let mut backend = CrosstermBackend::new(FrameBuffer::new());
        backend.draw(std::iter::empty())?;
        let idle = std::mem::take(backend.writer_mut());
        Ok(Screen {
            terminal: Self::terminal(fixed)?,
            idle,
            fixed,
            out,
        })
    }

    fn terminal(
        fixed: Option<ratatui::layout::Rect>,
    ) -> io::Result<Terminal<CrosstermBackend<FrameBuffer>>> {
        let backend = CrosstermBackend::new(FrameBuffer::with_capacity(64 * 1024));
        match fixed {
            Some(rect) => Terminal::with_options(
                backend,
                ratatui::TerminalOptions {
                    viewport: ratatui::Viewport::Fixed(rect),
                },
            ),
            None => Terminal::new(backend),
        }
    }

    /// Sends what was collected as one synchronized update, in one write.
    fn commit(&mut self, synchronized: bool) -> io::Result<()> {
        let body = self.pending();
        if body.is_empty() {
            return Ok(());
        }
        let mut bytes = Vec::with_capacity(body.len() + 16);
        if synchronized {
            queue!(bytes, BeginSynchronizedUpdate)?;
        }
        bytes.extend_from_slice(body);
        if synchronized {
            queue!(bytes, EndSynchronizedUpdate)?;
        }
        body.clear();
        self.out.write_all(&bytes)?;
        self.out.flush()
    }

    /// What the backend has written since the last commit.
    fn pending(&mut self) -> &mut FrameBuffer {
        self.terminal.backend_mut().writer_mut()
    }

    /// Draws a frame if anything changed since the last one; true when bytes were sent.
    pub fn frame(&mut self, model: &Model, ui: &mut Ui) -> io::Result<bool> {
        if !ui.dirty {
            return Ok(false);
        }
        ui.dirty = false;
        let mut geometry = None;
        self.terminal
            .draw(|f| geometry = Some(super::panes::draw(f, model, ui)))?;
        ui.placed(geometry.unwrap_or_default());
        // ratatui hides the (already hidden) cursor after every frame; that alone is no change.
        // The fields, not self.pending(): the idle frame is read while the buffer is borrowed.
        let pending = self.terminal.backend_mut().writer_mut();
        let body = pending
            .strip_suffix(HIDE_CURSOR.as_bytes())
            .unwrap_or(pending);
        if body == self.idle.as_slice() {
            pending.clear();
            return Ok(false);
        }
        self.commit(true)?;
        Ok(true)
    }

    /// Forgets what is on screen so the next frame repaints everything (Ctrl-L, resume).
    pub fn invalidate(&mut self, ui: &mut Ui) -> io::Result<()> {
        // A fresh terminal knows nothing of the screen, so the next frame sends every cell;
        // ratatui's own clear would ask the terminal where its cursor is, a round trip.
        self.terminal = Self::terminal(self.fixed)?;
        queue!(self.pending(), terminal::Clear(terminal::ClearType::All))?;
        self.commit(false)?;
        ui.dirty = true;
        Ok(())
    }

    /// Writes `bytes` (a bell, a desktop notification) to the terminal at once, between
    /// frames.
    pub fn ring(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.out.flush()
    }

    /// Where the frames went.
    pub fn output(&self) -> &W {
        &self.out
    }
}

/// Puts the terminal into the console's mode: raw, alternate screen, cursor hidden, pastes
/// bracketed (so a pasted line cannot act as keys). On failure the terminal is given back.
pub fn enter() -> io::Result<()> {
    terminal::enable_raw_mode()?;
    crate::notice::hold();
    let entered = execute!(
        io::stdout(),
        terminal::EnterAlternateScreen,
        cursor::Hide,
        EnableBracketedPaste
    );
    if entered.is_err() {
        leave();
    }
    entered
}

/// Gives the terminal back as it was. Safe to call more than once.
pub fn leave() {
    let _ = execute!(
        io::stdout(),
        DisableBracketedPaste,
        EndSynchronizedUpdate,
        terminal::LeaveAlternateScreen,
        cursor::Show
    );
    let _ = terminal::disable_raw_mode();
    crate::notice::release();
}

/// Restores the terminal before a panic of the console's own thread is printed, so it is
/// readable. Other threads (an engine task whose driver panicked: the engine counts that
/// environment as failed and goes on) must not take the screen away: their messages are
/// held (see [`crate::notice`]) and printed after the console has left.
pub fn restore_on_panic() {
    let console = std::thread::current().id();
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let on_screen = crate::notice::held();
        if on_screen && std::thread::current().id() != console {
            let thread = std::thread::current()
                .name()
                .unwrap_or("a worker")
                .to_string();
            crate::notice::say(format!("thread '{thread}' {info}"));
            return;
        }
        if on_screen {
            leave();
        }
        previous(info);
    }));
}

/// Ctrl-Z: gives the terminal back, stops the process as the shell expects, and takes the
/// terminal again when it continues (`fg`).
pub fn suspend() -> io::Result<()> {
    leave();
    // SAFETY: raise only sends a signal to this process; SIGTSTP's default action stops it
    // and returns once SIGCONT arrives.
    #[cfg(unix)]
    unsafe {
        libc::raise(libc::SIGTSTP);
    }
    enter()
}
