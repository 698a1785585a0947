//! Every daemon's bus contract, declared once.
//!
//! Each module declares one daemon's objects with [`contract!`]: the methods with their Go wire names, argument
//! and return types, and streams. From that one declaration the macro generates the trait a daemon implements,
//! the typed client other daemons use, the server dispatch, and the metadata the `zbus` CLI uses to call any
//! method with JSON arguments. No daemon or CLI writes a method name as a string.
//!
//! Wire types encode as Go's msgpack encodes the Go structs (field names as keys), so Go and Rust daemons can
//! share one bus. Where Go sends nil for an empty slice, map or string, the field is decoded with
//! [`zos_types::go::nullable`].
//!
//! | module | objects |
//! |---|---|
//! | `identityd` | [`identity::IdentityManager`] `manager@0.0.1`, [`identity::VersionMonitor`] `monitor@0.0.1` |
//! | `registrar` | [`registrar::Registrar`] `registrar@0.0.1` |
//! | `api-gateway` | [`registrar::RegistrarGateway`] `api-gateway@0.0.1` |
//! | `storage` | [`storage::Storage`] `storage@0.0.1` |
//! | `netlight` | [`network::NetworkerLight`] `netlight@0.0.1` |
//! | `node` | [`node::SystemMonitor`] `system@0.0.1`, [`node::HostMonitor`] `host@0.0.1`, [`node::PerformanceMonitor`] `performance-monitor@0.0.1` |
//! | `provision` | [`provision::Provision`] `provision@0.0.1`, [`provision::Statistics`] `statistics@0.0.1` |
//! | `flist` | [`flist::Flister`] `flist@0.0.1` |
//! | `container` | [`container::ContainerModule`] `container@0.0.1` |
//! | `vmd` | [`vm::VmModule`] `manager@0.0.1` |
//! | `zui` | [`zui::Zui`] `zui@0.0.1` |

pub mod common;
pub mod contract;

pub mod container;
pub mod flist;
pub mod identity;
pub mod network;
pub mod node;
pub mod provision;
pub mod registrar;
pub mod storage;
pub mod vm;
pub mod zui;

pub use zos_bus as bus;

#[doc(hidden)]
pub use serde_bytes as __serde_bytes;
#[doc(hidden)]
pub use serde_json as __serde_json;

use contract::ObjectContract;

/// Every declared object, for the CLI's `list`, `call` and `listen`.
pub fn contracts() -> Vec<ObjectContract> {
    vec![
        identity::IdentityManagerContract::describe(),
        identity::VersionMonitorContract::describe(),
        registrar::RegistrarContract::describe(),
        registrar::RegistrarGatewayContract::describe(),
        storage::StorageContract::describe(),
        network::NetworkerLightContract::describe(),
        node::SystemMonitorContract::describe(),
        node::HostMonitorContract::describe(),
        node::PerformanceMonitorContract::describe(),
        provision::ProvisionContract::describe(),
        provision::StatisticsContract::describe(),
        flist::FlisterContract::describe(),
        container::ContainerModuleContract::describe(),
        vm::VmModuleContract::describe(),
        zui::ZuiContract::describe(),
    ]
}

/// The contract of `module`'s object `name` (any version when `version` is `None`).
pub fn find_contract(module: &str, name: &str, version: Option<&str>) -> Option<ObjectContract> {
    contracts()
        .into_iter()
        .find(|c| c.module == module && c.name == name && version.is_none_or(|v| v == c.version))
}
