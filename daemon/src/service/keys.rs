//! The gateway's keys on the token, their certificates, and its OpenPGP
//! identity. Every change is followed by a reload of the keys the
//! pipeline uses (as SIGHUP does), so it takes effect at once.

use std::sync::Arc;

use clap::ValueEnum;
use sealgate_api::ops::Done;
use sealgate_api::ops::keys::{
    CertificateInfo, KeyCsr, KeyDelete, KeyExportCert, KeyGenerate, KeyImportCert, KeyInfo,
    KeySelfSign, KeyStoreView, KeysList, KeysReload, OpenpgpInfo, PgpExport, PgpInit, PgpRotate,
    SmimeCreate, Subject, TlsUpload, TlsUploaded, TokenStatus,
};
use sealgate_api::{Actor, ServiceError};
use sealgate_hsm::certs::{CertFormat, CertRequest};
use sealgate_hsm::{Hsm, KeyAlgorithm, KeyUsage};

use super::{Ctx, blocking};

/// A token error as the service reports it.
fn token_error(e: sealgate_hsm::Error) -> ServiceError {
    {
        use sealgate_hsm::Error as E;
        match &e {
            _ if e.is_temporary() => ServiceError::Unavailable {
                what: format!("the token ({e})"),
            },
            E::KeyNotFound(label) | E::NoCertificate(label) => ServiceError::NotFound {
                what: format!("{label}: {e}"),
            },
            E::KeyExists(_) | E::InvalidInput(_) | E::WrongKey { .. } | E::Certificate(_) => {
                ServiceError::invalid("label", e.to_string())
            }
            _ => ServiceError::failed(e.to_string()),
        }
    }
}

/// An OpenPGP engine error as the service reports it.
fn pgp_error(e: sealgate_openpgp::Error) -> ServiceError {
    {
        match e {
            sealgate_openpgp::Error::Hsm(h) => token_error(h),
            e if e.is_temporary() => ServiceError::Unavailable {
                what: format!("the token ({e})"),
            },
            e => ServiceError::failed(e.to_string()),
        }
    }
}

fn open(ctx: &Ctx) -> Result<Hsm, ServiceError> {
    Hsm::open(&ctx.live.bootstrap().hsm_settings()).map_err(token_error)
}

fn openpgp_dir(ctx: &Ctx) -> std::path::PathBuf {
    ctx.live.bootstrap().data_dir.join("openpgp")
}

/// A certificate chain (leaf first) summarised.
pub fn certificate_info(chain: &[Vec<u8>]) -> Option<CertificateInfo> {
    let leaf = chain.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf).ok()?;
    let ms = |t: x509_parser::time::ASN1Time| {
        u64::try_from(t.timestamp())
            .unwrap_or(0)
            .saturating_mul(1000)
    };
    let emails = sealgate_smime::Certificate::from_der(leaf)
        .map(|c| c.emails.clone())
        .unwrap_or_default();
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, leaf);
    Some(CertificateInfo {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        emails,
        not_before_ms: ms(cert.validity().not_before),
        not_after_ms: ms(cert.validity().not_after),
        fingerprint: digest.as_ref().iter().map(|b| format!("{b:02x}")).collect(),
        chain_length: chain.len(),
    })
}

fn key_info(hsm: &Hsm, info: &sealgate_hsm::KeyInfo) -> KeyInfo {
    let name = |v: Option<clap::builder::PossibleValue>| {
        v.map(|v| v.get_name().to_owned()).unwrap_or_default()
    };
    KeyInfo {
        label: info.label.clone(),
        algorithm: name(info.algorithm.to_possible_value()),
        usage: name(info.usage.to_possible_value()),
        certificate: hsm
            .certificate_chain(&info.label)
            .ok()
            .and_then(|chain| certificate_info(&chain)),
    }
}

fn openpgp_info(identity: &sealgate_openpgp::GatewayIdentity) -> Option<OpenpgpInfo> {
    let summary = sealgate_openpgp::summarize(identity.cert()).ok()?;
    Some(OpenpgpInfo {
        fingerprint: summary.fingerprint.to_ascii_lowercase(),
        user_ids: vec![summary.user_id],
        created_ms: summary.created_secs.saturating_mul(1000),
        subkeys: identity
            .cert()
            .keys()
            .subkeys()
            .map(|k| k.key().fingerprint().to_hex().to_ascii_lowercase())
            .collect(),
    })
}

fn request(subject: Subject, days: u32) -> CertRequest {
    CertRequest {
        common_name: subject.common_name,
        organization: subject.organization,
        emails: subject.emails,
        dns_names: subject.dns_names,
        days,
    }
}

