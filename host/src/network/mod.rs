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
//! ROOT/@network/lock               flock(2): one change at a time per root
//! ROOT/@network/BRIDGE/10.88.0.2   one reservation per container (JSON)
//! ROOT/@network/BRIDGE/table.json  the bridge's table as last applied
//! ```
//!
//! (`@` cannot start a container ID, so the directory never clashes with
//! one.) A reservation is made with O_EXCL under the lock before anything
//! else exists, and holds all that tear-down needs: the veth's name and the
//! ports. The bridge and its nftables table live exactly as long as the
//! bridge has reservations, and the table is rebuilt from them on every
//! change. Every step is idempotent, so tear-down can run twice (shim and
//! `delete --force`) or after a crash at any point.
//!
//! A bridge belongs to one state root: its alias (`ip link` shows it) names
//! the root, and another root's containers are refused on it, since their
//! reservations would not see each other's.
//!
//! Host ports are held machine-wide by a bound (not listening) socket per
//! published port, which the shim keeps while the container runs: a second
//! container, from any root, or any other program, cannot take the port,
//! and the hold ends with the shim even when it is killed.

pub mod config;
mod files;
pub mod netlink;
pub mod nft;

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

/// Under the state root; not a valid container ID.
pub const NETWORK_DIR: &str = "@network";
/// The container's end of its veth pair.
pub const CONTAINER_IFNAME: &str = "eth0";
/// In a bridge's directory: the nft transaction last applied for it.
const TABLE_COPY: &str = "table.json";

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
    #[error(transparent)]
    Nft(#[from] nft::NftError),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> NetworkError {
    let what = what.into();
    move |source| NetworkError::Io { what, source }
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

/// A reservation, with the sockets that hold its host ports.
pub struct Reserved {
    pub endpoint: Endpoint,
    pub port_holds: Vec<OwnedFd>,
}

fn net_dir(root: &Path) -> PathBuf {
    root.join(NETWORK_DIR)
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
// The lock and the reservations

struct Lock {
    _file: Flock<File>,
}

/// Take the root's network lock. With `create` false, None when the root
/// has no network state at all (the common case for `delete` of a container
/// without one: no file is made).
fn lock(root: &Path, create: bool) -> Result<Option<Lock>, NetworkError> {
    let dir = net_dir(root);
    let path = dir.join("lock");
    loop {
        if create {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(io_err(format!("make {}", dir.display())))?;
        }
        let file = match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if !create && e.kind() == io::ErrorKind::NotFound => return Ok(None),
            // Removed between our mkdir and open by the last holder: again.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err(format!("open {}", path.display()))(e)),
        };
        let held = Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, e)| io_err(format!("lock {}", path.display()))(io::Error::from(e)))?;
        // Whoever held it before may have removed the network directory
        // (the last container went): this lock is on a file nobody else
        // will open again, so start over.
        let ours = held.metadata().map(|m| m.ino()).ok();
        let current = std::fs::metadata(&path).map(|m| m.ino()).ok();
        if ours.is_some() && ours == current {
            return Ok(Some(Lock { _file: held }));
        }
        if !create {
            return Ok(None);
        }
    }
}

/// Every reservation under the root, by bridge.
fn reservations(root: &Path) -> Vec<Endpoint> {
    let mut out = Vec::new();
    let Ok(dirs) = std::fs::read_dir(net_dir(root)) else {
        return out;
    };
    for d in dirs.flatten() {
        if !d.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            continue;
        }
        for f in std::fs::read_dir(d.path()).into_iter().flatten().flatten() {
            // Reservations are named for their address; TABLE_COPY is not one.
            let named = f
                .file_name()
                .to_str()
                .map(|n| n.parse::<Ipv4Addr>().is_ok());
            if named != Some(true) {
                continue;
            }
            match std::fs::read(f.path())
                .ok()
                .and_then(|t| serde_json::from_slice::<Endpoint>(&t).ok())
            {
                Some(e) => out.push(e),
                None => log::warn!("ignoring damaged reservation {}", f.path().display()),
            }
        }
    }
    out
}

/// Remove empty bridge directories, and the network directory with its
/// lock once no bridge is left. Called with the lock held.
fn tidy(root: &Path) {
    let dir = net_dir(root);
    let mut left = false;
    for d in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        if d.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            if std::fs::remove_dir(d.path()).is_err() {
                left = true;
            }
        } else if d.file_name() != "lock" {
            left = true;
        }
    }
    if !left {
        let _ = std::fs::remove_file(dir.join("lock"));
        let _ = std::fs::remove_dir(&dir);
    }
}

