//! The Docker Engine client: transport, version negotiation and one method per endpoint.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use tracing::debug;

use super::types::{
    ContainerInspect, ContainerSummary, CreateContainer, CreatedContainer, EngineMessage,
    ProgressLine, RemoveOptions, VersionInfo, WaitCondition, WaitResponse,
};
use super::{DockerError, DockerHost};

/// The oldest API version whose endpoints and fields this client uses (wait conditions
/// and `NanoCpus` exist from 1.30 on).
pub const MIN_API_VERSION: ApiVersion = ApiVersion::new(1, 30);
/// The newest API version this client was checked against.
pub const MAX_API_VERSION: ApiVersion = ApiVersion::new(1, 47);
/// Time allowed for an ordinary request (everything but `wait`).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest response body the client reads; engine answers are far smaller.
const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;
/// Longest piece of a non-JSON error body quoted in an error message.
const MAX_QUOTED_BODY: usize = 300;

/// A Docker Engine API version such as `1.41`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ApiVersion {
    /// Always 1 so far.
    pub major: u32,
    /// The part that moves with each engine release.
    pub minor: u32,
}

impl ApiVersion {
    /// The version `major.minor`.
    pub const fn new(major: u32, minor: u32) -> ApiVersion {
        ApiVersion { major, minor }
    }

    /// Parses `1.41`.
    pub fn parse(text: &str) -> Option<ApiVersion> {
        let (major, minor) = text.trim().split_once('.')?;
        Some(ApiVersion::new(major.parse().ok()?, minor.parse().ok()?))
    }
}

impl fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// Picks the API version to speak with an engine that reported `info`: the newest
/// both sides know, provided the engine still accepts it.
pub fn negotiate_api_version(info: &VersionInfo) -> Result<ApiVersion, DockerError> {
    let invalid = |field: &str, value: &str| DockerError::InvalidResponse {
        method: "GET".into(),
        path: "/version".into(),
        reason: format!("{field} {value:?} is not a version"),
    };
    let engine_max = ApiVersion::parse(&info.api_version)
        .ok_or_else(|| invalid("ApiVersion", &info.api_version))?;
    let engine_min = match &info.min_api_version {
        Some(min) => ApiVersion::parse(min).ok_or_else(|| invalid("MinAPIVersion", min))?,
        None => engine_max,
    };
    let chosen = engine_max.min(MAX_API_VERSION);
    if chosen < MIN_API_VERSION || chosen < engine_min {
        return Err(DockerError::UnsupportedApiVersion {
            engine_min,
            engine_max,
        });
    }
    Ok(chosen)
}

/// A Docker Engine client bound to one engine and one API version.
///
/// Cloning is cheap; every request opens its own connection, so clones can be used
/// from many tasks at once (a `wait` blocks only its own connection).
#[derive(Debug, Clone)]
pub struct DockerClient {
    host: DockerHost,
    version: ApiVersion,
    request_timeout: Duration,
}

/// A status and a fully read body.
pub(super) struct Answer {
    pub(super) status: StatusCode,
    pub(super) body: Bytes,
}

impl DockerClient {
    /// Connects to the engine at `host` and negotiates the API version.
    pub async fn connect(host: DockerHost) -> Result<DockerClient, DockerError> {
        let mut client = DockerClient::with_api_version(host, MIN_API_VERSION);
        let info = client.version().await?;
        client.version = negotiate_api_version(&info)?;
        debug!(
            engine = %info.version,
            api_version = %client.version,
            "negotiated docker api version"
        );
        Ok(client)
    }

    /// A client that speaks `version` without asking the engine.
    pub fn with_api_version(host: DockerHost, version: ApiVersion) -> DockerClient {
        DockerClient {
            host,
            version,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        }
    }

    /// Replaces the time allowed for ordinary requests.
    pub fn with_request_timeout(mut self, timeout: Duration) -> DockerClient {
        self.request_timeout = timeout;
        self
    }

    /// The API version in use.
    pub fn api_version(&self) -> ApiVersion {
        self.version
    }

    /// The engine's address.
    pub fn host(&self) -> &DockerHost {
        &self.host
    }

    /// `GET /version` (unversioned).
    pub async fn version(&self) -> Result<VersionInfo, DockerError> {
        let answer = self
            .call(
                Method::GET,
                "/version",
                false,
                None,
                Some(self.request_timeout),
            )
            .await?;
        decode(
            expect(answer, &[StatusCode::OK], "GET", "/version")?,
            "GET",
            "/version",
        )
    }

    /// Whether the image `reference` is present locally (`GET /images/{name}/json`).
    pub async fn image_exists(&self, reference: &str) -> Result<bool, DockerError> {
        let path = format!("/images/{}/json", encode(reference, b"/:@"));
        let answer = self
            .call(Method::GET, &path, true, None, Some(self.request_timeout))
            .await?;
        match answer.status {
            StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(engine_error(&answer, "GET", &path)),
        }
    }

    /// Imports a root filesystem tarball as image `repo:tag`
    /// (`POST /images/create?fromSrc=-`); no registry is involved.
    pub async fn import_image(&self, repo: &str, tag: &str, tar: Bytes) -> Result<(), DockerError> {
        let path = format!(
            "/images/create?fromSrc=-&repo={}&tag={}",
            encode(repo, b""),
            encode(tag, b"")
        );
        let answer = self
            .call(
                Method::POST,
                &path,
                true,
                Some((tar, "application/x-tar")),
                Some(self.request_timeout),
            )
            .await?;
        let answer = expect(answer, &[StatusCode::OK], "POST", &path)?;
        // Errors arrive inside a 200 stream of JSON progress objects.
        for line in serde_json::Deserializer::from_slice(&answer.body).into_iter::<ProgressLine>() {
            let line = line.map_err(|err| DockerError::InvalidResponse {
                method: "POST".into(),
                path: path.clone(),
                reason: err.to_string(),
            })?;
            if let Some(message) = line.error_detail.map(|d| d.message).or(line.error) {
                return Err(DockerError::Import {
                    reference: format!("{repo}:{tag}"),
                    message,
                });
            }
        }
        Ok(())
    }

