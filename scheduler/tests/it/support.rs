//! Test helpers: a scriptable fake master that records requests, a devcluster, and a
//! standalone ZooKeeper on loopback.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mesos_stateful_devcluster::{DevCluster, DevClusterConfig};
use mesos_stateful_proto::recordio;
use mesos_stateful_proto::v1::scheduler::{event, Call, Event};
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// One request the fake master received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub path: String,
    pub headers: HashMap<String, String>,
    pub call: Call,
}

/// What the fake master answers.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A plain answer with extra headers.
    Status(u16, Vec<(String, String)>),
    /// A 200 event stream with these events, then silence (connection kept open).
    SilentStream(String, Vec<Event>),
}

type Script = Arc<dyn Fn(&Recorded, usize) -> Reply + Send + Sync>;

/// A fake master on 127.0.0.1.
pub struct FakeMaster {
    pub url: String,
    pub requests: Arc<Mutex<Vec<Recorded>>>,
}

impl FakeMaster {
    /// Serves `script(request, index)` for every request.
    pub async fn start(
        script: impl Fn(&Recorded, usize) -> Reply + Send + Sync + 'static,
    ) -> FakeMaster {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let script: Script = Arc::new(script);
        let recorded = requests.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(serve(socket, script.clone(), recorded.clone()));
            }
        });
        FakeMaster { url, requests }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}

async fn serve(socket: TcpStream, script: Script, recorded: Arc<Mutex<Vec<Recorded>>>) {
    let (reader, mut writer) = socket.into_split();
    let mut reader = BufReader::new(reader);
    loop {
        // Read the head byte by byte up to the blank line (tests only).
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            match reader.read(&mut byte).await {
                Ok(1) => head.push(byte[0]),
                _ => return,
            }
        }
        let head = String::from_utf8_lossy(&head).to_string();
        let mut lines = head.split("\r\n");
        let path = lines
            .next()
            .and_then(|line| line.split(' ').nth(1))
            .unwrap_or("")
            .to_string();
        let headers: HashMap<String, String> = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let length: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).await.is_err() {
            return;
        }
        let request = Recorded {
            path,
            headers,
            call: Call::decode(body.as_slice()).unwrap_or_default(),
        };
        let index = {
            let mut all = recorded.lock().unwrap();
            all.push(request.clone());
            all.len() - 1
        };
        match script(&request, index) {
            Reply::Status(status, extra) => {
                let mut answer = format!("HTTP/1.1 {status} Status\r\nContent-Length: 0\r\n");
                for (name, value) in extra {
                    answer.push_str(&format!("{name}: {value}\r\n"));
                }
                answer.push_str("\r\n");
                if writer.write_all(answer.as_bytes()).await.is_err() {
                    return;
                }
            }
            Reply::SilentStream(stream_id, events) => {
                let mut payload = Vec::new();
                for event in events {
                    payload.extend_from_slice(&recordio::encode_to_bytes(&event.encode_to_vec()));
                }
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nMesos-Stream-Id: {stream_id}\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n",
                    payload.len()
                );
                let _ = writer.write_all(answer.as_bytes()).await;
                let _ = writer.write_all(&payload).await;
                let _ = writer.write_all(b"\r\n").await;
                // Silence: the connection stays open until the client gives up.
                let mut sink = [0u8; 64];
                while let Ok(n) = reader.read(&mut sink).await {
                    if n == 0 {
                        break;
                    }
                }
                return;
            }
        }
    }
}

/// A SUBSCRIBED event.
pub fn subscribed(framework_id: &str, heartbeat_seconds: f64) -> Event {
    Event {
        r#type: Some(event::Type::Subscribed as i32),
        subscribed: Some(event::Subscribed {
            framework_id: mesos_stateful_proto::v1::FrameworkId {
                value: framework_id.into(),
            },
            heartbeat_interval_seconds: Some(heartbeat_seconds),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A devcluster with one agent on free ports and the given heartbeat.
pub async fn devcluster(work_dir: &std::path::Path, heartbeat: Duration) -> DevCluster {
    DevCluster::start(DevClusterConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        work_dir: work_dir.to_path_buf(),
        heartbeat_interval: heartbeat,
        ..Default::default()
    })
    .await
    .unwrap()
}

/// Waits until `check` holds, polling, for at most `limit`.
pub async fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    check()
}

/// A standalone ZooKeeper on 127.0.0.1, stopped on drop.
pub struct ZooKeeper {
    pub address: String,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl ZooKeeper {
    /// Starts ZooKeeper from Debian's package; `None` when it is not installed.
    /// A server that does not answer `ruok` in time is stopped and started again on
    /// another port, once; its log is shown if it still fails.
    pub async fn start() -> Option<ZooKeeper> {
        let jar = std::path::Path::new("/usr/share/java/zookeeper.jar");
        if !jar.exists() {
            return None;
        }
        let mut last_log = String::new();
        for _ in 0..2 {
            match Self::start_once().await {
                Ok(zk) => return Some(zk),
                Err(log) => last_log = log,
            }
        }
        panic!("zookeeper did not start; its output:\n{last_log}");
    }

    async fn start_once() -> Result<ZooKeeper, String> {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = dir.path().join("zoo.cfg");
        std::fs::create_dir_all(dir.path().join("data")).unwrap();
        std::fs::write(
            &config,
            format!(
                "tickTime=500\ndataDir={}\nclientPort={port}\nclientPortAddress=127.0.0.1\nadmin.enableServer=false\n4lw.commands.whitelist=ruok\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let log_path = dir.path().join("zookeeper.out");
        let log = std::fs::File::create(&log_path).unwrap();
        let child = std::process::Command::new("java")
            .arg("-cp")
            .arg("/etc/zookeeper/conf:/usr/share/java/zookeeper.jar")
            .arg("-Dzookeeper.log.dir=".to_string() + &dir.path().display().to_string())
            .arg("org.apache.zookeeper.server.ZooKeeperServerMain")
            .arg(&config)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let address = format!("127.0.0.1:{port}");
        let mut zk = ZooKeeper {
            address,
            child,
            _dir: dir,
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while tokio::time::Instant::now() < deadline {
            if let Ok(Some(status)) = zk.child.try_wait() {
                let output = std::fs::read_to_string(&log_path).unwrap_or_default();
                return Err(format!("exited with {status}\n{output}"));
            }
            if let Ok(mut socket) = TcpStream::connect(&zk.address).await {
                let _ = socket.write_all(b"ruok").await;
                let mut answer = String::new();
                let read = tokio::time::timeout(
                    Duration::from_secs(2),
                    socket.read_to_string(&mut answer),
                )
                .await;
                if read.is_ok() && answer == "imok" {
                    return Ok(zk);
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // Dropping `zk` stops the process.
        Err(std::fs::read_to_string(&log_path).unwrap_or_default())
    }
}

impl Drop for ZooKeeper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
