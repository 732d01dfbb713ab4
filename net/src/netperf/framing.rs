//! Reassembly of 656-byte control messages from a TCP byte stream.
//!
//! Every message is 656 bytes, but TCP may split one across segments or
//! deliver it together with the next one. [`ControlReader`] owns
//! the bytes of the message in progress and hands out complete messages only.

use super::wire::{RawMessage, MESSAGE_BYTES};

/// Collects bytes from the control connection into complete messages.
///
/// ```
/// use net::netperf::{ControlReader, MESSAGE_BYTES};
///
/// let mut reader = ControlReader::new();
/// let two_messages = [0u8; 2 * MESSAGE_BYTES];
/// let (first, second) = two_messages.split_at(100);
///
/// let mut input: &[u8] = first;
/// assert!(reader.push(&mut input).is_none());
/// assert_eq!(reader.buffered_bytes(), 100);
///
/// let mut input: &[u8] = second;
/// let mut count = 0;
/// while let Some(_message) = reader.push(&mut input) {
///     count += 1;
/// }
/// assert_eq!(count, 2);
/// assert!(input.is_empty());
/// ```
#[derive(Clone)]
pub struct ControlReader {
    partial: RawMessage,
    filled_bytes: usize,
}

impl ControlReader {
    /// Creates a reader with no buffered bytes.
    pub const fn new() -> Self {
        Self {
            partial: [0; MESSAGE_BYTES],
            filled_bytes: 0,
        }
    }

    /// Takes bytes from the front of `input` until one message is complete,
    /// and returns it.
    ///
    /// `input` is advanced past the bytes consumed. Returns `None` once
    /// `input` is exhausted without completing a message; those bytes stay
    /// buffered for the next call. Call it in a loop until it returns `None`,
    /// because one chunk may hold several messages.
    pub fn push(&mut self, input: &mut &[u8]) -> Option<RawMessage> {
        let missing_bytes = MESSAGE_BYTES - self.filled_bytes;
        let taken_bytes = missing_bytes.min(input.len());
        let (taken, rest) = input.split_at(taken_bytes);
        self.partial[self.filled_bytes..self.filled_bytes + taken_bytes].copy_from_slice(taken);
        self.filled_bytes += taken_bytes;
        *input = rest;

        if self.filled_bytes < MESSAGE_BYTES {
            return None;
        }
        self.filled_bytes = 0;
        Some(self.partial)
    }

    /// Returns an iterator over the messages that `chunk` completes.
    ///
    /// Bytes of a trailing partial message stay buffered, as with
    /// [`push`](Self::push). Dropping the iterator early leaves the unread
    /// rest of `chunk` unconsumed.
    pub fn messages<'r, 'c>(&'r mut self, chunk: &'c [u8]) -> Messages<'r, 'c> {
        Messages {
            reader: self,
            input: chunk,
        }
    }

    /// Bytes of an incomplete message held so far (0 to 655).
    ///
    /// A non-zero value at end-of-file means the peer closed in the middle of
    /// a message.
    pub fn buffered_bytes(&self) -> usize {
        self.filled_bytes
    }
}

impl Default for ControlReader {
    fn default() -> Self {
        Self::new()
    }
}

impl core::fmt::Debug for ControlReader {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        formatter
            .debug_struct("ControlReader")
            .field("buffered_bytes", &self.filled_bytes)
            .finish()
    }
}

/// Iterator returned by [`ControlReader::messages`].
#[derive(Debug)]
pub struct Messages<'r, 'c> {
    reader: &'r mut ControlReader,
    input: &'c [u8],
}

impl Iterator for Messages<'_, '_> {
    type Item = RawMessage;

    fn next(&mut self) -> Option<RawMessage> {
        self.reader.push(&mut self.input)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    /// Three distinguishable messages: every byte of message `i` is `i + 1`.
    fn three_messages() -> Vec<u8> {
        (0..3u8)
            .flat_map(|index| [index + 1; MESSAGE_BYTES])
            .collect()
    }

    fn collect_in_chunks(stream: &[u8], chunk_bytes: usize) -> Vec<RawMessage> {
        let mut reader = ControlReader::new();
        let mut messages = Vec::new();
        for chunk in stream.chunks(chunk_bytes) {
            messages.extend(reader.messages(chunk));
        }
        assert_eq!(reader.buffered_bytes(), stream.len() % MESSAGE_BYTES);
        messages
    }

    #[test]
    fn one_byte_at_a_time() {
        let messages = collect_in_chunks(&three_messages(), 1);
        assert_eq!(messages.len(), 3);
        for (index, message) in messages.iter().enumerate() {
            assert!(message.iter().all(|&b| usize::from(b) == index + 1));
        }
    }

    #[test]
    fn two_messages_in_one_chunk() {
        let stream = three_messages();
        let mut reader = ControlReader::new();
        let mut input = &stream[..2 * MESSAGE_BYTES];
        assert_eq!(reader.push(&mut input), Some([1; MESSAGE_BYTES]));
        assert_eq!(input.len(), MESSAGE_BYTES);
        assert_eq!(reader.push(&mut input), Some([2; MESSAGE_BYTES]));
        assert!(input.is_empty());
        assert_eq!(reader.push(&mut input), None);
        assert_eq!(reader.buffered_bytes(), 0);
    }

    #[test]
    fn every_chunk_size_yields_same_messages() {
        let stream = three_messages();
        let whole = collect_in_chunks(&stream, stream.len());
        for chunk_bytes in [2, 3, 7, 100, 655, 656, 657, 1000, 1311, 1312, 1313] {
            assert_eq!(
                collect_in_chunks(&stream, chunk_bytes),
                whole,
                "chunk {chunk_bytes}"
            );
        }
    }

    #[test]
    fn trailing_partial_message_stays_buffered() {
        let stream = three_messages();
        let mut reader = ControlReader::new();
        let count = reader.messages(&stream[..MESSAGE_BYTES + 10]).count();
        assert_eq!(count, 1);
        assert_eq!(reader.buffered_bytes(), 10);
        let rest: Vec<RawMessage> = reader.messages(&stream[MESSAGE_BYTES + 10..]).collect();
        assert_eq!(rest, [[2; MESSAGE_BYTES], [3; MESSAGE_BYTES]]);
    }

    #[test]
    fn empty_chunk_changes_nothing() {
        let mut reader = ControlReader::new();
        let mut input: &[u8] = &[];
        assert_eq!(reader.push(&mut input), None);
        assert_eq!(reader.buffered_bytes(), 0);
    }
}
