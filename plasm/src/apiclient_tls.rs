//! `--cacert FILE` as `curl --cacert FILE` means it: the certificates in the file
//! replace the default trust store, and a server may present one of them as its
//! own certificate. `openssl req -x509` (what operators run) makes a self-signed
//! certificate with `basicConstraints CA:TRUE`; WebPKI validation refuses a CA
//! used as an end entity (`CaUsedAsEndEntity`), OpenSSL (curl) accepts it as its
//! own trust anchor. So a chain is first validated normally against the file; when
//! that fails, a server certificate byte-for-byte equal to one in the file is
//! accepted (pinned) if it is within its validity period and valid for the name
//! dialed. The TLS handshake signatures are checked as always.

use rustls::DigitallySignedStruct;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, RootCertStore, SignatureScheme};
use std::sync::Arc;

/// A rustls client configuration trusting exactly the PEM certificates in `pem`.
pub fn cacert_config(pem: &[u8]) -> Result<rustls::ClientConfig, String> {
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile_certs(pem)?;
    if certs.is_empty() {
        return Err("no PEM certificate in the file".into());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(certs.iter().cloned());
    if added == 0 {
        return Err("no usable certificate in the file".into());
    }
    let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| e.to_string())?;
    let verifier = Arc::new(PinnedOrChain {
        inner,
        pinned: certs,
        provider: provider.clone(),
    });
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The certificates of a PEM bundle (other sections are skipped).
fn rustls_pemfile_certs(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not a PEM certificate bundle: {e}"))
}

#[derive(Debug)]
struct PinnedOrChain {
    inner: Arc<WebPkiServerVerifier>,
    pinned: Vec<CertificateDer<'static>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedOrChain {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let chained = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
        match chained {
            Ok(v) => Ok(v),
            // The chain's error (a CA used as end entity) is not the user's problem
            // then: the pinned check's reason is the one that applies.
            Err(_)
                if self
                    .pinned
                    .iter()
                    .any(|p| p.as_ref() == end_entity.as_ref()) =>
            {
                pinned_is_valid(end_entity, server_name, now)?;
                Ok(ServerCertVerified::assertion())
            }
            Err(e) => Err(e),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A pinned certificate still has to be current and name the host dialed.
fn pinned_is_valid(
    cert: &CertificateDer<'_>,
    name: &ServerName<'_>,
    now: UnixTime,
) -> Result<(), rustls::Error> {
    let bad = |e: CertificateError| rustls::Error::InvalidCertificate(e);
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|_| bad(CertificateError::BadEncoding))?;
    let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
    let validity = parsed.validity();
    if now < validity.not_before.timestamp() {
        return Err(bad(CertificateError::NotValidYet));
    }
    if now > validity.not_after.timestamp() {
        return Err(bad(CertificateError::Expired));
    }
    // A certificate restricted to other purposes is refused, as OpenSSL refuses it
    // ("unsuitable certificate purpose"): an extended key usage without serverAuth,
    // a key usage without digitalSignature.
    let purpose = |what: &str| {
        rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(
            std::sync::Arc::new(std::io::Error::other(format!(
                "the certificate is not for TLS servers ({what})"
            ))),
        )))
    };
    if let Ok(Some(eku)) = parsed.extended_key_usage()
        && !eku.value.server_auth
        && !eku.value.any
    {
        return Err(purpose("its extended key usage lacks serverAuth"));
    }
    if let Ok(Some(ku)) = parsed.key_usage()
        && !ku.value.digital_signature()
        && !ku.value.key_encipherment()
    {
        return Err(purpose("its key usage lacks digitalSignature"));
    }
    let ee =
        webpki::EndEntityCert::try_from(cert).map_err(|_| bad(CertificateError::BadEncoding))?;
    if ee.verify_is_valid_for_subject_name(name).is_ok() {
        return Ok(());
    }
    // No subjectAltName at all (`openssl req -x509 -subj /CN=host` without
    // `-addext subjectAltName=…`): OpenSSL, and so curl, falls back to the subject's
    // common name; so does a pinned certificate here.
    let has_san = matches!(parsed.subject_alternative_name(), Ok(Some(_)));
    let host = match name {
        ServerName::DnsName(d) => d.as_ref().to_ascii_lowercase(),
        ServerName::IpAddress(ip) => std::net::IpAddr::from(*ip).to_string(),
        _ => String::new(),
    };
    let cn_matches = parsed
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok())
        .any(|cn| cn.eq_ignore_ascii_case(&host));
    if !has_san && cn_matches {
        return Ok(());
    }
    Err(bad(CertificateError::NotValidForName))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_without_certificates_is_refused() {
        assert!(cacert_config(b"not pem").is_err());
        assert!(cacert_config(b"").is_err());
    }
}
