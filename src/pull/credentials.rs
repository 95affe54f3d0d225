//! The organisation's function certificate and key: loaded from PEM files or a PKCS#12 file,
//! checked (readable, key matches, validity), and handed to the STS client and the AMQP TLS
//! handshake. The key never reaches a log.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use base64::Engine;
use chrono::{DateTime, Utc};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::config::{self, StsConfig};

/// A certificate chain (leaf first) and its private key.
pub struct Credentials {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    /// Where they came from, for messages.
    pub origin: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("origin", &self.origin)
            .field("certificates", &self.chain.len())
            .field("key", &"<redacted>")
            .finish()
    }
}

/// What `check` reports about a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateInfo {
    pub subject: String,
    pub issuer: String,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
}

impl CertificateInfo {
    /// Whole days from `now` to expiry (negative once expired).
    pub fn days_left(&self, now: DateTime<Utc>) -> i64 {
        (self.not_after - now).num_days()
    }
}

impl Credentials {
    /// Loads the credentials `[sts]` names and checks that the key belongs to the certificate.
    pub fn load(sts: &StsConfig) -> Result<Arc<Credentials>> {
        let credentials = match (&sts.certificate, &sts.private_key, &sts.pkcs12) {
            (Some(certificate), Some(key), _) => Credentials::from_pem_files(certificate, key)?,
            (_, _, Some(pkcs12)) => {
                Credentials::from_pkcs12_file(pkcs12, &config::pkcs12_password(sts)?)?
            }
            _ => bail!("`[sts]` names no certificate"),
        };
        credentials.check_version()?;
        credentials.check_key_matches()?;
        Ok(Arc::new(credentials))
    }

