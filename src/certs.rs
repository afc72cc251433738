//! `certs`: a CA and a serving certificate for running without
//! cert-manager (local development, the demo, air-gapped clusters).

use std::path::Path;

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

/// PEM texts of a freshly generated CA and serving pair.
pub struct Generated {
    pub ca_cert: String,
    pub ca_key: String,
    pub cert: String,
    pub key: String,
}

/// Generates an ECDSA P-256 CA and a serving certificate for `dns_names`
/// (IP addresses are accepted too), valid for `days`.
pub fn generate(dns_names: &[String], days: u32) -> anyhow::Result<Generated> {
    let now = time_now();
    let not_after = now + std::time::Duration::from_secs(u64::from(days) * 86_400);
    let ca_key = KeyPair::generate().context("generating CA key")?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).context("CA parameters")?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "serverconfig-webhook CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params.not_before = now.into();
    ca_params.not_after = not_after.into();
    let ca_cert = ca_params.self_signed(&ca_key).context("signing CA")?;
    let issuer = rcgen::Issuer::new(ca_params, ca_key);

    let key = KeyPair::generate().context("generating serving key")?;
    let mut params =
        CertificateParams::new(dns_names.to_vec()).context("serving certificate names")?;
    params.distinguished_name.push(
        DnType::CommonName,
        dns_names.first().cloned().unwrap_or_default(),
    );
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.not_before = now.into();
    params.not_after = not_after.into();
    let cert = params
        .signed_by(&key, &issuer)
        .context("signing serving certificate")?;
    Ok(Generated {
        ca_cert: ca_cert.pem(),
        ca_key: issuer.key().serialize_pem(),
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

fn time_now() -> std::time::SystemTime {
    std::time::SystemTime::now() - std::time::Duration::from_secs(60)
}

/// Writes `ca.crt`, `ca.key`, `tls.crt`, `tls.key` and `ca-bundle.b64`
/// (the value for a webhook's `caBundle`) into `dir`; keys get mode 0600.
pub fn write_dir(generated: &Generated, dir: &Path) -> anyhow::Result<()> {
    use base64_engine::encode;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let files = [
        ("ca.crt", &generated.ca_cert, false),
        ("ca.key", &generated.ca_key, true),
        ("tls.crt", &generated.cert, false),
        ("tls.key", &generated.key, true),
    ];
    for (name, content, secret) in files {
        write_file(&dir.join(name), content.as_bytes(), secret)?;
    }
    write_file(
        &dir.join("ca-bundle.b64"),
        encode(generated.ca_cert.as_bytes()).as_bytes(),
        false,
    )
}

fn write_file(path: &Path, content: &[u8], secret: bool) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, content).with_context(|| format!("writing {}", tmp.display()))?;
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
    }
    #[cfg(not(unix))]
    let _ = secret;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

/// Standard base64, the encoding Kubernetes uses for `caBundle`.
mod base64_engine {
    pub fn encode(input: &[u8]) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(input)
    }
}
