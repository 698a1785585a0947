//! The interface the node registers (the `zos` bridge): its name, MAC and addresses, read over rtnetlink, and a
//! watcher that notices when its addresses change (netlink link/address notifications, plus a slow poll in case
//! notifications are lost or cannot be subscribed to).

use std::net::IpAddr;
use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};
use rtnetlink::packet_route::address::{AddressAttribute, AddressScope};
use rtnetlink::packet_route::link::LinkAttribute;
use rtnetlink::{Handle, MulticastGroup};
use tokio::sync::watch;

use crate::error::NetError;

/// An interface as the registrar records it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InterfaceInfo {
    pub name: String,
    /// `aa:bb:cc:dd:ee:ff` (empty for interfaces without a hardware address).
    pub mac: String,
    /// Global and site addresses without prefix length, IPv4 first, sorted. Link-local and host-scope
    /// addresses are left out: nobody off the segment can reach them.
    pub ips: Vec<IpAddr>,
}

impl InterfaceInfo {
    /// The registrar's form.
    pub fn to_registrar(&self) -> zos_grid::Interface {
        zos_grid::Interface {
            name: self.name.clone(),
            mac: self.mac.clone(),
            ips: self.ips.iter().map(IpAddr::to_string).collect(),
        }
    }
}

/// Reads interfaces over one rtnetlink connection (in the network namespace of the thread that made it).
#[derive(Clone, Debug)]
pub struct Netif {
    handle: Handle,
}

impl Netif {
    /// Open a netlink connection; its task runs on the current tokio runtime.
    pub fn new() -> Result<Netif, NetError> {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(NetError::Socket)?;
        tokio::spawn(conn);
        Ok(Netif { handle })
    }

    /// Name, MAC and addresses of interface `name`.
    pub async fn read(&self, name: &str) -> Result<InterfaceInfo, NetError> {
        let netlink = |source| NetError::Netlink {
            name: name.to_string(),
            source,
        };
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute();
        let link = match links.try_next().await {
            Ok(Some(link)) => link,
            Ok(None) => {
                return Err(NetError::NoSuchInterface {
                    name: name.to_string(),
                });
            }
            Err(rtnetlink::Error::NetlinkError(e))
                if e.raw_code() == -libc_enodev() || e.raw_code() == libc_enodev() =>
            {
                return Err(NetError::NoSuchInterface {
                    name: name.to_string(),
                });
            }
            Err(e) => return Err(netlink(e)),
        };
        let mac = link
            .attributes
            .iter()
            .find_map(|a| match a {
                LinkAttribute::Address(bytes) => Some(format_mac(bytes)),
                _ => None,
            })
            .unwrap_or_default();
        let mut addresses = self
            .handle
            .address()
            .get()
            .set_link_index_filter(link.header.index)
            .execute();
        let mut ips = Vec::new();
        while let Some(msg) = addresses.try_next().await.map_err(netlink)? {
            // The kernel may ignore the index filter on old versions: check it.
            if msg.header.index != link.header.index {
                continue;
            }
            if matches!(msg.header.scope, AddressScope::Link | AddressScope::Host) {
                continue;
            }
            let local = msg.attributes.iter().find_map(|a| match a {
                AddressAttribute::Local(ip) => Some(*ip),
                _ => None,
            });
            let address = msg.attributes.iter().find_map(|a| match a {
                AddressAttribute::Address(ip) => Some(*ip),
                _ => None,
            });
            if let Some(ip) = local.or(address)
                && is_reportable(&ip)
            {
                ips.push(ip);
            }
        }
        ips.sort();
        ips.dedup();
        Ok(InterfaceInfo {
            name: name.to_string(),
            mac,
            ips,
        })
    }
}

fn libc_enodev() -> i32 {
    nix::errno::Errno::ENODEV as i32
}