// ---------------------------------------------------------------------------
// Checks

fn port_in_use(p: &PortMapping, by: &str) -> NetworkError {
    let host = p.host_ip.map(|ip| format!("{ip}:")).unwrap_or_default();
    NetworkError::Refused(format!(
        "host port {host}{}/{} is already published by container {by}",
        p.host_port, p.protocol
    ))
}

/// Bind the host port, without listening: the bind is the reservation.
fn hold_port(p: &PortMapping) -> Result<OwnedFd, NetworkError> {
    let kind = match p.protocol {
        PortProtocol::Tcp => SockType::Stream,
        PortProtocol::Udp => SockType::Datagram,
    };
    let what = || {
        format!(
            "host port {}{}/{}",
            p.host_ip.map(|ip| format!("{ip}:")).unwrap_or_default(),
            p.host_port,
            p.protocol
        )
    };
    let fd = socket(AddressFamily::Inet, kind, SockFlag::SOCK_CLOEXEC, None)
        .map_err(|e| io_err(what())(e.into()))?;
    let addr = SockaddrIn::from(SocketAddrV4::new(
        p.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED),
        p.host_port,
    ));
    match bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &addr) {
        Ok(()) => Ok(fd),
        Err(nix::errno::Errno::EADDRINUSE) => Err(NetworkError::Refused(format!(
            "{} is already in use on the host",
            what()
        ))),
        Err(nix::errno::Errno::EADDRNOTAVAIL) => Err(NetworkError::Refused(format!(
            "{}: {} is not an address of this host",
            what(),
            p.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED)
        ))),
        Err(e) => Err(io_err(what())(e.into())),
    }
}

/// Everything that can be checked without making anything: the ports are
/// free (here and on the host), the bridge is ours or can be made, the
/// subnet overlaps nothing the host has. Returns the sockets that hold
/// the ports when `hold` is set.
fn check(
    s: &BridgeNetwork,
    id: &str,
    existing: &[Endpoint],
    hold: bool,
) -> Result<Vec<OwnedFd>, NetworkError> {
    if nft::find().is_none() {
        return Err(NetworkError::Refused(nft::MISSING.into()));
    }
    for e in existing {
        if e.id == id {
            return Err(NetworkError::Refused(format!(
                "container {id} already has address {} on bridge {}",
                e.ip, e.bridge
            )));
        }
        if e.bridge == s.bridge && e.subnet != s.subnet {
            return Err(NetworkError::Refused(format!(
                "bridge {} has subnet {}, not {}",
                s.bridge, e.subnet, s.subnet
            )));
        }
        if e.bridge != s.bridge && config::overlaps(&e.subnet, &s.subnet) {
            return Err(NetworkError::Refused(format!(
                "subnet {} overlaps {} of bridge {}",
                s.subnet, e.subnet, e.bridge
            )));
        }
        for p in &s.ports {
            if let Some(q) = e.ports.iter().find(|q| config::clash(q, p)) {
                return Err(port_in_use(q, &e.id));
            }
        }
    }
    let mut holds = Vec::new();
    for p in &s.ports {
        holds.push(hold_port(p)?);
    }
    if !hold {
        holds.clear();
    }
    let mut nl = Netlink::open().map_err(io_err("open rtnetlink"))?;
    check_bridge(&mut nl, Path::new(&s.root), &s.bridge, &s.subnet, hold)?;
    Ok(holds)
}

