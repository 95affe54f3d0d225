//! Where the PostgreSQL mirror connects: `[mirror] postgresql`, a libpq connection string (a
//! `postgresql://` URL or `key=value` words). beskedhent reads `sslmode` and `sslrootcert`
//! itself: TLS with a verified certificate and host name (`verify-full`) unless the string
//! says `sslmode=disable`; the modes that would accept any certificate are refused. The
//! password never sits in the string: it comes from `password_file` or `password_env`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// A parsed connection string, ready to connect.
#[derive(Clone)]
pub struct Target {
    config: postgres::Config,
    tls: Option<Arc<rustls::ClientConfig>>,
    /// Where it connects, without secrets, for messages: `user@host:port/dbname`.
    pub shown: String,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Target({})", self.shown)
    }
}

/// The words beskedhent handles itself, taken out of the string; the rest as given.
struct Split {
    rest: String,
    sslmode: Option<String>,
    sslrootcert: Option<String>,
}

fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == b'%'
            && let Some(byte) = text
                .get(at + 1..at + 3)
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
        {
            out.push(byte);
            at += 3;
            continue;
        }
        out.push(bytes[at]);
        at += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn split(text: &str) -> Result<Split> {
    let mut split = Split {
        rest: String::new(),
        sslmode: None,
        sslrootcert: None,
    };
    let refuse_password = || {
        anyhow::anyhow!(
            "`mirror.postgresql` holds a password; keep it out of the configuration: put it in a file named by `mirror.password_file` (mode 0600) or in the environment variable named by `mirror.password_env`"
        )
    };
    if let Some(after_scheme) = text
        .strip_prefix("postgresql://")
        .or_else(|| text.strip_prefix("postgres://"))
    {
        let (head, query) = after_scheme.split_once('?').unwrap_or((after_scheme, ""));
        let authority = head.split('/').next().unwrap_or("");
        if let Some((user_info, _)) = authority.rsplit_once('@')
            && user_info.contains(':')
        {
            return Err(refuse_password());
        }
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "sslmode" => split.sslmode = Some(percent_decoded(value)),
                "sslrootcert" => split.sslrootcert = Some(percent_decoded(value)),
                "password" => return Err(refuse_password()),
                _ => kept.push(pair),
            }
        }
        split.rest = format!("postgresql://{head}");
        if !kept.is_empty() {
            split.rest = format!("{}?{}", split.rest, kept.join("&"));
        }
    } else {
        let mut kept = Vec::new();
        for word in text.split_whitespace() {
            match word.split_once('=') {
                Some(("sslmode", value)) => split.sslmode = Some(value.to_owned()),
                Some(("sslrootcert", value)) => split.sslrootcert = Some(value.to_owned()),
                Some(("password", _)) => return Err(refuse_password()),
                _ => kept.push(word),
            }
        }
        split.rest = kept.join(" ");
    }
    Ok(split)
}

/// Parses `text` (the value of `mirror.postgresql`) with `password`; relative paths are from
/// `base`. Connection problems come later; this says what is wrong with the string.
pub fn parse(text: &str, base: &std::path::Path) -> Result<Target> {
    let split = split(text.trim())?;
    let mut config: postgres::Config = split.rest.parse().map_err(|error| {
        anyhow::anyhow!(
            "`mirror.postgresql` is not a libpq connection string ({error}); write it as postgresql://USER@HOST:5432/DATABASE?sslmode=verify-full"
        )
    })?;
    if config.get_password().is_some() {
        bail!(
            "`mirror.postgresql` holds a password; keep it out of the configuration: put it in a file named by `mirror.password_file` (mode 0600) or in the environment variable named by `mirror.password_env`"
        );
    }
    if config.get_hosts().is_empty() {
        bail!(
            "`mirror.postgresql` names no host; write it as postgresql://USER@HOST:5432/DATABASE"
        );
    }
    if config.get_user().is_none() {
        bail!(
            "`mirror.postgresql` names no user; write it as postgresql://USER@HOST:5432/DATABASE"
        );
    }
    let tls = match split.sslmode.as_deref().unwrap_or("verify-full") {
        "disable" => None,
        "verify-full" => Some(Arc::new(client_tls(
            split.sslrootcert.map(|path| base.join(path)).as_deref(),
        )?)),
        other @ ("require" | "prefer" | "allow" | "verify-ca") => bail!(
            "`mirror.postgresql` asks for sslmode={other}, which would accept a server whose certificate or name is not verified; use sslmode=verify-full (the default; with sslrootcert=FILE for a private CA), or sslmode=disable for a cluster on this machine"
        ),
        other => bail!(
            "`mirror.postgresql` has sslmode={}, which is not a mode; use sslmode=verify-full (the default) or sslmode=disable",
            crate::mask::mask_cpr_among_letters(&crate::mask::cap(other, 40))
        ),
    };
    config.ssl_mode(if tls.is_some() {
        postgres::config::SslMode::Require
    } else {
        postgres::config::SslMode::Disable
    });
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(10));
    }
    if config.get_application_name().is_none() {
        config.application_name("beskedhent");
    }
    let shown = shown(&config);
    Ok(Target { config, tls, shown })
}