    /// Removes the image `reference` (`DELETE /images/{name}`).
    pub async fn remove_image(&self, reference: &str, force: bool) -> Result<(), DockerError> {
        let path = format!("/images/{}?force={force}", encode(reference, b"/:@"));
        let answer = self
            .call(
                Method::DELETE,
                &path,
                true,
                None,
                Some(self.request_timeout),
            )
            .await?;
        expect(answer, &[StatusCode::OK], "DELETE", &path).map(drop)
    }

    /// Creates a container named `name` (`POST /containers/create`).
    pub async fn create_container(
        &self,
        name: &str,
        spec: &CreateContainer,
    ) -> Result<CreatedContainer, DockerError> {
        let path = format!("/containers/create?name={}", encode(name, b""));
        let body = serde_json::to_vec(spec).map_err(|err| DockerError::InvalidRequest {
            method: "POST".into(),
            path: path.clone(),
            reason: err.to_string(),
        })?;
        let answer = self
            .call(
                Method::POST,
                &path,
                true,
                Some((Bytes::from(body), "application/json")),
                Some(self.request_timeout),
            )
            .await?;
        decode(
            expect(answer, &[StatusCode::CREATED], "POST", &path)?,
            "POST",
            &path,
        )
    }

    /// Starts a container (`POST /containers/{id}/start`); starting a running one is fine.
    pub async fn start_container(&self, id: &str) -> Result<(), DockerError> {
        let path = format!("/containers/{}/start", encode(id, b""));
        let answer = self
            .call(Method::POST, &path, true, None, Some(self.request_timeout))
            .await?;
        expect(
            answer,
            &[StatusCode::NO_CONTENT, StatusCode::NOT_MODIFIED],
            "POST",
            &path,
        )
        .map(drop)
    }

    /// Inspects a container (`GET /containers/{id}/json`).
    pub async fn inspect_container(&self, id: &str) -> Result<ContainerInspect, DockerError> {
        let path = format!("/containers/{}/json", encode(id, b""));
        let answer = self
            .call(Method::GET, &path, true, None, Some(self.request_timeout))
            .await?;
        decode(
            expect(answer, &[StatusCode::OK], "GET", &path)?,
            "GET",
            &path,
        )
    }

    /// Blocks until `condition` holds for the container (`POST /containers/{id}/wait`).
    /// There is no timeout: containers may run for months.
    pub async fn wait_container(
        &self,
        id: &str,
        condition: WaitCondition,
    ) -> Result<WaitResponse, DockerError> {
        let path = format!(
            "/containers/{}/wait?condition={}",
            encode(id, b""),
            condition.as_str()
        );
        let answer = self.call(Method::POST, &path, true, None, None).await?;
        decode(
            expect(answer, &[StatusCode::OK], "POST", &path)?,
            "POST",
            &path,
        )
    }

    /// Sends the stop signal and kills the container after `grace` (rounded up to whole
    /// seconds) (`POST /containers/{id}/stop`); stopping a stopped one is fine.
    pub async fn stop_container(&self, id: &str, grace: Duration) -> Result<(), DockerError> {
        let seconds = grace.as_secs() + u64::from(grace.subsec_nanos() > 0);
        let path = format!("/containers/{}/stop?t={seconds}", encode(id, b""));
        let answer = self
            .call(
                Method::POST,
                &path,
                true,
                None,
                Some(self.request_timeout + Duration::from_secs(seconds)),
            )
            .await?;
        expect(
            answer,
            &[StatusCode::NO_CONTENT, StatusCode::NOT_MODIFIED],
            "POST",
            &path,
        )
        .map(drop)
    }

    /// Sends `signal` (e.g. `SIGKILL`) to the container (`POST /containers/{id}/kill`);
    /// a container that does not run is a 409 error.
    pub async fn kill_container(&self, id: &str, signal: &str) -> Result<(), DockerError> {
        let path = format!(
            "/containers/{}/kill?signal={}",
            encode(id, b""),
            encode(signal, b"")
        );
        let answer = self
            .call(Method::POST, &path, true, None, Some(self.request_timeout))
            .await?;
        expect(answer, &[StatusCode::NO_CONTENT], "POST", &path).map(drop)
    }

    /// Removes the container (`DELETE /containers/{id}`).
    pub async fn remove_container(
        &self,
        id: &str,
        options: RemoveOptions,
    ) -> Result<(), DockerError> {
        let path = format!(
            "/containers/{}?force={}&v={}",
            encode(id, b""),
            options.force,
            options.volumes
        );
        let answer = self
            .call(
                Method::DELETE,
                &path,
                true,
                None,
                Some(self.request_timeout),
            )
            .await?;
        expect(answer, &[StatusCode::NO_CONTENT], "DELETE", &path).map(drop)
    }

    /// Lists containers carrying every label in `label_filters` (`key` or `key=value`),
    /// stopped ones too when `all` (`GET /containers/json`).
    pub async fn list_containers(
        &self,
        all: bool,
        label_filters: &[String],
    ) -> Result<Vec<ContainerSummary>, DockerError> {
        let mut path = format!("/containers/json?all={all}");
        if !label_filters.is_empty() {
            let filters = serde_json::json!({ "label": label_filters }).to_string();
            path.push_str("&filters=");
            path.push_str(&encode(&filters, b""));
        }
        let answer = self
            .call(Method::GET, &path, true, None, Some(self.request_timeout))
            .await?;
        decode(
            expect(answer, &[StatusCode::OK], "GET", &path)?,
            "GET",
            &path,
        )
    }

