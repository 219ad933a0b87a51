//! The nftables table of one bridge: masquerading out of its subnet, DNAT
//! of published ports, and what loopback needs, written over netlink
//! (nfnetlink.rs) in the kernel's own terms, as `nft` would write them.
//!
//! The table's rules depend only on the bridge and its subnet; what a
//! container adds are elements of two maps of published ports. So the
//! table is made whole, in one transaction (`add table; delete table;
//! table ...`: never half a table, never rules twice), when the bridge's
//! first container plugs in, and after that each container adds and
//! removes only its own map elements, one transaction each: nothing else
//! in the table changes, and the cost does not grow with the number of
//! containers. The table goes with the bridge's last container.
//!
//! Published ports are maps, looked up by (protocol, port) and by
//! (host address, protocol, port), that give the container's address and
//! port as one concatenated value. Loopback: 127.0.0.1:PORT is DNATed in
//! the output hook like any local address; the kernel routes such packets
//! out of the bridge only with `route_localnet` on it (set by the caller),
//! and they leave masqueraded to the bridge's address. `route_localnet`
//! would also let a container send to the host's 127.0.0.0/8 through the
//! bridge (CVE-2020-8558), which the `guard` chain drops before conntrack
//! sees it.
//!
//! `nft list table ip nsbox-BRIDGE` reads it back as:
//!
//! ```text
//! table ip nsbox-nsbox0 {
//!     map ports_any { type inet_proto . inet_service : ipv4_addr . inet_service ... }
//!     map ports_ip { type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service ... }
//!     chain guard { type filter hook prerouting priority raw; ...
//!         iifname "nsbox0" ip daddr 127.0.0.0/8 drop }
//!     chain prerouting { type nat hook prerouting priority dstnat; ...
//!         meta l4proto { tcp, udp } fib daddr type local dnat ip to meta l4proto . th dport map @ports_any
//!         meta l4proto { tcp, udp } dnat ip to ip daddr . meta l4proto . th dport map @ports_ip }
//!     chain output { type nat hook output priority -100; ... (the same two) }
//!     chain postrouting { type nat hook postrouting priority srcnat; ...
//!         oifname "nsbox0" ct status dnat ip saddr 127.0.0.0/8 masquerade
//!         oifname "nsbox0" ct status dnat ip saddr 10.89.0.0/16 masquerade
//!         ip saddr 10.89.0.0/16 oifname != "nsbox0" masquerade }
//!     chain forward { type filter hook forward priority filter; ...
//!         oifname "nsbox0" ct state established,related accept
//!         oifname "nsbox0" ct status dnat accept
//!         oifname "nsbox0" iifname "nsbox0" accept
//!         oifname "nsbox0" drop }
//! }
//! ```

use std::net::Ipv4Addr;

use netlink_packet_core::{DefaultNla, NLM_F_APPEND, NLM_F_CREATE};
use netlink_packet_netfilter::nftables::{
    Bitwise, ChainAttribute, Cmp, DataAttribute, ExpressionAttribute, Expressions, Hook,
    HookNumber, Immediate, InetHookNumber, ListAttribute, Lookup, Meta, MetaKey, NfTablesMessage,
    Operator, Payload, Register, RuleAttribute, SetAttribute, SetDescription, SetElementAttribute,
    SetElementList, SetElementMessage, SetFlags, SetMessage, TableAttribute, TableMessage, Verdict,
    VerdictAttribute,
};
use netlink_packet_netfilter::nftables::{ChainMessage, RuleMessage};
use netlink_packet_netfilter::NetfilterProtoFamily;
use protocol::{PortMapping, PortProtocol, Subnet};

pub use super::nfnetlink::{Batch, NfTables, NfnlError};

/// Our tables are `ip` tables.
pub const FAMILY: NetfilterProtoFamily = NetfilterProtoFamily::IPv4;

/// The table of bridge `bridge`: named for nsbox and the bridge, so that
/// `nft list tables` tells whose it is.
pub fn table_name(bridge: &str) -> String {
    format!("nsbox-{bridge}")
}

/// Published ports on every host address: (protocol, port) to (address,
/// port).
const PORTS_ANY: &str = "ports_any";
/// Published ports on one host address: (address, protocol, port) to
/// (address, port).
const PORTS_IP: &str = "ports_ip";