fn parse<T: ValueEnum>(key: &str, text: &str) -> Result<T, ServiceError> {
    T::from_str(text, true).map_err(|_| {
        let names: Vec<String> = T::value_variants()
            .iter()
            .filter_map(|v| v.to_possible_value().map(|p| p.get_name().to_owned()))
            .collect();
        ServiceError::invalid(key, format!("`{text}`: one of {}", names.join(", ")))
    })
}

/// Loads the keys the pipeline uses again, after a change on the token.
async fn reload_keys(ctx: &Ctx) {
    ctx.keys.reload().await;
}

pub async fn list(ctx: Arc<Ctx>, _: Actor, _: KeysList) -> Result<KeyStoreView, ServiceError> {
    blocking(move || view(&ctx)).await
}

/// The key store as `keys.list` shows it.
fn view(ctx: &Ctx) -> Result<KeyStoreView, ServiceError> {
    let hsm = open(ctx)?;
    let status = hsm.status();
    let token = TokenStatus {
        module: status.module,
        label: status.token_label,
        present: status.token_present,
        logged_in: status.logged_in,
        error: status.error,
    };
    let keys = if token.error.is_none() {
        hsm.list()
            .map_err(token_error)?
            .iter()
            .map(|info| key_info(&hsm, info))
            .collect()
    } else {
        Vec::new()
    };
    let dir = openpgp_dir(ctx);
    let openpgp = if dir.join("gateway.toml").exists() && token.error.is_none() {
        sealgate_openpgp::GatewayIdentity::load(&hsm, &dir)
            .ok()
            .and_then(|id| openpgp_info(&id))
    } else {
        None
    };
    Ok(KeyStoreView {
        token,
        keys,
        openpgp,
    })
}

/// The decryption key's label (the signing key's is `crate::keys::SIGN_KEY_LABEL`).
pub const DECRYPT_KEY_LABEL: &str = "gateway-decrypt";

/// Generates `label` on the token unless it is there already.
fn ensure_key(hsm: &Hsm, label: &str, usage: KeyUsage) -> Result<(), ServiceError> {
    let present = hsm
        .list()
        .map_err(token_error)?
        .iter()
        .any(|k| k.label == label);
    if !present {
        hsm.generate(label, KeyAlgorithm::Rsa3072, usage)
            .map_err(token_error)?;
    }
    Ok(())
}

pub async fn smime_create(
    ctx: Arc<Ctx>,
    _: Actor,
    op: SmimeCreate,
) -> Result<KeyStoreView, ServiceError> {
    let address = op.address.trim().to_ascii_lowercase();
    let valid = address
        .split_once('@')
        .is_some_and(|(l, d)| !l.is_empty() && d.contains('.') && !d.contains('@'));
    if !valid {
        return Err(ServiceError::invalid(
            "address",
            format!("`{address}` is not a mail address"),
        ));
    }
    let common_name = op.common_name.trim().to_owned();
    if common_name.is_empty() {
        return Err(ServiceError::invalid(
            "common_name",
            "Name the gateway (its host name).",
        ));
    }
    let days = op.days.unwrap_or(825).clamp(1, 3650);
    let store = ctx.clone();
    blocking(move || {
        let hsm = open(&store)?;
        let sign = crate::keys::SIGN_KEY_LABEL;
        ensure_key(&hsm, sign, KeyUsage::Sign)?;
        ensure_key(&hsm, DECRYPT_KEY_LABEL, KeyUsage::Decrypt)?;
        // The CA: the gateway's name, no mail address (a lookup by
        // address must not find it).
        let ca = CertRequest {
            common_name: format!("{common_name} S/MIME CA"),
            organization: op.organization.clone(),
            emails: Vec::new(),
            dns_names: Vec::new(),
            days,
        };
        hsm.create_certificate(sign, &ca, None)
            .map_err(token_error)?;
        let leaf = CertRequest {
            common_name,
            organization: op.organization,
            emails: vec![address],
            dns_names: Vec::new(),
            days,
        };
        hsm.create_certificate(DECRYPT_KEY_LABEL, &leaf, Some(sign))
            .map_err(token_error)?;
        Ok(())
    })
    .await?;
    reload_keys(&ctx).await;
    blocking(move || view(&ctx)).await
}

