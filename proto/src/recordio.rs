//! RecordIO framing: `<decimal length>\n<payload>`, repeated, with no separators.
//!
//! The decoder is incremental: chunks of a stream are pushed as they arrive (HTTP
//! chunk boundaries are unrelated to record boundaries) and complete records are
//! taken out. A record longer than the decoder's limit, a length that is not a
//! decimal number or a stream that ends inside a record is an error; the decoder
//! never allocates more than the limit for one record.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Largest record the decoder accepts unless told otherwise (64 MiB: far above any
/// real Mesos event, far below what would hurt a process).
pub const DEFAULT_MAX_RECORD_LEN: usize = 64 * 1024 * 1024;

/// The length prefix is a u64 in decimal: at most 20 digits.
const MAX_LENGTH_DIGITS: usize = 20;

/// Why a RecordIO stream could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordIoError {
    /// The length prefix held something other than ASCII digits.
    #[error("recordio length prefix is not a decimal number: {prefix:?}")]
    InvalidLength {
        /// The offending prefix, lossily decoded, at most 32 bytes.
        prefix: String,
    },
    /// The length prefix was empty (a bare newline).
    #[error("recordio length prefix is empty")]
    EmptyLength,
    /// A record announced a length beyond the decoder's limit.
    #[error("recordio record of {len} bytes exceeds the limit of {max} bytes")]
    RecordTooLarge {
        /// The announced length (saturated at `u64::MAX` for longer numbers).
        len: u64,
        /// The decoder's limit.
        max: usize,
    },
    /// The stream ended in the middle of a record or of its length prefix.
    #[error("recordio stream ended inside a record ({buffered} bytes pending)")]
    Truncated {
        /// Bytes left in the buffer when the stream ended.
        buffered: usize,
    },
}

/// Appends one record holding `payload` to `out`.
pub fn encode(payload: &[u8], out: &mut BytesMut) {
    let len = payload.len().to_string();
    out.reserve(len.len() + 1 + payload.len());
    out.put_slice(len.as_bytes());
    out.put_u8(b'\n');
    out.put_slice(payload);
}

/// One record holding `payload`, as a fresh buffer.
pub fn encode_to_bytes(payload: &[u8]) -> Bytes {
    let mut out = BytesMut::new();
    encode(payload, &mut out);
    out.freeze()
}

/// Incremental RecordIO decoder.
#[derive(Debug)]
pub struct Decoder {
    buffer: BytesMut,
    max_record_len: usize,
    /// Length of the record being read, once its prefix has been parsed.
    pending_len: Option<usize>,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    /// A decoder accepting records up to [`DEFAULT_MAX_RECORD_LEN`].
    pub fn new() -> Self {
        Self::with_max_record_len(DEFAULT_MAX_RECORD_LEN)
    }

    /// A decoder accepting records up to `max_record_len` bytes.
    pub fn with_max_record_len(max_record_len: usize) -> Self {
        Decoder {
            buffer: BytesMut::new(),
            max_record_len,
            pending_len: None,
        }
    }

    /// Adds the next chunk of the stream.
    pub fn push(&mut self, chunk: &[u8]) {
        self.buffer.extend_from_slice(chunk);
    }

