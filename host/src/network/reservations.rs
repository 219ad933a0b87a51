//! The reservations under the state root (the layout is in the module's
//! doc): the lock, the files named for what they hold, the host ports'
//! holds, the checks made before anything is, and `reserve`, which takes
//! an address and the ports for a container. Plugging it in and taking it
//! out again (attach, publish, release) are the module's own.

use super::*;

pub(super) fn net_dir(root: &Path) -> PathBuf {
    root.join(NETWORK_DIR)
}

pub(super) fn bridge_dir(root: &Path, bridge: &str) -> PathBuf {
    net_dir(root).join(bridge)
}

pub(super) fn id_file(root: &Path, id: &str) -> PathBuf {
    net_dir(root).join(IDS_DIR).join(id)
}

/// The directory of one host port: `tcp-8080`.
pub(super) fn port_dir(root: &Path, p: &PortMapping) -> PathBuf {
    net_dir(root)
        .join(PORTS_DIR)
        .join(format!("{}-{}", p.protocol, p.host_port))
}

/// In a port's directory: `any`, or the host address it is published on.
pub(super) fn port_file_name(p: &PortMapping) -> String {
    p.host_ip
        .map_or_else(|| "any".to_string(), |ip| ip.to_string())
}

// ---------------------------------------------------------------------------
// The lock and the files

pub(super) struct Lock {
    _file: Flock<File>,
}

/// Take the root's network lock. With `create` false, None when the root
/// has no network state at all (the common case for `delete` of a container
/// without one: no file is made).
pub(super) fn lock(root: &Path, create: bool) -> Result<Option<Lock>, NetworkError> {
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

pub(super) fn mkdir(dir: &Path) -> Result<(), NetworkError> {
    std::fs::DirBuilder::new()
        .mode(0o700)
        .recursive(true)
        .create(dir)
        .map_err(io_err(format!("make {}", dir.display())))
}

/// A file's text, None if it does not exist.
pub(super) fn read_opt(path: &Path) -> Result<Option<String>, NetworkError> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(format!("read {}", path.display()))(e)),
    }
}

pub(super) fn read_json<T: serde::de::DeserializeOwned>(
    path: &Path,
) -> Result<Option<T>, NetworkError> {
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
pub(super) fn create_new(path: &Path, text: &[u8]) -> Result<bool, NetworkError> {
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
pub(super) fn remove(path: &Path) -> Result<bool, NetworkError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err(format!("remove {}", path.display()))(e)),
    }
}

pub(super) fn read_bridge(root: &Path, bridge: &str) -> Result<Option<BridgeRecord>, NetworkError> {
    read_json(&bridge_dir(root, bridge).join(BRIDGE_FILE))
}

/// Replace bridge.json (a new file renamed over the old: never half one).
pub(super) fn write_bridge(
    root: &Path,
    bridge: &str,
    r: &BridgeRecord,
) -> Result<(), NetworkError> {
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
pub(super) fn bridges(root: &Path) -> Result<Vec<(String, Subnet)>, NetworkError> {
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
pub(super) fn reservations_on(root: &Path, bridge: &str) -> Vec<Endpoint> {
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
pub(super) fn tidy(root: &Path) {
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

pub(super) fn port_in_use(p: &PortMapping, by: &str) -> NetworkError {
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
pub(super) fn port_holder(
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
pub(super) fn hold_port(p: &PortMapping) -> Result<OwnedFd, NetworkError> {
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
pub(super) fn check(
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
pub(super) enum Found {
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
pub(super) fn check_bridge(
    nl: &mut Netlink,
    root: &Path,
    bridge: &str,
    subnet: &Subnet,
    strict: bool,
) -> Result<Found, NetworkError> {
    check_bridge_or_again(nl, root, bridge, subnet, strict, true)
}

/// `again`: whether a bridge that appears between the look-up of its name
/// and the list of the host's addresses (made, with its address, by a
/// concurrent create's shim) is looked at once more, now that it exists,
/// rather than refused as an overlap with itself.
fn check_bridge_or_again(
    nl: &mut Netlink,
    root: &Path,
    bridge: &str,
    subnet: &Subnet,
    strict: bool,
    again: bool,
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
                    if again && name == bridge {
                        return check_bridge_or_again(nl, root, bridge, subnet, strict, false);
                    }
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
// Set-up: the reservation

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
pub(super) struct Undo {
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

pub(super) fn reserve_locked(
    s: &BridgeNetwork,
    id: &str,
    files_dir: &Path,
) -> Result<Reserved, NetworkError> {
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

pub(super) fn reserve_files(
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
