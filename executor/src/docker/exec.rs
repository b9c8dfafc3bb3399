//! Running a command inside a running container: `exec_create`, `exec_start` (attached,
//! reading the multiplexed output until the process ends) and `exec_inspect` for the
//! exit code.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{Method, StatusCode};
use serde::{Deserialize, Serialize};

use super::client::{decode, encode, expect, next_chunk, read_error_body, DockerClient};
use super::stream::{Demultiplexer, OutputStream};
use super::DockerError;

/// Most bytes of each output kept by [`DockerClient::exec`]; the rest is dropped.
pub const MAX_EXEC_OUTPUT: usize = 4 * 1024 * 1024;
/// Pause between `exec_inspect` polls while the engine has not noticed the end yet.
const EXIT_POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Polls before giving up on an exit code after the output ended.
const EXIT_POLLS: u32 = 200;

/// What a command run with [`DockerClient::exec`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecResult {
    /// The command's exit code.
    pub exit_code: i64,
    /// Its standard output (at most [`MAX_EXEC_OUTPUT`] bytes).
    pub stdout: Bytes,
    /// Its standard error (at most [`MAX_EXEC_OUTPUT`] bytes).
    pub stderr: Bytes,
    /// Whether output beyond [`MAX_EXEC_OUTPUT`] was dropped.
    pub truncated: bool,
}

/// Answer of `GET /exec/{id}/json` (the parts we read).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ExecInspect {
    /// Whether the command still runs.
    #[serde(rename = "Running", default)]
    pub running: bool,
    /// Its exit code, once it ended (`null` before).
    #[serde(rename = "ExitCode", default)]
    pub exit_code: Option<i64>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct CreateExec<'a> {
    attach_stdout: bool,
    attach_stderr: bool,
    cmd: &'a [String],
}

#[derive(Deserialize)]
struct CreatedExec {
    #[serde(rename = "Id")]
    id: String,
}

impl DockerClient {
    /// Creates an exec instance running `cmd` in `container`, with stdout and stderr
    /// attached (`POST /containers/{id}/exec`), and returns its id.
    pub async fn exec_create(
        &self,
        container: &str,
        cmd: &[String],
    ) -> Result<String, DockerError> {
        let path = format!("/containers/{}/exec", encode(container, b""));
        let body = serde_json::to_vec(&CreateExec {
            attach_stdout: true,
            attach_stderr: true,
            cmd,
        })
        .map_err(|err| DockerError::InvalidRequest {
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
                Some(self.request_timeout()),
            )
            .await?;
        let created: CreatedExec = decode(
            expect(answer, &[StatusCode::CREATED], "POST", &path)?,
            "POST",
            &path,
        )?;
        Ok(created.id)
    }

    /// Starts an exec instance attached (`POST /exec/{id}/start`) and reads its output
    /// until the command closes it; each output keeps at most `limit` bytes. Returns
    /// stdout, stderr, and whether anything was dropped. There is no timeout: wrap the
    /// call in one if the command may hang.
    pub async fn exec_start(
        &self,
        exec_id: &str,
        limit: usize,
    ) -> Result<(Bytes, Bytes, bool), DockerError> {
        let path = format!("/exec/{}/start", encode(exec_id, b""));
        let body = Bytes::from_static(br#"{"Detach":false,"Tty":false}"#);
        let response = self
            .stream(Method::POST, &path, Some((body, "application/json")), &[])
            .await?;
        if response.status() != StatusCode::OK {
            return Err(read_error_body(response, "POST", &path).await);
        }
        let mut body = response.into_body();
        let mut demux = Demultiplexer::new();
        let (mut stdout, mut stderr) = (BytesMut::new(), BytesMut::new());
        let mut truncated = false;
        while let Some(chunk) = next_chunk(&mut body, None, "POST", &path).await? {
            let frames = demux.push(&chunk).map_err(|source| DockerError::Demux {
                path: path.clone(),
                source,
            })?;
            for frame in frames {
                let out = match frame.stream {
                    OutputStream::Stdout => &mut stdout,
                    OutputStream::Stderr => &mut stderr,
                    OutputStream::Stdin => continue,
                };
                let room = limit.saturating_sub(out.len());
                truncated |= frame.payload.len() > room;
                out.extend_from_slice(&frame.payload[..frame.payload.len().min(room)]);
            }
        }
        demux.finish().map_err(|source| DockerError::Demux {
            path: path.clone(),
            source,
        })?;
        Ok((stdout.freeze(), stderr.freeze(), truncated))
    }

    /// Inspects an exec instance (`GET /exec/{id}/json`).
    pub async fn exec_inspect(&self, exec_id: &str) -> Result<ExecInspect, DockerError> {
        let path = format!("/exec/{}/json", encode(exec_id, b""));
        let answer = self
            .call(Method::GET, &path, true, None, Some(self.request_timeout()))
            .await?;
        decode(
            expect(answer, &[StatusCode::OK], "GET", &path)?,
            "GET",
            &path,
        )
    }

    /// Runs `cmd` in the running `container` and returns its exit code and output.
    pub async fn exec(&self, container: &str, cmd: &[String]) -> Result<ExecResult, DockerError> {
        let exec_id = self.exec_create(container, cmd).await?;
        let (stdout, stderr, truncated) = self.exec_start(&exec_id, MAX_EXEC_OUTPUT).await?;
        // The output ends when the process closes it; the engine records the exit
        // code a moment later.
        for _ in 0..EXIT_POLLS {
            let inspect = self.exec_inspect(&exec_id).await?;
            if let (false, Some(exit_code)) = (inspect.running, inspect.exit_code) {
                return Ok(ExecResult {
                    exit_code,
                    stdout,
                    stderr,
                    truncated,
                });
            }
            tokio::time::sleep(EXIT_POLL_INTERVAL).await;
        }
        Err(DockerError::InvalidResponse {
            method: "GET".into(),
            path: format!("/exec/{exec_id}/json"),
            reason: "exec output ended but the engine reports no exit code".into(),
        })
    }
}
