//! The nftables table of one bridge: masquerading out of its subnet, DNAT
//! of published ports, and what loopback needs.
//!
//! The table is a pure function of the bridge's reservations: every change
//! replaces it whole, in one nft transaction (`add table; delete table;
//! table ...`), so it never holds half a change, rules never pile up twice,
//! and nothing needs rule handles. Conntrack keeps established connections
//! going across a replacement.
//!
//! The `nftables` crate supplies the typed JSON schema of libnftables; `nft
//! -j -f -` applies it. We run `nft` ourselves instead of through the crate's
//! helper so that its stderr is captured (the helper lets it through to
//! whatever our stderr is: in the shim, the container's).
//!
//! Published ports are maps, looked up by (protocol, port) and by
//! (host address, protocol, port), that give the container's address and
//! port. Loopback: 127.0.0.1:PORT is DNATed in the output hook like any
//! local address; the kernel routes such packets out of the bridge only with
//! `route_localnet` on it (set by the caller), and they leave masqueraded
//! to the bridge's address. `route_localnet` would also let a container
//! send to the host's 127.0.0.0/8 through the bridge (CVE-2020-8558), which
//! the `guard` chain drops before conntrack sees it.

use std::borrow::Cow;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use nftables::expr::{
    Expression, Fib, FibFlag, FibResult, Map as MapExpr, Meta, MetaKey, NamedExpression, Payload,
    PayloadField, Prefix, SetItem, CT,
};
use nftables::schema::{
    Chain, Map, NfCmd, NfListObject, NfObject, Nftables, Rule, SetType, SetTypeValue, Table,
};
use nftables::stmt::{Match, Operator, Statement, NAT};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};
use protocol::{PortMapping, PortProtocol, Subnet};

/// The table of bridge `bridge`: named for nsbox and the bridge, so that
/// `nft list tables` tells whose it is.
pub fn table_name(bridge: &str) -> String {
    format!("nsbox-{bridge}")
}

/// Where `nft` is; None if nftables is not installed.
pub fn find() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
        .iter()
        .map(PathBuf::from)
        .chain(std::env::split_paths(&path))
        .map(|d| d.join("nft"))
        .find(|p| p.is_file())
}

pub const MISSING: &str =
    "bridge networking needs nftables' `nft` command (Debian package nftables)";

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("{MISSING}")]
    Missing,
    #[error("encode the nftables rules")]
    Encode(#[source] serde_json::Error),
    #[error("run {}", .0.display())]
    Run(std::path::PathBuf, #[source] std::io::Error),
    /// nft ran and refused the transaction: its first line of complaint.
    #[error("nft: {0}")]
    Refused(String),
}

/// Run one nft transaction.
pub fn apply(doc: &Nftables) -> Result<(), NftError> {
    let nft = find().ok_or(NftError::Missing)?;
    let payload = serde_json::to_vec(doc).map_err(NftError::Encode)?;
    let run_error = |e| NftError::Run(nft.clone(), e);
    let mut child = Command::new(&nft)
        .args(["-j", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(run_error)?;
    if let Some(mut stdin) = child.stdin.take() {
        // A write error shows as nft's own failure below.
        let _ = stdin.write_all(&payload);
    }
    let out = child.wait_with_output().map_err(run_error)?;
    if out.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    let first = err
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("failed without a message");
    Err(NftError::Refused(first.to_string()))
}

fn cmd(c: NfCmd<'static>) -> NfObject<'static> {
    NfObject::CmdObject(c)
}

fn s(v: impl Into<Cow<'static, str>>) -> Expression<'static> {
    Expression::String(v.into())
}

fn meta(key: MetaKey) -> Expression<'static> {
    Expression::Named(NamedExpression::Meta(Meta { key }))
}

fn payload(protocol: &'static str, field: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::Payload(Payload::PayloadField(
        PayloadField {
            protocol: protocol.into(),
            field: field.into(),
        },
    )))
}

fn prefix(addr: Ipv4Addr, len: u8) -> Expression<'static> {
    Expression::Named(NamedExpression::Prefix(Prefix {
        addr: Box::new(s(addr.to_string())),
        len: u32::from(len),
    }))
}

fn set(items: Vec<Expression<'static>>) -> Expression<'static> {
    Expression::Named(NamedExpression::Set(
        items.into_iter().map(SetItem::Element).collect(),
    ))
}

fn concat(items: Vec<Expression<'static>>) -> Expression<'static> {
    Expression::Named(NamedExpression::Concat(items))
}

fn ct(key: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::CT(CT {
        key: key.into(),
        family: None,
        dir: None,
    }))
}

fn is(left: Expression<'static>, right: Expression<'static>) -> Statement<'static> {
    Statement::Match(Match {
        left,
        right,
        op: Operator::EQ,
    })
}

fn is_not(left: Expression<'static>, right: Expression<'static>) -> Statement<'static> {
    Statement::Match(Match {
        left,
        right,
        op: Operator::NEQ,
    })
}

