//! The bus object: `storage.storage@0.0.1` served from a [`StorageModule`]. Every call runs on the blocking
//! pool (the module drives external tools and the filesystem), so calls run concurrently.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use zos_api::bus::{CallError, StreamSink};
use zos_api::storage::{
    BrokenDevice, BrokenPool, Device, DeviceType, PoolMetrics, PoolsStats, Storage, VDisk, Volume,
};
use zos_types::Unit;

use crate::error::Error;
use crate::module::StorageModule;

/// How often the Monitor stream reports (as Zero-OS: 5 s).
pub const MONITOR_INTERVAL: Duration = Duration::from_secs(5);

/// The bus object.
pub struct Service {
    module: Arc<StorageModule>,
    monitor_interval: Duration,
}

impl Service {
    /// Serve `module`.
    pub fn new(module: Arc<StorageModule>) -> Service {
        Service {
            module,
            monitor_interval: MONITOR_INTERVAL,
        }
    }

    /// Report on the Monitor stream every `interval`.
    pub fn with_monitor_interval(mut self, interval: Duration) -> Service {
        self.monitor_interval = interval;
        self
    }

    async fn run<T: Send + 'static>(
        &self,
        call: &'static str,
        f: impl FnOnce(&StorageModule) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, CallError> {
        let module = self.module.clone();
        tracing::debug!(call, "bus call");
        match tokio::task::spawn_blocking(move || f(&module)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                let kind = e.kind();
                let err = CallError::from(e);
                if kind == "internal" {
                    tracing::error!(call, error = %err.message, "storage call failed");
                } else {
                    tracing::debug!(call, error = %err.message, "storage call refused");
                }
                Err(CallError::with_kind(kind, err.message))
            }
            Err(e) => Err(CallError::with_kind("internal", format!("{call}: {e}"))),
        }
    }
}

impl Storage for Service {
    async fn cache(&self) -> Result<Volume, CallError> {
        self.run("Cache", |m| m.cache()).await
    }
    async fn total(&self, kind: DeviceType) -> Result<u64, CallError> {
        self.run("Total", move |m| Ok(m.total(kind))).await
    }
    async fn broken_pools(&self) -> Result<Vec<BrokenPool>, CallError> {
        Ok(self.module.broken_pools())
    }
    async fn broken_devices(&self) -> Result<Vec<BrokenDevice>, CallError> {
        Ok(self.module.broken_devices())
    }
    async fn volume_create(&self, name: String, size: Unit) -> Result<Volume, CallError> {
        self.run("VolumeCreate", move |m| m.volume_create(&name, size))
            .await
    }
    async fn volume_update(&self, name: String, size: Unit) -> Result<(), CallError> {
        self.run("VolumeUpdate", move |m| m.volume_update(&name, size))
            .await
    }
    async fn volume_lookup(&self, name: String) -> Result<Volume, CallError> {
        self.run("VolumeLookup", move |m| m.volume_lookup(&name))
            .await
    }
    async fn volume_exists(&self, name: String) -> Result<bool, CallError> {
        self.run("VolumeExists", move |m| m.volume_exists(&name))
            .await
    }
    async fn volume_delete(&self, name: String) -> Result<(), CallError> {
        self.run("VolumeDelete", move |m| m.volume_delete(&name))
            .await
    }
    async fn volume_list(&self) -> Result<Vec<Volume>, CallError> {
        self.run("VolumeList", |m| m.volume_list()).await
    }
    async fn disk_create(&self, name: String, size: Unit) -> Result<VDisk, CallError> {
        self.run("DiskCreate", move |m| m.disk_create(&name, size))
            .await
    }
    async fn disk_resize(&self, name: String, size: Unit) -> Result<VDisk, CallError> {
        self.run("DiskResize", move |m| m.disk_resize(&name, size))
            .await
    }
    async fn disk_write(&self, name: String, image: String) -> Result<(), CallError> {
        self.run("DiskWrite", move |m| {
            m.disk_write(&name, &PathBuf::from(image))
        })
        .await
    }
    async fn disk_format(&self, name: String) -> Result<(), CallError> {
        self.run("DiskFormat", move |m| m.disk_format(&name)).await
    }
    async fn disk_lookup(&self, name: String) -> Result<VDisk, CallError> {
        self.run("DiskLookup", move |m| m.disk_lookup(&name)).await
    }
    async fn disk_exists(&self, name: String) -> Result<bool, CallError> {
        self.run("DiskExists", move |m| m.disk_exists(&name)).await
    }
    async fn disk_delete(&self, name: String) -> Result<(), CallError> {
        self.run("DiskDelete", move |m| m.disk_delete(&name)).await
    }
    async fn disk_list(&self) -> Result<Vec<VDisk>, CallError> {
        self.run("DiskList", |m| m.disk_list()).await
    }
    async fn devices(&self) -> Result<Vec<Device>, CallError> {
        self.run("Devices", |m| m.devices()).await
    }
    async fn device_allocate(&self, min: Unit) -> Result<Device, CallError> {
        self.run("DeviceAllocate", move |m| m.device_allocate(min))
            .await
    }
    async fn device_lookup(&self, name: String) -> Result<Device, CallError> {
        self.run("DeviceLookup", move |m| m.device_lookup(&name))
            .await
    }
    async fn metrics(&self) -> Result<Vec<PoolMetrics>, CallError> {
        self.run("Metrics", |m| m.metrics()).await
    }

    async fn monitor(&self, sink: StreamSink<PoolsStats>) {
        loop {
            let module = self.module.clone();
            if let Ok(stats) = tokio::task::spawn_blocking(move || module.pools_stats()).await {
                sink.send(&stats).await;
            }
            tokio::time::sleep(self.monitor_interval).await;
        }
    }
}
