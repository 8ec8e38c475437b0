//! The control plane's keys: a CA, the apiserver's serving certificate for 127.0.0.1 signed by
//! it, and the service-account signing key (what makes the TokenRequest API work).

use std::{
    fs,
    path::{Path, PathBuf},
};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::{Error, Result};

/// Where each PEM file of [`write`] lives.
#[derive(Clone, Debug)]
pub(crate) struct Files {
    pub(crate) ca: PathBuf,
    pub(crate) serving_cert: PathBuf,
    pub(crate) serving_key: PathBuf,
    pub(crate) service_account_key: PathBuf,
    /// The apiserver verifies tokens with the public half, which it wants in a file of its own.
    pub(crate) service_account_public_key: PathBuf,
}

/// Generates fresh keys and certificates into `dir`.
pub(crate) fn write(dir: &Path) -> Result<Files> {
    let failed = |e: rcgen::Error| Error::Pki(e.to_string());
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(failed)?;
    ca.distinguished_name
        .push(DnType::CommonName, "testkit control plane CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate().map_err(failed)?;
    let ca_cert = ca.self_signed(&ca_key).map_err(failed)?;
    let issuer = Issuer::new(ca, ca_key);

    let mut serving = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .map_err(failed)?;
    serving
        .distinguished_name
        .push(DnType::CommonName, "kube-apiserver");
    serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let serving_key = KeyPair::generate().map_err(failed)?;
    let serving_cert = serving.signed_by(&serving_key, &issuer).map_err(failed)?;

    let service_account_key = KeyPair::generate().map_err(failed)?;

    let files = Files {
        ca: dir.join("ca.crt"),
        serving_cert: dir.join("apiserver.crt"),
        serving_key: dir.join("apiserver.key"),
        service_account_key: dir.join("service-account.key"),
        service_account_public_key: dir.join("service-account.pub"),
    };
    fs::create_dir_all(dir).map_err(|e| Error::Write(dir.to_owned(), e))?;
    for (path, pem) in [
        (&files.ca, ca_cert.pem()),
        (&files.serving_cert, serving_cert.pem()),
        (&files.serving_key, serving_key.serialize_pem()),
        (
            &files.service_account_key,
            service_account_key.serialize_pem(),
        ),
        (
            &files.service_account_public_key,
            service_account_key.public_key_pem(),
        ),
    ] {
        fs::write(path, pem).map_err(|e| Error::Write(path.clone(), e))?;
    }
    Ok(files)
}
