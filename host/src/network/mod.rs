//! Bridge networking, Docker's default way: a Linux bridge per subnet, a
//! veth pair per container (host end on the bridge, container end `eth0`),
//! an address from the subnet, a default route via the bridge, masquerading
//! out of the subnet and published ports, in an nftables table of nsbox's
//! own per bridge.
//!
//! Both the shim (set-up; tear-down when the container stops) and `runtime
//! delete --force` (tear-down after a shim that died) work from here.
//!
//! The truth is on disk, under the state root:
//!
//! ```text
//! ROOT/@network/lock                    flock(2): one change at a time per root
//! ROOT/@network/BRIDGE/bridge.json      the bridge's subnet, how many containers
//!                                       it has, the next address to try
//! ROOT/@network/BRIDGE/10.88.0.2        a container's reservation (JSON)
//! ROOT/@network/@ids/ID                 where container ID's reservation is
//! ROOT/@network/@ports/tcp-8080/any     who publishes host port 8080/tcp on
//! ROOT/@network/@ports/tcp-8080/1.2.3.4 every address, or on one (its ID)
//! ```
//!
//! (`@` cannot start a container ID or a bridge's name, so nothing clashes.)
//! Every file is made with O_EXCL under the lock, and named for what it
//! holds, so that each step of a create or a delete opens a few files by
//! name and never reads the others: the cost stays flat however many
//! containers there are. A reservation holds all that tear-down needs: the
//! veth's name and the ports. The bridge and its nftables table live
//! exactly as long as the bridge has reservations (bridge.json counts them);
//! each container adds and removes only its own elements of the table's
//! maps (nft.rs). Every step is idempotent, so tear-down can run twice
//! (shim and `delete --force`) or after a crash at any point.
//!
//! A bridge belongs to one state root: its alias (`ip link` shows it) names
//! the root, and another root's containers are refused on it, since their
//! reservations would not see each other's.
//!
//! Host ports are held machine-wide by a bound (not listening) socket per
//! published port, which the shim keeps while the container runs: a second
//! container, from any root, or any other program, cannot take the port,
//! and the hold ends with the shim even when it is killed. The files under
//! `@ports` name the holder in the error, and keep a port of a container
//! whose shim died (its DNAT rule stays until `delete --force`) from being
//! published twice.

pub mod config;
mod files;
pub mod netlink;
mod nfnetlink;
pub mod nft;
mod reservations;

use std::fs::File;
use std::io::{self, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use nix::sys::socket::{bind, socket, AddressFamily, SockFlag, SockType, SockaddrIn};
use protocol::{BridgeNetwork, PortMapping, PortProtocol, Subnet};
use serde::{Deserialize, Serialize};

pub use config::{BridgeSettings, Mode};
pub use files::FILES;
use netlink::Netlink;
use reservations::{
    bridge_dir, check_bridge, id_file, lock, net_dir, port_dir, port_file_name, read_bridge,
    read_json, read_opt, remove, reservations_on, tidy, write_bridge, Found,
};
pub use reservations::{precheck, reserve};

/// Under the state root; not a valid container ID.
pub const NETWORK_DIR: &str = "@network";
/// The container's end of its veth pair.
pub const CONTAINER_IFNAME: &str = "eth0";
/// In a bridge's directory: its subnet, its count and its address hint.
const BRIDGE_FILE: &str = "bridge.json";
/// Under the network directory: one file per container, naming its
/// reservation.
const IDS_DIR: &str = "@ids";
/// Under the network directory: a directory per published host port.
const PORTS_DIR: &str = "@ports";

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    /// Something the user asked for cannot be had (a port in use, a bridge
    /// of another root, an overlapping subnet, a full subnet).
    #[error("{0}")]
    Refused(String),
    #[error("nftables table of bridge {bridge}")]
    Nft {
        bridge: String,
        #[source]
        source: nft::NfnlError,
    },
    #[error("{what}: damaged: {source}")]
    Damaged {
        what: String,
        #[source]
        source: serde_json::Error,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> NetworkError {
    let what = what.into();
    move |source| NetworkError::Io { what, source }
}

fn nft_err(bridge: &str) -> impl FnOnce(nft::NfnlError) -> NetworkError + '_ {
    move |source| NetworkError::Nft {
        bridge: bridge.to_string(),
        source,
    }
}

/// A container's place on a bridge: what a reservation file holds, what
/// state.json shows, and everything tear-down needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub id: String,
    pub bridge: String,
    pub subnet: Subnet,
    pub ip: Ipv4Addr,
    pub gateway: Ipv4Addr,
    /// The host's end of the veth pair.
    pub veth: String,
    pub ports: Vec<PortMapping>,
}