fn shown(config: &postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(postgres::config::Host::Tcp(host)) => host.clone(),
        Some(postgres::config::Host::Unix(path)) => path.display().to_string(),
        None => String::new(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "{}@{host}:{port}/{}",
        config.get_user().unwrap_or(""),
        config
            .get_dbname()
            .or(config.get_user())
            .unwrap_or_default()
    )
}

/// TLS that verifies the server's certificate and name: against the CAs in `root` (PEM), or
/// the system's trust roots.
fn client_tls(root: Option<&std::path::Path>) -> Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    match root {
        Some(path) => {
            use rustls_pki_types::CertificateDer;
            use rustls_pki_types::pem::PemObject as _;
            let pem = crate::files::read_small(path).with_context(|| {
                format!(
                    "cannot read `sslrootcert` `{}` of `mirror.postgresql`",
                    path.display()
                )
            })?;
            for der in CertificateDer::pem_slice_iter(&pem) {
                let der = der.map_err(|error| {
                    anyhow::anyhow!(
                        "`sslrootcert` `{}` of `mirror.postgresql` is not a PEM file: {error}",
                        path.display()
                    )
                })?;
                roots.add(der).map_err(|error| {
                    anyhow::anyhow!(
                        "`sslrootcert` `{}` of `mirror.postgresql` holds a certificate that cannot be read ({error}); give the CA's certificate in PEM",
                        path.display()
                    )
                })?;
            }
            if roots.is_empty() {
                bail!(
                    "`sslrootcert` `{}` of `mirror.postgresql` holds no PEM certificate; give the CA that issued the server's certificate",
                    path.display()
                );
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for der in found.certs {
                let _ = roots.add(der);
            }
            if roots.is_empty() {
                bail!(
                    "no trust roots found on this system to verify the PostgreSQL server; install ca-certificates, or give sslrootcert=FILE in `mirror.postgresql`"
                );
            }
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

impl Target {
    /// The connection settings, without a password.
    pub fn settings(&self) -> &postgres::Config {
        &self.config
    }

    /// TLS settings; none for `sslmode=disable`.
    pub fn tls(&self) -> Option<&Arc<rustls::ClientConfig>> {
        self.tls.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_is_verified_unless_disabled_and_passwords_stay_out() {
        let base = std::path::Path::new("/");
        let target = parse("postgresql://bh@db.example.dk:5433/breve", base).unwrap();
        assert!(target.tls.is_some());
        assert_eq!(target.shown, "bh@db.example.dk:5433/breve");
        let plain = parse(
            "postgresql://bh@127.0.0.1/breve?sslmode=disable&connect_timeout=3",
            base,
        )
        .unwrap();
        assert!(plain.tls.is_none());
        let words = parse("host=/run/pg user=bh dbname=x sslmode=disable", base).unwrap();
        assert!(words.tls.is_none());
        for refused in [
            "postgresql://bh:pw@db/breve",
            "postgresql://bh@db/breve?password=pw",
            "host=db user=bh password=pw",
        ] {
            let error = parse(refused, base).unwrap_err().to_string();
            assert!(error.contains("password_file"), "{error}");
            assert!(!error.contains("pw@") && !error.contains("=pw"), "{error}");
        }
        for mode in ["require", "prefer", "allow", "verify-ca"] {
            let error = parse(&format!("postgresql://bh@db/x?sslmode={mode}"), base)
                .unwrap_err()
                .to_string();
            assert!(error.contains("not verified"), "{error}");
        }
        assert!(parse("postgresql://db/x", base).is_err());
    }
}