// nftables' data types (nft's datatype.h), for the maps' key and data
// types, which `nft list` reads to print the elements; a concatenation
// packs them 6 bits each.
const TYPE_IPV4_ADDR: u32 = 7;
const TYPE_INET_PROTO: u32 = 12;
const TYPE_INET_SERVICE: u32 = 13;
const TYPE_BITS: u32 = 6;

fn concat_type(types: &[u32]) -> u32 {
    types.iter().fold(0, |t, &x| (t << TYPE_BITS) | x)
}

// The kernel's constants (linux/netfilter/nf_tables.h, netfilter.h).
const NF_DROP: u32 = 0;
const NF_ACCEPT: u32 = 1;
const NFT_PAYLOAD_NETWORK_HEADER: u32 = 1;
const NFT_PAYLOAD_TRANSPORT_HEADER: u32 = 2;
const NFT_CT_STATE: u32 = 0;
const NFT_CT_STATUS: u32 = 2;
const NFT_FIB_RESULT_ADDRTYPE: u32 = 3;
const NFTA_FIB_F_DADDR: u32 = 2;
const RTN_LOCAL: u32 = 2;
const NFT_NAT_DNAT: u32 = 1;
const NFPROTO_IPV4: u32 = 2;
const IPS_DST_NAT: u32 = 0x20;
const CT_ESTABLISHED_RELATED: u32 = 0x02 | 0x04;
const IFNAMSIZ: usize = 16;

/// The container's address and port a published port leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    pub port: PortMapping,
    pub container: Ipv4Addr,
}

fn proto_number(p: PortProtocol) -> u8 {
    match p {
        PortProtocol::Tcp => 6,
        PortProtocol::Udp => 17,
    }
}

/// A map element's key and data, as the lookups read them: each part of a
/// concatenation in a 32-bit register of its own, in network byte order.
fn element(p: &Published) -> (&'static str, Vec<u8>, Vec<u8>) {
    let port = p.port.host_port.to_be_bytes();
    let proto = [proto_number(p.port.protocol), 0, 0, 0];
    let (map, mut key) = match p.port.host_ip {
        None => (PORTS_ANY, Vec::new()),
        Some(ip) => (PORTS_IP, ip.octets().to_vec()),
    };
    key.extend_from_slice(&proto);
    key.extend_from_slice(&[port[0], port[1], 0, 0]);
    let to = p.port.container_port.to_be_bytes();
    let mut data = p.container.octets().to_vec();
    data.extend_from_slice(&[to[0], to[1], 0, 0]);
    (map, key, data)
}

// ---------------------------------------------------------------------------
// Expressions, in the registers nft itself uses

fn expr(e: Expressions) -> ListAttribute<ExpressionAttribute> {
    e.into()
}

/// An expression the crate has no type for, from its raw attributes.
fn raw(name: &str, attrs: &[(u16, u32)]) -> ListAttribute<ExpressionAttribute> {
    if attrs.is_empty() {
        return ListAttribute::Element(vec![ExpressionAttribute::Name(name.to_string())]);
    }
    expr(Expressions::Other {
        expression_type: name.to_string(),
        attributes: attrs
            .iter()
            .map(|&(k, v)| DefaultNla::new(k, v.to_be_bytes().to_vec()))
            .collect(),
    })
}

fn meta(key: MetaKey, reg: Register) -> ListAttribute<ExpressionAttribute> {
    expr(Expressions::Meta(vec![
        Meta::Key(key),
        Meta::DestinationRegister(reg),
    ]))
}

fn cmp(op: Operator, data: Vec<u8>) -> ListAttribute<ExpressionAttribute> {
    expr(Expressions::Cmp(vec![
        Cmp::SourceRegister(Register::Reg1),
        Cmp::Op(op),
        Cmp::Data(DataAttribute::Value(data)),
    ]))
}

fn payload(base: u32, offset: u32, len: u32, reg: Register) -> ListAttribute<ExpressionAttribute> {
    expr(Expressions::Payload(vec![
        Payload::DestinationRegister(reg),
        Payload::Base(base),
        Payload::Offset(offset),
        Payload::Len(len),
    ]))
}