    /// Sends one request on a fresh connection and reads the whole answer.
    pub(super) async fn call(
        &self,
        method: Method,
        path: &str,
        versioned: bool,
        body: Option<(Bytes, &'static str)>,
        timeout: Option<Duration>,
    ) -> Result<Answer, DockerError> {
        let exchange = async {
            let response = self
                .open(method.clone(), path, versioned, body, &[])
                .await?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|err| DockerError::InvalidResponse {
                    method: method.to_string(),
                    path: path.to_owned(),
                    reason: format!("cannot read body: {err}"),
                })?
                .to_bytes();
            Ok(Answer { status, body })
        };
        match timeout {
            None => exchange.await,
            Some(limit) => tokio::time::timeout(limit, exchange)
                .await
                .map_err(|_| timeout_error(&method, path, limit))?,
        }
    }

    /// Sends one request on a fresh connection and returns the answer as soon as its
    /// head arrived (within the request timeout), leaving the body to be streamed.
    pub(super) async fn stream(
        &self,
        method: Method,
        path: &str,
        body: Option<(Bytes, &'static str)>,
        headers: &[(&'static str, String)],
    ) -> Result<hyper::Response<Incoming>, DockerError> {
        let limit = self.request_timeout;
        tokio::time::timeout(limit, self.open(method.clone(), path, true, body, headers))
            .await
            .map_err(|_| timeout_error(&method, path, limit))?
    }

    /// Connects and sends the request; the answer's body is not read yet.
    async fn open(
        &self,
        method: Method,
        path: &str,
        versioned: bool,
        body: Option<(Bytes, &'static str)>,
        headers: &[(&'static str, String)],
    ) -> Result<hyper::Response<Incoming>, DockerError> {
        let uri = if versioned {
            format!("/v{}{}", self.version, path)
        } else {
            path.to_owned()
        };
        let host_header = match &self.host {
            DockerHost::Unix(_) => "docker".to_owned(),
            DockerHost::Tcp(address) => address.clone(),
        };
        let mut builder = Request::builder()
            .method(method.clone())
            .uri(&uri)
            .header(HOST, host_header);
        if let Some((_, content_type)) = &body {
            builder = builder.header(CONTENT_TYPE, *content_type);
        }
        for (name, value) in headers {
            builder = builder.header(*name, value.as_str());
        }
        let body = body.map(|(bytes, _)| bytes).unwrap_or_default();
        let request = builder
            .body(Full::new(body))
            .map_err(|err| DockerError::InvalidRequest {
                method: method.to_string(),
                path: path.to_owned(),
                reason: err.to_string(),
            })?;
        self.exchange(request, method.as_str(), path).await
    }

    /// The time allowed for ordinary requests.
    pub(super) fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    async fn exchange(
        &self,
        request: Request<Full<Bytes>>,
        method: &str,
        path: &str,
    ) -> Result<hyper::Response<Incoming>, DockerError> {
        let http_error = |source| DockerError::Http {
            method: method.to_owned(),
            path: path.to_owned(),
            source,
        };
        let connect_error = |source| DockerError::Connect {
            host: self.host.to_string(),
            source,
        };
        match &self.host {
            DockerHost::Unix(socket) => {
                let stream = tokio::net::UnixStream::connect(socket)
                    .await
                    .map_err(connect_error)?;
                send_on(TokioIo::new(stream), request).await
            }
            DockerHost::Tcp(address) => {
                let stream = tokio::net::TcpStream::connect(address)
                    .await
                    .map_err(connect_error)?;
                send_on(TokioIo::new(stream), request).await
            }
        }
        .map_err(http_error)
    }
}

fn timeout_error(method: &Method, path: &str, limit: Duration) -> DockerError {
    DockerError::Timeout {
        method: method.to_string(),
        path: path.to_owned(),
        seconds: limit.as_secs(),
    }
}

/// Reads the next data chunk of a streamed body: `None` at its end. `idle` bounds the
/// wait for one chunk (`None` waits for ever).
pub(super) async fn next_chunk(
    body: &mut Incoming,
    idle: Option<Duration>,
    method: &str,
    path: &str,
) -> Result<Option<Bytes>, DockerError> {
    loop {
        let frame = match idle {
            None => body.frame().await,
            Some(limit) => tokio::time::timeout(limit, body.frame())
                .await
                .map_err(|_| DockerError::Timeout {
                    method: method.to_owned(),
                    path: path.to_owned(),
                    seconds: limit.as_secs(),
                })?,
        };
        match frame {
            None => return Ok(None),
            Some(Err(err)) => {
                return Err(DockerError::InvalidResponse {
                    method: method.to_owned(),
                    path: path.to_owned(),
                    reason: format!("cannot read body: {err}"),
                })
            }
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    return Ok(Some(data));
                }
            }
        }
    }
}

/// Reads a whole (small) body after an unexpected status, for the error message.
pub(super) async fn read_error_body(
    response: hyper::Response<Incoming>,
    method: &str,
    path: &str,
) -> DockerError {
    let status = response.status();
    let body = match Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(_) => Bytes::new(),
    };
    engine_error(&Answer { status, body }, method, path)
}

/// Runs one HTTP/1.1 exchange on `io`; the connection ends with the response body.
async fn send_on<T>(
    io: T,
    request: Request<Full<Bytes>>,
) -> Result<hyper::Response<Incoming>, hyper::Error>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(async move {
        if let Err(err) = connection.await {
            debug!(error = %err, "docker connection ended with an error");
        }
    });
    sender.send_request(request).await
}

/// Accepts the answer if its status is one of `expected`.
pub(super) fn expect(
    answer: Answer,
    expected: &[StatusCode],
    method: &str,
    path: &str,
) -> Result<Answer, DockerError> {
    if expected.contains(&answer.status) {
        Ok(answer)
    } else {
        Err(engine_error(&answer, method, path))
    }
}

/// The error for an unexpected answer, quoting the engine's `message` if it sent one.
pub(super) fn engine_error(answer: &Answer, method: &str, path: &str) -> DockerError {
    let message = match serde_json::from_slice::<EngineMessage>(&answer.body) {
        Ok(engine) => engine.message,
        Err(_) => {
            let text = String::from_utf8_lossy(&answer.body);
            let text = text.trim();
            if text.is_empty() {
                "empty body".to_owned()
            } else {
                text.chars().take(MAX_QUOTED_BODY).collect()
            }
        }
    };
    DockerError::Engine {
        method: method.to_owned(),
        path: path.to_owned(),
        status: answer.status.as_u16(),
        message,
    }
}

pub(super) fn decode<T: DeserializeOwned>(
    answer: Answer,
    method: &str,
    path: &str,
) -> Result<T, DockerError> {
    serde_json::from_slice(&answer.body).map_err(|err| DockerError::InvalidResponse {
        method: method.to_owned(),
        path: path.to_owned(),
        reason: err.to_string(),
    })
}

/// Percent-encodes `text` for a URI, leaving unreserved characters and `keep` as they are.
pub(super) fn encode(text: &str, keep: &[u8]) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) || keep.contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docker::{HostConfig, ImageReference, ProgressDetail, RegistryAuth};
    use std::convert::Infallible;
    use std::path::PathBuf;
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::UnixListener;

