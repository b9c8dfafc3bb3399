//! Shared fixtures: the busybox test image, container cleanup, and a fake agent.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Either, Full};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use mesos_stateful_executor::docker::{DockerClient, DockerHost, RemoveOptions};
use mesos_stateful_proto::stateful::ExecutorMessage;
use mesos_stateful_proto::v1::executor::{call, event, Call, Event};
use mesos_stateful_proto::v1::{self, TaskState, TaskStatus};
use mesos_stateful_proto::{media, recordio, Message};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, OnceCell};

/// Label on every container and image the tests create.
pub const TEST_LABEL: &str = "mesos-stateful.it";
/// The busybox image imported for the tests.
pub const TEST_IMAGE: &str = "mesos-stateful-it/busybox:1";

/// A client of the machine's engine.
pub async fn docker() -> DockerClient {
    DockerClient::connect(DockerHost::default())
        .await
        .expect("the docker engine of this machine must be reachable")
}

static IMAGE: OnceCell<()> = OnceCell::const_new();

/// Imports [`TEST_IMAGE`] once per test binary, unless an earlier run left it.
pub async fn ensure_test_image(docker: &DockerClient) {
    IMAGE
        .get_or_init(|| async {
            if docker.image_exists(TEST_IMAGE).await.unwrap() {
                return;
            }
            let tar = busybox_rootfs_tar();
            let (repo, tag) = TEST_IMAGE.rsplit_once(':').unwrap();
            docker
                .import_image(repo, tag, Bytes::from(tar))
                .await
                .unwrap();
        })
        .await;
    assert!(docker.image_exists(TEST_IMAGE).await.unwrap());
}

/// A unique suffix for names in one test.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// Removes every container carrying label `key=value`.
pub async fn remove_labelled(docker: &DockerClient, key: &str, value: &str) {
    let containers = docker
        .list_containers(true, &[format!("{key}={value}")])
        .await
        .unwrap();
    for container in containers {
        let force = RemoveOptions {
            force: true,
            volumes: true,
        };
        let _ = docker.remove_container(&container.id, force).await;
    }
}

/// A root filesystem tarball with `/bin/busybox` and the applets the tests use.
pub fn busybox_rootfs_tar() -> Vec<u8> {
    let busybox = std::fs::read("/bin/busybox").expect("busybox-static must be installed");
    let mut tar = Vec::new();
    append_entry(&mut tar, "bin/", b'5', 0o755, &[], "");
    append_entry(&mut tar, "bin/busybox", b'0', 0o755, &busybox, "");
    for applet in ["sh", "sleep", "echo", "true", "false"] {
        append_entry(
            &mut tar,
            &format!("bin/{applet}"),
            b'2',
            0o777,
            &[],
            "busybox",
        );
    }
    tar.extend_from_slice(&[0u8; 1024]);
    tar
}

/// Appends one ustar entry (directory `5`, file `0` or symlink `2`).
fn append_entry(tar: &mut Vec<u8>, name: &str, kind: u8, mode: u32, data: &[u8], link: &str) {
    let mut header = [0u8; 512];
    let put = |header: &mut [u8; 512], offset: usize, value: &[u8]| {
        header[offset..offset + value.len()].copy_from_slice(value);
    };
    put(&mut header, 0, name.as_bytes());
    put(&mut header, 100, format!("{mode:07o}\0").as_bytes());
    put(&mut header, 108, b"0000000\0");
    put(&mut header, 116, b"0000000\0");
    put(
        &mut header,
        124,
        format!("{:011o}\0", data.len()).as_bytes(),
    );
    put(&mut header, 136, b"00000000000\0");
    header[156] = kind;
    put(&mut header, 157, link.as_bytes());
    put(&mut header, 257, b"ustar\0");
    put(&mut header, 263, b"00");
    // The checksum is computed with its own field filled with spaces.
    put(&mut header, 148, b"        ");
    let checksum: u32 = header.iter().map(|&b| u32::from(b)).sum();
    put(&mut header, 148, format!("{checksum:06o}\0 ").as_bytes());
    tar.extend_from_slice(&header);
    tar.extend_from_slice(data);
    let padding = (512 - data.len() % 512) % 512;
    tar.extend(std::iter::repeat_n(0u8, padding));
}

/// A response body fed by a channel: the subscription stream of the fake agent.
struct ChannelBody(mpsc::UnboundedReceiver<Bytes>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|c| Ok(Frame::data(c))))
    }
}

