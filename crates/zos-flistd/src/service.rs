//! The bus object `flist.flist@0.0.1` over the [`FlistModule`].

use std::path::Path;
use std::sync::Arc;

use zos_api::bus::CallError;
use zos_api::flist::{Flister, MountOptions};
use zos_types::Unit;

use crate::error::Error;
use crate::module::FlistModule;

/// The `Flister` implementation.
#[derive(Clone)]
pub struct Service {
    module: Arc<FlistModule>,
}

impl Service {
    /// Serve `module`.
    pub fn new(module: Arc<FlistModule>) -> Service {
        Service { module }
    }
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

/// Log a failed call (operator-facing failures at error, the caller's mistakes at info) and turn it into a
/// bus error.
fn fail(method: &str, what: &str, e: Error) -> CallError {
    match e.kind() {
        "internal" | "unavailable" => tracing::error!(method, what, "{}", e.chain()),
        _ => tracing::info!(method, what, "refused: {}", e.chain()),
    }
    e.to_call_error()
}

impl Flister for Service {
    async fn mount(
        &self,
        name: String,
        url: String,
        options: MountOptions,
    ) -> Result<String, CallError> {
        tracing::debug!(name, url, ?options, "Mount");
        self.module
            .mount(&name, &url, &options)
            .await
            .map(|p| path(&p))
            .map_err(|e| fail("Mount", &name, e))
    }

    async fn update_mount_size(&self, name: String, limit: Unit) -> Result<String, CallError> {
        tracing::debug!(name, limit, "UpdateMountSize");
        self.module
            .update_mount_size(&name, limit)
            .await
            .map(|p| path(&p))
            .map_err(|e| fail("UpdateMountSize", &name, e))
    }

    async fn unmount(&self, name: String) -> Result<(), CallError> {
        tracing::debug!(name, "Unmount");
        self.module
            .unmount(&name)
            .await
            .map_err(|e| fail("Unmount", &name, e))
    }

    async fn hash_from_root_path(&self, name: String) -> Result<String, CallError> {
        tracing::debug!(name, "HashFromRootPath");
        self.module
            .hash_from_root_path(&name)
            .await
            .map_err(|e| fail("HashFromRootPath", &name, e))
    }

    async fn flist_hash(&self, url: String) -> Result<String, CallError> {
        tracing::debug!(url, "FlistHash");
        self.module
            .flist_hash(&url)
            .await
            .map_err(|e| fail("FlistHash", &url, e))
    }

    async fn exists(&self, name: String) -> Result<bool, CallError> {
        tracing::debug!(name, "Exists");
        self.module
            .exists(&name)
            .await
            .map_err(|e| fail("Exists", &name, e))
    }
}
