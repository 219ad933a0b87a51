//! The words a user gives bridge networking (`nsbox.*` annotations and
//! `runtime spec` options), parsed and checked before anything is made.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use protocol::{PortMapping, PortProtocol, Subnet};

/// The bridge containers join when config.json names none.
pub const DEFAULT_BRIDGE: &str = "nsbox0";
/// Private, and neither Docker's (172.17/16) nor Podman's (10.88/16): the
/// create-time overlap check would refuse ours beside a Podman network.
pub const DEFAULT_SUBNET: Subnet = Subnet {
    addr: Ipv4Addr::new(10, 89, 0, 0),
    prefix: 16,
};

/// The annotations bridge networking reads.
pub const NETWORK_ANNOTATION: &str = "nsbox.network";
pub const PORTS_ANNOTATION: &str = "nsbox.ports";
pub const BRIDGE_ANNOTATION: &str = "nsbox.bridge";
pub const SUBNET_ANNOTATION: &str = "nsbox.subnet";

/// What `runtime state` adds to a bridged container's annotations.
pub const IP_ANNOTATION: &str = "nsbox.ip";
pub const GATEWAY_ANNOTATION: &str = "nsbox.gateway";
pub const VETH_ANNOTATION: &str = "nsbox.veth";

/// Why a network setting is refused; each names the value as given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("network mode {0:?} is unknown (none, host or bridge)")]
    UnknownMode(String),
    #[error("subnet {0:?}: expected ADDRESS/PREFIX, such as 10.88.0.0/16")]
    SubnetForm(String),
    #[error("subnet {subnet:?}: {addr:?} is not an IPv4 address")]
    SubnetAddress {
        subnet: String,
        addr: String,
        #[source]
        source: std::net::AddrParseError,
    },
    #[error("subnet {0:?}: the prefix must be a number from 8 to 30")]
    SubnetPrefix(String),
    #[error("subnet {subnet:?} has host bits set (did you mean {net}?)")]
    HostBits { subnet: String, net: Subnet },
    #[error("bridge name {0:?} must be 1 to 15 characters long")]
    BridgeLength(String),
    #[error("bridge name {name:?} has {c:?}: only letters, digits, '_', '-' and '.' are allowed")]
    BridgeCharacter { name: String, c: char },
    #[error("bridge name {0:?} is not a name")]
    BridgeNotAName(String),
    #[error("published port {spec:?}: protocol {protocol:?} is not tcp or udp")]
    PortProtocol { spec: String, protocol: String },
    #[error("published port {spec:?}: {ip:?} is not an IPv4 address")]
    PortAddress {
        spec: String,
        ip: String,
        #[source]
        source: std::net::AddrParseError,
    },
    #[error("published port {0:?}: expected [HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp]")]
    PortForm(String),
    #[error("published port {spec:?}: {side} port {port:?} is not a number from 1 to 65535")]
    PortNumber {
        spec: String,
        side: &'static str,
        port: String,
    },
    #[error("published ports {0} and {1} take the same host port")]
    PortsClash(PortMapping, PortMapping),
    #[error("annotation {annotation} needs {NETWORK_ANNOTATION}=bridge (the network is {mode})")]
    NotBridged {
        annotation: &'static str,
        mode: Mode,
    },
    #[error("hostname {0:?} cannot go into /etc/hosts: use letters, digits, '-' and '.'")]
    Hostname(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A new network namespace with `lo` only.
    None,
    /// The host's network namespace.
    Host,
    /// An existing namespace, joined by its path (OCI).
    Path,
    /// A new namespace plugged into a bridge.
    Bridge,
}

impl std::str::FromStr for Mode {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        match s {
            "none" => Ok(Mode::None),
            "host" => Ok(Mode::Host),
            "bridge" => Ok(Mode::Bridge),
            other => Err(ConfigError::UnknownMode(other.into())),
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::None => "none",
            Mode::Host => "host",
            Mode::Path => "path",
            Mode::Bridge => "bridge",
        })
    }
}

/// `10.88.0.0/16`. The host bits must be clear, and the prefix leave room
/// for a gateway and at least one container.
pub fn parse_subnet(s: &str) -> Result<Subnet, ConfigError> {
    let (addr, prefix) = s
        .split_once('/')
        .ok_or_else(|| ConfigError::SubnetForm(s.into()))?;
    let addr: Ipv4Addr = addr.parse().map_err(|source| ConfigError::SubnetAddress {
        subnet: s.into(),
        addr: addr.into(),
        source,
    })?;
    let prefix: u8 = prefix
        .parse()
        .ok()
        .filter(|p| (8..=30).contains(p))
        .ok_or_else(|| ConfigError::SubnetPrefix(s.into()))?;
    let net = Subnet {
        addr: Ipv4Addr::from(u32::from(addr) & mask(prefix)),
        prefix,
    };
    if net.addr != addr {
        return Err(ConfigError::HostBits {
            subnet: s.into(),
            net,
        });
    }
    Ok(net)
}

pub fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

pub fn contains(net: &Subnet, ip: Ipv4Addr) -> bool {
    u32::from(ip) & mask(net.prefix) == u32::from(net.addr)
}