    /// A request as the fake engine saw it.
    #[derive(Debug, Clone)]
    struct Recorded {
        method: String,
        uri: String,
        host: Option<String>,
        content_type: Option<String>,
        registry_auth: Option<String>,
        body: Bytes,
    }

    /// A canned answer: status and body.
    type Responder = Arc<dyn Fn(&Recorded) -> (u16, String) + Send + Sync>;

    /// A Docker engine stand-in on a unix socket that records every request and
    /// answers through a responder.
    struct FakeEngine {
        socket: PathBuf,
        requests: Arc<Mutex<Vec<Recorded>>>,
        _dir: tempfile::TempDir,
    }

    impl FakeEngine {
        fn start(
            responder: impl Fn(&Recorded) -> (u16, String) + Send + Sync + 'static,
        ) -> FakeEngine {
            let dir = tempfile::tempdir().unwrap();
            let socket = dir.path().join("docker.sock");
            let listener = UnixListener::bind(&socket).unwrap();
            let requests = Arc::new(Mutex::new(Vec::new()));
            let responder: Responder = Arc::new(responder);
            let recorded = requests.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        return;
                    };
                    let responder = responder.clone();
                    let recorded = recorded.clone();
                    tokio::spawn(async move {
                        let service =
                            hyper::service::service_fn(move |request: Request<Incoming>| {
                                let responder = responder.clone();
                                let recorded = recorded.clone();
                                async move {
                                    let header = |name| {
                                        request
                                            .headers()
                                            .get(name)
                                            .and_then(|v: &http::HeaderValue| v.to_str().ok())
                                            .map(str::to_owned)
                                    };
                                    let host = header(HOST);
                                    let content_type = header(CONTENT_TYPE);
                                    let registry_auth =
                                        header(http::HeaderName::from_static("x-registry-auth"));
                                    let method = request.method().to_string();
                                    let uri = request.uri().to_string();
                                    let body =
                                        request.into_body().collect().await.unwrap().to_bytes();
                                    let seen = Recorded {
                                        method,
                                        uri,
                                        host,
                                        content_type,
                                        registry_auth,
                                        body,
                                    };
                                    let (status, body) = responder(&seen);
                                    recorded.lock().unwrap().push(seen);
                                    let response = hyper::Response::builder()
                                        .status(status)
                                        .header(CONTENT_TYPE, "application/json")
                                        .body(Full::new(Bytes::from(body)))
                                        .unwrap();
                                    Ok::<_, Infallible>(response)
                                }
                            });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
            FakeEngine {
                socket,
                requests,
                _dir: dir,
            }
        }

        fn client(&self) -> DockerClient {
            DockerClient::with_api_version(
                DockerHost::Unix(self.socket.clone()),
                ApiVersion::new(1, 41),
            )
        }

        fn requests(&self) -> Vec<Recorded> {
            self.requests.lock().unwrap().clone()
        }
    }

