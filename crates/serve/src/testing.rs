//! A throwaway certificate authority for tests (feature `testing`): a CA certificate, and
//! server certificates it signs, as PEM files in a temporary directory removed on drop.

use std::path::PathBuf;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose};

use crate::TlsFiles;

/// A test CA and the server certificates it signed.
pub struct TestCa {
    dir: tempfile::TempDir,
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl TestCa {
    /// A new CA named `name` (so two are told apart), with a server certificate for
    /// `localhost` and `127.0.0.1` ([`TestCa::server`]).
    pub fn new(name: &str) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, format!("zgrid test CA {name}"));
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(ca, KeyPair::generate().expect("a CA key")).expect("the CA");
        std::fs::write(dir.path().join("ca.pem"), issuer.pem()).expect("write the CA certificate");
        let ca = Self { dir, issuer };
        ca.server_for("server", &["localhost".to_owned(), "127.0.0.1".to_owned()]);
        ca
    }

    /// The CA's certificate (what a client trusts).
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The certificate and key for `localhost` and `127.0.0.1`.
    pub fn server(&self) -> TlsFiles {
        TlsFiles::new(self.dir.path().join("server.pem"), self.dir.path().join("server.key"))
    }

    /// A new certificate for `hosts` (names or IP addresses), kept as `<name>.pem` and
    /// `<name>.key`.
    pub fn server_for(&self, name: &str, hosts: &[String]) -> TlsFiles {
        let key = KeyPair::generate().expect("a server key");
        let mut params = CertificateParams::new(hosts.to_vec()).expect("server parameters");
        params.distinguished_name.push(DnType::CommonName, hosts.first().map_or("server", String::as_str));
        let cert = params.signed_by(&key, &self.issuer).expect("the server certificate");
        let files =
            TlsFiles::new(self.dir.path().join(format!("{name}.pem")), self.dir.path().join(format!("{name}.key")));
        std::fs::write(&files.cert, cert.pem()).expect("write a certificate");
        std::fs::write(&files.key, key.serialize_pem()).expect("write a key");
        files
    }
}
