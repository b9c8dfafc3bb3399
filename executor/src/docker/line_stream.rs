//! An open streamed answer of one JSON document per line (the event stream, streamed
//! stats), decoded as chunks arrive: the I/O around [`JsonLines`].

use std::collections::VecDeque;
use std::time::Duration;

use hyper::body::Incoming;

use super::client::next_chunk;
use super::stream::JsonLines;
use super::DockerError;

/// Decodes one line into an item.
pub(super) type ParseLine<T> = fn(&[u8]) -> Result<T, serde_json::Error>;

/// The items of a `GET` answer streamed as JSON lines.
#[derive(Debug)]
pub struct JsonLineStream<T> {
    path: String,
    body: Incoming,
    lines: JsonLines,
    /// Items decoded from a chunk but not handed out yet.
    ready: VecDeque<T>,
    /// An error met after the items in `ready`, reported once they are handed out.
    broken: Option<DockerError>,
    /// Longest silence allowed between two chunks; `None` waits forever.
    idle_timeout: Option<Duration>,
    /// What an item is, for errors (`event`, `stats sample`).
    what: &'static str,
    parse: ParseLine<T>,
}

impl<T> JsonLineStream<T> {
    pub(super) fn new(
        path: String,
        body: Incoming,
        idle_timeout: Option<Duration>,
        what: &'static str,
        parse: ParseLine<T>,
    ) -> Self {
        JsonLineStream {
            path,
            body,
            lines: JsonLines::new(),
            ready: VecDeque::new(),
            broken: None,
            idle_timeout,
            what,
            parse,
        }
    }

    /// The next item; `None` when the engine ended the stream. An undecodable line,
    /// a stream cut inside an item, or a silence longer than the idle timeout is an
    /// error. After an error the stream is unusable: drop it and open a new one.
    pub async fn next(&mut self) -> Result<Option<T>, DockerError> {
        loop {
            if let Some(item) = self.ready.pop_front() {
                return Ok(Some(item));
            }
            if let Some(err) = self.broken.take() {
                return Err(err);
            }
            let chunk = next_chunk(&mut self.body, self.idle_timeout, "GET", &self.path).await?;
            let Some(chunk) = chunk else {
                return match std::mem::take(&mut self.lines).finish() {
                    None => Ok(None),
                    Some(rest) => self.parse(&rest).map(Some),
                };
            };
            for line in self.lines.push(&chunk) {
                match self.parse(&line) {
                    Ok(item) => self.ready.push_back(item),
                    Err(err) => {
                        self.broken = Some(err);
                        break;
                    }
                }
            }
        }
    }

    fn parse(&self, line: &[u8]) -> Result<T, DockerError> {
        (self.parse)(line).map_err(|err| DockerError::InvalidResponse {
            method: "GET".into(),
            path: self.path.clone(),
            reason: format!("undecodable {}: {err}", self.what),
        })
    }
}