fn has(left: Expression<'static>, right: Expression<'static>) -> Statement<'static> {
    Statement::Match(Match {
        left,
        right,
        op: Operator::IN,
    })
}

fn proto(p: PortProtocol) -> Expression<'static> {
    s(p.to_string())
}

/// The container's address and port a published port leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    pub port: PortMapping,
    pub container: Ipv4Addr,
}

/// The transaction that removes the bridge's table, whether it exists or
/// not (adding an existing table is a no-op; deleting a missing one fails).
pub fn removal(bridge: &str) -> Nftables<'static> {
    let table = Table {
        family: NfFamily::IP,
        name: table_name(bridge).into(),
        handle: None,
    };
    Nftables {
        objects: vec![
            cmd(NfCmd::Add(NfListObject::Table(table.clone()))),
            cmd(NfCmd::Delete(NfListObject::Table(table))),
        ]
        .into(),
    }
}

/// The transaction that replaces the bridge's table with one for `subnet`
/// and `published`.
pub fn replacement(bridge: &str, subnet: &Subnet, published: &[Published]) -> Nftables<'static> {
    let name = table_name(bridge);
    let mut objects = removal(bridge).objects.into_owned();
    objects.push(cmd(NfCmd::Add(NfListObject::Table(Table {
        family: NfFamily::IP,
        name: name.clone().into(),
        handle: None,
    }))));

    // Two maps per lookup, one for the address and one for the port: nft
    // 1.0.6 (Debian 12) takes no concatenated data type in JSON.
    let mut elems: [Vec<Expression<'static>>; 4] = Default::default();
    for p in published {
        let addr = s(p.container.to_string());
        let port = Expression::Number(u32::from(p.port.container_port));
        let host_port = Expression::Number(u32::from(p.port.host_port));
        let (key, i) = match p.port.host_ip {
            None => (concat(vec![proto(p.port.protocol), host_port]), 0),
            Some(ip) => (
                concat(vec![s(ip.to_string()), proto(p.port.protocol), host_port]),
                2,
            ),
        };
        elems[i].push(Expression::List(vec![key.clone(), addr]));
        elems[i + 1].push(Expression::List(vec![key, port]));
    }
    let any_key = || vec![SetType::InetProto, SetType::InetService];
    let ip_key = || vec![SetType::Ipv4Addr, SetType::InetProto, SetType::InetService];
    let [any_addr, any_port, ip_addr, ip_port] = elems;
    for (map, key, data, elems) in [
        ("ports_any_addr", any_key(), SetType::Ipv4Addr, any_addr),
        ("ports_any_port", any_key(), SetType::InetService, any_port),
        ("ports_ip_addr", ip_key(), SetType::Ipv4Addr, ip_addr),
        ("ports_ip_port", ip_key(), SetType::InetService, ip_port),
    ] {
        objects.push(cmd(NfCmd::Add(NfListObject::Map(Box::new(Map {
            family: NfFamily::IP,
            table: name.clone().into(),
            name: map.into(),
            handle: None,
            set_type: SetTypeValue::Concatenated(key.into()),
            map: SetTypeValue::Single(data),
            policy: None,
            flags: None,
            elem: (!elems.is_empty()).then(|| elems.into()),
            timeout: None,
            gc_interval: None,
            size: None,
            comment: None,
        })))));
    }

    let chain = |n: &'static str, kind: NfChainType, hook: NfHook, prio: i32| {
        cmd(NfCmd::Add(NfListObject::Chain(Chain {
            family: NfFamily::IP,
            table: name.clone().into(),
            name: n.into(),
            newname: None,
            handle: None,
            _type: Some(kind),
            hook: Some(hook),
            prio: Some(prio),
            dev: None,
            policy: Some(NfChainPolicy::Accept),
        })))
    };
    objects.push(chain(
        "guard",
        NfChainType::Filter,
        NfHook::Prerouting,
        -300,
    ));
    objects.push(chain(
        "prerouting",
        NfChainType::NAT,
        NfHook::Prerouting,
        -100,
    ));
    objects.push(chain("output", NfChainType::NAT, NfHook::Output, -100));
    objects.push(chain(
        "postrouting",
        NfChainType::NAT,
        NfHook::Postrouting,
        100,
    ));
    objects.push(chain("forward", NfChainType::Filter, NfHook::Forward, 0));

    let rule = |chain: &'static str, expr: Vec<Statement<'static>>| {
        cmd(NfCmd::Add(NfListObject::Rule(Rule {
            family: NfFamily::IP,
            table: name.clone().into(),
            chain: chain.into(),
            expr: expr.into(),
            handle: None,
            index: None,
            comment: None,
        })))
    };
    let br = || s(bridge.to_string());
    let loopback = || prefix(Ipv4Addr::new(127, 0, 0, 0), 8);
    let subnet_expr = || prefix(subnet.addr, subnet.prefix);
    let tcp_or_udp = || is(meta(MetaKey::L4proto), set(vec![s("tcp"), s("udp")]));
    let lookup = |key: Vec<Expression<'static>>, map: String| {
        Expression::Named(NamedExpression::Map(Box::new(MapExpr {
            key: concat(key),
            data: s(format!("@{map}")),
        })))
    };
    let dnat = |maps: &'static str, key: Vec<Expression<'static>>| {
        Statement::DNAT(Some(NAT {
            addr: Some(lookup(key.clone(), format!("{maps}_addr"))),
            family: Some(nftables::stmt::NATFamily::IP),
            port: Some(lookup(key, format!("{maps}_port"))),
            flags: None,
        }))
    };
    let local = || {
        let mut flags = std::collections::HashSet::new();
        flags.insert(FibFlag::Daddr);
        is(
            Expression::Named(NamedExpression::Fib(Fib {
                result: FibResult::Type,
                flags,
            })),
            s("local"),
        )
    };

    // What comes in from the containers for the host's loopback addresses.
    objects.push(rule(
        "guard",
        vec![
            is(meta(MetaKey::Iifname), br()),
            is(payload("ip", "daddr"), loopback()),
            Statement::Drop(None),
        ],
    ));
    // Published ports, for packets that arrive (prerouting) and for the
    // host's own (output), 127.0.0.1 included.
    for chain in ["prerouting", "output"] {
        objects.push(rule(
            chain,
            vec![
                tcp_or_udp(),
                local(),
                dnat(
                    "ports_any",
                    vec![meta(MetaKey::L4proto), payload("th", "dport")],
                ),
            ],
        ));
        objects.push(rule(
            chain,
            vec![
                tcp_or_udp(),
                dnat(
                    "ports_ip",
                    vec![
                        payload("ip", "daddr"),
                        meta(MetaKey::L4proto),
                        payload("th", "dport"),
                    ],
                ),
            ],
        ));
    }
    // DNATed connections from loopback, or from a container to the bridge's
    // address, go to the container from the bridge's address: from
    // 127.0.0.1 the reply could not come back, and from the container's own
    // subnet it would bypass the host's NAT.
    objects.push(rule(
        "postrouting",
        vec![
            is(meta(MetaKey::Oifname), br()),
            has(ct("status"), s("dnat")),
            is(payload("ip", "saddr"), set(vec![loopback(), subnet_expr()])),
            Statement::Masquerade(None),
        ],
    ));
    objects.push(rule(
        "postrouting",
        vec![
            is(payload("ip", "saddr"), subnet_expr()),
            is_not(meta(MetaKey::Oifname), br()),
            Statement::Masquerade(None),
        ],
    ));
    // Into the bridge only what answers the containers, what a published
    // port lets in, and what one container routes to another.
    objects.push(rule(
        "forward",
        vec![
            is(meta(MetaKey::Oifname), br()),
            has(
                ct("state"),
                Expression::List(vec![s("established"), s("related")]),
            ),
            Statement::Accept(None),
        ],
    ));
    objects.push(rule(
        "forward",
        vec![
            is(meta(MetaKey::Oifname), br()),
            has(ct("status"), s("dnat")),
            Statement::Accept(None),
        ],
    ));
    objects.push(rule(
        "forward",
        vec![
            is(meta(MetaKey::Oifname), br()),
            is(meta(MetaKey::Iifname), br()),
            Statement::Accept(None),
        ],
    ));
    objects.push(rule(
        "forward",
        vec![is(meta(MetaKey::Oifname), br()), Statement::Drop(None)],
    ));
    Nftables {
        objects: objects.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_serializes_as_libnftables_json() {
        let subnet = Subnet {
            addr: Ipv4Addr::new(10, 88, 0, 0),
            prefix: 16,
        };
        let doc = replacement(
            "nsbox0",
            &subnet,
            &[
                Published {
                    port: crate::network::config::parse_port("8080:80").unwrap(),
                    container: Ipv4Addr::new(10, 88, 0, 2),
                },
                Published {
                    port: crate::network::config::parse_port("127.0.0.1:53:53/udp").unwrap(),
                    container: Ipv4Addr::new(10, 88, 0, 3),
                },
            ],
        );
        let v = serde_json::to_value(&doc).unwrap();
        let text = v.to_string();
        assert!(text.starts_with(r#"{"nftables":[{"add":{"table":{"family":"ip","name":"nsbox-nsbox0"}}},{"delete":{"table""#), "{text}");
        assert!(
            text.contains(r#"[{"concat":["tcp",8080]},"10.88.0.2"]"#),
            "{text}"
        );
        assert!(text.contains(r#"[{"concat":["tcp",8080]},80]"#), "{text}");
        assert!(
            text.contains(r#"[{"concat":["127.0.0.1","udp",53]},"10.88.0.3"]"#),
            "{text}"
        );
        assert!(text.contains(r#"{"masquerade":null}"#), "{text}");
        // What we send, the crate reads back: the schema holds.
        let back: Nftables = serde_json::from_value(v).unwrap();
        assert_eq!(back, doc);
    }
}