/// reg1 = reg1 & mask (4 bytes).
fn and(mask: u32, big_endian: bool) -> ListAttribute<ExpressionAttribute> {
    let bytes = |v: u32| {
        if big_endian {
            v.to_be_bytes().to_vec()
        } else {
            v.to_ne_bytes().to_vec()
        }
    };
    expr(Expressions::Bitwise(vec![
        Bitwise::SourceRegister(Register::Reg1),
        Bitwise::DestinationRegister(Register::Reg1),
        Bitwise::Length(4),
        Bitwise::Mask(DataAttribute::Value(bytes(mask))),
        Bitwise::Xor(DataAttribute::Value(bytes(0))),
    ]))
}

fn verdict(code: u32) -> ListAttribute<ExpressionAttribute> {
    expr(Expressions::Immediate(vec![
        Immediate::DestinationRegister(Register::Verdict),
        Immediate::Data(DataAttribute::Verdict(vec![VerdictAttribute::Code(
            Verdict::Other(code),
        )])),
    ]))
}

fn ifname(name: &str) -> Vec<u8> {
    let mut v = name.as_bytes().to_vec();
    v.resize(IFNAMSIZ, 0);
    v
}

/// `iifname NAME` / `oifname NAME` (or `!=`).
fn ifname_is(key: MetaKey, op: Operator, name: &str) -> [ListAttribute<ExpressionAttribute>; 2] {
    [meta(key, Register::Reg1), cmp(op, ifname(name))]
}

/// `ip saddr NET` (offset 12) or `ip daddr NET` (offset 16).
fn ip_in(offset: u32, addr: Ipv4Addr, prefix: u8) -> [ListAttribute<ExpressionAttribute>; 3] {
    let mask = super::config::mask(prefix);
    [
        payload(NFT_PAYLOAD_NETWORK_HEADER, offset, 4, Register::Reg1),
        and(mask, true),
        cmp(
            Operator::Equal,
            (u32::from(addr) & mask).to_be_bytes().to_vec(),
        ),
    ]
}

/// `ct status dnat` / `ct state established,related`: any of the bits.
fn ct_has(key: u32, bits: u32) -> [ListAttribute<ExpressionAttribute>; 3] {
    [
        raw("ct", &[(2, key), (1, 1)]),
        and(bits, false),
        cmp(Operator::NotEqual, 0u32.to_ne_bytes().to_vec()),
    ]
}

fn masquerade() -> ListAttribute<ExpressionAttribute> {
    raw("masq", &[])
}

// ---------------------------------------------------------------------------
// Messages

fn table_msg(bridge: &str) -> TableMessage {
    TableMessage {
        attributes: vec![TableAttribute::Name(table_name(bridge))],
    }
}

/// The transaction's steps that remove the bridge's table, whether it
/// exists or not (adding an existing table is a no-op; deleting a missing
/// one fails).
pub fn remove(batch: &mut Batch, bridge: &str) {
    let name = table_name(bridge);
    batch.push(
        NfTablesMessage::NewTable(table_msg(bridge)),
        NLM_F_CREATE,
        format!("add table ip {name}"),
    );
    batch.push(
        NfTablesMessage::DeleteTable(table_msg(bridge)),
        0,
        format!("delete table ip {name}"),
    );
}

