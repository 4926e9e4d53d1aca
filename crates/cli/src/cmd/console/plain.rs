//! Terminal output as plain text, for `zgrid console --send`: escape sequences (colours, cursor
//! moves, window titles) and control characters other than newline and tab are dropped, also
//! when a sequence is split across the chunks the console sends.

use std::io::{self, Write};

/// A writer of plain text from terminal output.
pub struct PlainText<W: Write> {
    parser: vte::Parser,
    text: Text,
    out: W,
}

/// The printable part of what the parser saw.
#[derive(Default)]
struct Text(Vec<u8>);

impl vte::Perform for Text {
    fn print(&mut self, c: char) {
        let mut utf8 = [0u8; 4];
        self.0.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
    }

    fn execute(&mut self, byte: u8) {
        if byte == b'\n' || byte == b'\t' {
            self.0.push(byte);
        }
    }
}

impl<W: Write> PlainText<W> {
    /// Plain text to `out`.
    pub fn new(out: W) -> Self {
        Self { parser: vte::Parser::new(), text: Text::default(), out }
    }

    /// Write the text of terminal output `bytes`, and flush it.
    pub fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.parser.advance(&mut self.text, bytes);
        self.out.write_all(&self.text.0)?;
        self.text.0.clear();
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::PlainText;

    #[test]
    fn escape_codes_are_dropped_even_when_split_across_chunks() {
        let shown = "\x1b[1;32mgreen\x1b[0m\r\n\x1b]0;title\x07a\tb \x1b[?2004h$ \u{e9}\r\n".as_bytes();
        for split in 0..shown.len() {
            let mut plain = PlainText::new(Vec::new());
            plain.write(&shown[..split]).unwrap();
            plain.write(&shown[split..]).unwrap();
            assert_eq!(String::from_utf8(plain.out).unwrap(), "green\na\tb $ \u{e9}\n", "split at {split}");
        }
    }
}
