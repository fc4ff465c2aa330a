//! TLS of the gRPC port: rustls on the ring provider, HTTP/2 only, the
//! certificate reloaded from its files without a restart, and optional
//! mutual TLS (every connection presents a certificate the client CA
//! signed).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::ServerConfig;
use crate::error::ServerError;

/// The TLS acceptor, when the port speaks TLS.
pub type TlsAcceptor = tokio_rustls::TlsAcceptor;

/// The certificate the TLS port presents, reloaded from its files without a
/// restart (see [`keep_certificate_fresh`]).
#[derive(Debug)]
pub struct ReloadingCertificate {
    cert: PathBuf,
    key: PathBuf,
    current: std::sync::RwLock<Arc<rustls::sign::CertifiedKey>>,
    loaded_from: std::sync::Mutex<Option<(std::time::SystemTime, std::time::SystemTime)>>,
}

impl ReloadingCertificate {
    fn load(cert: &Path, key: &Path) -> Result<rustls::sign::CertifiedKey, ServerError> {
        use rustls::pki_types::pem::PemObject as _;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let chain = CertificateDer::pem_file_iter(cert)
            .and_then(Iterator::collect::<Result<Vec<_>, _>>)
            .map_err(|e| ServerError::Tls(format!("{}: {e}", cert.display())))?;
        if chain.is_empty() {
            return Err(ServerError::Tls(format!(
                "{}: no PEM certificate found",
                cert.display()
            )));
        }
        let private = PrivateKeyDer::from_pem_file(key)
            .map_err(|e| ServerError::Tls(format!("{}: {e}", key.display())))?;
        let signing = rustls::crypto::ring::default_provider()
            .key_provider
            .load_private_key(private)
            .map_err(|e| ServerError::Tls(format!("{}: {e}", key.display())))?;
        let certified = rustls::sign::CertifiedKey::new(chain, signing);
        certified.keys_match().map_err(|e| {
            ServerError::Tls(format!("{} and {}: {e}", cert.display(), key.display()))
        })?;
        Ok(certified)
    }

    fn modified(&self) -> Option<(std::time::SystemTime, std::time::SystemTime)> {
        modified(&self.cert, &self.key)
    }

    /// Reads the files again; a failure keeps the certificate in use.
    pub fn reload(&self) -> Result<(), ServerError> {
        let stamp = self.modified();
        let certified = Self::load(&self.cert, &self.key)?;
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(certified);
        *self
            .loaded_from
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = stamp;
        Ok(())
    }

    /// Whether the files changed since they were last loaded.
    fn has_changed(&self) -> bool {
        let loaded = *self
            .loaded_from
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.modified() != loaded
    }
}

/// When the certificate and key files last changed.
fn modified(cert: &Path, key: &Path) -> Option<(std::time::SystemTime, std::time::SystemTime)> {
    let at = |path: &Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    Some((at(cert)?, at(key)?))
}

impl rustls::server::ResolvesServerCert for ReloadingCertificate {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(Arc::clone(
            &self
                .current
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        ))
    }
}

/// How often the certificate files are checked for a change.
const CERTIFICATE_CHECK_EVERY: Duration = Duration::from_secs(2);

/// Reloads the certificate when its files change (checked every 2 s) or on
/// SIGHUP, until `stop` fires; new connections get the new certificate,
/// open ones keep theirs. A reload that fails is logged and the old
/// certificate stays.
pub async fn keep_certificate_fresh(
    certificate: Arc<ReloadingCertificate>,
    stop: CancellationToken,
) {
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut check = tokio::time::interval(CERTIFICATE_CHECK_EVERY);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let asked = tokio::select! {
            () = stop.cancelled() => return,
            _ = check.tick() => false,
            Some(()) = async {
                match hangup.as_mut() {
                    Some(signal) => signal.recv().await,
                    None => std::future::pending().await,
                }
            } => true,
        };
        if !asked && !certificate.has_changed() {
            continue;
        }
        match certificate.reload() {
            Ok(()) => {
                tracing::info!(cert = %certificate.cert.display(), "TLS certificate reloaded")
            }
            Err(error) => {
                tracing::warn!(%error, "TLS certificate not reloaded; keeping the one in use")
            }
        }
    }
}

/// The TLS acceptor of the gRPC port (HTTP/2 only, ring provider) and its
/// reloadable certificate, when a certificate is configured; with a client
/// CA, every connection must present a certificate it signed.
pub fn tls_acceptor(
    config: &ServerConfig,
) -> Result<Option<(TlsAcceptor, Arc<ReloadingCertificate>)>, ServerError> {
    let (cert, key) = match (&config.tls_cert, &config.tls_key) {
        (None, None) if config.tls_client_ca.is_some() => {
            return Err(ServerError::Tls(
                "--tls-client-ca needs --tls-cert and --tls-key (mutual TLS is TLS)".to_owned(),
            ));
        }
        (None, None) => return Ok(None),
        (Some(cert), Some(key)) => (cert, key),
        _ => {
            return Err(ServerError::Tls(
                "set both --tls-cert and --tls-key, or neither".to_owned(),
            ));
        }
    };
    // Stamped before reading, so a change during the read is seen next time.
    let stamp = modified(cert, key);
    let certificate = Arc::new(ReloadingCertificate {
        current: std::sync::RwLock::new(Arc::new(ReloadingCertificate::load(cert, key)?)),
        loaded_from: std::sync::Mutex::new(stamp),
        cert: cert.clone(),
        key: key.clone(),
    });
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| ServerError::Tls(e.to_string()))?;
    let builder = match &config.tls_client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            use rustls::pki_types::CertificateDer;
            use rustls::pki_types::pem::PemObject as _;
            let mut roots = rustls::RootCertStore::empty();
            let certs = CertificateDer::pem_file_iter(ca)
                .and_then(Iterator::collect::<Result<Vec<_>, _>>)
                .map_err(|e| ServerError::Tls(format!("{}: {e}", ca.display())))?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(ServerError::Tls(format!(
                    "{}: no usable CA certificate found",
                    ca.display()
                )));
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(|e| ServerError::Tls(format!("{}: {e}", ca.display())))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut tls = builder.with_cert_resolver(Arc::clone(&certificate) as _);
    tls.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Some((TlsAcceptor::from(Arc::new(tls)), certificate)))
}