    fn from_pem_files(certificate: &Path, key_path: &Path) -> Result<Credentials> {
        let certificate_pem = read(certificate, "certificate", "sts.certificate")?;
        let chain = CertificateDer::pem_slice_iter(&certificate_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| {
                anyhow::anyhow!(
                    "`{}` is not a PEM certificate: {error}",
                    certificate.display()
                )
            })?;
        if chain.is_empty() {
            bail!(
                "`{}` holds no certificate (expected -----BEGIN CERTIFICATE-----)",
                certificate.display()
            );
        }
        let key_pem = read_private(key_path, "private key", "sts.private_key")?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|error| {
            anyhow::anyhow!(
                "`{}` is not a PEM private key (PKCS#8, PKCS#1 or SEC1): {error}",
                key_path.display()
            )
        })?;
        Ok(Credentials {
            chain,
            key,
            origin: format!("{} and {}", certificate.display(), key_path.display()),
        })
    }

    fn from_pkcs12_file(path: &Path, password: &str) -> Result<Credentials> {
        let der = read_private(path, "PKCS#12 file", "sts.pkcs12")?;
        let store = p12_keystore::KeyStore::from_pkcs12(
            &der,
            password,
            p12_keystore::Pkcs12ImportPolicy::Strict,
        )
        .map_err(|error| {
            anyhow::anyhow!(
                "cannot open PKCS#12 file `{}` ({error}); check the password",
                path.display()
            )
        })?;
        let (_, key_chain) = store
            .private_key_chain()
            .with_context(|| format!("PKCS#12 file `{}` holds no private key", path.display()))?;
        let chain: Vec<CertificateDer<'static>> = key_chain
            .certs()
            .iter()
            .map(|certificate| CertificateDer::from(certificate.as_der().to_vec()))
            .collect();
        if chain.is_empty() {
            bail!("PKCS#12 file `{}` holds no certificate", path.display());
        }
        Ok(Credentials {
            chain,
            key: PrivateKeyDer::from(PrivatePkcs8KeyDer::from(key_chain.key().as_der().to_vec())),
            origin: path.display().to_string(),
        })
    }

    /// TLS needs X.509 version 3; an older certificate gets a plain explanation.
    fn check_version(&self) -> Result<()> {
        let (_, certificate) =
            x509_parser::parse_x509_certificate(self.leaf_der()).map_err(|error| {
                anyhow::anyhow!("cannot read the certificate in {}: {error}", self.origin)
            })?;
        let version = certificate.version().0 + 1;
        if version != 3 {
            bail!(
                "the certificate in {} is an X.509 version {version} certificate; TLS needs version 3, as every FOCES/OCES function certificate is: use the certificate KOMBIT's administration issued",
                self.origin
            );
        }
        Ok(())
    }

    fn check_key_matches(&self) -> Result<()> {
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        rustls::sign::CertifiedKey::from_der(self.chain.clone(), self.key.clone_key(), &provider)
            .map_err(|error| match error {
                rustls::Error::InconsistentKeys(_) => anyhow::anyhow!(
                    "the private key does not belong to the certificate in {}; use the key that was issued with it",
                    self.origin
                ),
                error => anyhow::anyhow!(
                    "the certificate and key in {} cannot be used: {error}",
                    self.origin
                ),
            })?;
        Ok(())
    }

    /// The leaf certificate's DER bytes.
    pub fn leaf_der(&self) -> &[u8] {
        self.chain[0].as_ref()
    }

    /// The leaf certificate as one line of base64 (the STS request's `UseKey`).
    pub fn leaf_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.leaf_der())
    }

    /// The chain as PEM text.
    pub fn chain_pem(&self) -> String {
        self.chain
            .iter()
            .map(|certificate| pem("CERTIFICATE", certificate.as_ref()))
            .collect()
    }

    /// The private key as PKCS#8 or its original PEM form.
    pub fn key_pem(&self) -> String {
        let label = match &self.key {
            PrivateKeyDer::Pkcs1(_) => "RSA PRIVATE KEY",
            PrivateKeyDer::Sec1(_) => "EC PRIVATE KEY",
            _ => "PRIVATE KEY",
        };
        pem(label, self.key.secret_der())
    }

    /// Subject, issuer and validity of the leaf certificate.
    pub fn info(&self) -> Result<CertificateInfo> {
        let (_, certificate) =
            x509_parser::parse_x509_certificate(self.leaf_der()).map_err(|error| {
                anyhow::anyhow!("cannot read the certificate in {}: {error}", self.origin)
            })?;
        let time = |t: x509_parser::time::ASN1Time| {
            DateTime::<Utc>::from_timestamp(t.timestamp(), 0).unwrap_or_default()
        };
        Ok(CertificateInfo {
            subject: certificate.subject().to_string(),
            issuer: certificate.issuer().to_string(),
            not_before: time(certificate.validity().not_before),
            not_after: time(certificate.validity().not_after),
        })
    }

    /// Fails when the leaf certificate is not valid at `now`.
    pub fn check_validity(&self, now: DateTime<Utc>) -> Result<CertificateInfo> {
        let info = self.info()?;
        if now > info.not_after {
            bail!(
                "the certificate in {} expired on {}; renew the function certificate (FOCES/OCES) and point [sts] at the new files",
                self.origin,
                info.not_after.format("%Y-%m-%d")
            );
        }
        if now < info.not_before {
            bail!(
                "the certificate in {} is not valid before {}",
                self.origin,
                info.not_before.format("%Y-%m-%d %H:%M UTC")
            );
        }
        Ok(info)
    }
}

fn read(path: &Path, what: &str, key: &str) -> Result<Vec<u8>> {
    crate::files::read_small(path)
        .with_context(|| format!("cannot read the {what} `{}` (`{key}`)", path.display()))
}

/// Reads a file holding the private key, refusing one that other users may read or change.
fn read_private(path: &Path, what: &str, key: &str) -> Result<Vec<u8>> {
    let (bytes, metadata) = crate::files::read_small_file(path)
        .with_context(|| format!("cannot read the {what} `{}` (`{key}`)", path.display()))?;
    crate::owner::check_private_key(path, &metadata, key)?;
    Ok(bytes)
}

fn pem(label: &str, der: &[u8]) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in encoded.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}
