//! A small synchronous rtnetlink client: the links, addresses and routes
//! bridge networking needs, and nothing else.
//!
//! netlink-packet-route builds and parses the messages; netlink-sys is the
//! socket. Both are used synchronously on purpose: the shim has no async
//! runtime and must not grow threads (it clones tiny-init), and each request
//! here is one datagram out and an acknowledgement back.

use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL,
    NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage, AddressScope};
use netlink_packet_route::link::{
    AfSpecInet6, AfSpecUnspec, In6AddrGenMode, InfoBridge, InfoData, InfoKind, InfoVeth,
    LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

/// One rtnetlink socket, bound to the network namespace it was opened in.
pub struct Netlink {
    socket: Socket,
    seq: u32,
}

/// A link as a dump shows it.
#[derive(Debug, Clone)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub alias: Option<String>,
    /// IFLA_MASTER: the bridge a port is attached to.
    pub master: Option<u32>,
    pub kind: Option<String>,
}

/// An IPv4 address on a link.
#[derive(Debug, Clone, Copy)]
pub struct Address {
    pub index: u32,
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Netlink {
    /// A socket in the caller's network namespace.
    pub fn open() -> io::Result<Netlink> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        Ok(Netlink { socket, seq: 1 })
    }

    /// A socket in the network namespace `netns` (an open /proc/PID/ns/net).
    /// A netlink socket stays in the namespace it was made in, so the process
    /// visits the namespace for the one `socket()` call and comes straight
    /// back. The caller is single-threaded (the shim), so no other thread
    /// can see the process in the container's namespace meanwhile.
    pub fn open_in(netns: BorrowedFd<'_>) -> io::Result<Netlink> {
        use nix::sched::{setns, CloneFlags};
        let own = std::fs::File::open("/proc/thread-self/ns/net")?;
        setns(netns, CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
        let made = Netlink::open();
        if let Err(e) = setns(own.as_fd(), CloneFlags::CLONE_NEWNET) {
            // Carrying on would configure the host's network from inside a
            // container's namespace: nothing sane is left to do.
            log::error!("return to the host's network namespace: {e}");
            std::process::abort();
        }
        made
    }

    /// Send one request and collect the answers up to the acknowledgement
    /// (or the end of a dump). An NLMSG_ERROR with a code is the error.
    fn request(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        header.sequence_number = seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        packet.finalize();
        let mut buf = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut buf);
        self.socket.send(&buf, 0)?;

        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let mut out = Vec::new();
        loop {
            let (data, _) = self.socket.recv_from_full()?;
            let mut offset = 0;
            while offset < data.len() {
                let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&data[offset..])
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                let len = reply.header.length as usize;
                if len == 0 {
                    break;
                }
                offset += (len + 3) & !3;
                if reply.header.sequence_number != seq {
                    continue;
                }
                match reply.payload {
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(out),
                            Some(_) => Err(e.to_io()),
                        }
                    }
                    NetlinkPayload::Done(_) => return Ok(out),
                    NetlinkPayload::InnerMessage(m) => {
                        out.push(m);
                        if !dump && flags & NLM_F_ACK == 0 {
                            return Ok(out);
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    pub fn links(&mut self) -> io::Result<Vec<Link>> {
        let replies = self.request(
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            NLM_F_DUMP,
        )?;
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(link_of(&l)),
                _ => None,
            })
            .collect())
    }

