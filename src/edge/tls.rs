//! Server TLS with rustls, and optional client-certificate verification
//! (mTLS) against a CA, from PEM files named in the configuration.

use std::path::Path;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read.
    #[error("cannot read {what} {path}: {source}")]
    Read {
        /// Which file: certificate, key or client CA.
        what: &'static str,
        /// Its path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The files do not hold what they should.
    #[error("{what} {path} holds no PEM {expected}")]
    NotPem {
        /// Which file.
        what: &'static str,
        /// Its path.
        path: String,
        /// What was looked for.
        expected: &'static str,
    },
}

/// The TLS settings for `cert` and `key` (PEM), verifying client
/// certificates against `client_ca` when given: clients without a
/// certificate signed by it are refused during the handshake.
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<ServerTlsConfig, TlsError> {
    install_crypto_provider();
    let cert_pem = read_pem("certificate", cert, "CERTIFICATE")?;
    let key_pem = read_pem("private key", key, "PRIVATE KEY")?;
    let mut config = ServerTlsConfig::new().identity(Identity::from_pem(cert_pem, key_pem));
    if let Some(ca) = client_ca {
        let ca_pem = read_pem("client CA", ca, "CERTIFICATE")?;
        config = config.client_ca_root(Certificate::from_pem(ca_pem));
    }
    Ok(config)
}

/// Chooses rustls's aws-lc-rs provider for the process. Several providers
/// are compiled in (the Iggy SDK brings ring too), so rustls cannot pick one
/// by itself; a provider already installed is kept.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

fn read_pem(what: &'static str, path: &Path, label: &'static str) -> Result<Vec<u8>, TlsError> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: shown.clone(),
        source,
    })?;
    let has_label = String::from_utf8_lossy(&bytes).contains(&format!("{label}-----"));
    if !has_label {
        return Err(TlsError::NotPem {
            what,
            path: shown,
            expected: label,
        });
    }
    Ok(bytes)
}
