//! Copying a container's logs (`GET /containers/{id}/logs`) into files, demultiplexing
//! stdout and stderr as the frames arrive.

use std::path::Path;

use http::{Method, StatusCode};
use tokio::io::AsyncWriteExt;

use super::client::{encode, next_chunk, read_error_body, DockerClient};
use super::stream::{Demultiplexer, OutputStream};
use super::DockerError;

/// How many bytes of each output were written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogsCopied {
    /// Bytes written to the stdout file.
    pub stdout_bytes: u64,
    /// Bytes written to the stderr file.
    pub stderr_bytes: u64,
}

impl DockerClient {
    /// Writes everything the container (created without a TTY) logged so far to
    /// `stdout_path` and `stderr_path`, replacing those files. Each chunk read waits
    /// at most the request timeout.
    pub async fn copy_logs(
        &self,
        id: &str,
        stdout_path: &Path,
        stderr_path: &Path,
    ) -> Result<LogsCopied, DockerError> {
        let path = format!(
            "/containers/{}/logs?stdout=true&stderr=true",
            encode(id, b"")
        );
        let response = self.stream(Method::GET, &path, None, &[]).await?;
        if response.status() != StatusCode::OK {
            return Err(read_error_body(response, "GET", &path).await);
        }
        let create = |file: &Path| {
            let file = file.to_owned();
            async move {
                tokio::fs::File::create(&file)
                    .await
                    .map_err(|source| DockerError::Output { path: file, source })
            }
        };
        let mut stdout = create(stdout_path).await?;
        let mut stderr = create(stderr_path).await?;
        let mut copied = LogsCopied::default();
        let mut body = response.into_body();
        let mut demux = Demultiplexer::new();
        let idle = Some(self.request_timeout());
        while let Some(chunk) = next_chunk(&mut body, idle, "GET", &path).await? {
            let frames = demux.push(&chunk).map_err(|source| DockerError::Demux {
                path: path.clone(),
                source,
            })?;
            for frame in frames {
                let (file, file_path, count) = match frame.stream {
                    OutputStream::Stdout => (&mut stdout, stdout_path, &mut copied.stdout_bytes),
                    OutputStream::Stderr => (&mut stderr, stderr_path, &mut copied.stderr_bytes),
                    OutputStream::Stdin => continue,
                };
                file.write_all(&frame.payload)
                    .await
                    .map_err(|source| DockerError::Output {
                        path: file_path.to_owned(),
                        source,
                    })?;
                *count += frame.payload.len() as u64;
            }
        }
        demux.finish().map_err(|source| DockerError::Demux {
            path: path.clone(),
            source,
        })?;
        for (file, file_path) in [(&mut stdout, stdout_path), (&mut stderr, stderr_path)] {
            file.flush().await.map_err(|source| DockerError::Output {
                path: file_path.to_owned(),
                source,
            })?;
        }
        Ok(copied)
    }
}
