//! How a container's log keeps its stdout and stderr apart: each line of output is one record,
//! a tag byte, the line's bytes and `\n`. The tag says the stream and whether the line was
//! whole (ended in `\n`, which the record's `\n` stands for) or a piece the container wrote
//! without one (the record's `\n` is only the record's end). A node stores its containers'
//! logs this way and serves them this way on request (`?streams=true`); [`LogDecoder`] turns
//! records back into each stream's bytes, whatever pieces they arrive in. Bytes that are not
//! records (a log written before records, a VM's serial console) read as stdout, as they are.

/// Which output of a container a piece of its log came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// Tags: a whole line of stdout, of stderr; a piece of stdout, of stderr.
const TAGS: [u8; 4] = [0x01, 0x02, 0x03, 0x04];

impl LogStream {
    /// The tag of a whole line of this stream, and of a piece of one.
    fn tags(self) -> (u8, u8) {
        match self {
            LogStream::Stdout => (TAGS[0], TAGS[2]),
            LogStream::Stderr => (TAGS[1], TAGS[3]),
        }
    }
}

/// Append `bytes` that the container wrote on `stream` to `out` as records.
pub fn encode(stream: LogStream, bytes: &[u8], out: &mut Vec<u8>) {
    let (line, piece) = stream.tags();
    let mut rest = bytes;
    while !rest.is_empty() {
        match rest.iter().position(|&b| b == b'\n') {
            Some(end) => {
                out.push(line);
                out.extend_from_slice(&rest[..=end]);
                rest = &rest[end + 1..];
            }
            None => {
                out.push(piece);
                out.extend_from_slice(rest);
                out.push(b'\n');
                rest = &[];
            }
        }
    }
}

/// Where a [`LogDecoder`] is in the records.
#[derive(Debug, Clone, Copy, Default)]
enum Position {
    /// At the start of a record (or of a line that is not one).
    #[default]
    LineStart,
    /// Inside a line of `stream`, whose `\n` is output when `whole`.
    Inside { stream: LogStream, whole: bool },
}

/// Turns records, cut anywhere, back into the bytes of each stream, in order.
#[derive(Debug, Default)]
pub struct LogDecoder {
    position: Position,
}

impl LogDecoder {
    /// Hand each piece of output that `bytes` hold to `emit`, with its stream. Pieces are never
    /// empty; a record cut at the end of `bytes` goes on in the next call.
    pub fn decode<'a>(&mut self, bytes: &'a [u8], mut emit: impl FnMut(LogStream, &'a [u8])) {
        let mut rest = bytes;
        while let Some(&first) = rest.first() {
            let (stream, whole) = match self.position {
                Position::Inside { stream, whole } => (stream, whole),
                Position::LineStart => {
                    let tagged = match first {
                        0x01 => Some((LogStream::Stdout, true)),
                        0x02 => Some((LogStream::Stderr, true)),
                        0x03 => Some((LogStream::Stdout, false)),
                        0x04 => Some((LogStream::Stderr, false)),
                        _ => None,
                    };
                    if tagged.is_some() {
                        rest = &rest[1..];
                    }
                    tagged.unwrap_or((LogStream::Stdout, true))
                }
            };
            let (piece, after) = match rest.iter().position(|&b| b == b'\n') {
                Some(end) => {
                    self.position = Position::LineStart;
                    (if whole { &rest[..=end] } else { &rest[..end] }, &rest[end + 1..])
                }
                None => {
                    self.position = Position::Inside { stream, whole };
                    (rest, &[][..])
                }
            };
            if !piece.is_empty() {
                emit(stream, piece);
            }
            rest = after;
        }
    }

    /// The output `bytes` hold, both streams as they came, as a terminal would show them.
    pub fn merged(&mut self, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(bytes.len());
        self.decode(bytes, |_, piece| out.extend_from_slice(piece));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each stream's bytes, decoding `bytes` cut into pieces of `size`.
    fn streams(bytes: &[u8], size: usize) -> (Vec<u8>, Vec<u8>) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut decoder = LogDecoder::default();
        for piece in bytes.chunks(size.max(1)) {
            decoder.decode(piece, |stream, bytes| match stream {
                LogStream::Stdout => out.extend_from_slice(bytes),
                LogStream::Stderr => err.extend_from_slice(bytes),
            });
        }
        (out, err)
    }

    #[test]
    fn each_stream_comes_back_whole_however_the_records_are_cut() {
        let mut log = Vec::new();
        encode(LogStream::Stdout, b"one\ntw", &mut log);
        encode(LogStream::Stderr, b"warning: x\n", &mut log);
        encode(LogStream::Stdout, b"o\n\nthree", &mut log);
        encode(LogStream::Stderr, b"", &mut log);
        encode(LogStream::Stderr, b"no newline", &mut log);
        for size in 1..=log.len() {
            let (out, err) = streams(&log, size);
            assert_eq!(String::from_utf8(out).unwrap(), "one\ntwo\n\nthree", "cut every {size}");
            assert_eq!(String::from_utf8(err).unwrap(), "warning: x\nno newline", "cut every {size}");
        }
        let merged = LogDecoder::default().merged(&log);
        assert_eq!(String::from_utf8(merged).unwrap(), "one\ntwwarning: x\no\n\nthreeno newline");
    }

    #[test]
    fn bytes_that_are_not_records_read_as_stdout_unchanged() {
        let raw = b"login: \nroot\n\x1b[1mbold\x1b[0m";
        for size in 1..=raw.len() {
            assert_eq!(streams(raw, size), (raw.to_vec(), Vec::new()), "cut every {size}");
        }
        let mut mixed = b"old line\n".to_vec();
        encode(LogStream::Stderr, b"new\n", &mut mixed);
        assert_eq!(streams(&mixed, 3), (b"old line\n".to_vec(), b"new\n".to_vec()));
    }
}