pub async fn tls_upload(
    ctx: Arc<Ctx>,
    actor: Actor,
    op: TlsUpload,
) -> Result<TlsUploaded, ServiceError> {
    blocking(move || {
        let dir = ctx.live.bootstrap().data_dir.join("tls");
        let (chain, info) = check_tls(&op.certificate, &op.private_key)?;
        std::fs::create_dir_all(&dir)
            .map_err(|e| ServiceError::failed(format!("{}: {e}", dir.display())))?;
        // A new pair of names each time: the settings in force keep
        // pointing at the old files until the new version is applied.
        let stamp = crate::envelope::now_ms();
        let cert_path = dir.join(format!("uploaded-{stamp}-cert.pem"));
        let key_path = dir.join(format!("uploaded-{stamp}-key.pem"));
        write_private(&key_path, op.private_key.as_bytes())?;
        write_private(&cert_path, chain.as_bytes())?;
        if op.apply {
            let current = ctx.settings.current().map_err(super::storage)?;
            let (base, mut settings) = match current {
                Some(v) => (Some(v.meta.version), v.settings),
                None => (None, ctx.live.bootstrap().settings()),
            };
            settings.smtp.tls_certificate = Some(cert_path.clone());
            settings.smtp.tls_private_key = Some(key_path.clone());
            super::settings::commit(
                &ctx,
                &actor,
                base,
                settings,
                Some(format!("TLS certificate {}", info.subject)),
                None,
            )?;
        }
        Ok(TlsUploaded {
            certificate_path: cert_path.display().to_string(),
            private_key_path: key_path.display().to_string(),
            certificate: info,
        })
    })
    .await
}

/// Certificates as PEM, 64 characters a line.
fn pem_chain(ders: &[Vec<u8>]) -> String {
    use base64::Engine as _;
    let mut out = String::new();
    for der in ders {
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        out.push_str("-----BEGIN CERTIFICATE-----\n");
        for line in b64.as_bytes().chunks(64) {
            out.push_str(&String::from_utf8_lossy(line));
            out.push('\n');
        }
        out.push_str("-----END CERTIFICATE-----\n");
    }
    out
}

/// Writes a file readable by the gateway alone, durably.
fn write_private(path: &std::path::Path, bytes: &[u8]) -> Result<(), ServiceError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let failed = |e: std::io::Error| ServiceError::failed(format!("{}: {e}", path.display()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(failed)?;
    f.write_all(bytes).map_err(failed)?;
    f.sync_all().map_err(failed)
}

/// Checks an uploaded TLS chain and key as the listeners will use them;
/// answers the chain as clean PEM and the leaf summarised.
fn check_tls(chain_pem: &str, key_pem: &str) -> Result<(String, CertificateInfo), ServiceError> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| ServiceError::invalid("certificate", format!("not a PEM chain: {e}")))?;
    if chain.is_empty() {
        return Err(ServiceError::invalid(
            "certificate",
            "no certificate in it (PEM, `-----BEGIN CERTIFICATE-----`)",
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| ServiceError::invalid("private_key", format!("not a PEM private key: {e}")))?;
    let ders: Vec<Vec<u8>> = chain.iter().map(|c| c.as_ref().to_vec()).collect();
    let info = certificate_info(&ders).ok_or_else(|| {
        ServiceError::invalid("certificate", "the first certificate does not parse")
    })?;
    let now = crate::envelope::now_ms();
    if info.not_after_ms <= now || info.not_before_ms > now {
        return Err(ServiceError::invalid(
            "certificate",
            "the certificate is not valid now (see its validity dates)",
        ));
    }
    // The listeners' own check: the key must belong to the leaf.
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| ServiceError::invalid("private_key", format!("unusable key: {e}")))?;
    let certified = rustls::sign::CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|_| {
        ServiceError::invalid(
            "private_key",
            "this key does not belong to the first certificate of the chain",
        )
    })?;
    Ok((pem_chain(&ders), info))
}

pub async fn generate(ctx: Arc<Ctx>, _: Actor, op: KeyGenerate) -> Result<KeyInfo, ServiceError> {
    let algorithm: KeyAlgorithm = parse("algorithm", &op.algorithm)?;
    let usage: KeyUsage = parse("usage", &op.usage)?;
    let store = ctx.clone();
    let info = blocking(move || {
        let hsm = open(&store)?;
        let info = hsm
            .generate(&op.label, algorithm, usage)
            .map_err(token_error)?;
        Ok(key_info(&hsm, &info))
    })
    .await?;
    reload_keys(&ctx).await;
    Ok(info)
}

pub async fn self_sign(
    ctx: Arc<Ctx>,
    _: Actor,
    op: KeySelfSign,
) -> Result<CertificateInfo, ServiceError> {
    let store = ctx.clone();
    let info = blocking(move || {
        let hsm = open(&store)?;
        hsm.create_certificate(
            &op.label,
            &request(op.subject, op.days),
            op.issuer.as_deref(),
        )
        .map_err(token_error)?;
        certificate_info(&hsm.certificate_chain(&op.label).map_err(token_error)?)
            .ok_or_else(|| ServiceError::failed("the new certificate does not parse"))
    })
    .await?;
    reload_keys(&ctx).await;
    Ok(info)
}

pub async fn csr(ctx: Arc<Ctx>, _: Actor, op: KeyCsr) -> Result<String, ServiceError> {
    blocking(move || {
        open(&ctx)?
            .create_csr(&op.label, &request(op.subject, 1))
            .map_err(token_error)
    })
    .await
}

