//! The CLI's HTTP client: JSON in and out, the API's errors as messages, and the
//! event stream as parsed Server-Sent Events.

use std::collections::VecDeque;
use std::pin::Pin;

use anyhow::{anyhow, Context};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use serde_json::Value;

/// One event of `GET /v1/events`.
#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    /// Its `id:`, when it has one.
    pub id: Option<String>,
    /// Its `event:` (`instance`, `member`, `reset`).
    pub kind: String,
    /// Its `data:`, JSON.
    pub data: String,
}

/// Splits a byte stream into events; comments (heartbeats) are skipped.
#[derive(Debug, Default)]
pub struct SseParser {
    buffer: String,
    ready: VecDeque<SseEvent>,
}

impl SseParser {
    /// Feeds bytes; complete events become available from [`SseParser::pop`].
    pub fn feed(&mut self, bytes: &[u8]) {
        self.buffer
            .push_str(&String::from_utf8_lossy(bytes).replace("\r\n", "\n"));
        while let Some(end) = self.buffer.find("\n\n") {
            let frame: String = self.buffer.drain(..end + 2).collect();
            let mut event = SseEvent {
                id: None,
                kind: "message".to_string(),
                data: String::new(),
            };
            let mut has_data = false;
            for line in frame.lines() {
                let (field, value) = line.split_once(':').unwrap_or((line, ""));
                let value = value.strip_prefix(' ').unwrap_or(value);
                match field {
                    "id" => event.id = Some(value.to_string()),
                    "event" => event.kind = value.to_string(),
                    "data" => {
                        if has_data {
                            event.data.push('\n');
                        }
                        event.data.push_str(value);
                        has_data = true;
                    }
                    _ => {}
                }
            }
            if has_data {
                self.ready.push_back(event);
            }
        }
    }

    /// The next complete event.
    pub fn pop(&mut self) -> Option<SseEvent> {
        self.ready.pop_front()
    }
}

/// The body of a streamed answer.
type BodyStream = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

/// An open event stream.
pub struct EventStream {
    body: BodyStream,
    parser: SseParser,
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream").finish_non_exhaustive()
    }
}

impl EventStream {
    /// The next event; `None` when the server closed the stream.
    pub async fn next(&mut self) -> anyhow::Result<Option<SseEvent>> {
        loop {
            if let Some(event) = self.parser.pop() {
                return Ok(Some(event));
            }
            match self.body.next().await {
                None => return Ok(None),
                Some(chunk) => self
                    .parser
                    .feed(&chunk.context("reading the event stream")?),
            }
        }
    }
}

/// The API at one base URL, with an optional bearer token.
#[derive(Debug, Clone)]
pub struct ApiClient {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl ApiClient {
    /// A client of `base` (`http://host:port` or `https://host:port`), trusting the
    /// PEM certificates `ca` besides the system's for HTTPS.
    pub fn new(base: &str, token: Option<String>, ca: Option<&[u8]>) -> anyhow::Result<Self> {
        let base = base.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            anyhow::bail!("--api must be an http:// or https:// URL, got {base:?}");
        }
        let mut builder = reqwest::Client::builder();
        if let Some(pem) = ca {
            let certificates =
                reqwest::Certificate::from_pem_bundle(pem).context("reading the CA certificate")?;
            if certificates.is_empty() {
                anyhow::bail!("the CA file holds no PEM certificate");
            }
            for certificate in certificates {
                builder = builder.add_root_certificate(certificate);
            }
        }
        Ok(ApiClient {
            base,
            token,
            http: builder.build().context("building the HTTP client")?,
        })
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let response = request
            .send()
            .await
            .with_context(|| format!("calling {}", self.base))?;
        let status = response.status();
        let text = response.text().await.context("reading the answer")?;
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if status.is_success() {
            return Ok(body);
        }
        Err(api_error(status.as_u16(), &body))
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.send(self.request(reqwest::Method::GET, path)).await
    }

    /// `POST path` with a JSON body.
    pub async fn post_json(
        &self,
        path: &str,
        body: &Value,
        idempotency_key: Option<&str>,
    ) -> anyhow::Result<Value> {
        let mut request = self.request(reqwest::Method::POST, path).json(body);
        if let Some(key) = idempotency_key {
            request = request.header("idempotency-key", key);
        }
        self.send(request).await
    }

    /// `PATCH path` with a JSON body, only at `version` when given.
    pub async fn patch_json(
        &self,
        path: &str,
        body: &Value,
        version: Option<u64>,
    ) -> anyhow::Result<Value> {
        let mut request = self.request(reqwest::Method::PATCH, path).json(body);
        if let Some(version) = version {
            request = request.header("if-match", format!("\"{version}\""));
        }
        self.send(request).await
    }

    /// `DELETE path`, only at `version` when given.
    pub async fn delete(&self, path: &str, version: Option<u64>) -> anyhow::Result<Value> {
        let mut request = self.request(reqwest::Method::DELETE, path);
        if let Some(version) = version {
            request = request.header("if-match", format!("\"{version}\""));
        }
        self.send(request).await
    }

    /// Opens the event stream at `path`, resuming after `last_id`.
    pub async fn events(&self, path: &str, last_id: Option<&str>) -> anyhow::Result<EventStream> {
        let mut request = self
            .request(reqwest::Method::GET, path)
            .header("accept", "text/event-stream");
        if let Some(id) = last_id {
            request = request.header("last-event-id", id);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("calling {}", self.base))?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
            return Err(api_error(status.as_u16(), &body));
        }
        Ok(EventStream {
            body: Box::pin(response.bytes_stream()),
            parser: SseParser::default(),
        })
    }
}

/// The error of an answer in the API's shape, or its raw text.
fn api_error(status: u16, body: &Value) -> anyhow::Error {
    match (body["code"].as_str(), body["message"].as_str()) {
        (Some(code), Some(message)) => anyhow!("{message} ({code}, HTTP {status})"),
        _ => anyhow!("HTTP {status}: {body}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_parsed_across_chunks_and_comments_skipped() {
        let mut parser = SseParser::default();
        parser.feed(b": connected\n\nid: 7\nevent: mem");
        assert_eq!(parser.pop(), None);
        parser.feed(b"ber\ndata: {\"a\":1}\n\n: heartbeat\n\nevent: reset\ndata: {}\n\n");
        assert_eq!(
            parser.pop(),
            Some(SseEvent {
                id: Some("7".into()),
                kind: "member".into(),
                data: "{\"a\":1}".into()
            })
        );
        assert_eq!(parser.pop().map(|e| e.kind), Some("reset".into()));
        assert_eq!(parser.pop(), None);
    }

    #[test]
    fn errors_show_message_and_code() {
        let body = serde_json::json!({"code": "not_found", "message": "instance a not found", "details": null});
        assert_eq!(
            api_error(404, &body).to_string(),
            "instance a not found (not_found, HTTP 404)"
        );
        assert_eq!(
            api_error(502, &Value::String("bad gateway".into())).to_string(),
            "HTTP 502: \"bad gateway\""
        );
    }
}