    pub fn link(&mut self, name: &str) -> io::Result<Option<Link>> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        self.get_link(msg)
    }

    pub fn link_by_index(&mut self, index: u32) -> io::Result<Option<Link>> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        self.get_link(msg)
    }

    /// One link, asked for by name or index; None if there is none.
    fn get_link(&mut self, msg: LinkMessage) -> io::Result<Option<Link>> {
        match self.request(RouteNetlinkMessage::GetLink(msg), 0) {
            Ok(replies) => Ok(replies.into_iter().find_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(link_of(&l)),
                _ => None,
            })),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A bridge named `name` with a fixed MAC address (otherwise it takes
    /// the lowest of its ports', and changes as containers come and go),
    /// and no multicast snooping: it floods multicast to every port, as it
    /// does anyway for a group that nobody has joined. With snooping on,
    /// each port that comes up or goes down re-arms the multicast timers of
    /// every other port (br_port_state_selection): a container's start
    /// and stop cost the host time in proportion to the containers on the
    /// bridge (about 0.3 ms each at 500, in perf's samples of the shim).
    pub fn create_bridge(&mut self, name: &str, mac: [u8; 6]) -> io::Result<()> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        msg.attributes.push(LinkAttribute::Address(mac.to_vec()));
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Bridge),
            LinkInfo::Data(InfoData::Bridge(vec![InfoBridge::MulticastSnooping(false)])),
        ]));
        self.request(RouteNetlinkMessage::NewLink(msg), NLM_F_CREATE | NLM_F_EXCL)
            .map(drop)
    }

    /// Set IFLA_IFALIAS: a free-text label `ip link` shows.
    pub fn set_alias(&mut self, index: u32, alias: &str) -> io::Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes
            .push(LinkAttribute::IfAlias(alias.to_string()));
        self.request(RouteNetlinkMessage::SetLink(msg), 0).map(drop)
    }

    /// A veth pair: `host` stays here, attached to `master` and up (with
    /// no IPv6 address, see `set_up_ipv4_only`); the peer is made directly
    /// inside `peer_netns` as `peer` with `peer_mac`, so it never appears in
    /// the host's namespace under a temporary name. The peer stays down.
    pub fn create_veth(
        &mut self,
        host: &str,
        master: u32,
        peer: &str,
        peer_mac: [u8; 6],
        peer_netns: BorrowedFd<'_>,
    ) -> io::Result<()> {
        let mut peer_msg = LinkMessage::default();
        peer_msg
            .attributes
            .push(LinkAttribute::IfName(peer.to_string()));
        peer_msg
            .attributes
            .push(LinkAttribute::Address(peer_mac.to_vec()));
        peer_msg
            .attributes
            .push(LinkAttribute::NetNsFd(peer_netns.as_raw_fd()));
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(host.to_string()));
        // One queue each way, which a veth uses anyway: asked for up
        // front, instead of the kernel making one per CPU and cutting them
        // down to one once the link exists, which waits for an (expedited)
        // RCU grace period for each end under the rtnl lock; with many
        // containers coming and going, those waits queue behind the ones
        // of their deletions.
        for m in [&mut msg, &mut peer_msg] {
            m.attributes.push(LinkAttribute::NumTxQueues(1));
            m.attributes.push(LinkAttribute::NumRxQueues(1));
        }
        msg.attributes.push(LinkAttribute::Controller(master));
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer_msg))),
        ]));
        self.request(RouteNetlinkMessage::NewLink(msg), NLM_F_CREATE | NLM_F_EXCL)?;
        disable_ipv6(host)?;
        // The kernel takes no IPv6 settings in the request that makes the
        // link (EAFNOSUPPORT), so the host's end comes up in a second one,
        // found by its name.
        let mut up = ipv4_only_up();
        up.attributes.push(LinkAttribute::IfName(host.to_string()));
        self.request(RouteNetlinkMessage::SetLink(up), 0).map(drop)
    }

    /// Bring a container's link up with no IPv6 link-local address
    /// (addrgenmode none), as Docker does for a network without IPv6 by
    /// disabling IPv6 on the container's interface. nsbox's bridge is
    /// IPv4 only, and a link-local address is not free: on coming up each
    /// end would send duplicate address detection, MLD reports and router
    /// solicitations, which the bridge floods to every other port and
    /// every other container's namespace, so each new container cost the
    /// host CPU in proportion to the containers already there.
    pub fn set_up_ipv4_only(&mut self, index: u32) -> io::Result<()> {
        let mut msg = ipv4_only_up();
        msg.header.index = index;
        self.request(RouteNetlinkMessage::SetLink(msg), 0).map(drop)
    }

    pub fn set_up(&mut self, index: u32) -> io::Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
        self.request(RouteNetlinkMessage::SetLink(msg), 0).map(drop)
    }

    /// Delete a link by name. Ok(false) if there was none.
    pub fn delete_link(&mut self, name: &str) -> io::Result<bool> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        match self.request(RouteNetlinkMessage::DelLink(msg), 0) {
            Ok(_) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub fn addresses(&mut self) -> io::Result<Vec<Address>> {
        let mut msg = AddressMessage::default();
        msg.header.family = AddressFamily::Inet;
        let replies = self.request(RouteNetlinkMessage::GetAddress(msg), NLM_F_DUMP)?;
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewAddress(a) => {
                    let addr = a.attributes.iter().find_map(|at| match at {
                        AddressAttribute::Local(IpAddr::V4(ip)) => Some(*ip),
                        _ => None,
                    });
                    let addr = addr.or_else(|| {
                        a.attributes.iter().find_map(|at| match at {
                            AddressAttribute::Address(IpAddr::V4(ip)) => Some(*ip),
                            _ => None,
                        })
                    })?;
                    Some(Address {
                        index: a.header.index,
                        addr,
                        prefix: a.header.prefix_len,
                    })
                }
                _ => None,
            })
            .collect())
    }

    /// Add `addr/prefix` to the link; an address that is already there is
    /// not an error.
    pub fn add_address(&mut self, index: u32, addr: Ipv4Addr, prefix: u8) -> io::Result<()> {
        let mut msg = AddressMessage::default();
        msg.header.family = AddressFamily::Inet;
        msg.header.prefix_len = prefix;
        msg.header.index = index;
        msg.header.scope = AddressScope::Universe;
        let broadcast = u32::from(addr) | !super::config::mask(prefix);
        msg.attributes.push(AddressAttribute::Local(addr.into()));
        msg.attributes.push(AddressAttribute::Address(addr.into()));
        msg.attributes
            .push(AddressAttribute::Broadcast(Ipv4Addr::from(broadcast)));
        match self.request(
            RouteNetlinkMessage::NewAddress(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        ) {
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
            r => r.map(drop),
        }
    }

    pub fn add_default_route(&mut self, gateway: Ipv4Addr, oif: u32) -> io::Result<()> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = AddressFamily::Inet;
        msg.header.table = RouteHeader::RT_TABLE_MAIN;
        msg.header.protocol = RouteProtocol::Boot;
        msg.header.scope = RouteScope::Universe;
        msg.header.kind = RouteType::Unicast;
        msg.attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet(gateway)));
        msg.attributes.push(RouteAttribute::Oif(oif));
        self.request(
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        )
        .map(drop)
    }
}

