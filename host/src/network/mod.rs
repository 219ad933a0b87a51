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

fn net_dir(root: &Path) -> PathBuf {
    root.join(NETWORK_DIR)
}

fn bridge_dir(root: &Path, bridge: &str) -> PathBuf {
    net_dir(root).join(bridge)
}

fn id_file(root: &Path, id: &str) -> PathBuf {
    net_dir(root).join(IDS_DIR).join(id)
}

/// The directory of one host port: `tcp-8080`.
fn port_dir(root: &Path, p: &PortMapping) -> PathBuf {
    net_dir(root)
        .join(PORTS_DIR)
        .join(format!("{}-{}", p.protocol, p.host_port))
}

/// In a port's directory: `any`, or the host address it is published on.
fn port_file_name(p: &PortMapping) -> String {
    p.host_ip
        .map_or_else(|| "any".to_string(), |ip| ip.to_string())
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
// The lock and the files

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

fn mkdir(dir: &Path) -> Result<(), NetworkError> {
    std::fs::DirBuilder::new()
        .mode(0o700)
        .recursive(true)
        .create(dir)
        .map_err(io_err(format!("make {}", dir.display())))
}

/// A file's text, None if it does not exist.
fn read_opt(path: &Path) -> Result<Option<String>, NetworkError> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(format!("read {}", path.display()))(e)),
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, NetworkError> {
    match read_opt(path)? {
        None => Ok(None),
        Some(t) => serde_json::from_str(&t)
            .map(Some)
            .map_err(|source| NetworkError::Damaged {
                what: path.display().to_string(),
                source,
            }),
    }
}

/// Make `path` with `text`; Ok(false) if it exists already.
fn create_new(path: &Path, text: &[u8]) -> Result<bool, NetworkError> {
    let mut f = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(false),
        Err(e) => return Err(io_err(format!("make {}", path.display()))(e)),
    };
    if let Err(e) = f.write_all(text) {
        let _ = std::fs::remove_file(path);
        return Err(io_err(format!("write {}", path.display()))(e));
    }
    Ok(true)
}

/// Remove a file; Ok(false) if it was not there.
fn remove(path: &Path) -> Result<bool, NetworkError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err(format!("remove {}", path.display()))(e)),
    }
}

fn read_bridge(root: &Path, bridge: &str) -> Result<Option<BridgeRecord>, NetworkError> {
    read_json(&bridge_dir(root, bridge).join(BRIDGE_FILE))
}

/// Replace bridge.json (a new file renamed over the old: never half one).
fn write_bridge(root: &Path, bridge: &str, r: &BridgeRecord) -> Result<(), NetworkError> {
    let dir = bridge_dir(root, bridge);
    let tmp = dir.join(format!(".{BRIDGE_FILE}"));
    let path = dir.join(BRIDGE_FILE);
    let text = serde_json::to_vec(r).map_err(|e| io_err("encode bridge.json")(e.into()))?;
    std::fs::write(&tmp, text)
        .and_then(|_| std::fs::rename(&tmp, &path))
        .map_err(io_err(format!("write {}", path.display())))
}

/// The subnets of the root's bridges (one file per bridge, not per
/// container).
fn bridges(root: &Path) -> Result<Vec<(String, Subnet)>, NetworkError> {
    let mut out = Vec::new();
    let Ok(dirs) = std::fs::read_dir(net_dir(root)) else {
        return Ok(out);
    };
    for d in dirs.flatten() {
        let Some(name) = d.file_name().to_str().map(String::from) else {
            continue;
        };
        if name.starts_with('@') || !d.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            continue;
        }
        if let Some(r) = read_bridge(root, &name)? {
            out.push((name, r.subnet));
        }
    }
    Ok(out)
}