#[derive(Default)]
struct AgentState {
    /// The current subscription's event sender; dropping it ends the stream.
    stream: Option<mpsc::UnboundedSender<Bytes>>,
    subscribes: Vec<call::Subscribe>,
    updates: Vec<TaskStatus>,
    /// The data of every MESSAGE call, in order.
    messages: Vec<Bytes>,
    /// Whether UPDATEs are acknowledged at once.
    acknowledge: bool,
    /// Number of coming UPDATE calls to refuse with 503.
    refuse_updates: usize,
    n_refused: usize,
}

/// A fake Mesos agent speaking the executor API on a loopback port. It records
/// SUBSCRIBE, UPDATE and MESSAGE calls, answers SUBSCRIBE with SUBSCRIBED, acknowledges
/// updates when told to, refuses some updates with 503 on demand, and lets the test
/// push events.
#[derive(Clone)]
pub struct FakeAgent {
    pub endpoint: String,
    state: Arc<Mutex<AgentState>>,
}

type AgentBody = Either<Full<Bytes>, ChannelBody>;

impl FakeAgent {
    pub async fn start() -> FakeAgent {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = listener.local_addr().unwrap().to_string();
        let state = Arc::new(Mutex::new(AgentState {
            acknowledge: true,
            ..Default::default()
        }));
        let agent = FakeAgent { endpoint, state };
        let server = agent.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let agent = server.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let agent = agent.clone();
                        async move { Ok::<_, Infallible>(agent.handle(request).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        agent
    }

    async fn handle(&self, request: Request<Incoming>) -> Response<AgentBody> {
        let body = request.into_body().collect().await.unwrap().to_bytes();
        let call = Call::decode(body).unwrap();
        let kind = call.r#type.and_then(|t| call::Type::try_from(t).ok());
        let mut state = self.state.lock().unwrap();
        match kind {
            Some(call::Type::Subscribe) => {
                state.subscribes.push(call.subscribe.unwrap_or_default());
                let (sender, receiver) = mpsc::unbounded_channel();
                let subscribed = Event {
                    r#type: Some(event::Type::Subscribed as i32),
                    subscribed: Some(event::Subscribed::default()),
                    ..Default::default()
                };
                let _ = sender.send(record(&subscribed));
                state.stream = Some(sender);
                Response::builder()
                    .status(200)
                    .header("content-type", media::PROTOBUF)
                    .body(Either::Right(ChannelBody(receiver)))
                    .unwrap()
            }
            Some(call::Type::Update) => {
                if state.refuse_updates > 0 {
                    state.refuse_updates -= 1;
                    state.n_refused += 1;
                    return Response::builder()
                        .status(503)
                        .body(Either::Left(Full::new(Bytes::from_static(
                            b"Agent has not finished recovery",
                        ))))
                        .unwrap();
                }
                let status = call.update.unwrap().status;
                assert_eq!(status.uuid.as_ref().map(|u| u.len()), Some(16));
                assert_eq!(
                    status.source,
                    Some(v1::task_status::Source::Executor as i32)
                );
                state.updates.push(status.clone());
                if state.acknowledge {
                    if let Some(stream) = &state.stream {
                        let _ = stream.send(record(&acknowledged(&status)));
                    }
                }
                Response::builder()
                    .status(202)
                    .body(Either::Left(Full::new(Bytes::new())))
                    .unwrap()
            }
            Some(call::Type::Message) => {
                state.messages.push(call.message.unwrap().data);
                Response::builder()
                    .status(202)
                    .body(Either::Left(Full::new(Bytes::new())))
                    .unwrap()
            }
            _ => Response::builder()
                .status(400)
                .body(Either::Left(Full::new(Bytes::new())))
                .unwrap(),
        }
    }

    /// Sends an event on the current subscription.
    pub fn send(&self, event: Event) {
        let state = self.state.lock().unwrap();
        state
            .stream
            .as_ref()
            .expect("no subscription")
            .send(record(&event))
            .unwrap();
    }

    /// Ends the current subscription stream (as an agent restart would).
    pub fn close_stream(&self) {
        self.state.lock().unwrap().stream = None;
    }

    pub fn set_acknowledge(&self, acknowledge: bool) {
        self.state.lock().unwrap().acknowledge = acknowledge;
    }

    pub fn refuse_next_updates(&self, n: usize) {
        self.state.lock().unwrap().refuse_updates = n;
    }

    pub fn n_refused(&self) -> usize {
        self.state.lock().unwrap().n_refused
    }

    pub fn updates(&self) -> Vec<TaskStatus> {
        self.state.lock().unwrap().updates.clone()
    }

    /// The executor messages received so far, decoded.
    pub fn messages(&self) -> Vec<ExecutorMessage> {
        self.state
            .lock()
            .unwrap()
            .messages
            .iter()
            .map(|data| ExecutorMessage::decode(data.clone()).unwrap())
            .collect()
    }

    pub fn subscribes(&self) -> Vec<call::Subscribe> {
        self.state.lock().unwrap().subscribes.clone()
    }

    /// The states of the updates received so far.
    pub fn states(&self) -> Vec<TaskState> {
        self.updates()
            .iter()
            .map(|status| TaskState::try_from(status.state).unwrap())
            .collect()
    }

    /// Waits until `done` holds for the agent, failing after `timeout`.
    pub async fn wait_until(&self, timeout: Duration, done: impl Fn(&FakeAgent) -> bool) {
        let deadline = tokio::time::Instant::now() + timeout;
        while !done(self) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out; updates so far: {:?}, subscribes: {}",
                self.states(),
                self.subscribes().len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until an update with `state` arrived and returns it.
    pub async fn wait_for_state(&self, state: TaskState) -> TaskStatus {
        self.wait_until(Duration::from_secs(30), |agent| {
            agent.states().contains(&state)
        })
        .await;
        self.updates()
            .into_iter()
            .find(|status| status.state == state as i32)
            .unwrap()
    }
}

/// One RecordIO record holding `event`.
pub fn record(event: &Event) -> Bytes {
    recordio::encode_to_bytes(&event.encode_to_vec())
}

/// The ACKNOWLEDGED event for `status`.
pub fn acknowledged(status: &TaskStatus) -> Event {
    Event {
        r#type: Some(event::Type::Acknowledged as i32),
        acknowledged: Some(event::Acknowledged {
            task_id: status.task_id.clone(),
            uuid: status.uuid.clone().unwrap(),
        }),
        ..Default::default()
    }
}

/// A `docker-registry` process serving on a free loopback port, with its storage in
/// a temporary directory; the process is killed when this is dropped.
pub struct Registry {
    /// `127.0.0.1:<port>`.
    pub address: String,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Registry {
    /// Starts a registry and waits until it accepts connections.
    pub async fn start() -> Registry {
        Registry::start_with_users(None).await
    }

    /// Starts a registry that lets in only the `user:bcrypt-hash` line of `htpasswd`
    /// (when given), and waits until it accepts connections.
    pub async fn start_with_users(htpasswd: Option<&str>) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let address = format!("127.0.0.1:{port}");
        let config = dir.path().join("config.yml");
        let mut yaml = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {address}\n",
            dir.path().join("data").display()
        );
        if let Some(htpasswd) = htpasswd {
            let users = dir.path().join("htpasswd");
            std::fs::write(&users, format!("{htpasswd}\n")).unwrap();
            yaml.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: it\n    path: {}\n",
                users.display()
            ));
        }
        std::fs::write(&config, yaml).unwrap();
        let child = std::process::Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("docker-registry must be installed");
        let registry = Registry {
            address,
            child,
            _dir: dir,
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(&registry.address)
            .await
            .is_err()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "registry did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        registry
    }

    /// Tags the local image `source` as `<registry>/<repository>:<tag>`, pushes it
    /// with the docker CLI, removes the local tag, and returns the reference.
    pub async fn push(&self, docker: &DockerClient, source: &str, repository: &str) -> String {
        let reference = format!("{}/{repository}:{}", self.address, unique("t"));
        docker_cli(&["tag", source, &reference]).await;
        docker_cli(&["push", &reference]).await;
        docker.remove_image(&reference, false).await.unwrap();
        assert!(!docker.image_exists(&reference).await.unwrap());
        reference
    }

    /// Like [`Registry::push`], logging in as `user` first with a docker CLI
    /// configuration of its own (the machine's stays untouched).
    pub async fn push_as(
        &self,
        docker: &DockerClient,
        source: &str,
        repository: &str,
        (user, password): (&str, &str),
    ) -> String {
        let config_dir = tempfile::tempdir().unwrap();
        let config = config_dir.path().to_str().unwrap();
        let reference = format!("{}/{repository}:{}", self.address, unique("t"));
        docker_cli(&["tag", source, &reference]).await;
        docker_cli(&[
            "--config",
            config,
            "login",
            "--username",
            user,
            "--password",
            password,
            &self.address,
        ])
        .await;
        docker_cli(&["--config", config, "push", &reference]).await;
        docker.remove_image(&reference, false).await.unwrap();
        assert!(!docker.image_exists(&reference).await.unwrap());
        reference
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the docker CLI and fails the test if it fails.
pub async fn docker_cli(args: &[&str]) {
    let output = tokio::process::Command::new("docker")
        .args(args)
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}
