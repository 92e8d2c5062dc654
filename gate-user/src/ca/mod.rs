//! The local certificate authority: CA lifecycle and per-host leaf certificates.
//! (Interim: the CA is being built on the `proxy` branch; this stub only keeps the API.)
pub mod trust;

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[error("CA: {0}")]
pub struct CaError(String);

#[derive(Debug)]
pub struct Ca {
    cert_path: PathBuf,
}

impl Ca {
    pub fn load_or_init(dir: &Path) -> Result<Self, CaError> {
        Ok(Self {
            cert_path: dir.join("ca.pem"),
        })
    }
    pub fn cert_path(&self) -> &Path {
        &self.cert_path
    }
}

pub fn write_child_bundle(_ca: &Ca, dir: &Path) -> Result<PathBuf, CaError> {
    Ok(dir.join("bundle.pem"))
}

pub fn child_env(_bundle: &Path, _ca_cert: &Path) -> Vec<(String, String)> {
    Vec::new()
}