/// Whether an address is worth registering (not link-local, loopback or unspecified).
pub fn is_reportable(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !(v4.is_link_local() || v4.is_loopback() || v4.is_unspecified()),
        IpAddr::V6(v6) => !(v6.is_unicast_link_local() || v6.is_loopback() || v6.is_unspecified()),
    }
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Watch interface `name`: whenever what [`Netif::read`] returns changes (addresses, MAC, the interface
/// appearing or going away), bump the counter in `changes`. Notifications are debounced by `settle`; the
/// interface is also re-read every `poll`. Ends when every receiver of `changes` is gone or `stop` turns true.
pub async fn watch_interface(
    name: String,
    poll: Duration,
    settle: Duration,
    changes: watch::Sender<u64>,
    mut stop: watch::Receiver<bool>,
) {
    let netif = match Netif::new() {
        Ok(n) => Some(n),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read interfaces over netlink; address changes are not watched");
            None
        }
    };
    let mut last: Option<Result<InterfaceInfo, String>> = None;
    let check = async |last: &mut Option<Result<InterfaceInfo, String>>| {
        let Some(netif) = &netif else { return };
        let now = netif.read(&name).await.map_err(|e| e.to_string());
        if last.as_ref() != Some(&now) {
            if last.is_some() {
                tracing::info!(interface = %name, now = ?now, "interface changed");
                changes.send_modify(|n| *n += 1);
            }
            *last = Some(now);
        }
    };
    check(&mut last).await;
    let mut subscription = subscribe();
    let mut warned = false;
    loop {
        if *stop.borrow() || changes.is_closed() {
            return;
        }
        let event = async {
            match subscription.as_mut() {
                Some(rx) => rx.next().await.is_some(),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = stop.changed() => return,
            alive = event => {
                if !alive {
                    // The subscription died; poll until it can be made again.
                    subscription = subscribe();
                    if subscription.is_none() && !warned {
                        tracing::warn!("netlink notifications lost; polling the interface every {poll:?}");
                        warned = true;
                    }
                    continue;
                }
                // Let a burst of notifications (an address and its routes, DAD) settle, then drain it.
                tokio::time::sleep(settle).await;
                if let Some(rx) = subscription.as_mut() {
                    while let Ok(Some(_)) = tokio::time::timeout(Duration::ZERO, rx.next()).await {}
                }
                check(&mut last).await;
            }
            _ = tokio::time::sleep(poll) => check(&mut last).await,
        }
    }
}

type Notifications = futures_util::stream::BoxStream<'static, ()>;

fn subscribe() -> Option<Notifications> {
    match rtnetlink::new_multicast_connection(&[
        MulticastGroup::Link,
        MulticastGroup::Ipv4Ifaddr,
        MulticastGroup::Ipv6Ifaddr,
    ]) {
        Ok((conn, _handle, messages)) => {
            tokio::spawn(conn);
            Some(messages.map(|_| ()).boxed())
        }
        Err(e) => {
            tracing::warn!(error = %e, "subscribing to netlink address notifications failed; polling instead");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_worth_registering() {
        for ip in ["10.0.0.5", "2a02:1802::1", "fd00::1", "100.64.0.1"] {
            assert!(is_reportable(&ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "fe80::1",
            "169.254.1.1",
            "127.0.0.1",
            "::1",
            "0.0.0.0",
            "::",
        ] {
            assert!(!is_reportable(&ip.parse().unwrap()), "{ip}");
        }
        assert_eq!(
            format_mac(&[0xaa, 0xbb, 0, 1, 2, 0xff]),
            "aa:bb:00:01:02:ff"
        );
    }

    #[tokio::test]
    async fn loopback_is_read_and_unknown_interfaces_are_named() {
        let netif = Netif::new().unwrap();
        let lo = netif.read("lo").await.unwrap();
        assert_eq!(lo.name, "lo");
        assert!(
            lo.ips.is_empty(),
            "loopback addresses are not reportable: {lo:?}"
        );
        let err = netif.read("nosuchif0").await.unwrap_err().to_string();
        assert_eq!(err, "interface \"nosuchif0\" does not exist");
    }
}