    /// Bytes received but not yet returned as records.
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }

    /// Takes the next complete record out of the buffer, if there is one.
    ///
    /// After an error the decoder's state is unspecified: the stream is corrupt and
    /// must be dropped.
    pub fn next_record(&mut self) -> Result<Option<Bytes>, RecordIoError> {
        let len = match self.pending_len {
            Some(len) => len,
            None => match self.parse_length()? {
                Some(len) => len,
                None => return Ok(None),
            },
        };
        if self.buffer.len() < len {
            self.pending_len = Some(len);
            // Reserve what the record needs (bounded by the limit checked above),
            // so large records do not reallocate on every chunk.
            self.buffer.reserve(len - self.buffer.len());
            return Ok(None);
        }
        self.pending_len = None;
        Ok(Some(self.buffer.split_to(len).freeze()))
    }

    /// Declares the end of the stream: an error if a record was left unfinished.
    pub fn finish(&self) -> Result<(), RecordIoError> {
        if self.buffer.is_empty() && self.pending_len.is_none() {
            Ok(())
        } else {
            Err(RecordIoError::Truncated {
                buffered: self.buffer.len(),
            })
        }
    }

    fn parse_length(&mut self) -> Result<Option<usize>, RecordIoError> {
        let newline = self.buffer.iter().position(|&b| b == b'\n');
        let digits_end = newline.unwrap_or(self.buffer.len());
        let digits = &self.buffer[..digits_end];
        if let Some(bad) = digits.iter().position(|b| !b.is_ascii_digit()) {
            let end = (bad + 1).min(32);
            return Err(RecordIoError::InvalidLength {
                prefix: String::from_utf8_lossy(&digits[..end]).into_owned(),
            });
        }
        if digits.len() > MAX_LENGTH_DIGITS {
            return Err(RecordIoError::RecordTooLarge {
                len: u64::MAX,
                max: self.max_record_len,
            });
        }
        let Some(newline) = newline else {
            return Ok(None);
        };
        if newline == 0 {
            return Err(RecordIoError::EmptyLength);
        }
        let len = digits.iter().fold(0u64, |acc, &d| {
            acc.saturating_mul(10).saturating_add(u64::from(d - b'0'))
        });
        if len > self.max_record_len as u64 {
            return Err(RecordIoError::RecordTooLarge {
                len,
                max: self.max_record_len,
            });
        }
        self.buffer.advance(newline + 1);
        // The limit is a usize, so the checked length fits one.
        Ok(Some(len as usize))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode_all(chunks: &[&[u8]]) -> Result<Vec<Bytes>, RecordIoError> {
        let mut decoder = Decoder::new();
        let mut records = Vec::new();
        for chunk in chunks {
            decoder.push(chunk);
            while let Some(record) = decoder.next_record()? {
                records.push(record);
            }
        }
        decoder.finish()?;
        Ok(records)
    }

    #[test]
    fn encodes_length_newline_payload() {
        assert_eq!(&encode_to_bytes(b"hello")[..], b"5\nhello");
        assert_eq!(&encode_to_bytes(b"")[..], b"0\n");
        let payload = vec![7u8; 1234];
        let framed = encode_to_bytes(&payload);
        assert_eq!(&framed[..5], b"1234\n");
        assert_eq!(&framed[5..], &payload[..]);
    }

    #[test]
    fn decodes_records_split_anywhere() {
        let stream = b"5\nhello3\nabc11\nhello world";
        for split in 0..stream.len() {
            let (a, b) = stream.split_at(split);
            let records = decode_all(&[a, b]).unwrap();
            assert_eq!(records, vec![&b"hello"[..], b"abc", b"hello world"]);
        }
        let bytewise: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(decode_all(&bytewise).unwrap().len(), 3);
    }

    #[test]
    fn malformed_framing_is_an_error() {
        let check = |input: &[u8], expected: RecordIoError| {
            assert_eq!(decode_all(&[input]).unwrap_err(), expected, "{input:?}");
        };
        check(
            b"1x\nab",
            RecordIoError::InvalidLength {
                prefix: "1x".into(),
            },
        );
        check(b"-1\n", RecordIoError::InvalidLength { prefix: "-".into() });
        check(
            b"5\r\nhello",
            RecordIoError::InvalidLength {
                prefix: "5\r".into(),
            },
        );
        check(b"\nabc", RecordIoError::EmptyLength);
        check(b"5\nhel", RecordIoError::Truncated { buffered: 3 });
        check(b"12", RecordIoError::Truncated { buffered: 2 });
        check(
            b"99999999999999999999\n",
            RecordIoError::RecordTooLarge {
                len: 99_999_999_999_999_999_999u128.min(u64::MAX as u128) as u64,
                max: DEFAULT_MAX_RECORD_LEN,
            },
        );
    }

    #[test]
    fn absurd_length_is_refused_before_allocating() {
        let mut decoder = Decoder::with_max_record_len(1024);
        decoder.push(b"18446744073709551615\n");
        assert!(matches!(
            decoder.next_record(),
            Err(RecordIoError::RecordTooLarge { .. })
        ));
        // More digits than any u64 has is refused even before the newline arrives.
        let mut decoder = Decoder::new();
        decoder.push(b"123456789012345678901234");
        assert!(matches!(
            decoder.next_record(),
            Err(RecordIoError::RecordTooLarge { len: u64::MAX, .. })
        ));
        assert!(decoder.buffered() < 64);
    }

    proptest! {
        #[test]
        fn round_trips_any_records_any_chunking(
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..20),
            chunk_len in 1usize..64,
        ) {
            let mut stream = BytesMut::new();
            for payload in &payloads {
                encode(payload, &mut stream);
            }
            let chunks: Vec<&[u8]> = stream.chunks(chunk_len).collect();
            let records = decode_all(&chunks).unwrap();
            let expected: Vec<Bytes> = payloads.into_iter().map(Bytes::from).collect();
            prop_assert_eq!(records, expected);
        }

        #[test]
        fn arbitrary_bytes_never_panic(input in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut decoder = Decoder::with_max_record_len(4096);
            decoder.push(&input);
            while let Ok(Some(_)) = decoder.next_record() {}
        }
    }
}
