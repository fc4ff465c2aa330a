//! Certificates made in a test (rcgen): a certificate authority of its own
//! and the server and client certificates it signs, for 127.0.0.1 and
//! localhost.

#![allow(clippy::expect_used)]

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};

/// A certificate authority made for one test.
pub struct Authority(CertifiedIssuer<'static, KeyPair>);

impl Authority {
    /// A self-signed CA named `name`.
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().expect("CA key");
        Self(CertifiedIssuer::self_signed(params, key).expect("CA certificate"))
    }

    /// Its certificate, PEM.
    pub fn pem(&self) -> String {
        self.0.pem()
    }

    /// A certificate (PEM) and its key (PEM) for localhost and 127.0.0.1,
    /// named `name`, for a server or (`is_client`) a client.
    pub fn issue(&self, name: &str, is_client: bool) -> (String, String) {
        let key = KeyPair::generate().expect("key");
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .expect("certificate parameters");
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![if is_client {
            ExtendedKeyUsagePurpose::ClientAuth
        } else {
            ExtendedKeyUsagePurpose::ServerAuth
        }];
        let cert = params.signed_by(&key, &self.0).expect("signed certificate");
        (cert.pem(), key.serialize_pem())
    }
}
