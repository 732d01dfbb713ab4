//! The line editor: echo, backspace, and recall of earlier commands with
//! the up and down arrow keys (ANSI escape sequences `ESC [ A` and
//! `ESC [ B`).

use alloc::collections::VecDeque;
use alloc::string::String;

/// Commands kept for recall.
const HISTORY_LENGTH: usize = 16;
/// Longest accepted line; further characters are ignored.
const MAX_LINE_BYTES: usize = 256;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Escape {
    None,
    Escape,
    Bracket,
}

/// The line being typed and the history.
pub struct LineEditor {
    line: String,
    history: VecDeque<String>,
    /// Position while browsing the history (0 = newest).
    browsing: Option<usize>,
    escape: Escape,
    drawn: bool,
}

impl LineEditor {
    pub fn new() -> Self {
        Self { line: String::new(), history: VecDeque::new(), browsing: None, escape: Escape::None, drawn: false }
    }

    /// Returns the input typed so far.
    pub fn line(&self) -> &str {
        &self.line
    }

    /// Returns whether the prompt and input are on the screen.
    pub fn is_drawn(&self) -> bool {
        self.drawn
    }

    pub fn set_drawn(&mut self, drawn: bool) {
        self.drawn = drawn;
    }

    /// Takes one input byte. Returns the text to echo and, on Enter, the
    /// submitted line.
    pub fn feed(&mut self, byte: u8) -> (String, Option<String>) {
        let mut echo = String::new();
        match (self.escape, byte) {
            (Escape::None, 0x1b) => self.escape = Escape::Escape,
            (Escape::Escape, b'[') => self.escape = Escape::Bracket,
            (Escape::Bracket, b'A') => {
                self.escape = Escape::None;
                self.recall(1, &mut echo);
            }
            (Escape::Bracket, b'B') => {
                self.escape = Escape::None;
                self.recall(-1, &mut echo);
            }
            (Escape::Escape | Escape::Bracket, _) => self.escape = Escape::None,
            (Escape::None, b'\r' | b'\n') => {
                let line = core::mem::take(&mut self.line);
                self.browsing = None;
                if !line.trim().is_empty() && self.history.front() != Some(&line) {
                    self.history.push_front(line.clone());
                    self.history.truncate(HISTORY_LENGTH);
                }
                return (echo, Some(line));
            }
            (Escape::None, 0x08 | 0x7f) => {
                if self.line.pop().is_some() {
                    echo.push_str("\x08 \x08");
                }
            }
            (Escape::None, 0x20..=0x7e) => {
                if self.line.len() < MAX_LINE_BYTES {
                    self.line.push(byte as char);
                    echo.push(byte as char);
                }
            }
            (Escape::None, _) => {}
        }
        (echo, None)
    }

    /// Replaces the input with an older (`step` 1) or newer (-1) command.
    fn recall(&mut self, step: isize, echo: &mut String) {
        let next = match (self.browsing, step) {
            (None, 1) => Some(0),
            (Some(position), 1) => Some((position + 1).min(self.history.len().saturating_sub(1))),
            (Some(0), _) | (None, _) => None,
            (Some(position), _) => Some(position - 1),
        };
        let replacement = match next {
            Some(position) => match self.history.get(position) {
                Some(command) => command.clone(),
                None => return,
            },
            None => String::new(),
        };
        self.browsing = next;
        for _ in 0..self.line.len() {
            echo.push_str("\x08 \x08");
        }
        echo.push_str(&replacement);
        self.line = replacement;
    }
}