pub fn overlaps(a: &Subnet, b: &Subnet) -> bool {
    let m = mask(a.prefix.min(b.prefix));
    u32::from(a.addr) & m == u32::from(b.addr) & m
}

/// The bridge's own address: the first of the subnet.
pub fn gateway(net: &Subnet) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(net.addr) + 1)
}

/// The first and the last address containers get: after the gateway,
/// before broadcast.
pub fn host_range(net: &Subnet) -> (Ipv4Addr, Ipv4Addr) {
    let first = u32::from(net.addr) + 2;
    let broadcast = u32::from(net.addr) | !mask(net.prefix);
    (Ipv4Addr::from(first), Ipv4Addr::from(broadcast - 1))
}

/// An interface name the kernel takes (IFNAMSIZ, no '/', ':' or spaces),
/// kept to characters that are safe in nftables names and file names.
pub fn validate_bridge(name: &str) -> Result<(), ConfigError> {
    if name.is_empty() || name.len() > 15 {
        return Err(ConfigError::BridgeLength(name.into()));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        return Err(ConfigError::BridgeCharacter {
            name: name.into(),
            c,
        });
    }
    if name == "." || name == ".." {
        return Err(ConfigError::BridgeNotAName(name.into()));
    }
    Ok(())
}

/// One `--publish` value: `[HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp]`.
pub fn parse_port(s: &str) -> Result<PortMapping, ConfigError> {
    let (spec, protocol) = match s.rsplit_once('/') {
        Some((spec, "tcp")) => (spec, PortProtocol::Tcp),
        Some((spec, "udp")) => (spec, PortProtocol::Udp),
        Some((_, other)) => {
            return Err(ConfigError::PortProtocol {
                spec: s.into(),
                protocol: other.into(),
            })
        }
        None => (s, PortProtocol::Tcp),
    };
    let parts: Vec<&str> = spec.split(':').collect();
    let (host_ip, host_port, container_port) = match parts.as_slice() {
        [h, c] => (None, *h, *c),
        [ip, h, c] => {
            let ip: Ipv4Addr = ip.parse().map_err(|source| ConfigError::PortAddress {
                spec: s.into(),
                ip: ip.to_string(),
                source,
            })?;
            (Some(ip).filter(|ip| !ip.is_unspecified()), *h, *c)
        }
        _ => return Err(ConfigError::PortForm(s.into())),
    };
    let port = |side: &'static str, p: &str| -> Result<u16, ConfigError> {
        p.parse::<u16>()
            .ok()
            .filter(|&n| n != 0)
            .ok_or_else(|| ConfigError::PortNumber {
                spec: s.into(),
                side,
                port: p.into(),
            })
    };
    Ok(PortMapping {
        host_ip,
        host_port: port("host", host_port)?,
        container_port: port("container", container_port)?,
        protocol,
    })
}

/// Two mappings that would take the same host port.
pub fn clash(a: &PortMapping, b: &PortMapping) -> bool {
    a.protocol == b.protocol
        && a.host_port == b.host_port
        && (a.host_ip.is_none() || b.host_ip.is_none() || a.host_ip == b.host_ip)
}

/// `nsbox.ports`: mappings separated by commas (or spaces).
pub fn parse_ports(s: &str) -> Result<Vec<PortMapping>, ConfigError> {
    let mut out: Vec<PortMapping> = Vec::new();
    for item in s.split([',', ' ']).filter(|i| !i.is_empty()) {
        let p = parse_port(item)?;
        if let Some(q) = out.iter().find(|q| clash(q, &p)) {
            return Err(ConfigError::PortsClash(*q, p));
        }
        out.push(p);
    }
    Ok(out)
}

/// A bridged container's settings, from config.json's annotations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeSettings {
    pub bridge: String,
    pub subnet: Subnet,
    pub ports: Vec<PortMapping>,
}

/// The bridge settings the annotations ask for; errors for settings that
/// only bridge mode takes when the mode is another.
pub fn bridge_settings(
    mode: Mode,
    annotations: &BTreeMap<String, String>,
) -> Result<Option<BridgeSettings>, ConfigError> {
    if mode != Mode::Bridge {
        for annotation in [PORTS_ANNOTATION, BRIDGE_ANNOTATION, SUBNET_ANNOTATION] {
            if annotations.contains_key(annotation) {
                return Err(ConfigError::NotBridged { annotation, mode });
            }
        }
        return Ok(None);
    }
    let bridge = annotations
        .get(BRIDGE_ANNOTATION)
        .cloned()
        .unwrap_or_else(|| DEFAULT_BRIDGE.to_string());
    validate_bridge(&bridge)?;
    let subnet = match annotations.get(SUBNET_ANNOTATION) {
        Some(s) => parse_subnet(s)?,
        None => DEFAULT_SUBNET,
    };
    let ports = match annotations.get(PORTS_ANNOTATION) {
        Some(s) => parse_ports(s)?,
        None => Vec::new(),
    };
    Ok(Some(BridgeSettings {
        bridge,
        subnet,
        ports,
    }))
}

