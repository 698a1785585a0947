//! contd: `container.container@0.0.1` — OCI containers (zdb on light nodes).

use serde::{Deserialize, Serialize};
use zos_types::go::nullable;
use zos_types::{GoDuration, GoTime};

/// A bind mount into a container.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountInfo {
    #[serde(rename = "Source", default, deserialize_with = "nullable")]
    pub source: String,
    #[serde(rename = "Target", default, deserialize_with = "nullable")]
    pub target: String,
}

/// The network a container joins.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkInfo {
    #[serde(rename = "Namespace", default, deserialize_with = "nullable")]
    pub namespace: String,
}

/// A container's definition.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Container {
    #[serde(rename = "Name", default, deserialize_with = "nullable")]
    pub name: String,
    #[serde(rename = "RootFS", default, deserialize_with = "nullable")]
    pub root_fs: String,
    #[serde(rename = "Env", default, deserialize_with = "nullable")]
    pub env: Vec<String>,
    #[serde(rename = "WorkingDir", default, deserialize_with = "nullable")]
    pub working_dir: String,
    #[serde(rename = "Network", default)]
    pub network: NetworkInfo,
    #[serde(rename = "Mounts", default, deserialize_with = "nullable")]
    pub mounts: Vec<MountInfo>,
    #[serde(rename = "Entrypoint", default, deserialize_with = "nullable")]
    pub entrypoint: String,
    #[serde(rename = "Interactive", default)]
    pub interactive: bool,
    #[serde(rename = "CPU", default)]
    pub cpu: u64,
    #[serde(rename = "Memory", default)]
    pub memory: u64,
    #[serde(rename = "Elevated", default)]
    pub elevated: bool,
    #[serde(rename = "CreatedAt", default)]
    pub created_at: GoTime,
    #[serde(rename = "RootFsPropagation", default, deserialize_with = "nullable")]
    pub root_fs_propagation: String,
    #[serde(rename = "ShutdownTimeout", default)]
    pub shutdown_timeout: GoDuration,
}

crate::contract! {
    /// OCI containers, grouped in namespaces.
    object ContainerModule, ContainerModuleClient, ContainerModuleContract = "container", "container", "0.0.1" {
        /// Start a container; returns its id.
        fn run = "Run" (ns: String, container: Container) -> String;
        /// Run a command in a running container, waiting at most `timeout`.
        fn exec = "Exec" (ns: String, id: String, timeout: GoDuration) variadic(args: String);
        /// Container namespaces.
        fn list_ns = "ListNS" () -> Vec<String>;
        /// Container ids of a namespace.
        fn list = "List" (ns: String) -> Vec<String>;
        /// A container's definition.
        fn inspect = "Inspect" (ns: String, id: String) -> Container;
        /// Ask a container to stop, then delete it.
        fn signal_delete = "SignalDelete" (ns: String, id: String);
        /// Kill and delete a container.
        fn delete = "Delete" (ns: String, id: String);
        /// A container's recent output.
        fn logs = "Logs" (ns: String, id: String) -> String;
    }
}