/// The bridge, if it exists, is one of ours for this root; if it does not,
/// no address of the host lies in the subnet. Without the lock (`strict`
/// false, for `runtime create`'s early check) a bridge may be caught being
/// made by a shim of this root, before its alias or address are set: that
/// passes, and the shim checks again under the lock.
fn check_bridge(
    nl: &mut Netlink,
    root: &Path,
    bridge: &str,
    subnet: &Subnet,
    strict: bool,
) -> Result<(), NetworkError> {
    // Addresses first: a link that had one then is in the later dump of
    // links, unless it was deleted in between (and then it does not count).
    let addrs = nl
        .addresses()
        .map_err(io_err("list the host's addresses"))?;
    let links = nl.links().map_err(io_err("list the host's links"))?;
    match links.iter().find(|l| l.name == bridge) {
        Some(l) => {
            let ours = owner_alias(root);
            match l.alias.as_deref() {
                Some(a) if a == ours => {}
                None if !strict => {}
                alias => {
                    let whose = match alias {
                        Some(a) if a.starts_with("nsbox root ") => {
                            format!("the nsbox state root {}", &a["nsbox root ".len()..])
                        }
                        _ => "something other than nsbox".to_string(),
                    };
                    return Err(NetworkError::Refused(format!(
                        "bridge {bridge} belongs to {whose}: choose another with nsbox.bridge and nsbox.subnet"
                    )));
                }
            }
            let gw = config::gateway(subnet);
            if let Some(a) = addrs.iter().find(|a| a.index == l.index && a.addr != gw) {
                return Err(NetworkError::Refused(format!(
                    "bridge {bridge} has address {}/{}, not the subnet {subnet} asked for",
                    a.addr, a.prefix
                )));
            }
            Ok(())
        }
        None => {
            for a in &addrs {
                let Some(name) = links.iter().find(|l| l.index == a.index).map(|l| &l.name) else {
                    continue;
                };
                let net = Subnet {
                    addr: Ipv4Addr::from(u32::from(a.addr) & config::mask(a.prefix)),
                    prefix: a.prefix,
                };
                if config::overlaps(&net, subnet) {
                    return Err(NetworkError::Refused(format!(
                        "subnet {subnet} overlaps {}/{} on {name}",
                        a.addr, a.prefix
                    )));
                }
            }
            Ok(())
        }
    }
}

/// For `runtime create`, before anything is made: whether `reserve` would
/// succeed now. The shim checks again under the lock.
pub fn precheck(s: &BridgeNetwork, id: &str) -> Result<(), NetworkError> {
    check(s, id, &reservations(Path::new(&s.root)), false).map(drop)
}

// ---------------------------------------------------------------------------
// Set-up

/// Reserve an address on the bridge and hold the host ports; write the
/// container's /etc files into `files_dir`. Nothing is configured in the
/// kernel yet: the shim calls this before it clones tiny-init.
pub fn reserve(s: &BridgeNetwork, id: &str, files_dir: &Path) -> Result<Reserved, NetworkError> {
    let root = Path::new(&s.root);
    let _lock = lock(root, true)?;
    let made = reserve_locked(s, id, files_dir);
    if made.is_err() {
        tidy(root);
    }
    made
}

fn reserve_locked(s: &BridgeNetwork, id: &str, files_dir: &Path) -> Result<Reserved, NetworkError> {
    let root = Path::new(&s.root);
    let existing = reservations(root);
    let port_holds = check(s, id, &existing, true)?;
    let dir = net_dir(root).join(&s.bridge);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .recursive(true)
        .create(&dir)
        .map_err(io_err(format!("make {}", dir.display())))?;
    let gateway = config::gateway(&s.subnet);
    for ip in config::hosts(&s.subnet) {
        if existing.iter().any(|e| e.ip == ip) {
            continue;
        }
        let endpoint = Endpoint {
            id: id.to_string(),
            bridge: s.bridge.clone(),
            subnet: s.subnet,
            ip,
            gateway,
            veth: veth_name(ip),
            ports: s.ports.clone(),
        };
        let path = dir.join(ip.to_string());
        let mut f = match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_err(format!("reserve {}", path.display()))(e)),
        };
        let data =
            serde_json::to_vec(&endpoint).map_err(|e| io_err("encode reservation")(e.into()))?;
        if let Err(e) = f.write_all(&data).and_then(|_| f.sync_all()) {
            let _ = std::fs::remove_file(&path);
            return Err(io_err(format!("write {}", path.display()))(e));
        }
        if let Err(e) = files::write(files_dir, &s.hostname, ip) {
            let _ = std::fs::remove_file(&path);
            return Err(io_err(format!(
                "write /etc/hosts, /etc/hostname and /etc/resolv.conf into {}",
                files_dir.display()
            ))(e));
        }
        return Ok(Reserved {
            endpoint,
            port_holds,
        });
    }
    Err(NetworkError::Refused(format!(
        "subnet {} of bridge {} has no free address",
        s.subnet, s.bridge
    )))
}

/// Plug the container whose network namespace is `netns` into its bridge:
/// the bridge (made if missing), the veth pair, eth0's address and default
/// route, and the bridge's nftables table.
pub fn attach(root: &Path, e: &Endpoint, netns: BorrowedFd<'_>) -> Result<(), NetworkError> {
    let _lock = lock(root, true)?;
    let mut nl = Netlink::open().map_err(io_err("open rtnetlink"))?;
    let bridge = ensure_bridge(&mut nl, root, e)?;
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
        .set_up(eth0.index)
        .map_err(io_err(format!("bring {CONTAINER_IFNAME} up")))?;
    inside
        .add_default_route(e.gateway, eth0.index)
        .map_err(io_err(format!("add the default route via {}", e.gateway)))?;
    sync_bridge(root, &mut nl, &e.bridge)
}

