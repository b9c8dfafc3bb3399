//! Files the scheduler serves to Mesos agents' fetchers: our executor binary.
//!
//! A real agent runs the executor from its sandbox after fetching it from a URI in
//! the `ExecutorInfo`. The scheduler serves its own executor binary at
//! `GET /v1/artifacts/<sha256>/<file name>`: the digest in the path makes every build
//! a new URI (so the agents' fetcher cache can never hand out a stale binary), and
//! the answer carries it again in `ETag` and `Digest`. A request for another digest,
//! or for a binary changed on disk since the scheduler hashed it, is refused rather
//! than answered with bytes that do not match their name.
//!
//! The route needs no bearer token (a fetcher cannot send one; the binary is no
//! secret) but is rate-limited like every other.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpResponse, ResponseError};
use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::error::{ApiError, ErrorBody, ErrorCode};

/// One served file, hashed when loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    file_name: String,
    path: PathBuf,
    sha256: [u8; 32],
    size: u64,
    modified: Option<SystemTime>,
}

impl Artifact {
    /// Reads and hashes `path` (blocking: call it off the actors' threads).
    pub fn load(path: &Path) -> std::io::Result<Artifact> {
        let file_name = path
            .file_name()
            .and_then(|name| name.to_str())
            .filter(|name| !name.is_empty())
            .ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("{} has no file name", path.display()),
                )
            })?
            .to_string();
        let bytes = std::fs::read(path)?;
        let metadata = std::fs::metadata(path)?;
        Ok(Artifact {
            file_name,
            path: path.to_path_buf(),
            sha256: Sha256::digest(&bytes).into(),
            size: bytes.len() as u64,
            modified: metadata.modified().ok(),
        })
    }

    /// The SHA-256 of the file, in lowercase hex.
    pub fn sha256_hex(&self) -> String {
        self.sha256.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The file's name, last segment of its URL.
    pub fn file_name(&self) -> &str {
        &self.file_name
    }

    /// The path of its URL: `/v1/artifacts/<sha256>/<file name>`.
    pub fn url_path(&self) -> String {
        format!("/v1/artifacts/{}/{}", self.sha256_hex(), self.file_name)
    }

    fn unchanged_on_disk(&self) -> bool {
        std::fs::metadata(&self.path)
            .is_ok_and(|m| m.len() == self.size && m.modified().ok() == self.modified)
    }
}

/// The artifacts an API server serves.
#[derive(Debug, Clone, Default)]
pub struct Artifacts(pub Vec<Artifact>);

/// The route's pattern; requests matched to it need no token.
pub const ROUTE: &str = "/v1/artifacts/{sha256}/{file}";

/// Adds `GET /v1/artifacts/{sha256}/{file}`; without `web::Data<Artifacts>` in the app
/// every artifact is unknown.
pub fn configure(config: &mut web::ServiceConfig) {
    config.service(
        web::resource(ROUTE)
            .route(web::get().to(get_artifact))
            .default_service(web::to(super::error::method_not_allowed)),
    );
}

/// A file the scheduler serves to agents' fetchers (its executor binary), by the
/// SHA-256 of its content. Needs no token.
#[utoipa::path(get, path = "/v1/artifacts/{sha256}/{file}", tag = "system", security(()),
    params(
        ("sha256" = String, Path, description = "SHA-256 of the file, lowercase hex"),
        ("file" = String, Path, description = "File name"),
    ),
    responses(
        (status = 200, description = "The file; `ETag` and `Digest` carry its SHA-256",
            content_type = "application/octet-stream", body = Vec<u8>),
        (status = 404, description = "No file with that digest and name (code not_found)", body = ErrorBody),
        (status = 503, description = "The file changed on disk since the scheduler started (code unavailable)", body = ErrorBody),
    ))]
