//! Which browsers may talk to the API: same origin only.
//!
//! The API sends no CORS headers, so a page from another origin cannot read its
//! answers, but a browser still *sends* simple cross-site requests (a form POST,
//! a `text/plain` fetch) and acts on their side effects; on a node without a
//! token file that would let any web page submit jobs to `127.0.0.1:4611`. So
//! a request carrying an `Origin` header is served only when that origin is the
//! API's own (`scheme://Host`). And an API bound to loopback answers only to a
//! loopback `Host` (`localhost`, `127.0.0.1`, `[::1]`): a DNS-rebinding page at
//! `evil.example` resolving to 127.0.0.1 has a matching Origin and Host, but the
//! Host is not a loopback name. Clients that are not browsers (curl, the SDKs,
//! the CLI) send no `Origin` and a loopback `Host`, and are not affected.

use axum::http::{HeaderMap, header};
use std::net::IpAddr;

/// The origin policy of one API listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OriginPolicy {
    /// `https` when the API serves TLS.
    pub tls: bool,
    /// The API is bound to a loopback address: only loopback `Host` names.
    pub loopback: bool,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OriginError {
    /// No `Host` (HTTP/1.1 requires one).
    #[error("the request has no Host header")]
    NoHost,
    /// A loopback API asked by another name.
    #[error("this API is bound to loopback and answers to localhost, 127.0.0.1 or [::1] only")]
    Host,
    /// A browser request from another origin.
    #[error("cross-origin requests are refused: Origin {0} is not this API's origin")]
    Origin(String),
}

impl OriginPolicy {
    /// Checks a request's `Host` and `Origin` headers.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), OriginError> {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .ok_or(OriginError::NoHost)?;
        if self.loopback && !is_loopback_host(host) {
            return Err(OriginError::Host);
        }
        if let Some(origin) = headers.get(header::ORIGIN) {
            let origin = origin.to_str().unwrap_or("(not text)");
            let scheme = if self.tls { "https" } else { "http" };
            let ours = origin
                .strip_prefix(scheme)
                .and_then(|rest| rest.strip_prefix("://"))
                .is_some_and(|authority| authority.eq_ignore_ascii_case(host));
            if !ours {
                // Bounded: a header is at most a few KiB, but logs and answers need less.
                return Err(OriginError::Origin(origin.chars().take(200).collect()));
            }
        }
        Ok(())
    }
}

/// `localhost`, a loopback IP literal, with or without a port.
fn is_loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        // [v6]:port or [v6]
        match rest.split_once(']') {
            Some((v6, tail)) if tail.is_empty() || tail.starts_with(':') => v6,
            _ => return false,
        }
    } else {
        host.rsplit_once(':').map_or(host, |(name, _port)| name)
    };
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(host: Option<&str>, origin: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(v) = host {
            h.insert(header::HOST, HeaderValue::from_str(v).expect("header text"));
        }
        if let Some(v) = origin {
            h.insert(
                header::ORIGIN,
                HeaderValue::from_str(v).expect("header text"),
            );
        }
        h
    }

    #[test]
    fn loopback_api_takes_loopback_names_and_its_own_origin_only() {
        let p = OriginPolicy {
            tls: false,
            loopback: true,
        };
        for host in [
            "127.0.0.1:4611",
            "localhost:4611",
            "LOCALHOST",
            "[::1]:4611",
            "127.0.0.2:80",
        ] {
            assert_eq!(p.check(&headers(Some(host), None)), Ok(()), "{host}");
        }
        for host in ["evil.example:4611", "10.0.0.1:4611", "[::2]:4611", "[::1"] {
            assert_eq!(
                p.check(&headers(Some(host), None)),
                Err(OriginError::Host),
                "{host}"
            );
        }
        assert_eq!(p.check(&headers(None, None)), Err(OriginError::NoHost));
        let host = Some("127.0.0.1:4611");
        assert_eq!(
            p.check(&headers(host, Some("http://127.0.0.1:4611"))),
            Ok(())
        );
        for origin in [
            "http://evil.example",
            "http://127.0.0.1:4612",
            "https://127.0.0.1:4611",
            "null",
            "http://127.0.0.1:4611.evil.example",
        ] {
            assert!(
                matches!(
                    p.check(&headers(host, Some(origin))),
                    Err(OriginError::Origin(_))
                ),
                "{origin}"
            );
        }
    }

    #[test]
    fn a_public_tls_api_takes_any_host_but_only_its_own_https_origin() {
        let p = OriginPolicy {
            tls: true,
            loopback: false,
        };
        let host = Some("node.example:4611");
        assert_eq!(p.check(&headers(host, None)), Ok(()));
        assert_eq!(
            p.check(&headers(host, Some("https://node.example:4611"))),
            Ok(())
        );
        assert!(
            p.check(&headers(host, Some("http://node.example:4611")))
                .is_err()
        );
        assert!(
            p.check(&headers(host, Some("https://other.example")))
                .is_err()
        );
    }
}