pub async fn import_cert(
    ctx: Arc<Ctx>,
    _: Actor,
    op: KeyImportCert,
) -> Result<CertificateInfo, ServiceError> {
    let store = ctx.clone();
    let info = blocking(move || {
        let hsm = open(&store)?;
        let bytes = if op.certificate.contains("-----BEGIN") {
            op.certificate.into_bytes()
        } else {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD
                .decode(op.certificate.trim())
                .map_err(|_| ServiceError::invalid("certificate", "neither PEM nor base64 DER"))?
        };
        hsm.import_certificate(&op.label, &bytes)
            .map_err(token_error)?;
        certificate_info(&hsm.certificate_chain(&op.label).map_err(token_error)?)
            .ok_or_else(|| ServiceError::failed("the imported certificate does not parse"))
    })
    .await?;
    reload_keys(&ctx).await;
    Ok(info)
}

pub async fn export_cert(
    ctx: Arc<Ctx>,
    _: Actor,
    op: KeyExportCert,
) -> Result<String, ServiceError> {
    blocking(move || {
        let hsm = open(&ctx)?;
        if op.der {
            use base64::Engine as _;
            let der = hsm
                .export_certificate(&op.label, CertFormat::Der)
                .map_err(token_error)?;
            Ok(base64::engine::general_purpose::STANDARD.encode(der))
        } else {
            let pem = hsm
                .export_certificate(&op.label, CertFormat::Pem)
                .map_err(token_error)?;
            String::from_utf8(pem)
                .map_err(|_| ServiceError::failed("the certificate is not PEM text"))
        }
    })
    .await
}

pub async fn delete(ctx: Arc<Ctx>, _: Actor, op: KeyDelete) -> Result<Done, ServiceError> {
    let store = ctx.clone();
    let label = op.label.clone();
    blocking(move || open(&store)?.delete(&op.label).map_err(token_error)).await?;
    reload_keys(&ctx).await;
    Ok(Done {
        text: format!("deleted {label}"),
        ..Done::default()
    })
}

pub async fn pgp_init(ctx: Arc<Ctx>, _: Actor, op: PgpInit) -> Result<OpenpgpInfo, ServiceError> {
    let algorithm: sealgate_openpgp::GatewayAlgorithm =
        parse("algorithm", op.algorithm.as_deref().unwrap_or("rsa3072"))?;
    let store = ctx.clone();
    let info = blocking(move || {
        let hsm = open(&store)?;
        let id = sealgate_openpgp::GatewayIdentity::create(
            &hsm,
            &openpgp_dir(&store),
            &sealgate_openpgp::GatewaySpec {
                user_id: op.user_id,
                algorithm,
                label_prefix: "openpgp".to_owned(),
            },
        )
        .map_err(pgp_error)?;
        openpgp_info(&id).ok_or_else(|| ServiceError::failed("the new identity does not read back"))
    })
    .await?;
    reload_keys(&ctx).await;
    Ok(info)
}

pub async fn pgp_rotate(
    ctx: Arc<Ctx>,
    _: Actor,
    _: PgpRotate,
) -> Result<OpenpgpInfo, ServiceError> {
    let store = ctx.clone();
    let info = blocking(move || {
        let hsm = open(&store)?;
        let mut id = sealgate_openpgp::GatewayIdentity::load(&hsm, &openpgp_dir(&store))
            .map_err(pgp_error)?;
        id.rotate(&hsm).map_err(pgp_error)?;
        openpgp_info(&id).ok_or_else(|| ServiceError::failed("the identity does not read back"))
    })
    .await?;
    reload_keys(&ctx).await;
    Ok(info)
}

pub async fn pgp_export(ctx: Arc<Ctx>, _: Actor, _: PgpExport) -> Result<String, ServiceError> {
    blocking(move || {
        let hsm = open(&ctx)?;
        let id =
            sealgate_openpgp::GatewayIdentity::load(&hsm, &openpgp_dir(&ctx)).map_err(pgp_error)?;
        String::from_utf8(id.export_armored().map_err(pgp_error)?)
            .map_err(|_| ServiceError::failed("the certificate is not armored text"))
    })
    .await
}

pub async fn reload(ctx: Arc<Ctx>, _: Actor, _: KeysReload) -> Result<Done, ServiceError> {
    reload_keys(&ctx).await;
    let text = match &*ctx.keys.current() {
        crate::keys::KeyStore::Ready(_) => "gateway keys loaded".to_owned(),
        crate::keys::KeyStore::NotSetUp => "no gateway keys set up".to_owned(),
        crate::keys::KeyStore::Unavailable(why) => format!("key store unavailable: {why}"),
    };
    Ok(Done {
        text,
        ..Done::default()
    })
}