pub async fn get_artifact(
    path: web::Path<(String, String)>,
    artifacts: Option<web::Data<Artifacts>>,
) -> HttpResponse {
    let (sha256, file) = path.into_inner();
    let found = artifacts.and_then(|artifacts| {
        artifacts
            .0
            .iter()
            .find(|a| a.sha256_hex() == sha256 && a.file_name == file)
            .cloned()
    });
    let Some(artifact) = found else {
        return error(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            format!("no artifact {sha256}/{file}"),
        );
    };
    let read = web::block(move || {
        if !artifact.unchanged_on_disk() {
            return Ok(None);
        }
        std::fs::read(&artifact.path).map(|bytes| Some((artifact, bytes)))
    })
    .await;
    match read {
        Ok(Ok(Some((artifact, bytes)))) if Sha256::digest(&bytes).as_slice() == artifact.sha256 => {
            let digest = base64::engine::general_purpose::STANDARD.encode(artifact.sha256);
            HttpResponse::Ok()
                .content_type("application/octet-stream")
                .insert_header((header::ETAG, format!("\"{}\"", artifact.sha256_hex())))
                .insert_header(("Digest", format!("sha-256={digest}")))
                .insert_header((header::CACHE_CONTROL, "public, max-age=31536000, immutable"))
                .body(bytes)
        }
        Ok(Ok(_)) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Unavailable,
            format!("{file} changed on disk since the scheduler started; restart it to serve the new build"),
        ),
        Ok(Err(e)) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            format!("reading {file}: {e}"),
        ),
        Err(blocking) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            format!("reading {file}: {blocking}"),
        ),
    }
}

fn error(status: StatusCode, code: ErrorCode, message: String) -> HttpResponse {
    ApiError::new(status, code, message).error_response()
}

#[cfg(test)]
mod tests {
    use actix_web::test as web_test;
    use actix_web::App;

    use super::*;

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("writing {name}: {e}"));
        path
    }

    #[test]
    fn the_digest_names_the_bytes() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let artifact =
            Artifact::load(&write(dir.path(), "exec", b"abc")).unwrap_or_else(|e| panic!("{e}"));
        // SHA-256("abc"), FIPS 180-2's example.
        assert_eq!(
            artifact.sha256_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            artifact.url_path(),
            "/v1/artifacts/ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad/exec"
        );
        assert!(Artifact::load(&dir.path().join("missing")).is_err());
    }

    #[actix_web::test]
    async fn serves_the_file_under_its_digest_only() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = write(dir.path(), "mesos-stateful-executor", b"\x7fELF binary");
        let artifact = Artifact::load(&path).unwrap_or_else(|e| panic!("{e}"));
        let url = artifact.url_path();
        let app = web_test::init_service(
            App::new()
                .app_data(web::Data::new(Artifacts(vec![artifact.clone()])))
                .configure(configure),
        )
        .await;

        let response =
            web_test::call_service(&app, web_test::TestRequest::get().uri(&url).to_request()).await;
        assert_eq!(response.status().as_u16(), 200);
        let etag = response.headers().get(header::ETAG).cloned();
        assert_eq!(
            etag.as_ref().and_then(|v| v.to_str().ok()),
            Some(format!("\"{}\"", artifact.sha256_hex()).as_str())
        );
        assert!(response.headers().contains_key("digest"));
        let body = web_test::read_body(response).await;
        assert_eq!(&body[..], b"\x7fELF binary");

        let wrong_digest = format!("/v1/artifacts/{}/mesos-stateful-executor", "0".repeat(64));
        let response = web_test::call_service(
            &app,
            web_test::TestRequest::get().uri(&wrong_digest).to_request(),
        )
        .await;
        assert_eq!(response.status().as_u16(), 404);

        // A rebuilt binary is not served under the old digest.
        std::thread::sleep(std::time::Duration::from_millis(20));
        write(
            dir.path(),
            "mesos-stateful-executor",
            b"\x7fELF binary, rebuilt",
        );
        let response =
            web_test::call_service(&app, web_test::TestRequest::get().uri(&url).to_request()).await;
        assert_eq!(response.status().as_u16(), 503);
    }
}
