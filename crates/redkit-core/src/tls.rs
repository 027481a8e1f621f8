//! TLS through rustls.

use redis::{ClientTlsConfig, TlsCertificates};

use crate::config::RedisConfig;

/// rustls needs one process-wide crypto provider; install ring's unless the application
/// installed one already.
pub(crate) fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// Custom certificates from the configuration, if any were given.
pub(crate) fn certificates(config: &RedisConfig) -> Option<TlsCertificates> {
    if config.tls_root_ca_pem.is_none() && config.tls_client_cert.is_none() {
        return None;
    }
    Some(TlsCertificates {
        client_tls: config
            .tls_client_cert
            .as_ref()
            .map(|(cert, key)| ClientTlsConfig {
                client_cert: cert.clone(),
                client_key: key.expose().as_bytes().to_vec(),
            }),
        root_cert: config.tls_root_ca_pem.clone(),
    })
}
