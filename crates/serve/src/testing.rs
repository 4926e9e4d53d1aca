//! A throwaway certificate authority for tests (feature `testing`): a CA certificate, and a
//! server certificate it signed for `localhost` and `127.0.0.1`, as PEM files in a temporary
//! directory removed on drop.

use std::path::PathBuf;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose};

use crate::TlsFiles;

/// A test CA and a server certificate it signed.
pub struct TestCa {
    dir: tempfile::TempDir,
}

impl TestCa {
    /// A new CA named `name` (so two are told apart), with a server certificate for
    /// `localhost` and `127.0.0.1`.
    pub fn new(name: &str) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, format!("zgrid test CA {name}"));
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().expect("a CA key")).expect("the CA");
        let key = KeyPair::generate().expect("a server key");
        let mut server =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).expect("server parameters");
        server.distinguished_name.push(DnType::CommonName, "localhost");
        let server = server.signed_by(&key, &ca).expect("the server certificate");
        let write = |name: &str, pem: String| std::fs::write(dir.path().join(name), pem).expect("write a PEM file");
        write("ca.pem", ca.pem());
        write("server.pem", server.pem());
        write("server.key", key.serialize_pem());
        Self { dir }
    }

    /// The CA's certificate (what a client trusts).
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The server's certificate and key.
    pub fn server(&self) -> TlsFiles {
        TlsFiles::new(self.dir.path().join("server.pem"), self.dir.path().join("server.key"))
    }
}
