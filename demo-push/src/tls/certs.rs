//! The certificate every TLS listener serves, swappable while the process runs.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::{Mutex, RwLock};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::{TlsConfig, TlsError, provider};
use crate::metrics::{Metrics, inc};

/// The certificate chain and key the TLS listeners serve; a rustls certificate resolver
/// whose certificate [`reload`](Certificates::reload) swaps. Handshakes in progress finish
/// with the certificate they started with; connections already open are not touched.
pub struct Certificates {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
    /// The files' modification times at the last load.
    stamps: Mutex<(Option<SystemTime>, Option<SystemTime>)>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Certificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificates")
            .field("cert", &self.cert_path)
            .field("key", &self.key_path)
            .finish_non_exhaustive()
    }
}

impl Certificates {
    /// Reads the certificate chain and key `config` names; fails (saying which file and
    /// why) if either is missing, not PEM, or they do not match.
    pub fn load(config: &TlsConfig, metrics: Arc<Metrics>) -> Result<Arc<Certificates>, TlsError> {
        let stamps = (modified(&config.cert), modified(&config.key));
        let key = read(&config.cert, &config.key)?;
        Ok(Arc::new(Certificates {
            cert_path: config.cert.clone(),
            key_path: config.key.clone(),
            current: RwLock::new(Arc::new(key)),
            stamps: Mutex::new(stamps),
            metrics,
        }))
    }

    /// Reads the files again; on success new handshakes use what they hold. On failure the
    /// certificate in use stays, and the error says why.
    pub fn reload(&self) -> Result<(), TlsError> {
        let stamps = (modified(&self.cert_path), modified(&self.key_path));
        match read(&self.cert_path, &self.key_path) {
            Ok(key) => {
                *self.current.write() = Arc::new(key);
                *self.stamps.lock() = stamps;
                inc(&self.metrics.tls_reloads);
                tracing::info!(cert = %self.cert_path.display(), "TLS certificate reloaded");
                Ok(())
            }
            Err(e) => {
                // Not retried until the files change again (or SIGHUP).
                *self.stamps.lock() = stamps;
                inc(&self.metrics.tls_reload_failures);
                tracing::warn!(error = %e, "TLS certificate reload failed; keeping the one in use");
                Err(e)
            }
        }
    }

    /// The certificate chain served now (DER; the leaf first).
    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        self.current.read().cert.clone()
    }

    /// Reloads on SIGHUP, and when either file's modification time changes (checked every
    /// `every`; zero: SIGHUP only), for as long as the `Certificates` live.
    pub fn watch(self: &Arc<Self>, every: Duration) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut hangups = match tokio::signal::unix::signal(
                tokio::signal::unix::SignalKind::hangup(),
            ) {
                Ok(signal) => Some(signal),
                Err(e) => {
                    tracing::warn!(error = %e, "no SIGHUP handler: TLS reloads on file changes only");
                    None
                }
            };
            let period = if every.is_zero() {
                Duration::from_secs(3600)
            } else {
                every
            };
            let mut ticks = tokio::time::interval(period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let hangup = async {
                    match hangups.as_mut() {
                        Some(signal) => signal.recv().await,
                        None => std::future::pending().await,
                    }
                };
                let hangup = tokio::select! {
                    _ = hangup => true,
                    _ = ticks.tick() => false,
                };
                let Some(certs) = weak.upgrade() else { return };
                if hangup || (!every.is_zero() && certs.changed()) {
                    let _ = certs.reload();
                }
            }
        });
    }

    fn changed(&self) -> bool {
        let now = (modified(&self.cert_path), modified(&self.key_path));
        *self.stamps.lock() != now
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.current.read()))
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The chain and key in these files, checked to match.
fn read(cert_path: &Path, key_path: &Path) -> Result<CertifiedKey, TlsError> {
    let chain = load_chain(cert_path)?;
    let key_pem = std::fs::read(key_path).map_err(|source| TlsError::Read {
        path: key_path.to_owned(),
        source,
    })?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::Pem {
        path: key_path.to_owned(),
        reason: format!("no private key: {e}"),
    })?;
    Ok(CertifiedKey::from_der(chain, key, &provider())?)
}

/// The certificates in a PEM file (at least one).
pub fn load_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::Pem {
            path: path.to_owned(),
            reason: "no certificate in the file".into(),
        });
    }
    Ok(chain)
}