impl Endpoint {
    fn published(&self) -> Vec<nft::Published> {
        self.ports
            .iter()
            .map(|p| nft::Published {
                port: *p,
                container: self.ip,
            })
            .collect()
    }
}

/// A reservation, with the sockets that hold its host ports.
pub struct Reserved {
    pub endpoint: Endpoint,
    pub port_holds: Vec<OwnedFd>,
}

/// What bridge.json holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct BridgeRecord {
    subnet: Subnet,
    /// Reservations on the bridge: the last one to go takes the bridge and
    /// its table along. Counted up before a reservation is made and down
    /// after it is gone, so that a crash between the two leaves it too high
    /// (a bridge left behind), never too low (a bridge taken from under a
    /// container).
    members: u32,
    /// Where the search for a free address starts: after the last address
    /// given out, so that a search normally tries one address, and an
    /// address that was just given back is not given out again at once.
    next: Ipv4Addr,
}

/// The host end of a container's veth: "nsb" and the address in hex, so
/// that it fits IFNAMSIZ and names the container's address. Addresses are
/// unique on the machine (subnets of different bridges may not overlap).
pub fn veth_name(ip: Ipv4Addr) -> String {
    format!("nsb{:08x}", u32::from(ip))
}

/// Docker's scheme: 02:42 and the address. The address decides the MAC, so
/// a reused address never meets a stale neighbour entry for another MAC.
fn mac_of(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x42, o[0], o[1], o[2], o[3]]
}

/// The alias that marks a bridge as this root's.
fn owner_alias(root: &Path) -> String {
    format!("nsbox root {}", root.display())
}

// ---------------------------------------------------------------------------
// Plugging in (the reservation before it: reservations.rs)

/// Plug the container whose network namespace is `netns` into its bridge:
/// the bridge (made if missing), the veth pair, eth0's address and default
/// route, and the container's published ports in the bridge's table.
pub fn attach(root: &Path, e: &Endpoint, netns: BorrowedFd<'_>) -> Result<(), NetworkError> {
    let _lock = lock(root, true)?;
    let mut nl = Netlink::open().map_err(io_err("open rtnetlink"))?;
    let (bridge, made) = ensure_bridge(&mut nl, root, e)?;
    // A veth of a container that died uncleanly may still hold the name.
    let _ = nl.delete_link(&e.veth);
    nl.create_veth(&e.veth, bridge, CONTAINER_IFNAME, mac_of(e.ip), netns)
        .map_err(io_err(format!(
            "create veth pair {} / {CONTAINER_IFNAME}",
            e.veth
        )))?;
    let mut inside = Netlink::open_in(netns).map_err(io_err(
        "open rtnetlink in the container's network namespace",
    ))?;
    let eth0 = inside
        .link(CONTAINER_IFNAME)
        .map_err(io_err(format!(
            "look up {CONTAINER_IFNAME} in the container"
        )))?
        .ok_or_else(|| {
            NetworkError::Refused(format!(
                "{CONTAINER_IFNAME} did not appear in the container"
            ))
        })?;
    inside
        .add_address(eth0.index, e.ip, e.subnet.prefix)
        .map_err(io_err(format!(
            "add {}/{} to {CONTAINER_IFNAME}",
            e.ip, e.subnet.prefix
        )))?;
    inside
        .set_up_ipv4_only(eth0.index)
        .map_err(io_err(format!("bring {CONTAINER_IFNAME} up")))?;
    inside
        .add_default_route(e.gateway, eth0.index)
        .map_err(io_err(format!("add the default route via {}", e.gateway)))?;
    publish(root, e, made)
}

/// Put the container's published ports into the bridge's table: its map
/// elements only. The table is made whole (with every reservation's
/// elements) when the bridge was just made, and when it turns out to be
/// missing: someone deleted it, and, as Docker's iptables rules do, it
/// comes back with the next container.
fn publish(root: &Path, e: &Endpoint, bridge_made: bool) -> Result<(), NetworkError> {
    let mut nft = nft::NfTables::open().map_err(nft_err(&e.bridge))?;
    let table = nft::table_name(&e.bridge);
    if !bridge_made {
        let present = if e.ports.is_empty() {
            nft.table_exists(nft::FAMILY, &table)
                .map_err(nft_err(&e.bridge))?
        } else {
            let mut batch = nft::Batch::new();
            nft::add_elements(&mut batch, &e.bridge, &e.published());
            match nft.apply(nft::FAMILY, batch) {
                Ok(()) => true,
                Err(err) if err.errno() == Some(libc::ENOENT) => false,
                Err(err) => return Err(nft_err(&e.bridge)(err)),
            }
        };
        if present {
            return Ok(());
        }
        log::info!("table ip {table} is missing: making it again");
    }
    let published: Vec<nft::Published> = reservations_on(root, &e.bridge)
        .iter()
        .flat_map(Endpoint::published)
        .collect();
    let mut batch = nft::Batch::new();
    nft::replace(&mut batch, &e.bridge, &e.subnet, &published);
    nft.apply(nft::FAMILY, batch).map_err(nft_err(&e.bridge))
}