/// No IPv6 at all on the host's end of a veth, before it comes up: a bridge
/// port needs none (the bridge itself holds the host's addresses), and an
/// IPv6 link gets a multicast route (ff00::/8) in the host's table on
/// coming up, one per container, which the kernel walks whole whenever a
/// link goes down or changes (fib6_clean_all). There is no netlink
/// attribute for it; the sysctl is per link. A host without IPv6 has no
/// such file, and nothing to do.
fn disable_ipv6(link: &str) -> io::Result<()> {
    let path = format!("/proc/sys/net/ipv6/conf/{link}/disable_ipv6");
    let written = match std::fs::OpenOptions::new().write(true).open(&path) {
        Ok(mut f) => std::io::Write::write_all(&mut f, b"1"),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    };
    written.map_err(|e| io::Error::new(e.kind(), format!("{path}: {e}")))
}

/// A link change that brings the link up with addrgenmode none: in one
/// request the kernel applies the mode before the link comes up, so no
/// link-local address is ever made.
fn ipv4_only_up() -> LinkMessage {
    let mut msg = LinkMessage::default();
    msg.header.flags = LinkFlags::Up;
    msg.header.change_mask = LinkFlags::Up;
    msg.attributes
        .push(LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet6(
            vec![AfSpecInet6::AddrGenMode(In6AddrGenMode::None)],
        )]));
    msg
}

fn link_of(l: &LinkMessage) -> Link {
    let mut link = Link {
        index: l.header.index,
        name: String::new(),
        alias: None,
        master: None,
        kind: None,
    };
    for a in &l.attributes {
        match a {
            LinkAttribute::IfName(n) => link.name = n.clone(),
            LinkAttribute::IfAlias(s) => link.alias = Some(s.clone()),
            LinkAttribute::Controller(m) => link.master = Some(*m),
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    if let LinkInfo::Kind(k) = i {
                        link.kind = Some(k.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    link
}
