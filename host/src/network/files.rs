//! /etc/hosts, /etc/hostname and /etc/resolv.conf for a bridged container,
//! as Docker writes them. They live in the container's state directory and
//! are bind-mounted over the image's, which is never written.

use std::net::Ipv4Addr;
use std::path::Path;

/// File names in the state directory, and where each is mounted.
pub const FILES: [(&str, &str); 3] = [
    ("hosts", "/etc/hosts"),
    ("hostname", "/etc/hostname"),
    ("resolv.conf", "/etc/resolv.conf"),
];

pub fn hosts(hostname: &str, ip: Ipv4Addr) -> String {
    format!(
        "127.0.0.1\tlocalhost\n\
         ::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\n\
         ff00::0\tip6-mcastprefix\n\
         ff02::1\tip6-allnodes\n\
         ff02::2\tip6-allrouters\n\
         {ip}\t{hostname}\n"
    )
}

/// The host's resolv.conf without its loopback nameservers: a resolver on
/// the host's 127.0.0.53 (systemd-resolved, dnsmasq) cannot be reached from
/// the container's own loopback. Docker then falls back to public servers;
/// nsbox sends no DNS anywhere the user did not choose, and says so.
pub fn resolv_conf(host: &str) -> String {
    let mut out = String::new();
    let mut servers = 0;
    let mut dropped = Vec::new();
    for line in host.lines() {
        let t = line.trim();
        let mut words = t.split_whitespace();
        match words.next() {
            Some("nameserver") => {
                let addr = words.next().unwrap_or("");
                let loopback = addr
                    .parse::<std::net::IpAddr>()
                    .map(|a| a.is_loopback())
                    .unwrap_or(true);
                if loopback {
                    dropped.push(addr.to_string());
                } else {
                    out.push_str(t);
                    out.push('\n');
                    servers += 1;
                }
            }
            Some("search" | "domain" | "options") => {
                out.push_str(t);
                out.push('\n');
            }
            _ => {}
        }
    }
    if servers == 0 {
        let why = if dropped.is_empty() {
            "the host has no nameserver".to_string()
        } else {
            format!(
                "the host's nameservers ({}) are loopback addresses, unreachable from the container",
                dropped.join(", ")
            )
        };
        out.insert_str(0, &format!("# nsbox: no nameserver: {why}\n"));
    }
    out
}

/// Write the three files into `dir`.
pub fn write(dir: &Path, hostname: &str, ip: Ipv4Addr) -> std::io::Result<()> {
    let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    for (name, text) in [
        ("hosts", hosts(hostname, ip)),
        ("hostname", format!("{hostname}\n")),
        ("resolv.conf", resolv_conf(&host_resolv)),
    ] {
        std::fs::write(dir.join(name), text)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_nameservers_are_left_out() {
        let r = resolv_conf("nameserver 127.0.0.53\noptions edns0\nsearch lan\n");
        assert!(r.starts_with("# nsbox: no nameserver"), "{r}");
        assert!(r.contains("127.0.0.53"));
        assert!(!r.contains("\nnameserver"));
        assert!(r.contains("options edns0\n") && r.contains("search lan\n"));
        let r = resolv_conf("# comment\nnameserver 192.0.2.53\nnameserver ::1\n");
        assert_eq!(r, "nameserver 192.0.2.53\n");
    }

    #[test]
    fn hosts_names_the_container() {
        let h = hosts("web1", Ipv4Addr::new(10, 88, 0, 2));
        assert!(h.starts_with("127.0.0.1\tlocalhost\n"));
        assert!(h.ends_with("10.88.0.2\tweb1\n"));
    }
}