    /// A unix socket server that answers every connection with `raw` bytes and closes.
    fn raw_engine(raw: &'static [u8]) -> (tempfile::TempDir, DockerClient) {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("docker.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut buffer = [0u8; 4096];
                let _ = stream.read(&mut buffer).await;
                let _ = stream.write_all(raw).await;
                let _ = stream.shutdown().await;
            }
        });
        let client =
            DockerClient::with_api_version(DockerHost::Unix(socket), ApiVersion::new(1, 41));
        (dir, client)
    }

    fn version_info(max: &str, min: Option<&str>) -> VersionInfo {
        VersionInfo {
            version: "x".into(),
            api_version: max.into(),
            min_api_version: min.map(str::to_owned),
        }
    }

    #[test]
    fn negotiates_the_newest_common_version() {
        let check = |max: &str, min: Option<&str>, expected: Option<ApiVersion>| {
            let got = negotiate_api_version(&version_info(max, min)).ok();
            assert_eq!(got, expected, "engine {min:?}..{max}");
        };
        check("1.41", Some("1.12"), Some(ApiVersion::new(1, 41)));
        check("1.51", Some("1.24"), Some(MAX_API_VERSION));
        check("1.52", Some("1.44"), Some(MAX_API_VERSION));
        check("1.54", Some("1.50"), None);
        check("1.29", Some("1.12"), None);
        check("1.41", None, Some(ApiVersion::new(1, 41)));
        check("one", Some("1.12"), None);
        check("1.41", Some("x"), None);
    }

    #[test]
    fn encodes_uri_components() {
        assert_eq!(encode("a b/c", b""), "a%20b%2Fc");
        assert_eq!(encode("reg:5000/img:1", b"/:@"), "reg:5000/img:1");
        assert_eq!(
            encode(r#"{"label":["k=v"]}"#, b""),
            "%7B%22label%22%3A%5B%22k%3Dv%22%5D%7D"
        );
    }

    #[tokio::test]
    async fn connect_negotiates_and_prefixes_paths() {
        let engine = FakeEngine::start(|request| match request.uri.as_str() {
            "/version" => (
                200,
                r#"{"Version":"20.10.24","ApiVersion":"1.41","MinAPIVersion":"1.12"}"#.into(),
            ),
            _ => (201, r#"{"Id":"c1","Warnings":[]}"#.into()),
        });
        let client = DockerClient::connect(DockerHost::Unix(engine.socket.clone()))
            .await
            .unwrap();
        assert_eq!(client.api_version(), ApiVersion::new(1, 41));
        let spec = CreateContainer {
            image: "img:1".into(),
            host_config: HostConfig {
                network_mode: Some("host".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let created = client
            .create_container("mesos-stateful-t1", &spec)
            .await
            .unwrap();
        assert_eq!(created.id, "c1");

        let requests = engine.requests();
        assert_eq!(requests.len(), 2);
        assert_eq!(requests[0].method, "GET");
        assert_eq!(requests[0].uri, "/version");
        assert_eq!(requests[1].method, "POST");
        assert_eq!(
            requests[1].uri,
            "/v1.41/containers/create?name=mesos-stateful-t1"
        );
        assert_eq!(requests[1].host.as_deref(), Some("docker"));
        assert_eq!(
            requests[1].content_type.as_deref(),
            Some("application/json")
        );
        let body: serde_json::Value = serde_json::from_slice(&requests[1].body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"Image": "img:1", "HostConfig": {"NetworkMode": "host"}})
        );
    }

    #[tokio::test]
    async fn connect_refuses_an_engine_too_new() {
        let engine = FakeEngine::start(|_| {
            (
                200,
                r#"{"ApiVersion":"1.60","MinAPIVersion":"1.50"}"#.into(),
            )
        });
        let err = DockerClient::connect(DockerHost::Unix(engine.socket.clone()))
            .await
            .unwrap_err();
        assert!(
            matches!(err, DockerError::UnsupportedApiVersion { .. }),
            "{err}"
        );
    }

    #[tokio::test]
    async fn engine_errors_carry_status_and_message() {
        let engine = FakeEngine::start(|request| {
            if request.uri.contains("/missing/") {
                (404, r#"{"message":"No such container: missing"}"#.into())
            } else if request.uri.contains("/busy") {
                (409, "conflict: plain text\n".into())
            } else {
                (500, String::new())
            }
        });
        let client = engine.client();
        let err = client.inspect_container("missing").await.unwrap_err();
        assert!(err.is_not_found());
        assert_eq!(
            err.to_string(),
            "docker engine answered 404 to GET /containers/missing/json: No such container: missing"
        );
        let err = client
            .remove_container("busy", RemoveOptions::default())
            .await
            .unwrap_err();
        assert!(err.is_conflict());
        assert!(err.to_string().ends_with(": conflict: plain text"), "{err}");
        let err = client.start_container("other").await.unwrap_err();
        assert_eq!(err.status(), Some(500));
        assert!(err.to_string().ends_with("empty body"), "{err}");
    }

    #[tokio::test]
    async fn unexpected_success_status_is_an_error() {
        let engine = FakeEngine::start(|_| (200, r#"{"Id":"c1"}"#.into()));
        let err = engine
            .client()
            .create_container("n", &CreateContainer::default())
            .await
            .unwrap_err();
        assert_eq!(err.status(), Some(200));
    }

    #[tokio::test]
    async fn truncated_or_wrong_json_is_an_invalid_response() {
        let engine = FakeEngine::start(|request| {
            if request.uri.contains("/wait") {
                (200, r#"{"StatusCode":"three"}"#.into())
            } else {
                (200, r#"{"Id":"abc","State":{"Running":tr"#.into())
            }
        });
        let client = engine.client();
        let err = client.inspect_container("abc").await.unwrap_err();
        assert!(matches!(err, DockerError::InvalidResponse { .. }), "{err}");
        let err = client
            .wait_container("abc", WaitCondition::NotRunning)
            .await
            .unwrap_err();
        assert!(matches!(err, DockerError::InvalidResponse { .. }), "{err}");
    }

    #[tokio::test]
    async fn image_exists_maps_404_to_false() {
        let engine = FakeEngine::start(|request| {
            if request.uri.contains("present") {
                (200, r#"{"Id":"sha256:1"}"#.into())
            } else if request.uri.contains("absent") {
                (404, r#"{"message":"No such image"}"#.into())
            } else {
                (500, r#"{"message":"boom"}"#.into())
            }
        });
        let client = engine.client();
        assert!(client.image_exists("reg:5000/present:1").await.unwrap());
        assert!(!client.image_exists("absent").await.unwrap());
        assert_eq!(
            client.image_exists("broken").await.unwrap_err().status(),
            Some(500)
        );
        assert_eq!(
            engine.requests()[0].uri,
            "/v1.41/images/reg:5000/present:1/json"
        );
    }

    #[tokio::test]
    async fn lifecycle_requests_have_the_documented_shape() {
        let engine =
            FakeEngine::start(
                |request| match (request.method.as_str(), request.uri.as_str()) {
                    (_, uri) if uri.contains("/start") => (304, String::new()),
                    (_, uri) if uri.contains("/stop") => (304, String::new()),
                    (_, uri) if uri.contains("/wait") => {
                        (200, r#"{"StatusCode":3,"Error":null}"#.into())
                    }
                    (_, uri) if uri.contains("/kill") => (204, String::new()),
                    ("DELETE", _) => (204, String::new()),
                    ("GET", _) => (
                        200,
                        r#"[{"Id":"c1","Names":["/n"],"Labels":{"k":"v"}}]"#.into(),
                    ),
                    _ => (400, String::new()),
                },
            );
        let client = engine.client();
        client.start_container("c1").await.unwrap();
        client
            .stop_container("c1", Duration::from_millis(1500))
            .await
            .unwrap();
        let wait = client
            .wait_container("c1", WaitCondition::NextExit)
            .await
            .unwrap();
        assert_eq!(wait.status_code, 3);
        client.kill_container("c1", "SIGKILL").await.unwrap();
        client
            .remove_container(
                "c1",
                RemoveOptions {
                    force: true,
                    volumes: true,
                },
            )
            .await
            .unwrap();
        let listed = client
            .list_containers(true, &["mesos-stateful.task-id=t 1".into()])
            .await
            .unwrap();
        assert_eq!(listed.len(), 1);
        let uris: Vec<String> = engine
            .requests()
            .into_iter()
            .map(|r| format!("{} {}", r.method, r.uri))
            .collect();
        assert_eq!(
            uris,
            vec![
                "POST /v1.41/containers/c1/start",
                "POST /v1.41/containers/c1/stop?t=2",
                "POST /v1.41/containers/c1/wait?condition=next-exit",
                "POST /v1.41/containers/c1/kill?signal=SIGKILL",
                "DELETE /v1.41/containers/c1?force=true&v=true",
                "GET /v1.41/containers/json?all=true&filters=%7B%22label%22%3A%5B%22mesos-stateful.task-id%3Dt%201%22%5D%7D",
            ]
        );
    }

    #[tokio::test]
    async fn import_reports_errors_inside_the_stream() {
        let engine = FakeEngine::start(|request| {
            if request.uri.contains("repo=good") {
                (200, "{\"status\":\"sha256:1\"}\r\n".into())
            } else if request.uri.contains("repo=garbled") {
                (200, "{\"status\":".into())
            } else {
                (200, "{\"status\":\"x\"}\n{\"errorDetail\":{\"message\":\"bad tar\"},\"error\":\"bad tar\"}\n".into())
            }
        });
        let client = engine.client();
        client
            .import_image("good", "1", Bytes::from_static(b"tar"))
            .await
            .unwrap();
        let err = client
            .import_image("bad", "1", Bytes::from_static(b"tar"))
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "docker image import of bad:1 failed: bad tar"
        );
        let err = client
            .import_image("garbled", "1", Bytes::new())
            .await
            .unwrap_err();
        assert!(matches!(err, DockerError::InvalidResponse { .. }), "{err}");
        let first = &engine.requests()[0];
        assert_eq!(first.uri, "/v1.41/images/create?fromSrc=-&repo=good&tag=1");
        assert_eq!(first.content_type.as_deref(), Some("application/x-tar"));
        assert_eq!(&first.body[..], b"tar");
    }

    #[tokio::test]
    async fn garbage_http_and_cut_bodies_are_errors() {
        let (_dir, client) = raw_engine(b"this is not http\r\n\r\n");
        let err = client.inspect_container("c1").await.unwrap_err();
        assert!(matches!(err, DockerError::Http { .. }), "{err}");

        let (_dir, client) =
            raw_engine(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nContent-Type: application/json\r\n\r\n{\"Id\":");
        let err = client.inspect_container("c1").await.unwrap_err();
        assert!(matches!(err, DockerError::InvalidResponse { .. }), "{err}");
    }

    #[tokio::test]
    async fn missing_socket_is_a_connect_error() {
        let client = DockerClient::with_api_version(
            DockerHost::Unix("/nonexistent/docker.sock".into()),
            ApiVersion::new(1, 41),
        );
        let err = client.version().await.unwrap_err();
        assert!(matches!(err, DockerError::Connect { .. }), "{err}");
        assert!(
            err.to_string().contains("unix:///nonexistent/docker.sock"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn slow_engine_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("docker.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        tokio::spawn(async move {
            // Accept and hold connections without answering.
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        });
        let client =
            DockerClient::with_api_version(DockerHost::Unix(socket), ApiVersion::new(1, 41))
                .with_request_timeout(Duration::from_millis(100));
        let err = client.inspect_container("c1").await.unwrap_err();
        assert!(matches!(err, DockerError::Timeout { .. }), "{err}");
    }

    #[tokio::test]
    async fn pull_streams_progress_and_sends_credentials() {
        let engine = FakeEngine::start(|_| {
            (
                200,
                concat!(
                    "{\"status\":\"Pulling from team/img\",\"id\":\"1\"}\r\n",
                    "{\"status\":\"Downloading\",\"progressDetail\":{\"current\":5,\"total\":10},\"id\":\"l1\"}\r\n",
                    "{\"status\":\"Status: Downloaded newer image for 127.0.0.1:5000/team/img:1\"}"
                )
                .into(),
            )
        });
        let reference = ImageReference::parse("127.0.0.1:5000/team/img:1").unwrap();
        let auth = RegistryAuth {
            username: "u".into(),
            password: "p".into(),
            identitytoken: String::new(),
            serveraddress: "127.0.0.1:5000".into(),
        };
        let mut seen = Vec::new();
        engine
            .client()
            .pull_image(&reference, Some(&auth), |progress| {
                seen.push(progress.clone())
            })
            .await
            .unwrap();
        let statuses: Vec<_> = seen.iter().filter_map(|p| p.status.clone()).collect();
        assert_eq!(
            statuses,
            [
                "Pulling from team/img",
                "Downloading",
                "Status: Downloaded newer image for 127.0.0.1:5000/team/img:1"
            ]
        );
        assert_eq!(
            seen[1].detail,
            Some(ProgressDetail {
                current: Some(5),
                total: Some(10)
            })
        );
        let request = &engine.requests()[0];
        assert_eq!(request.method, "POST");
        assert_eq!(
            request.uri,
            "/v1.41/images/create?fromImage=127.0.0.1%3A5000%2Fteam%2Fimg&tag=1"
        );
        assert_eq!(request.registry_auth, Some(auth.header_value()));

        // Anonymous pulls send no credentials; digests go in `tag`.
        let digest = format!("img@sha256:{}", "ab".repeat(32));
        engine
            .client()
            .pull_image(&ImageReference::parse(&digest).unwrap(), None, |_| {})
            .await
            .unwrap();
        let request = &engine.requests()[1];
        assert_eq!(request.registry_auth, None);
        assert_eq!(
            request.uri,
            format!(
                "/v1.41/images/create?fromImage=img&tag=sha256%3A{}",
                "ab".repeat(32)
            )
        );
    }

    #[tokio::test]
    async fn pull_errors_in_the_stream_and_refusals_carry_the_message() {
        let engine = FakeEngine::start(|request| {
            if request.uri.contains("refused") {
                (
                    404,
                    r#"{"message":"pull access denied for refused"}"#.into(),
                )
            } else {
                (
                    200,
                    concat!(
                        "{\"status\":\"Pulling from missing\"}\n",
                        "{\"errorDetail\":{\"message\":\"manifest for missing:1 not found: manifest unknown\"},\"error\":\"old\"}\n",
                        "{\"status\":\"never seen\"}\n"
                    )
                    .into(),
                )
            }
        });
        let mut seen = 0;
        let err = engine
            .client()
            .pull_image(&ImageReference::parse("missing:1").unwrap(), None, |_| {
                seen += 1
            })
            .await
            .unwrap_err();
        assert_eq!(seen, 1);
        assert_eq!(
            err.to_string(),
            "docker image pull of missing:1 failed: manifest for missing:1 not found: manifest unknown"
        );
        let err = engine
            .client()
            .pull_image(&ImageReference::parse("refused").unwrap(), None, |_| {})
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "docker image pull of refused failed: pull access denied for refused"
        );
    }

    #[tokio::test]
    async fn truncated_pull_streams_are_errors() {
        let reference = ImageReference::parse("img:1").unwrap();
        // The stream ends (cleanly, by chunked encoding) inside a JSON object.
        let (_dir, client) = raw_engine(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n19\r\n{\"status\":\"Downloading\"}\n\r\nb\r\n{\"status\":\"\r\n0\r\n\r\n",
        );
        let mut seen = 0;
        let err = client
            .pull_image(&reference, None, |_| seen += 1)
            .await
            .unwrap_err();
        assert_eq!(seen, 1);
        assert!(
            err.to_string()
                .contains("pull stream ended inside a message"),
            "{err}"
        );
        // The connection closes in the middle of a chunk.
        let (_dir, client) = raw_engine(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n40\r\n{\"status\":\"Down",
        );
        let err = client
            .pull_image(&reference, None, |_| {})
            .await
            .unwrap_err();
        assert!(matches!(err, DockerError::InvalidResponse { .. }), "{err}");
        // A line that is not JSON.
        let (_dir, client) = raw_engine(b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\ngarbage\n");
        let err = client
            .pull_image(&reference, None, |_| {})
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("undecodable progress message"),
            "{err}"
        );
    }

    fn frame(stream: u8, payload: &str) -> Vec<u8> {
        let mut bytes = vec![stream, 0, 0, 0];
        bytes.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        bytes.extend_from_slice(payload.as_bytes());
        bytes
    }

    #[tokio::test]
    async fn exec_collects_output_and_exit_code() {
        let engine = FakeEngine::start(|request| match request.uri.as_str() {
            "/v1.41/containers/c1/exec" => (201, r#"{"Id":"e1"}"#.into()),
            "/v1.41/exec/e1/start" => {
                let mut body = frame(1, "out ");
                body.extend(frame(2, "err"));
                body.extend(frame(1, "put"));
                (200, String::from_utf8(body).unwrap())
            }
            "/v1.41/exec/e1/json" => (200, r#"{"Running":false,"ExitCode":7}"#.into()),
            _ => (404, r#"{"message":"no"}"#.into()),
        });
        let client = engine.client();
        let result = client
            .exec("c1", &["sh".into(), "-c".into(), "x".into()])
            .await
            .unwrap();
        assert_eq!(result.exit_code, 7);
        assert_eq!(&result.stdout[..], b"out put");
        assert_eq!(&result.stderr[..], b"err");
        assert!(!result.truncated);
        let requests = engine.requests();
        let create: serde_json::Value = serde_json::from_slice(&requests[0].body).unwrap();
        assert_eq!(
            create,
            serde_json::json!({"AttachStdout": true, "AttachStderr": true, "Cmd": ["sh", "-c", "x"]})
        );
        let start: serde_json::Value = serde_json::from_slice(&requests[1].body).unwrap();
        assert_eq!(start, serde_json::json!({"Detach": false, "Tty": false}));
        // The output limit drops the rest and says so.
        let exec_id = client.exec_create("c1", &["true".into()]).await.unwrap();
        let (stdout, stderr, truncated) = client.exec_start(&exec_id, 4).await.unwrap();
        assert_eq!(
            (&stdout[..], &stderr[..], truncated),
            (&b"out "[..], &b"err"[..], true)
        );
        let err = client.exec("nope", &["true".into()]).await.unwrap_err();
        assert!(err.is_not_found(), "{err}");
    }

    #[tokio::test]
    async fn logs_are_demultiplexed_into_files() {
        let engine = FakeEngine::start(|request| {
            if request.uri.starts_with("/v1.41/containers/c1/logs") {
                let mut body = frame(1, "line 1\n");
                body.extend(frame(2, "warning\n"));
                body.extend(frame(1, "line 2\n"));
                (200, String::from_utf8(body).unwrap())
            } else if request.uri.starts_with("/v1.41/containers/cut/logs") {
                let body = frame(1, "line 1\n");
                (200, String::from_utf8(body[..10].to_vec()).unwrap())
            } else {
                (404, r#"{"message":"No such container"}"#.into())
            }
        });
        let dir = tempfile::tempdir().unwrap();
        let (stdout, stderr) = (dir.path().join("out"), dir.path().join("err"));
        let copied = engine
            .client()
            .copy_logs("c1", &stdout, &stderr)
            .await
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(&stdout).unwrap(),
            "line 1\nline 2\n"
        );
        assert_eq!(std::fs::read_to_string(&stderr).unwrap(), "warning\n");
        assert_eq!((copied.stdout_bytes, copied.stderr_bytes), (14, 8));
        assert_eq!(
            engine.requests()[0].uri,
            "/v1.41/containers/c1/logs?stdout=true&stderr=true"
        );
        let err = engine
            .client()
            .copy_logs("cut", &stdout, &stderr)
            .await
            .unwrap_err();
        assert!(matches!(err, DockerError::Demux { .. }), "{err}");
        let err = engine
            .client()
            .copy_logs("gone", &stdout, &stderr)
            .await
            .unwrap_err();
        assert!(err.is_not_found(), "{err}");
    }

    #[tokio::test]
    async fn stats_streams_yield_samples_and_refuse_garbage() {
        let engine = FakeEngine::start(|request| {
            let body = |cpu: u64| {
                format!(
                    r#"{{"read":"t{cpu}","cpu_stats":{{"cpu_usage":{{"total_usage":{cpu}}},"system_cpu_usage":{cpu}0,"online_cpus":1}}}}"#
                )
            };
            if request.uri.contains("/good/") {
                (200, format!("{}\n{}\n", body(1), body(2)))
            } else if request.uri.contains("/garbage/") {
                (200, format!("{}\nnot json at all\n", body(1)))
            } else if request.uri.contains("/cut/") {
                (200, format!("{}\n{{\"read\":", body(1)))
            } else {
                (404, r#"{"message":"No such container: gone"}"#.into())
            }
        });
        let client = engine.client();
        let mut good = client.stream_stats("good").await.unwrap();
        assert_eq!(good.next().await.unwrap().unwrap().cpu_total_usage, 1);
        assert_eq!(good.next().await.unwrap().unwrap().cpu_total_usage, 2);
        assert_eq!(good.next().await.unwrap(), None);
        assert_eq!(
            engine.requests()[0].uri,
            "/v1.41/containers/good/stats?stream=true"
        );
        for broken in ["garbage", "cut"] {
            let mut stream = client.stream_stats(broken).await.unwrap();
            assert_eq!(stream.next().await.unwrap().unwrap().cpu_total_usage, 1);
            let err = stream.next().await.unwrap_err();
            assert!(
                matches!(err, DockerError::InvalidResponse { .. }),
                "{broken}: {err}"
            );
        }
        let err = client.stream_stats("gone").await.unwrap_err();
        assert!(err.is_not_found(), "{err}");
    }

    #[tokio::test]
    async fn events_are_filtered_and_garbage_is_an_error() {
        let engine = FakeEngine::start(|request| {
            let die = r#"{"Type":"container","Action":"die","Actor":{"ID":"c1","Attributes":{"exitCode":"7"}},"timeNano":5}"#;
            if request.uri.contains("since=") {
                (200, format!("{die}\n\x00\x01garbage\n"))
            } else {
                (200, format!("{die}\n"))
            }
        });
        let client = engine.client();
        let filters = crate::docker::EventFilters {
            filters: [
                ("event", vec!["die".to_string()]),
                ("label", vec!["k=v".to_string()]),
            ]
            .into_iter()
            .collect(),
            since: None,
        };
        let mut events = client.events(&filters).await.unwrap();
        let die = events.next().await.unwrap().unwrap();
        assert_eq!((die.action.as_str(), die.exit_code()), ("die", Some(7)));
        assert_eq!(events.next().await.unwrap(), None);
        assert_eq!(
            engine.requests()[0].uri,
            "/v1.41/events?filters=%7B%22event%22%3A%5B%22die%22%5D%2C%22label%22%3A%5B%22k%3Dv%22%5D%7D"
        );
        let resumed = crate::docker::EventFilters {
            since: Some("12.000000005".into()),
            ..filters
        };
        let mut events = client.events(&resumed).await.unwrap();
        assert!(events.next().await.unwrap().is_some());
        let err = events.next().await.unwrap_err();
        assert!(matches!(err, DockerError::InvalidResponse { .. }), "{err}");
        assert!(engine.requests()[1]
            .uri
            .starts_with("/v1.41/events?since=12.000000005&filters="));
    }

    #[tokio::test]
    async fn sampler_falls_back_to_one_shot_samples_and_keeps_reopening_the_stream() {
        let engine = FakeEngine::start(|request| {
            if request.uri.contains("stream=true") {
                (500, r#"{"message":"streaming unavailable"}"#.into())
            } else {
                (
                    200,
                    r#"{"cpu_stats":{"cpu_usage":{"total_usage":42},"system_cpu_usage":100,"online_cpus":1}}"#
                        .into(),
                )
            }
        });
        let sampler = crate::task::sampler::StatsSampler::start(engine.client(), "c1");
        let sampled = sampler.sample().await.unwrap();
        assert_eq!(sampled.sample.cpu_total_usage, 42);
        let streams = || {
            engine
                .requests()
                .iter()
                .filter(|request| request.uri.contains("stream=true"))
                .count()
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while streams() < 3 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "stream not reopened"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Dropping the sampler closes the stream for good.
        drop(sampler);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let after_drop = streams();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(streams(), after_drop);
    }

    #[tokio::test]
    async fn stats_ask_for_one_shot_samples() {
        let engine = FakeEngine::start(|_| {
            (
                200,
                r#"{"read":"t","cpu_stats":{"cpu_usage":{"total_usage":10},"system_cpu_usage":100,"online_cpus":2},"memory_stats":{"usage":50,"stats":{"cache":20}}}"#.into(),
            )
        });
        let sample = engine.client().container_stats("c1").await.unwrap();
        assert_eq!(sample.cpu_total_usage, 10);
        assert_eq!(sample.memory_usage, Some(30));
        assert_eq!(
            engine.requests()[0].uri,
            "/v1.41/containers/c1/stats?stream=false&one-shot=true"
        );
        let old = DockerClient::with_api_version(
            DockerHost::Unix(engine.socket.clone()),
            ApiVersion::new(1, 40),
        );
        old.container_stats("c1").await.unwrap();
        assert_eq!(
            engine.requests()[1].uri,
            "/v1.40/containers/c1/stats?stream=false"
        );
    }
}