/// The transaction's steps that replace the bridge's table with one for
/// `subnet` and `published`.
pub fn replace(batch: &mut Batch, bridge: &str, subnet: &Subnet, published: &[Published]) {
    let table = table_name(bridge);
    remove(batch, bridge);
    batch.push(
        NfTablesMessage::NewTable(table_msg(bridge)),
        NLM_F_CREATE,
        format!("add table ip {table}"),
    );

    for (name, kind, hook, prio) in [
        ("guard", "filter", InetHookNumber::PreRouting, -300),
        ("prerouting", "nat", InetHookNumber::PreRouting, -100),
        ("output", "nat", InetHookNumber::LocalOut, -100),
        ("postrouting", "nat", InetHookNumber::PostRouting, 100),
        ("forward", "filter", InetHookNumber::Forward, 0),
    ] {
        batch.push(
            NfTablesMessage::NewChain(ChainMessage {
                attributes: vec![
                    ChainAttribute::Table(table.clone()),
                    ChainAttribute::Name(name.to_string()),
                    ChainAttribute::Hook(vec![
                        Hook::Number(HookNumber::Inet(hook)),
                        Hook::Priority(prio as u32),
                    ]),
                    ChainAttribute::Policy(NF_ACCEPT),
                    ChainAttribute::Type(kind.to_string()),
                ],
            }),
            NLM_F_CREATE,
            format!("add chain {name} to table ip {table}"),
        );
    }

    let data_type = concat_type(&[TYPE_IPV4_ADDR, TYPE_INET_SERVICE]);
    for (id, map, key_type, key_len) in [
        (
            1,
            PORTS_ANY,
            concat_type(&[TYPE_INET_PROTO, TYPE_INET_SERVICE]),
            8,
        ),
        (
            2,
            PORTS_IP,
            concat_type(&[TYPE_IPV4_ADDR, TYPE_INET_PROTO, TYPE_INET_SERVICE]),
            12,
        ),
    ] {
        batch.push(
            NfTablesMessage::NewSet(SetMessage {
                attributes: vec![
                    SetAttribute::Table(table.clone()),
                    SetAttribute::Name(map.to_string()),
                    SetAttribute::Flags(SetFlags::Map),
                    SetAttribute::KeyType(key_type),
                    SetAttribute::KeyLen(key_len),
                    SetAttribute::DataType(data_type),
                    SetAttribute::DataLen(8),
                    SetAttribute::Id(id),
                ],
            }),
            NLM_F_CREATE,
            format!("add map {map} to table ip {table}"),
        );
    }

    let mut rules = Rules {
        batch,
        table: &table,
        next_set_id: 3,
    };
    let br = bridge;
    let mut guard = ifname_is(MetaKey::Iifname, Operator::Equal, br).to_vec();
    guard.extend(ip_in(16, Ipv4Addr::new(127, 0, 0, 0), 8));
    guard.push(verdict(NF_DROP));
    rules.add("guard", guard);

    // Published ports, for packets that arrive (prerouting) and for the
    // host's own (output), 127.0.0.1 included.
    for chain in ["prerouting", "output"] {
        let tcp_or_udp = rules.tcp_or_udp();
        let mut any = tcp_or_udp;
        any.extend([
            raw(
                "fib",
                &[(2, NFT_FIB_RESULT_ADDRTYPE), (3, NFTA_FIB_F_DADDR), (1, 1)],
            ),
            cmp(Operator::Equal, RTN_LOCAL.to_ne_bytes().to_vec()),
            meta(MetaKey::L4Proto, Register::Reg1),
            payload(NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2, Register::Reg32_01),
        ]);
        any.extend(dnat(PORTS_ANY));
        rules.add(chain, any);

        let mut on_ip = rules.tcp_or_udp();
        on_ip.extend([
            payload(NFT_PAYLOAD_NETWORK_HEADER, 16, 4, Register::Reg1),
            meta(MetaKey::L4Proto, Register::Reg32_01),
            payload(NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2, Register::Reg32_02),
        ]);
        on_ip.extend(dnat(PORTS_IP));
        rules.add(chain, on_ip);
    }

    // DNATed connections from loopback, or from a container to the bridge's
    // address, go to the container from the bridge's address: from
    // 127.0.0.1 the reply could not come back, and from the container's own
    // subnet it would bypass the host's NAT.
    for (net, prefix) in [
        (Ipv4Addr::new(127, 0, 0, 0), 8),
        (subnet.addr, subnet.prefix),
    ] {
        let mut r = ifname_is(MetaKey::Oifname, Operator::Equal, br).to_vec();
        r.extend(ct_has(NFT_CT_STATUS, IPS_DST_NAT));
        r.extend(ip_in(12, net, prefix));
        r.push(masquerade());
        rules.add("postrouting", r);
    }
    let mut out = ip_in(12, subnet.addr, subnet.prefix).to_vec();
    out.extend(ifname_is(MetaKey::Oifname, Operator::NotEqual, br));
    out.push(masquerade());
    rules.add("postrouting", out);

    // Into the bridge only what answers the containers, what a published
    // port lets in, and what one container routes to another.
    let into = || ifname_is(MetaKey::Oifname, Operator::Equal, br).to_vec();
    let mut r = into();
    r.extend(ct_has(NFT_CT_STATE, CT_ESTABLISHED_RELATED));
    r.push(verdict(NF_ACCEPT));
    rules.add("forward", r);
    let mut r = into();
    r.extend(ct_has(NFT_CT_STATUS, IPS_DST_NAT));
    r.push(verdict(NF_ACCEPT));
    rules.add("forward", r);
    let mut r = into();
    r.extend(ifname_is(MetaKey::Iifname, Operator::Equal, br));
    r.push(verdict(NF_ACCEPT));
    rules.add("forward", r);
    let mut r = into();
    r.push(verdict(NF_DROP));
    rules.add("forward", r);

    add_elements(batch, bridge, published);
}

