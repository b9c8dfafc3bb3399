//! TLS of the API: rustls with the ring provider, from PEM files.

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::TlsFiles;

/// The server configuration of `files`: the certificate chain and its private key.
pub fn server_config(files: &TlsFiles) -> std::io::Result<ServerConfig> {
    let invalid = |what: &str, path: &std::path::Path, error: String| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{what} {}: {error}", path.display()),
        )
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| invalid("reading certificate", &files.cert, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| invalid("parsing certificate", &files.cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(invalid(
            "reading certificate",
            &files.cert,
            "no certificate in the file".to_string(),
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| invalid("reading private key", &files.key, e.to_string()))?;
    ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| std::io::Error::other(format!("tls versions: {e}")))?
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .map_err(|e| invalid("using certificate", &files.cert, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_or_empty_files_are_refused_with_their_path() {
        let dir = std::env::temp_dir().join(format!("tls-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let files = TlsFiles {
            cert: empty.clone(),
            key: dir.join("missing.pem"),
        };
        let error = server_config(&files).unwrap_err().to_string();
        assert!(error.contains("empty.pem"), "{error}");
        let files = TlsFiles {
            cert: dir.join("missing.pem"),
            key: empty,
        };
        let error = server_config(&files).unwrap_err().to_string();
        assert!(error.contains("missing.pem"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
