//! Serving the API: plain HTTP on loopback, TLS (rustls) wherever else, with
//! graceful shutdown and certificate reload.
//!
//! axum-server carries the accept loop, the TLS handshake (bounded in time) and
//! the graceful shutdown; the rustls configuration is built here with the ring
//! provider, which libp2p's TLS (under QUIC) already links, so serving TLS adds
//! no crypto library to the binary. A reload (SIGHUP) re-reads the certificate and key files and
//! swaps them under live connections; a bad file leaves the old pair serving.

use axum::Router;
use axum_server::Handle;
use axum_server::tls_rustls::RustlsConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// How long a client may take to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the API could not be served.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The address could not be bound.
    #[error("cannot bind the API to {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
    /// The certificate or key file is unreadable or unusable.
    #[error("TLS {what} {path}: {message}")]
    Tls {
        /// `certificate` or `key`.
        what: &'static str,
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// The PEM files of the API's TLS identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// Certificate chain (leaf first).
    pub cert: PathBuf,
    /// Private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

impl TlsFiles {
    /// Reads both files into a rustls server configuration (HTTP/1.1 over TLS 1.2/1.3).
    pub fn load(&self) -> Result<rustls::ServerConfig, ServeError> {
        let err = |what, path: &PathBuf, message: String| ServeError::Tls {
            what,
            path: path.display().to_string(),
            message,
        };
        let certs = CertificateDer::pem_file_iter(&self.cert)
            .and_then(|i| i.collect::<Result<Vec<_>, _>>())
            .map_err(|e| err("certificate", &self.cert, e.to_string()))?;
        if certs.is_empty() {
            return Err(err("certificate", &self.cert, "no certificate".into()));
        }
        let key = PrivateKeyDer::from_pem_file(&self.key)
            .map_err(|e| err("key", &self.key, e.to_string()))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| err("certificate", &self.cert, e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| err("key", &self.key, e.to_string()))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }
}

/// A running API server.
#[derive(Debug)]
pub struct ApiServer {
    addr: SocketAddr,
    handle: Handle<SocketAddr>,
    task: JoinHandle<()>,
    tls: Option<(TlsFiles, RustlsConfig)>,
}

impl ApiServer {
    /// Binds `addr` (port 0 allowed) and serves `app`, over TLS when `tls` is given.
    pub fn bind(addr: SocketAddr, app: Router, tls: Option<TlsFiles>) -> Result<Self, ServeError> {
        let bind_err = |source| ServeError::Bind { addr, source };
        // Load the certificate before binding, so a bad file leaves no port open.
        let tls = match tls {
            Some(files) => {
                let config = RustlsConfig::from_config(Arc::new(files.load()?));
                Some((files, config))
            }
            None => None,
        };
        let listener = std::net::TcpListener::bind(addr).map_err(bind_err)?;
        let local = listener.local_addr().map_err(bind_err)?;
        let handle = Handle::new();
        // Each request knows its connection: a tokenless client is its connection (api::clients).
        let service = app.into_make_service_with_connect_info::<SocketAddr>();
        let task = match &tls {
            Some((_, config)) => {
                let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(config.clone())
                    .handshake_timeout(HANDSHAKE_TIMEOUT);
                let server = axum_server::from_tcp(listener)
                    .map_err(bind_err)?
                    .acceptor(acceptor)
                    .handle(handle.clone());
                tokio::spawn(async move {
                    if let Err(e) = server.serve(service).await {
                        tracing::error!(error = %e, "API server");
                    }
                })
            }
            None => {
                let server = axum_server::from_tcp(listener)
                    .map_err(bind_err)?
                    .handle(handle.clone());
                tokio::spawn(async move {
                    if let Err(e) = server.serve(service).await {
                        tracing::error!(error = %e, "API server");
                    }
                })
            }
        };
        Ok(Self {
            addr: local,
            handle,
            task,
            tls,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https` when serving TLS, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    /// Re-reads the certificate and key; the old pair keeps serving if they are bad.
    /// `Ok(false)`: no TLS to reload.
    pub fn reload_tls(&self) -> Result<bool, ServeError> {
        let Some((files, config)) = &self.tls else {
            return Ok(false);
        };
        config.reload_from_config(Arc::new(files.load()?));
        Ok(true)
    }

    /// Stops accepting, lets open requests finish within `within`, then closes.
    pub async fn shutdown(self, within: Duration) {
        self.handle.graceful_shutdown(Some(within));
        let _ = tokio::time::timeout(within + Duration::from_secs(1), self.task).await;
    }
}
