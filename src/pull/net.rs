//! What went wrong on the way to a server (the STS or the broker), told apart by the error's
//! type, never by searching its text, so that each failure gets the hint that fits it.

use std::error::Error;

/// The kind of a connection failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// The host name does not resolve.
    Dns,
    /// Nothing accepts connections at the address (TCP connection refused).
    Refused,
    /// No answer in time.
    Timeout,
    /// The server's certificate is not trusted.
    Certificate,
    /// The server refused the TLS handshake (usually: it does not accept our certificate).
    HandshakeRefused,
    /// Anything else (reset, closed, protocol trouble).
    Other,
    /// A file the configuration names cannot be used; nothing was sent.
    Setting,
}

/// Classifies an error by walking its causes, including those wrapped inside `io::Error`.
pub fn classify(error: &(dyn Error + 'static)) -> Problem {
    let mut found = Problem::Other;
    visit(error, &mut |cause| {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => found = Problem::Refused,
                std::io::ErrorKind::TimedOut if found == Problem::Other => found = Problem::Timeout,
                _ => {}
            }
        }
        if let Some(tls) = cause.downcast_ref::<rustls::Error>() {
            match tls {
                rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented => {
                    found = Problem::Certificate
                }
                rustls::Error::AlertReceived(_) => found = Problem::HandshakeRefused,
                _ => {}
            }
        }
    });
    found
}

/// Calls `each` on `error` and every cause below it, looking inside `io::Error` wrappers too.
fn visit(error: &(dyn Error + 'static), each: &mut dyn FnMut(&(dyn Error + 'static))) {
    let mut next = Some(error);
    let mut depth = 0;
    while let Some(current) = next {
        each(current);
        if let Some(inner) = current
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            visit(inner, each);
        }
        depth += 1;
        next = if depth < 16 { current.source() } else { None };
    }
}

/// Looks a host up, to tell a name that does not resolve from other connection failures.
pub async fn resolves(host: &str, port: u16) -> bool {
    match tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tokio::net::lookup_host((host, port)),
    )
    .await
    {
        Ok(Ok(mut addresses)) => addresses.next().is_some(),
        _ => false,
    }
}

/// The host and port of a URL (`scheme://[user@]host[:port]/...`), with the scheme's default
/// port.
pub fn host_port(url: &str) -> Option<(String, u16)> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let default = match scheme {
        "https" => 443,
        "amqps" => 5671,
        "amqp" => 5672,
        _ => 443,
    };
    if let Some(bracketed) = authority.strip_prefix('[') {
        let (host, after) = bracketed.split_once(']')?;
        let port = after
            .strip_prefix(':')
            .map_or(Some(default), |p| p.parse().ok())?;
        return Some((host.to_owned(), port));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => Some((host.to_owned(), port.parse().ok()?)),
        None => Some((authority.to_owned(), default)),
    }
}

/// An HTTPS client that presents the function certificate (mutual TLS), goes only to the
/// address it is given (no redirects: a request carries the certificate's proof of
/// possession), waits at most `timeout` per request, and trusts the CAs in `ca_file` (named by
/// the configuration key `key`) besides the system's.
pub fn mutual_tls_client(
    credentials: &crate::pull::credentials::Credentials,
    timeout: std::time::Duration,
    ca_file: Option<(&std::path::Path, &str)>,
) -> anyhow::Result<reqwest::Client> {
    use anyhow::Context as _;
    let identity_pem = format!("{}{}", credentials.key_pem(), credentials.chain_pem());
    let identity = reqwest::Identity::from_pem(identity_pem.as_bytes())
        .context("the certificate and key cannot be used for TLS")?;
    let mut builder = reqwest::Client::builder()
        .identity(identity)
        .https_only(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .user_agent(concat!("beskedhent/", env!("CARGO_PKG_VERSION")));
    if let Some((path, key)) = ca_file {
        for certificate in trust_roots(path, key)? {
            builder = builder.add_root_certificate(certificate);
        }
    }
    builder.build().context("cannot set up the HTTPS client")
}

/// The trust roots in the PEM file `path`, which the configuration names under `key`: at
/// least one, each a certificate that can anchor a chain. Any other content is an error that
/// names the key and the file, before any connection is tried.
pub fn trust_roots(path: &std::path::Path, key: &str) -> anyhow::Result<Vec<reqwest::Certificate>> {
    use anyhow::Context as _;
    let pem = crate::files::read_small(path)
        .with_context(|| format!("cannot read `{key}` `{}`", path.display()))?;
    parse_trust_roots(&pem, path, key)
}

/// [`trust_roots`] of the PEM text `pem`, read from `path` already.
pub fn parse_trust_roots(
    pem: &[u8],
    path: &std::path::Path,
    key: &str,
) -> anyhow::Result<Vec<reqwest::Certificate>> {
    use anyhow::Context as _;
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject as _;
    let shown = path.display();
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| anyhow::anyhow!("`{key}` `{shown}` is not a PEM file: {error}"))?;
    if certificates.is_empty() {
        anyhow::bail!(
            "`{key}` `{shown}` holds no PEM certificate (`-----BEGIN CERTIFICATE-----`); give the CA that issued the server's certificate"
        );
    }
    certificates
        .iter()
        .enumerate()
        .map(|(index, der)| {
            rustls::RootCertStore::empty()
                .add(der.clone())
                .map_err(|error| {
                    anyhow::anyhow!(
                        "`{key}` `{shown}`: certificate {} of {} cannot be read ({error}); replace it with the CA's certificate in PEM",
                        index + 1,
                        certificates.len()
                    )
                })?;
            reqwest::Certificate::from_der(der).with_context(|| {
                format!("`{key}` `{shown}`: certificate {} cannot be read", index + 1)
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_and_port_come_from_the_url() {
        let cases = [
            ("amqps://host.dk:5671/BF", Some(("host.dk", 5671))),
            ("amqps://u:p@host.dk/BF", Some(("host.dk", 5671))),
            ("https://sts.dk/runtime/x", Some(("sts.dk", 443))),
            ("https://[::1]:8443/x", Some(("::1", 8443))),
            ("https://h:notaport/x", None),
            ("nonsense", None),
        ];
        for (url, expected) in cases {
            assert_eq!(
                host_port(url),
                expected.map(|(h, p)| (h.to_string(), p)),
                "{url}"
            );
        }
    }

    #[test]
    fn refused_connections_are_told_apart() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(classify(&refused), Problem::Refused);
        let wrapped = std::io::Error::other(refused);
        assert_eq!(classify(&wrapped), Problem::Refused);
        let tls = std::io::Error::other(rustls::Error::InvalidCertificate(
            rustls::CertificateError::UnknownIssuer,
        ));
        assert_eq!(classify(&tls), Problem::Certificate);
        assert_eq!(classify(&std::io::Error::other("x")), Problem::Other);
    }
}