/// `dnat ip to KEY map @MAP`, KEY in the registers from reg 1 on: the map
/// gives the address in reg 1 and the port in reg 9.
fn dnat(map: &str) -> [ListAttribute<ExpressionAttribute>; 2] {
    [
        expr(Expressions::Lookup(vec![
            Lookup::Set(map.to_string()),
            Lookup::SourceRegister(Register::Reg1),
            Lookup::DestinationRegister(Register::Reg1),
        ])),
        raw(
            "nat",
            &[
                (1, NFT_NAT_DNAT),
                (2, NFPROTO_IPV4),
                (3, u32::from(Register::Reg1)),
                (5, u32::from(Register::Reg32_01)),
            ],
        ),
    ]
}

struct Rules<'a> {
    batch: &'a mut Batch,
    table: &'a str,
    next_set_id: u32,
}

impl Rules<'_> {
    fn add(&mut self, chain: &str, exprs: Vec<ListAttribute<ExpressionAttribute>>) {
        self.batch.push(
            NfTablesMessage::NewRule(RuleMessage {
                attributes: vec![
                    RuleAttribute::Table(self.table.to_string()),
                    RuleAttribute::Chain(chain.to_string()),
                    RuleAttribute::Expressions(exprs),
                ],
            }),
            NLM_F_CREATE | NLM_F_APPEND,
            format!("add a rule to chain {chain} of table ip {}", self.table),
        );
    }

    /// `meta l4proto { tcp, udp }`: an anonymous set, as nft makes one for
    /// each rule that has it (the kernel binds it to that rule).
    fn tcp_or_udp(&mut self) -> Vec<ListAttribute<ExpressionAttribute>> {
        let id = self.next_set_id;
        self.next_set_id += 1;
        let name = "__set%d";
        self.batch.push(
            NfTablesMessage::NewSet(SetMessage {
                attributes: vec![
                    SetAttribute::Table(self.table.to_string()),
                    SetAttribute::Name(name.to_string()),
                    SetAttribute::Flags(SetFlags::Anonymous | SetFlags::Constant),
                    SetAttribute::KeyType(TYPE_INET_PROTO),
                    SetAttribute::KeyLen(1),
                    SetAttribute::Id(id),
                    SetAttribute::Description(vec![SetDescription::Size(2)]),
                ],
            }),
            NLM_F_CREATE,
            format!("add the set {{ tcp, udp }} to table ip {}", self.table),
        );
        let elements = [PortProtocol::Tcp, PortProtocol::Udp]
            .into_iter()
            .map(|p| {
                ListAttribute::Element(vec![SetElementAttribute::Key(DataAttribute::Value(vec![
                    proto_number(p),
                ]))])
            })
            .collect();
        self.batch.push(
            NfTablesMessage::NewSetElement(SetElementMessage {
                attributes: vec![
                    SetElementList::Table(self.table.to_string()),
                    SetElementList::Set(name.to_string()),
                    SetElementList::SetId(id),
                    SetElementList::Elements(elements),
                ],
            }),
            NLM_F_CREATE,
            format!("fill the set {{ tcp, udp }} of table ip {}", self.table),
        );
        vec![
            meta(MetaKey::L4Proto, Register::Reg1),
            expr(Expressions::Lookup(vec![
                Lookup::Set(name.to_string()),
                Lookup::SourceRegister(Register::Reg1),
                Lookup::SetId(id),
            ])),
        ]
    }
}

