//! Certificates for TLS tests, made fresh per broker with rcgen: a CA, a server certificate for
//! the listeners' host (and `localhost`, `127.0.0.1`), and client certificates for mutual TLS
//! (one valid, one expired).
//! Written as PEM files that Kafka (`ssl.keystore.type=PEM`) and clients read.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

use crate::BrokerError;

/// The PEM files of one test PKI.
#[derive(Debug, Clone)]
pub struct TestCerts {
    /// The CA's certificate: `ssl.ca.location` for clients, the brokers' truststore.
    pub ca: PathBuf,
    /// The broker's certificate chain.
    pub server_cert: PathBuf,
    /// The broker's private key (PKCS#8).
    pub server_key: PathBuf,
    /// A client certificate signed by the CA (CN `alice`), for mutual TLS.
    pub client_cert: PathBuf,
    /// Its private key.
    pub client_key: PathBuf,
    /// A CA that signed nothing here: a client trusting only it must refuse the brokers.
    pub other_ca: PathBuf,
    /// A client certificate signed by the CA that expired in 2021: brokers must refuse it.
    pub expired_client_cert: PathBuf,
    /// Its private key.
    pub expired_client_key: PathBuf,
}

fn err(what: &str) -> impl Fn(rcgen::Error) -> BrokerError + '_ {
    move |e| BrokerError::Config(format!("test certificates: {what}: {e}"))
}

impl TestCerts {
    /// Makes the PKI in `dir` for a broker reached at `host`.
    pub fn generate(dir: &Path, host: &str) -> Result<Self, BrokerError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| BrokerError::Process(format!("creating {}: {e}", dir.display())))?;
        let ca = |cn: &str| -> Result<(rcgen::Certificate, KeyPair), BrokerError> {
            let mut p = CertificateParams::new(Vec::<String>::new()).map_err(err("CA"))?;
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p.distinguished_name.push(DnType::CommonName, cn);
            let key = KeyPair::generate().map_err(err("CA key"))?;
            let cert = p.self_signed(&key).map_err(err("CA"))?;
            Ok((cert, key))
        };
        let (ca_cert, ca_key) = ca("cohort test CA")?;
        let (other_cert, _) = ca("some other CA")?;
        let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        if !names.iter().any(|n| n == host) {
            names.push(host.to_owned());
        }
        let mut sp = CertificateParams::new(names).map_err(err("server"))?;
        sp.distinguished_name
            .push(DnType::CommonName, "cohort test broker");
        let skey = KeyPair::generate().map_err(err("server key"))?;
        let scert = sp
            .signed_by(&skey, &ca_cert, &ca_key)
            .map_err(err("server"))?;
        let mut cp = CertificateParams::new(Vec::<String>::new()).map_err(err("client"))?;
        cp.distinguished_name.push(DnType::CommonName, "alice");
        let ckey = KeyPair::generate().map_err(err("client key"))?;
        let ccert = cp
            .signed_by(&ckey, &ca_cert, &ca_key)
            .map_err(err("client"))?;
        let mut ep = CertificateParams::new(Vec::<String>::new()).map_err(err("expired"))?;
        ep.distinguished_name.push(DnType::CommonName, "alice");
        ep.not_before = rcgen::date_time_ymd(2020, 1, 1);
        ep.not_after = rcgen::date_time_ymd(2021, 1, 1);
        let ekey = KeyPair::generate().map_err(err("expired key"))?;
        let ecert = ep
            .signed_by(&ekey, &ca_cert, &ca_key)
            .map_err(err("expired"))?;
        let write = |name: &str, text: String| -> Result<PathBuf, BrokerError> {
            let p = dir.join(name);
            std::fs::write(&p, text)
                .map_err(|e| BrokerError::Process(format!("writing {}: {e}", p.display())))?;
            Ok(p)
        };
        Ok(TestCerts {
            ca: write("ca.pem", ca_cert.pem())?,
            server_cert: write("server.pem", scert.pem())?,
            server_key: write("server.key", skey.serialize_pem())?,
            client_cert: write("client.pem", ccert.pem())?,
            client_key: write("client.key", ckey.serialize_pem())?,
            other_ca: write("other-ca.pem", other_cert.pem())?,
            expired_client_cert: write("expired-client.pem", ecert.pem())?,
            expired_client_key: write("expired-client.key", ekey.serialize_pem())?,
        })
    }
}

/// A PEM text as a `.properties` value: lines joined by continuations (Kafka's PEM reader
/// ignores the whitespace left between them).
pub(crate) fn pem_property(pem: &str) -> String {
    pem.trim().lines().collect::<Vec<_>>().join(" \\\n    ")
}