/// The bridge's index, after making it if it is missing: its address, its
/// alias naming the root, up, and the sysctls it needs.
fn ensure_bridge(nl: &mut Netlink, root: &Path, e: &Endpoint) -> Result<u32, NetworkError> {
    check_bridge(nl, root, &e.bridge, &e.subnet, true)?;
    let what = |step: &str| format!("{step} bridge {}", e.bridge);
    let link = match nl.link(&e.bridge).map_err(io_err(what("look up")))? {
        Some(l) => l,
        None => {
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
            l
        }
    };
    nl.add_address(link.index, e.gateway, e.subnet.prefix)
        .map_err(io_err(format!(
            "add {}/{} to bridge {}",
            e.gateway, e.subnet.prefix, e.bridge
        )))?;
    nl.set_up(link.index).map_err(io_err(what("bring up")))?;
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
    Ok(link.index)
}

/// Make the bridge's kernel state match its reservations: the nftables
/// table rebuilt, or, with none left, the table and the bridge removed.
/// Called with the lock held.
fn sync_bridge(root: &Path, nl: &mut Netlink, bridge: &str) -> Result<(), NetworkError> {
    let mine: Vec<Endpoint> = reservations(root)
        .into_iter()
        .filter(|e| e.bridge == bridge)
        .collect();
    let copy = net_dir(root).join(bridge).join(TABLE_COPY);
    if let Some(first) = mine.first() {
        let published: Vec<nft::Published> = mine
            .iter()
            .flat_map(|e| {
                e.ports.iter().map(|p| nft::Published {
                    port: *p,
                    container: e.ip,
                })
            })
            .collect();
        let doc = nft::replacement(bridge, &first.subnet, &published);
        let text = serde_json::to_vec(&doc).map_err(nft::NftError::Encode)?;
        // A container without ports changes nothing in the table: no nft
        // run on its start path. (A table someone else deleted meanwhile
        // comes back with the next change, as Docker's iptables rules do.)
        if std::fs::read(&copy).ok().as_deref() == Some(&text[..]) {
            return Ok(());
        }
        let _ = std::fs::remove_file(&copy);
        nft::apply(&doc)?;
        if let Err(e) = std::fs::write(&copy, &text) {
            log::warn!("write {}: {e}", copy.display());
        }
        return Ok(());
    }
    nft::apply(&nft::removal(bridge))?;
    let _ = std::fs::remove_file(&copy);
    // Only a bridge this root made: never one that merely has the name.
    if let Ok(Some(l)) = nl.link(bridge) {
        if l.alias.as_deref() == Some(owner_alias(root).as_str()) {
            nl.delete_link(bridge)
                .map_err(io_err(format!("delete bridge {bridge}")))?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Tear-down

/// Undo everything of container `id`: its veth, its reservation (address
/// and ports), and with the bridge's last container, the bridge and its
/// table. Idempotent; a no-op for a container without a network.
pub fn release(root: &Path, id: &str) -> Result<(), NetworkError> {
    // The bridge's alias names the root as an absolute path.
    let root =
        &std::path::absolute(root).map_err(io_err(format!("state root {}", root.display())))?;
    let Some(_lock) = lock(root, false)? else {
        return Ok(());
    };
    let mine: Vec<Endpoint> = reservations(root)
        .into_iter()
        .filter(|e| e.id == id)
        .collect();
    let mut result = Ok(());
    if !mine.is_empty() {
        let mut nl = Netlink::open().map_err(io_err("open rtnetlink"))?;
        for e in &mine {
            if let Err(err) = nl.delete_link(&e.veth) {
                result = Err(io_err(format!("delete veth {}", e.veth))(err));
                continue;
            }
            let path = net_dir(root).join(&e.bridge).join(e.ip.to_string());
            if let Err(err) = std::fs::remove_file(&path) {
                if err.kind() != io::ErrorKind::NotFound {
                    result = Err(io_err(format!("remove {}", path.display()))(err));
                }
            }
        }
        let mut bridges: Vec<&str> = mine.iter().map(|e| e.bridge.as_str()).collect();
        bridges.dedup();
        for b in bridges {
            if let Err(err) = sync_bridge(root, &mut nl, b) {
                result = Err(err);
            }
        }
    }
    tidy(root);
    result
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