/// Elements of `published` grouped by map, as one message per map.
fn element_messages(
    bridge: &str,
    published: &[Published],
    with_data: bool,
) -> Vec<(&'static str, SetElementMessage)> {
    let mut out = Vec::new();
    for map in [PORTS_ANY, PORTS_IP] {
        let elements: Vec<ListAttribute<SetElementAttribute>> = published
            .iter()
            .map(element)
            .filter(|(m, _, _)| *m == map)
            .map(|(_, key, data)| {
                let mut e = vec![SetElementAttribute::Key(DataAttribute::Value(key))];
                if with_data {
                    e.push(SetElementAttribute::Data(DataAttribute::Value(data)));
                }
                ListAttribute::Element(e)
            })
            .collect();
        if elements.is_empty() {
            continue;
        }
        out.push((
            map,
            SetElementMessage {
                attributes: vec![
                    SetElementList::Table(table_name(bridge)),
                    SetElementList::Set(map.to_string()),
                    SetElementList::Elements(elements),
                ],
            },
        ));
    }
    out
}

/// The transaction's steps that publish `published`.
pub fn add_elements(batch: &mut Batch, bridge: &str, published: &[Published]) {
    for (map, m) in element_messages(bridge, published, true) {
        batch.push(
            NfTablesMessage::NewSetElement(m),
            NLM_F_CREATE,
            format!(
                "add published ports to map {map} of table ip {}",
                table_name(bridge)
            ),
        );
    }
}

/// The transaction's steps that withdraw `published`.
pub fn delete_elements(batch: &mut Batch, bridge: &str, published: &[Published]) {
    for (map, m) in element_messages(bridge, published, false) {
        batch.push(
            NfTablesMessage::DeleteSetElement(m),
            0,
            format!(
                "remove published ports from map {map} of table ip {}",
                table_name(bridge)
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::config::parse_port;

    #[test]
    fn elements_are_keyed_as_the_lookups_read_them() {
        let p = Published {
            port: parse_port("8080:80").unwrap(),
            container: Ipv4Addr::new(10, 88, 0, 2),
        };
        let (map, key, data) = element(&p);
        assert_eq!(map, PORTS_ANY);
        assert_eq!(key, [6, 0, 0, 0, 0x1f, 0x90, 0, 0]);
        assert_eq!(data, [10, 88, 0, 2, 0, 80, 0, 0]);
        let p = Published {
            port: parse_port("127.0.0.1:53:5353/udp").unwrap(),
            container: Ipv4Addr::new(10, 88, 0, 3),
        };
        let (map, key, data) = element(&p);
        assert_eq!(map, PORTS_IP);
        assert_eq!(key, [127, 0, 0, 1, 17, 0, 0, 0, 0, 53, 0, 0]);
        assert_eq!(data, [10, 88, 0, 3, 0x14, 0xe9, 0, 0]);
    }

    #[test]
    fn map_types_are_nfts_concatenations() {
        // As `nft --debug=netlink` shows them for these types.
        assert_eq!(concat_type(&[TYPE_INET_PROTO, TYPE_INET_SERVICE]), 0x30d);
        assert_eq!(
            concat_type(&[TYPE_IPV4_ADDR, TYPE_INET_PROTO, TYPE_INET_SERVICE]),
            0x730d
        );
        assert_eq!(concat_type(&[TYPE_IPV4_ADDR, TYPE_INET_SERVICE]), 0x1cd);
    }

    #[test]
    fn a_table_is_one_transaction_that_replaces_the_old() {
        let mut b = Batch::new();
        let subnet = Subnet {
            addr: Ipv4Addr::new(10, 89, 0, 0),
            prefix: 16,
        };
        replace(&mut b, "nsbox0", &subnet, &[]);
        let whats = b.whats();
        assert_eq!(whats[0], "add table ip nsbox-nsbox0");
        assert_eq!(whats[1], "delete table ip nsbox-nsbox0");
        assert_eq!(whats[2], "add table ip nsbox-nsbox0");
        // 5 chains, 2 maps, 4 anonymous sets and their elements, 12 rules.
        assert_eq!(whats.len(), 3 + 5 + 2 + 4 * 2 + 12, "{whats:#?}");
        let mut b = Batch::new();
        delete_elements(
            &mut b,
            "nsbox0",
            &[Published {
                port: parse_port("8080:80").unwrap(),
                container: Ipv4Addr::new(10, 89, 0, 2),
            }],
        );
        assert_eq!(
            b.whats(),
            ["remove published ports from map ports_any of table ip nsbox-nsbox0"]
        );
    }
}
