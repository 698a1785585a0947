//! What the node reports about itself, and how that becomes the registrar record: a registration for a new
//! node, or the node-owned fields to compare with the registrar's record.

use std::time::Duration;

use zos_api::storage::{DeviceType, StorageClient};
use zos_grid::{Interface, Location, Node, NodeInfo, NodeRegistration, Resources};

use crate::netif::InterfaceInfo;

/// Storage totals, when storaged could tell them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Storage {
    /// Bytes of SSD (`sru`) and HDD (`hru`) pools.
    Known { sru: u64, hru: u64 },
    /// storaged did not answer: register 0, keep what the registrar has on updates, ask again later.
    Unknown,
}

/// Everything the node reports, gathered at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Facts {
    pub cru: u64,
    pub mru: u64,
    pub storage: Storage,
    /// `None` while no geoip service answered.
    pub location: Option<Location>,
    pub interface: InterfaceInfo,
    pub secure_boot: bool,
    pub virtualized: bool,
    pub serial_number: String,
}

impl Facts {
    fn resources(&self, fallback: Option<&Resources>) -> Resources {
        let (sru, hru) = match (self.storage, fallback) {
            (Storage::Known { sru, hru }, _) => (sru, hru),
            (Storage::Unknown, Some(r)) => (r.sru, r.hru),
            (Storage::Unknown, None) => (0, 0),
        };
        Resources {
            hru,
            sru,
            cru: self.cru,
            mru: self.mru,
        }
    }

    fn interfaces(&self) -> Vec<Interface> {
        vec![self.interface.to_registrar()]
    }

    /// `POST /nodes` for a node not registered yet: unknown storage is 0, an unknown location empty.
    pub fn registration(&self, twin_id: u64, farm_id: u64) -> NodeRegistration {
        NodeRegistration {
            twin_id,
            farm_id,
            resources: self.resources(None),
            location: self.location.clone().unwrap_or_default(),
            interfaces: self.interfaces(),
            secure_boot: self.secure_boot,
            virtualized: self.virtualized,
            serial_number: self.serial_number.clone(),
        }
    }

    /// The node-owned fields as they should be, given the registrar's `current` record: what is unknown here
    /// (storage, location) keeps the registrar's value, and `virtualized` stays false once the registrar says
    /// false (Zero-OS's sticky rule: a farmer's correction of a misdetected node is kept).
    pub fn desired(&self, farm_id: u64, current: &Node) -> NodeInfo {
        NodeInfo {
            farm_id,
            location: self
                .location
                .clone()
                .unwrap_or_else(|| current.location.clone()),
            resources: self.resources(Some(&current.resources)),
            interfaces: self.interfaces(),
            secure_boot: self.secure_boot,
            virtualized: self.virtualized && current.virtualized,
            serial_number: self.serial_number.clone(),
        }
    }
}

/// Where storage totals come from.
#[derive(Clone, Debug)]
pub enum StorageSource {
    /// storaged is not enabled on this node: the totals are 0.
    Disabled,
    /// Ask storaged over the bus, each call bounded by the timeout.
    Storaged(StorageClient, Duration),
}

impl StorageSource {
    /// The totals, or `Unknown` (with why) when storaged does not answer.
    pub async fn totals(&self) -> (Storage, Option<String>) {
        match self {
            StorageSource::Disabled => (Storage::Known { sru: 0, hru: 0 }, None),
            StorageSource::Storaged(client, timeout) => {
                let client = client.with_timeout(*timeout);
                let (ssd, hdd) =
                    tokio::join!(client.total(DeviceType::Ssd), client.total(DeviceType::Hdd));
                match (ssd, hdd) {
                    (Ok(sru), Ok(hru)) => (Storage::Known { sru, hru }, None),
                    (Err(e), _) | (_, Err(e)) => (
                        Storage::Unknown,
                        Some(format!("storaged did not give the storage totals: {e}")),
                    ),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> Facts {
        Facts {
            cru: 4,
            mru: 8 << 30,
            storage: Storage::Unknown,
            location: None,
            interface: InterfaceInfo {
                name: "zos".into(),
                mac: "aa:bb:cc:dd:ee:ff".into(),
                ips: vec!["10.0.0.5".parse().unwrap()],
            },
            secure_boot: false,
            virtualized: true,
            serial_number: "SN".into(),
        }
    }

    #[test]
    fn unknowns_register_as_zero_and_never_overwrite_the_registrar() {
        let f = facts();
        let reg = f.registration(7, 3);
        assert_eq!((reg.twin_id, reg.farm_id), (7, 3));
        assert_eq!(
            reg.resources,
            Resources {
                hru: 0,
                sru: 0,
                cru: 4,
                mru: 8 << 30
            }
        );
        assert_eq!(reg.location, Location::default());
        assert_eq!(reg.interfaces[0].ips, vec!["10.0.0.5"]);

        let current = Node {
            node_id: 1,
            farm_id: 3,
            twin_id: 7,
            location: Location {
                country: "Belgium".into(),
                ..Default::default()
            },
            resources: Resources {
                hru: 5,
                sru: 6,
                cru: 1,
                mru: 1,
            },
            virtualized: true,
            ..Default::default()
        };
        let want = f.desired(3, &current);
        assert_eq!(want.location.country, "Belgium");
        assert_eq!((want.resources.sru, want.resources.hru), (6, 5));
        assert_eq!((want.resources.cru, want.resources.mru), (4, 8 << 30));
        assert!(want.virtualized);

        // Known values win; a registrar "not virtualized" sticks.
        let mut f = f;
        f.storage = Storage::Known { sru: 100, hru: 200 };
        f.location = Some(Location {
            country: "Egypt".into(),
            ..Default::default()
        });
        let mut current = current;
        current.virtualized = false;
        let want = f.desired(3, &current);
        assert_eq!((want.resources.sru, want.resources.hru), (100, 200));
        assert_eq!(want.location.country, "Egypt");
        assert!(!want.virtualized);
        // Only differing fields are patched.
        let patch = want.diff(&current.info()).unwrap();
        assert!(patch.virtualized.is_none() && patch.farm_id.is_none());
        assert!(patch.resources.is_some() && patch.location.is_some());
    }
}
