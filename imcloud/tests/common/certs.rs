//! Certificates made at run time with rcgen (no key is ever committed): a CA, server certificates for
//! `localhost` / `127.0.0.1`, and role certificates named `<role>.imcloud.internal`, written as PEM
//! files into a temporary directory removed on drop.

use std::path::{Path, PathBuf};

use imcloud_common::test_name::unique_test_name;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

pub struct TestCa {
    pub pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().expect("CA key");
        let cert = p.self_signed(&key).expect("CA certificate");
        TestCa {
            pem: cert.pem(),
            issuer: Issuer::new(p, key),
        }
    }

    /// A certificate for these DNS names or IP addresses: (certificate PEM, key PEM).
    pub fn leaf(&self, names: &[&str]) -> (String, String) {
        let p = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .expect("leaf params");
        let key = KeyPair::generate().expect("leaf key");
        let cert = p.signed_by(&key, &self.issuer).expect("leaf certificate");
        (cert.pem(), key.serialize_pem())
    }
}

/// A temporary directory of PEM files.
pub struct CertDir {
    pub dir: PathBuf,
}

impl CertDir {
    pub fn new() -> CertDir {
        let dir = std::env::temp_dir().join(unique_test_name("imcloud-certs"));
        std::fs::create_dir_all(&dir).expect("cert dir");
        CertDir { dir }
    }

    /// Writes `contents` to `name` (replacing it atomically, as a secret mount or cert-manager does).
    pub fn write(&self, name: &str, contents: &str) -> String {
        let path = self.dir.join(name);
        let tmp = self.dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, contents).expect("write PEM");
        std::fs::rename(&tmp, &path).expect("rename PEM");
        path.display().to_string()
    }

    pub fn path(&self, name: &str) -> String {
        Path::new(&self.dir).join(name).display().to_string()
    }
}

impl Drop for CertDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The public listeners' files: `ca.pem`, `server.pem`, `server.key` for localhost and 127.0.0.1.
pub struct PublicCerts {
    pub ca: TestCa,
    pub files: CertDir,
}

impl PublicCerts {
    pub fn new() -> PublicCerts {
        let ca = TestCa::new("imcloud test public CA");
        let files = CertDir::new();
        files.write("ca.pem", &ca.pem);
        let (cert, key) = ca.leaf(&["localhost", "127.0.0.1"]);
        files.write("server.pem", &cert);
        files.write("server.key", &key);
        PublicCerts { ca, files }
    }

    pub fn ca_file(&self) -> String {
        self.files.path("ca.pem")
    }

    pub fn cert_file(&self) -> String {
        self.files.path("server.pem")
    }

    pub fn key_file(&self) -> String {
        self.files.path("server.key")
    }
}