/// Every reservation on one bridge: only for rebuilding its table after it
/// was lost, never on a create's or a delete's usual path.
fn reservations_on(root: &Path, bridge: &str) -> Vec<Endpoint> {
    let mut out = Vec::new();
    for f in std::fs::read_dir(bridge_dir(root, bridge))
        .into_iter()
        .flatten()
        .flatten()
    {
        // Reservations are named for their address.
        if f.file_name()
            .to_str()
            .and_then(|n| n.parse::<Ipv4Addr>().ok())
            .is_none()
        {
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
    out
}

/// Remove the empty directories of the network directory, and the network
/// directory with its lock once nothing is left. Called with the lock held.
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

/// The reservation that would clash with publishing `p`, as the mapping
/// held and its container: `any` clashes with every address, an address
/// with `any` and itself. One directory per host port, so this reads the
/// few files of that port only.
fn port_holder(
    root: &Path,
    p: &PortMapping,
) -> Result<Option<(PortMapping, String)>, NetworkError> {
    let dir = port_dir(root, p);
    let names: Vec<String> = match p.host_ip {
        Some(_) => vec!["any".to_string(), port_file_name(p)],
        None => match std::fs::read_dir(&dir) {
            Ok(entries) => entries
                .flatten()
                .filter_map(|e| e.file_name().to_str().map(String::from))
                .filter(|n| !n.starts_with('.'))
                .collect(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io_err(format!("read {}", dir.display()))(e)),
        },
    };
    for n in names {
        if let Some(owner) = read_opt(&dir.join(&n))? {
            let held = PortMapping {
                host_ip: n.parse().ok(),
                ..*p
            };
            return Ok(Some((held, owner.trim().to_string())));
        }
    }
    Ok(None)
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

/// Everything that can be checked without making anything: the container
/// has no reservation yet, the ports are free (here and on the host), the
/// bridge is ours or can be made, the subnet overlaps nothing the host
/// has. Returns the bridge's record, if it has one, and the sockets that
/// hold the ports when `hold` is set.
fn check(
    s: &BridgeNetwork,
    id: &str,
    hold: bool,
) -> Result<(Option<BridgeRecord>, Vec<OwnedFd>), NetworkError> {
    let root = Path::new(&s.root);
    if let Some(at) = read_opt(&id_file(root, id))? {
        let (bridge, ip) = at.trim().split_once('/').unwrap_or(("?", at.trim()));
        return Err(NetworkError::Refused(format!(
            "container {id} already has address {ip} on bridge {bridge}"
        )));
    }
    let record = read_bridge(root, &s.bridge)?;
    match &record {
        Some(r) if r.subnet != s.subnet => {
            return Err(NetworkError::Refused(format!(
                "bridge {} has subnet {}, not {}",
                s.bridge, r.subnet, s.subnet
            )));
        }
        Some(_) => {}
        None => {
            for (bridge, subnet) in bridges(root)? {
                if bridge != s.bridge && config::overlaps(&subnet, &s.subnet) {
                    return Err(NetworkError::Refused(format!(
                        "subnet {} overlaps {subnet} of bridge {bridge}",
                        s.subnet
                    )));
                }
            }
        }
    }
    for p in &s.ports {
        if let Some((held, by)) = port_holder(root, p)? {
            return Err(port_in_use(&held, &by));
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
    check_bridge(&mut nl, root, &s.bridge, &s.subnet, hold)?;
    Ok((record, holds))
}

/// What check_bridge found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Found {
    /// No link of that name: the subnet overlaps nothing of the host's.
    Missing,
    /// This root's bridge, set up when it was made.
    Ours(u32),
    /// A link of that name without an alias or a conflicting address: one
    /// that a shim of this root is making (without the lock), or one made
    /// by hand, which is used as Docker uses a bridge it is given.
    Unlabelled(u32),
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
) -> Result<Found, NetworkError> {
    // Looked up by name: a dump of every link would grow with the
    // containers (each has a veth here).
    match nl
        .link(bridge)
        .map_err(io_err(format!("look up bridge {bridge}")))?
    {
        Some(l) => {
            let ours = owner_alias(root);
            match l.alias.as_deref() {
                // Ours: its address was checked when it was made, and its
                // subnet is in bridge.json.
                Some(a) if a == ours => return Ok(Found::Ours(l.index)),
                None if !strict => return Ok(Found::Unlabelled(l.index)),
                None => {}
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
            // Unlabelled: one a shim of ours is making (it labels it
            // before it gives it an address), or one someone else made.
            let addrs = nl
                .addresses()
                .map_err(io_err("list the host's addresses"))?;
            let gw = config::gateway(subnet);
            if let Some(a) = addrs.iter().find(|a| a.index == l.index && a.addr != gw) {
                return Err(NetworkError::Refused(format!(
                    "bridge {bridge} has address {}/{}, not the subnet {subnet} asked for",
                    a.addr, a.prefix
                )));
            }
            Ok(Found::Unlabelled(l.index))
        }
        None => {
            let addrs = nl
                .addresses()
                .map_err(io_err("list the host's addresses"))?;
            for a in &addrs {
                let net = Subnet {
                    addr: Ipv4Addr::from(u32::from(a.addr) & config::mask(a.prefix)),
                    prefix: a.prefix,
                };
                if config::overlaps(&net, subnet) {
                    let name = nl
                        .link_by_index(a.index)
                        .ok()
                        .flatten()
                        .map_or_else(|| format!("link {}", a.index), |l| l.name);
                    return Err(NetworkError::Refused(format!(
                        "subnet {subnet} overlaps {}/{} on {name}",
                        a.addr, a.prefix
                    )));
                }
            }
            Ok(Found::Missing)
        }
    }
}

/// For `runtime create`, before anything is made: whether `reserve` would
/// succeed now. The shim checks again under the lock.
pub fn precheck(s: &BridgeNetwork, id: &str) -> Result<(), NetworkError> {
    check(s, id, false).map(drop)
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

/// What a reservation made so far, undone in reverse when a later step
/// fails.
#[derive(Default)]
struct Undo {
    files: Vec<PathBuf>,
    /// The bridge's record before we counted ourselves in.
    record: Option<(String, Option<BridgeRecord>)>,
}

impl Undo {
    fn run(self, root: &Path) {
        for f in self.files.iter().rev() {
            let _ = std::fs::remove_file(f);
            if let Some(dir) = f
                .parent()
                .filter(|d| d.starts_with(net_dir(root).join(PORTS_DIR)))
            {
                let _ = std::fs::remove_dir(dir);
            }
        }
        match self.record {
            Some((bridge, Some(r))) => {
                let _ = write_bridge(root, &bridge, &r);
            }
            Some((bridge, None)) => {
                let _ = std::fs::remove_file(bridge_dir(root, &bridge).join(BRIDGE_FILE));
            }
            None => {}
        }
    }
}

fn reserve_locked(s: &BridgeNetwork, id: &str, files_dir: &Path) -> Result<Reserved, NetworkError> {
    let root = Path::new(&s.root);
    let (record, port_holds) = check(s, id, true)?;
    let mut undo = Undo::default();
    match reserve_files(s, id, record, files_dir, &mut undo) {
        Ok(endpoint) => Ok(Reserved {
            endpoint,
            port_holds,
        }),
        Err(e) => {
            undo.run(root);
            Err(e)
        }
    }
}

fn reserve_files(
    s: &BridgeNetwork,
    id: &str,
    record: Option<BridgeRecord>,
    files_dir: &Path,
    undo: &mut Undo,
) -> Result<Endpoint, NetworkError> {
    let root = Path::new(&s.root);
    let dir = bridge_dir(root, &s.bridge);
    mkdir(&dir)?;
    mkdir(&net_dir(root).join(IDS_DIR))?;
    let mut r = record.unwrap_or(BridgeRecord {
        subnet: s.subnet,
        members: 0,
        next: config::host_range(&s.subnet).0,
    });
    // Counted in before the reservation exists (see BridgeRecord).
    undo.record = Some((s.bridge.clone(), record));
    r.members += 1;
    write_bridge(root, &s.bridge, &r)?;

    // From the hint on, round the subnet: normally the first try is free.
    let (lo, hi) = config::host_range(&s.subnet);
    let (lo, hi) = (u32::from(lo), u32::from(hi));
    let start = u32::from(r.next).clamp(lo, hi);
    let gateway = config::gateway(&s.subnet);
    let mut endpoint = None;
    for n in (start..=hi).chain(lo..start) {
        let ip = Ipv4Addr::from(n);
        let e = Endpoint {
            id: id.to_string(),
            bridge: s.bridge.clone(),
            subnet: s.subnet,
            ip,
            gateway,
            veth: veth_name(ip),
            ports: s.ports.clone(),
        };
        let path = dir.join(ip.to_string());
        let data = serde_json::to_vec(&e).map_err(|e| io_err("encode reservation")(e.into()))?;
        if create_new(&path, &data)? {
            undo.files.push(path);
            endpoint = Some(e);
            break;
        }
    }
    let Some(endpoint) = endpoint else {
        return Err(NetworkError::Refused(format!(
            "subnet {} of bridge {} has no free address",
            s.subnet, s.bridge
        )));
    };
    r.next = Ipv4Addr::from(if u32::from(endpoint.ip) >= hi {
        lo
    } else {
        u32::from(endpoint.ip) + 1
    });
    write_bridge(root, &s.bridge, &r)?;

    let at = format!("{}/{}", s.bridge, endpoint.ip);
    let idf = id_file(root, id);
    if !create_new(&idf, at.as_bytes())? {
        return Err(NetworkError::Refused(format!(
            "container {id} already has a network reservation"
        )));
    }
    undo.files.push(idf);
    for p in &s.ports {
        let pd = port_dir(root, p);
        mkdir(&pd)?;
        let path = pd.join(port_file_name(p));
        if !create_new(&path, id.as_bytes())? {
            return Err(port_in_use(p, &read_opt(&path)?.unwrap_or_default()));
        }
        undo.files.push(path);
    }
    files::write(files_dir, &s.hostname, endpoint.ip).map_err(io_err(format!(
        "write /etc/hosts, /etc/hostname and /etc/resolv.conf into {}",
        files_dir.display()
    )))?;
    Ok(endpoint)
}

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
        .set_up(eth0.index)
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