/// The bridge's index, after making it if it is missing: its address, its
/// alias naming the root, up, and the sysctls it needs. True if it was
/// made now.
fn ensure_bridge(nl: &mut Netlink, root: &Path, e: &Endpoint) -> Result<(u32, bool), NetworkError> {
    let what = |step: &str| format!("{step} bridge {}", e.bridge);
    let index = match check_bridge(nl, root, &e.bridge, &e.subnet, true)? {
        Found::Ours(index) => return Ok((index, false)),
        Found::Unlabelled(index) => index,
        Found::Missing => {
            match nl.create_bridge(&e.bridge, mac_of(e.gateway)) {
                Ok(()) => {}
                // Made meanwhile by another root's container: check_bridge
                // below refuses it.
                Err(err) if err.raw_os_error() == Some(libc::EEXIST) => {}
                Err(err) => return Err(io_err(what("create"))(err)),
            }
            let l = nl
                .link(&e.bridge)
                .map_err(io_err(what("look up")))?
                .ok_or_else(|| NetworkError::Refused(format!("bridge {} vanished", e.bridge)))?;
            if l.alias.is_none() {
                nl.set_alias(l.index, &owner_alias(root))
                    .map_err(io_err(what("label")))?;
            }
            check_bridge(nl, root, &e.bridge, &e.subnet, true)?;
            l.index
        }
    };
    nl.add_address(index, e.gateway, e.subnet.prefix)
        .map_err(io_err(format!(
            "add {}/{} to bridge {}",
            e.gateway, e.subnet.prefix, e.bridge
        )))?;
    nl.set_up(index).map_err(io_err(what("bring up")))?;
    // Loopback DNAT (see nft.rs) routes 127.0.0.1-sourced packets out of
    // the bridge; the kernel drops those as martians without this.
    let localnet = format!("/proc/sys/net/ipv4/conf/{}/route_localnet", e.bridge);
    std::fs::write(&localnet, "1").map_err(io_err(format!("write {localnet}")))?;
    // Forwarding: replies to masqueraded traffic, ports published to other
    // namespaces. Docker turns it on the same way, and leaves it on.
    let forward = "/proc/sys/net/ipv4/ip_forward";
    if std::fs::read_to_string(forward)
        .map(|s| s.trim() != "1")
        .unwrap_or(true)
    {
        std::fs::write(forward, "1").map_err(io_err(format!("write {forward}")))?;
    }
    Ok((index, true))
}

// ---------------------------------------------------------------------------
// Tear-down

/// Undo everything of container `id`: its veth, its published ports, its
/// reservation (address and ports), and with the bridge's last container,
/// the bridge and its table. Idempotent; a no-op for a container without a
/// network.
pub fn release(root: &Path, id: &str) -> Result<(), NetworkError> {
    // The bridge's alias names the root as an absolute path.
    let root =
        &std::path::absolute(root).map_err(io_err(format!("state root {}", root.display())))?;
    let Some(_lock) = lock(root, false)? else {
        return Ok(());
    };
    let result = release_locked(root, id);
    tidy(root);
    result
}