/// A name /etc/hosts can carry: a hostname as RFC 1123 has it.
pub fn validate_hostname(name: &str) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if ok {
        Ok(())
    } else {
        Err(ConfigError::Hostname(name.into()))
    }
}

/// A hostname made of a container ID (which may hold '_' and '+'): the
/// characters a hostname cannot have become '-'.
pub fn hostname_from_id(id: &str) -> String {
    let mapped: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    let name: Vec<&str> = mapped
        .split('.')
        .map(|l| l.trim_matches('-'))
        .filter(|l| !l.is_empty())
        .collect();
    if name.is_empty() {
        "nsbox".to_string()
    } else {
        name.join(".")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets() {
        let n = parse_subnet("10.88.0.0/16").unwrap();
        assert_eq!(n.to_string(), "10.88.0.0/16");
        assert_eq!(gateway(&n), Ipv4Addr::new(10, 88, 0, 1));
        assert_eq!(
            host_range(&n),
            (Ipv4Addr::new(10, 88, 0, 2), Ipv4Addr::new(10, 88, 255, 254))
        );
        assert_eq!(
            parse_subnet("10.88.0.1/16").unwrap_err().to_string(),
            r#"subnet "10.88.0.1/16" has host bits set (did you mean 10.88.0.0/16?)"#
        );
        assert!(parse_subnet("10.88.0.0").is_err());
        assert!(parse_subnet("10.88.0.0/31").is_err());
        assert!(parse_subnet("nope/24").is_err());
        let small = parse_subnet("10.0.0.0/30").unwrap();
        let (first, last) = host_range(&small);
        assert_eq!(first, last);
        assert!(overlaps(&n, &parse_subnet("10.88.3.0/24").unwrap()));
        assert!(!overlaps(&n, &parse_subnet("10.89.0.0/24").unwrap()));
        assert!(contains(&n, Ipv4Addr::new(10, 88, 9, 9)));
    }

    #[test]
    fn ports() {
        let p = parse_port("8080:80").unwrap();
        assert_eq!(
            (p.host_ip, p.host_port, p.container_port, p.protocol),
            (None, 8080, 80, PortProtocol::Tcp)
        );
        assert_eq!(p.to_string(), "8080:80/tcp");
        let p = parse_port("127.0.0.1:53:5353/udp").unwrap();
        assert_eq!(p.host_ip, Some(Ipv4Addr::LOCALHOST));
        assert_eq!(p.protocol, PortProtocol::Udp);
        assert_eq!(p.to_string(), "127.0.0.1:53:5353/udp");
        assert_eq!(parse_port("0.0.0.0:1:2").unwrap().host_ip, None);
        for bad in [
            "80", "0:80", "80:70000", "a:80", "1:2/sctp", "x:1:2", "1:2:3:4",
        ] {
            assert!(parse_port(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_ports("1:2, 3:4/udp").unwrap().len(), 2);
        assert_eq!(
            parse_ports("1:2,1:3").unwrap_err().to_string(),
            "published ports 1:2/tcp and 1:3/tcp take the same host port"
        );
        assert_eq!(
            parse_port("x:1:2").unwrap_err().to_string(),
            r#"published port "x:1:2": "x" is not an IPv4 address"#
        );
        assert_eq!(
            parse_port("0:80").unwrap_err().to_string(),
            r#"published port "0:80": host port "0" is not a number from 1 to 65535"#
        );
        assert!(parse_ports("1:2,127.0.0.1:1:3").is_err());
        assert!(parse_ports("1:2/tcp,1:2/udp").is_ok());
        assert!(parse_ports("127.0.0.1:1:2,127.0.0.2:1:2").is_ok());
    }

    #[test]
    fn names() {
        assert!(validate_bridge("nsbox0").is_ok());
        assert!(validate_bridge("").is_err());
        assert!(validate_bridge("a-very-long-bridge").is_err());
        assert!(validate_bridge("br/0").is_err());
        assert!(validate_hostname("web-1.example").is_ok());
        assert!(validate_hostname("bad name").is_err());
        assert!(validate_hostname("evil\n10.0.0.1 bank").is_err());
        for id in ["web1", "my_ctr+2", "..a..", "_", "-x-.y"] {
            let h = hostname_from_id(id);
            assert!(validate_hostname(&h).is_ok(), "{id} -> {h}");
        }
        assert_eq!(hostname_from_id("my_ctr"), "my-ctr");
    }

    #[test]
    fn settings_only_for_bridges() {
        let mut a = BTreeMap::new();
        a.insert(PORTS_ANNOTATION.to_string(), "80:80".to_string());
        assert_eq!(
            bridge_settings(Mode::None, &a).unwrap_err().to_string(),
            "annotation nsbox.ports needs nsbox.network=bridge (the network is none)"
        );
        let s = bridge_settings(Mode::Bridge, &a).unwrap().unwrap();
        assert_eq!(s.bridge, DEFAULT_BRIDGE);
        assert_eq!(s.subnet, DEFAULT_SUBNET);
        assert_eq!(s.ports.len(), 1);
    }
}
