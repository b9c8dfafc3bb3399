//! Test support shared by the project's test suites: a standalone ZooKeeper on
//! loopback, started from Debian's `zookeeper` package.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The jar of Debian's `zookeeper` package.
const JAR: &str = "/usr/share/java/zookeeper.jar";

/// A standalone ZooKeeper on 127.0.0.1 with its data in a directory of its own;
/// stopped, and its directory removed, on drop.
#[derive(Debug)]
pub struct ZooKeeper {
    /// `127.0.0.1:<port>`.
    pub address: String,
    child: Child,
    dir: PathBuf,
}

impl ZooKeeper {
    /// Whether Debian's package is installed.
    pub fn available() -> bool {
        std::path::Path::new(JAR).exists()
    }

    /// Starts a server and waits until it answers `ruok`; tries a second time on
    /// another port if the first does not come up. The error carries its log.
    pub async fn start() -> Result<ZooKeeper, String> {
        if !Self::available() {
            return Err(format!(
                "{JAR} is missing: install Debian's zookeeper package"
            ));
        }
        match Self::start_once().await {
            Ok(zookeeper) => Ok(zookeeper),
            Err(_) => Self::start_once().await,
        }
    }

    async fn start_once() -> Result<ZooKeeper, String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map_err(|error| format!("picking a port: {error}"))?
            .port();
        let dir = std::env::temp_dir().join(format!(
            "devcluster-zookeeper-{}-{port}",
            std::process::id()
        ));
        let data = dir.join("data");
        std::fs::create_dir_all(&data)
            .map_err(|error| format!("creating {}: {error}", data.display()))?;
        let config = dir.join("zoo.cfg");
        let text = format!(
            "tickTime=500\ndataDir={}\nclientPort={port}\nclientPortAddress=127.0.0.1\nadmin.enableServer=false\n4lw.commands.whitelist=ruok\n",
            data.display()
        );
        std::fs::write(&config, text)
            .map_err(|error| format!("writing {}: {error}", config.display()))?;
        let log_path = dir.join("zookeeper.out");
        let log = std::fs::File::create(&log_path)
            .map_err(|error| format!("creating the log: {error}"))?;
        let log_err = log
            .try_clone()
            .map_err(|error| format!("cloning the log: {error}"))?;
        let child = Command::new("java")
            .arg("-cp")
            .arg(format!("/etc/zookeeper/conf:{JAR}"))
            .arg(format!("-Dzookeeper.log.dir={}", dir.display()))
            .arg("org.apache.zookeeper.server.ZooKeeperServerMain")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|error| format!("starting java: {error}"))?;
        let mut zookeeper = ZooKeeper {
            address: format!("127.0.0.1:{port}"),
            child,
            dir,
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while tokio::time::Instant::now() < deadline {
            if let Ok(Some(status)) = zookeeper.child.try_wait() {
                let output = std::fs::read_to_string(&log_path).unwrap_or_default();
                return Err(format!("zookeeper exited with {status}:\n{output}"));
            }
            if zookeeper.answers_ruok().await {
                return Ok(zookeeper);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(std::fs::read_to_string(&log_path).unwrap_or_default())
    }

    async fn answers_ruok(&self) -> bool {
        let Ok(mut socket) = TcpStream::connect(&self.address).await else {
            return false;
        };
        if socket.write_all(b"ruok").await.is_err() {
            return false;
        }
        let mut answer = String::new();
        let read =
            tokio::time::timeout(Duration::from_secs(2), socket.read_to_string(&mut answer)).await;
        read.is_ok() && answer == "imok"
    }

    /// A `zk://` URL of `path` on this server.
    pub fn url(&self, path: &str) -> String {
        format!("zk://{}{path}", self.address)
    }
}

impl Drop for ZooKeeper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