fn release_locked(root: &Path, id: &str) -> Result<(), NetworkError> {
    let idf = id_file(root, id);
    let Some(at) = read_opt(&idf)? else {
        return Ok(());
    };
    let at = at.trim();
    let path = net_dir(root).join(at);
    let Some(e) = read_json::<Endpoint>(&path)? else {
        // Gone already, all but this file.
        remove(&idf)?;
        return Ok(());
    };
    if e.id != id {
        return Err(NetworkError::Refused(format!(
            "{} names container {}, not {id}",
            path.display(),
            e.id
        )));
    }
    let mut nl = Netlink::open().map_err(io_err("open rtnetlink"))?;
    nl.delete_link(&e.veth)
        .map_err(io_err(format!("delete veth {}", e.veth)))?;
    if !e.ports.is_empty() {
        withdraw(&e)?;
    }
    for p in &e.ports {
        let pd = port_dir(root, p);
        let f = pd.join(port_file_name(p));
        // Only ours: after a crash the port may have gone to another.
        if read_opt(&f)?.is_some_and(|owner| owner.trim() == id) {
            remove(&f)?;
        }
        let _ = std::fs::remove_dir(&pd);
    }
    let gone = remove(&path)?;
    let mut result = Ok(());
    if gone {
        if let Some(mut r) = read_bridge(root, &e.bridge)? {
            r.members = r.members.saturating_sub(1);
            if r.members == 0 && still_reserved(root, &e.bridge) > 0 {
                // Counted too low somehow: the files are the truth.
                r.members = still_reserved(root, &e.bridge);
            }
            if r.members == 0 {
                result = remove_bridge(root, &mut nl, &e.bridge);
            } else {
                write_bridge(root, &e.bridge, &r)?;
            }
        }
    }
    remove(&idf)?;
    result
}

/// Reservations left on a bridge whose count says none: the directory
/// then holds bridge.json alone, so this reads next to nothing.
fn still_reserved(root: &Path, bridge: &str) -> u32 {
    std::fs::read_dir(bridge_dir(root, bridge))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|f| {
            f.file_name()
                .to_str()
                .and_then(|n| n.parse::<Ipv4Addr>().ok())
                .is_some()
        })
        .count() as u32
}

/// Take the container's elements out of the bridge's maps. After a crash
/// some may be gone already, and a batch with one missing element is
/// refused whole: then each goes on its own, and a missing one is fine.
fn withdraw(e: &Endpoint) -> Result<(), NetworkError> {
    let mut nft = nft::NfTables::open().map_err(nft_err(&e.bridge))?;
    let published = e.published();
    let mut batch = nft::Batch::new();
    nft::delete_elements(&mut batch, &e.bridge, &published);
    match nft.apply(nft::FAMILY, batch) {
        Ok(()) => return Ok(()),
        Err(err) if err.errno() == Some(libc::ENOENT) => {}
        Err(err) => return Err(nft_err(&e.bridge)(err)),
    }
    for p in &published {
        let mut batch = nft::Batch::new();
        nft::delete_elements(&mut batch, &e.bridge, std::slice::from_ref(p));
        match nft.apply(nft::FAMILY, batch) {
            Ok(()) => {}
            Err(err) if err.errno() == Some(libc::ENOENT) => {}
            Err(err) => return Err(nft_err(&e.bridge)(err)),
        }
    }
    Ok(())
}

/// The bridge's last container went: its table, the bridge (only one this
/// root made: never one that merely has the name) and its record.
fn remove_bridge(root: &Path, nl: &mut Netlink, bridge: &str) -> Result<(), NetworkError> {
    let mut nft = nft::NfTables::open().map_err(nft_err(bridge))?;
    let mut batch = nft::Batch::new();
    nft::remove(&mut batch, bridge);
    nft.apply(nft::FAMILY, batch).map_err(nft_err(bridge))?;
    if let Ok(Some(l)) = nl.link(bridge) {
        if l.alias.as_deref() == Some(owner_alias(root).as_str()) {
            nl.delete_link(bridge)
                .map_err(io_err(format!("delete bridge {bridge}")))?;
        }
    }
    remove(&bridge_dir(root, bridge).join(BRIDGE_FILE))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_macs_follow_the_address() {
        let ip = Ipv4Addr::new(10, 88, 0, 2);
        assert_eq!(veth_name(ip), "nsb0a580002");
        assert!(veth_name(Ipv4Addr::new(255, 255, 255, 255)).len() <= 15);
        assert_eq!(mac_of(ip), [2, 0x42, 10, 88, 0, 2]);
    }

    #[test]
    fn the_lock_goes_with_the_last_reservation() {
        let root = std::env::temp_dir().join(format!("nsbox-net-lock-{}", std::process::id()));
        std::fs::create_dir_all(&root).unwrap();
        assert!(lock(&root, false).unwrap().is_none());
        let l = lock(&root, true).unwrap();
        assert!(l.is_some());
        assert!(net_dir(&root).join("lock").exists());
        std::fs::create_dir(net_dir(&root).join("br0")).unwrap();
        tidy(&root);
        drop(l);
        assert!(!net_dir(&root).exists());
        std::fs::remove_dir(&root).unwrap();
    }
}
