//! Incremental decoders for the engine's streamed bodies: newline-delimited JSON
//! (image pulls) and the 8-byte-header multiplexed stdout/stderr frames (logs, exec).
//!
//! Both are plain synchronous structs fed with chunks as they arrive, so that a frame
//! or a line split across chunks is reassembled, and a stream cut in the middle of
//! one is detected at [`JsonLines::finish`] or [`Demultiplexer::finish`].

use bytes::{Buf, Bytes, BytesMut};

/// Size of a multiplexed frame's header: stream type, three zero bytes, u32 length.
pub const FRAME_HEADER_LEN: usize = 8;

/// Which output a multiplexed frame belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputStream {
    /// The process's standard input, echoed back (type 0).
    Stdin,
    /// The process's standard output (type 1).
    Stdout,
    /// The process's standard error (type 2).
    Stderr,
}

/// One decoded frame of a multiplexed stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputFrame {
    /// The output the payload was written to.
    pub stream: OutputStream,
    /// The bytes written.
    pub payload: Bytes,
}

/// Why a multiplexed stream could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DemuxError {
    /// A header names a stream type other than 0, 1 or 2.
    #[error("multiplexed stream frame has unknown stream type {0}")]
    UnknownStream(u8),
    /// The stream ended inside a frame.
    #[error("multiplexed stream ended inside a frame ({0} bytes left over)")]
    Truncated(usize),
}

/// Splits the multiplexed stream of a container without a TTY into frames.
#[derive(Debug, Default)]
pub struct Demultiplexer {
    buffer: BytesMut,
}

impl Demultiplexer {
    /// An empty decoder.
    pub fn new() -> Demultiplexer {
        Demultiplexer::default()
    }

    /// Adds `chunk` and returns every frame completed by it.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<OutputFrame>, DemuxError> {
        self.buffer.extend_from_slice(chunk);
        let mut frames = Vec::new();
        while self.buffer.len() >= FRAME_HEADER_LEN {
            let stream = match self.buffer[0] {
                0 => OutputStream::Stdin,
                1 => OutputStream::Stdout,
                2 => OutputStream::Stderr,
                other => return Err(DemuxError::UnknownStream(other)),
            };
            let length = u32::from_be_bytes([
                self.buffer[4],
                self.buffer[5],
                self.buffer[6],
                self.buffer[7],
            ]) as usize;
            if self.buffer.len() < FRAME_HEADER_LEN + length {
                break;
            }
            self.buffer.advance(FRAME_HEADER_LEN);
            let payload = self.buffer.split_to(length).freeze();
            frames.push(OutputFrame { stream, payload });
        }
        Ok(frames)
    }

    /// Checks that the stream ended on a frame boundary.
    pub fn finish(&self) -> Result<(), DemuxError> {
        if self.buffer.is_empty() {
            Ok(())
        } else {
            Err(DemuxError::Truncated(self.buffer.len()))
        }
    }
}

/// Splits a newline-delimited stream into lines (without `\n` or `\r\n`), skipping
/// blank ones.
#[derive(Debug, Default)]
pub struct JsonLines {
    buffer: BytesMut,
}

impl JsonLines {
    /// An empty splitter.
    pub fn new() -> JsonLines {
        JsonLines::default()
    }

    /// Adds `chunk` and returns every line completed by it.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<Bytes> {
        self.buffer.extend_from_slice(chunk);
        let mut lines = Vec::new();
        while let Some(end) = self.buffer.iter().position(|&b| b == b'\n') {
            let line = self.buffer.split_to(end + 1).freeze();
            let trimmed = trim_ascii(&line);
            if !trimmed.is_empty() {
                lines.push(line.slice_ref(trimmed));
            }
        }
        lines
    }

    /// The unterminated rest of the stream, if it holds anything but whitespace. The
    /// engine ends every object with a newline, so a rest means the stream was cut,
    /// unless the rest is itself a whole object.
    pub fn finish(self) -> Option<Bytes> {
        let rest = self.buffer.freeze();
        let trimmed = trim_ascii(&rest);
        (!trimmed.is_empty()).then(|| rest.slice_ref(trimmed))
    }
}

fn trim_ascii(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    &bytes[start..end.max(start)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(stream: u8, payload: &[u8]) -> Vec<u8> {
        let mut bytes = vec![stream, 0, 0, 0];
        bytes.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        bytes.extend_from_slice(payload);
        bytes
    }

    /// Feeds `input` cut at every position in `cuts` and collects the frames.
    fn demux_in_pieces(input: &[u8], cuts: &[usize]) -> (Vec<OutputFrame>, Result<(), DemuxError>) {
        let mut demux = Demultiplexer::new();
        let mut frames = Vec::new();
        let mut start = 0;
        for &cut in cuts.iter().chain(std::iter::once(&input.len())) {
            frames.extend(demux.push(&input[start..cut]).unwrap());
            start = cut;
        }
        (frames, demux.finish())
    }

    #[test]
    fn demultiplexes_frames_split_anywhere() {
        let mut input = frame(1, b"hello\n");
        input.extend(frame(2, b"oops\n"));
        input.extend(frame(1, b""));
        input.extend(frame(1, b"bye"));
        let expected = vec![
            OutputFrame {
                stream: OutputStream::Stdout,
                payload: Bytes::from_static(b"hello\n"),
            },
            OutputFrame {
                stream: OutputStream::Stderr,
                payload: Bytes::from_static(b"oops\n"),
            },
            OutputFrame {
                stream: OutputStream::Stdout,
                payload: Bytes::new(),
            },
            OutputFrame {
                stream: OutputStream::Stdout,
                payload: Bytes::from_static(b"bye"),
            },
        ];
        // Whole, cut inside a header, cut inside a payload, and byte by byte.
        let byte_by_byte: Vec<usize> = (1..input.len()).collect();
        for cuts in [vec![], vec![3], vec![10, 17, 20], byte_by_byte] {
            let (frames, end) = demux_in_pieces(&input, &cuts);
            assert_eq!(frames, expected, "cuts {cuts:?}");
            assert_eq!(end, Ok(()));
        }
    }

    #[test]
    fn demultiplexer_reports_truncation_and_bad_stream_types() {
        let input = frame(1, b"hello");
        let (frames, end) = demux_in_pieces(&input[..input.len() - 2], &[]);
        assert!(frames.is_empty());
        assert_eq!(end, Err(DemuxError::Truncated(11)));
        let (frames, end) = demux_in_pieces(&input[..4], &[]);
        assert!(frames.is_empty());
        assert_eq!(end, Err(DemuxError::Truncated(4)));
        let mut demux = Demultiplexer::new();
        assert_eq!(
            demux.push(&frame(7, b"x")),
            Err(DemuxError::UnknownStream(7))
        );
    }

    #[test]
    fn json_lines_are_reassembled_across_chunks() {
        let mut lines = JsonLines::new();
        assert!(lines.push(b"{\"a\":").is_empty());
        assert_eq!(
            lines.push(b"1}\r\n\n{\"b\":2}\n{\"c\""),
            vec![
                Bytes::from_static(b"{\"a\":1}"),
                Bytes::from_static(b"{\"b\":2}")
            ]
        );
        assert_eq!(
            lines.push(b":3}\n  \n"),
            vec![Bytes::from_static(b"{\"c\":3}")]
        );
        assert_eq!(lines.finish(), None);

        let mut lines = JsonLines::new();
        lines.push(b"{\"a\":1}\n{\"st");
        assert_eq!(lines.finish(), Some(Bytes::from_static(b"{\"st")));
    }
}
