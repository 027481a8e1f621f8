//! Certificates generated at test time: a CA and a server certificate for 127.0.0.1.

use std::fs;
use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

/// PEM files of a generated CA and a server certificate signed by it.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The CA certificate file.
    pub ca_cert: PathBuf,
    /// The CA certificate, PEM.
    pub ca_pem: String,
    /// The server certificate file (SANs `localhost` and `127.0.0.1`).
    pub server_cert: PathBuf,
    /// The server key file.
    pub server_key: PathBuf,
}

impl TlsFiles {
    /// Generates the CA and server certificate and writes them to `dir`.
    pub fn generate(dir: &Path) -> TlsFiles {
        let fail = |e: rcgen::Error| -> ! { panic!("certificate generation: {e}") };
        let mut ca_params =
            CertificateParams::new(Vec::<String>::new()).unwrap_or_else(|e| fail(e));
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "redkit test CA");
        let ca_key = KeyPair::generate().unwrap_or_else(|e| fail(e));
        let ca_cert = ca_params.self_signed(&ca_key).unwrap_or_else(|e| fail(e));
        let issuer = Issuer::new(ca_params, ca_key);

        let params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap_or_else(|e| fail(e));
        let key = KeyPair::generate().unwrap_or_else(|e| fail(e));
        let cert = params.signed_by(&key, &issuer).unwrap_or_else(|e| fail(e));

        let write = |name: &str, body: String| {
            let path = dir.join(name);
            fs::write(&path, body).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            path
        };
        let ca_pem = ca_cert.pem();
        TlsFiles {
            ca_cert: write("ca.pem", ca_pem.clone()),
            ca_pem,
            server_cert: write("server.pem", cert.pem()),
            server_key: write("server.key", key.serialize_pem()),
        }
    }
}
