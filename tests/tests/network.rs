//! Networking: the none, host, path and bridge modes, published ports over
//! tcp and udp (from 127.0.0.1, from the bridge's address, and from another
//! container's namespace), clashes, tear-down on stop, delete and delete
//! --force, and concurrent creates.
//!
//! Every test has a bridge and a /24 of its own (`Test::bridge`,
//! `Test::subnet`), so tests run in parallel and beside the demo's nsbox0.
//! They only ever talk to 127.0.0.1 and to addresses of the containers and
//! bridges they made, and every wait is bounded. The leak check also looks
//! for the test's bridge, veths, nftables table and reservations.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

use common::*;

/// A bundle for a container on the test's bridge, publishing `ports`.
fn bridged(t: &Test, name: &str, args: &[&str], ports: &[String]) -> Bundle {
    t.bundle_with(name, args, |c| {
        c["hostname"] = json!(name);
        let mut a = json!({
            "nsbox.network": "bridge",
            "nsbox.bridge": t.bridge(),
            "nsbox.subnet": t.subnet(),
        });
        if !ports.is_empty() {
            a["nsbox.ports"] = json!(ports.join(","));
        }
        c["annotations"] = a;
    })
}

/// A busybox httpd on port 80 serving `page`.
fn web(page: &str) -> Vec<String> {
    vec![
        "sh".into(),
        "-c".into(),
        format!("echo {page} >/tmp/index.html && exec httpd -f -p 80 -h /tmp"),
    ]
}

fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// A port nothing on the host holds now, for tcp and udp alike.
fn free_port() -> u16 {
    for _ in 0..50 {
        let port = TcpListener::bind("0.0.0.0:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if UdpSocket::bind(("0.0.0.0", port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for both tcp and udp");
}

/// One HTTP/1.0 GET from the host, bounded by short timeouts: the body.
fn http_get(addr: &str) -> Result<String, String> {
    let sa: SocketAddr = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
    let mut s =
        TcpStream::connect_timeout(&sa, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: nsbox\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut text = String::new();
    s.read_to_string(&mut text).map_err(|e| e.to_string())?;
    match text.split_once("\r\n\r\n") {
        Some((head, body)) if head.contains(" 200 ") => Ok(body.trim().to_string()),
        _ => Err(format!("unexpected answer {text:?}")),
    }
}

/// The page at `addr`, waiting (at most 10 s) for the server to come up.
#[track_caller]
fn fetch(addr: &str) -> String {
    wait_for(&format!("http://{addr}/"), Duration::from_secs(10), || {
        http_get(addr).ok()
    })
}

/// One UDP question from the host, retried: the answer.
fn udp_ask(addr: &str, text: &str) -> Option<String> {
    let sock = UdpSocket::bind("127.0.0.1:0").ok()?;
    sock.set_read_timeout(Some(Duration::from_millis(300)))
        .ok()?;
    sock.connect(addr).ok()?;
    let mut buf = [0u8; 1500];
    for _ in 0..10 {
        let _ = sock.send(text.as_bytes());
        if let Ok(n) = sock.recv(&mut buf) {
            return Some(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    None
}

fn ip_of(t: &Test, id: &str) -> String {
    t.state(id)["annotations"]["nsbox.ip"]
        .as_str()
        .unwrap_or_else(|| panic!("state of {id} has no nsbox.ip"))
        .to_string()
}

#[track_caller]
fn delete(t: &Test, id: &str) {
    t.rt(&["delete", "--force", id]).ok();
}

#[test]
fn none_mode_has_loopback_only_and_reaches_nothing() {
    let Some(t) = Test::new("none_mode_has_loopback_only_and_reaches_nothing") else {
        return;
    };
    // Someone to try to reach: a container on the test's bridge.
    let w = bridged(&t, "web", &args(&web("hi")), &[]);
    t.run_detached(&w, "web").ok();
    let ip = ip_of(&t, "web");

    let b = t.bundle_with(
        "none",
        &[
            "sh",
            "-c",
            "ip -o link | cut -d: -f2; echo routes: $(ip route | wc -l); \
             wget -q -O- http://$1/ || echo unreachable",
            "sh",
            &ip,
        ],
        |c| c["annotations"] = json!({ "nsbox.network": "none" }),
    );
    let out = t.run(&b, "none");
    out.ok();
    let lines: Vec<&str> = out.stdout.lines().map(str::trim).collect();
    assert_eq!(lines, ["lo", "routes: 0", "unreachable"], "{out:?}");
    assert!(out.stderr.contains("unreachable"), "{out:?}");
    delete(&t, "web");
}

#[test]
fn host_mode_shares_the_hosts_network_namespace() {
    let Some(t) = Test::new("host_mode_shares_the_hosts_network_namespace") else {
        return;
    };
    let b = t.bundle_with("host", &[MT, "print-ns", "net"], |c| {
        let ns = c["linux"]["namespaces"].as_array_mut().unwrap();
        ns.retain(|n| n["type"] != "network");
        c["annotations"] = json!({ "nsbox.network": "host" });
    });
    let out = t.run(&b, "host");
    out.ok();
    assert_eq!(out.stdout.trim(), format!("net {}", own_ns("net")));
    // A host-mode container with bridge settings is refused, clearly.
    let b = t.bundle_with("host-ports", &["true"], |c| {
        let ns = c["linux"]["namespaces"].as_array_mut().unwrap();
        ns.retain(|n| n["type"] != "network");
        c["annotations"] = json!({ "nsbox.network": "host", "nsbox.ports": "80:80" });
    });
    t.run(&b, "host-ports")
        .fails_with("host-ports", &["nsbox.ports", "bridge"]);
}

#[test]
fn a_namespace_joined_by_path_is_shared() {
    let Some(t) = Test::new("a_namespace_joined_by_path_is_shared") else {
        return;
    };
    let w = bridged(&t, "web", &args(&web("shared")), &[]);
    t.run_detached(&w, "web").ok();
    let ip = ip_of(&t, "web");
    let pid = t.state("web")["pid"].as_i64().unwrap();
    let b = t.bundle_with(
        "joiner",
        &[
            "sh",
            "-c",
            "ip -4 -o addr show eth0; wget -q -O- http://127.0.0.1/",
        ],
        |c| {
            for n in c["linux"]["namespaces"].as_array_mut().unwrap() {
                if n["type"] == "network" {
                    n["path"] = json!(format!("/proc/{pid}/ns/net"));
                }
            }
        },
    );
    let out = t.run(&b, "joiner");
    out.ok();
    assert!(out.stdout.contains(&format!("inet {ip}/24")), "{out:?}");
    assert!(out.stdout.trim_end().ends_with("shared"), "{out:?}");
    delete(&t, "web");
}

#[test]
fn bridged_containers_reach_each_other_and_know_their_names() {
    let Some(t) = Test::new("bridged_containers_reach_each_other_and_know_their_names") else {
        return;
    };
    let w = bridged(&t, "web", &args(&web("hello-from-web")), &[]);
    t.run_detached(&w, "web").ok();
    let ip = ip_of(&t, "web");
    assert!(ip.starts_with(&t.subnet_prefix()), "{ip}");
    let state = t.state("web");
    let a = &state["annotations"];
    assert_eq!(a["nsbox.gateway"], json!(t.gateway()));
    assert_eq!(a["nsbox.bridge"], json!(t.bridge()));
    assert!(a["nsbox.veth"].as_str().unwrap().starts_with("nsb"));

    let c = bridged(
        &t,
        "client",
        &[
            "sh",
            "-c",
            "ping -c1 -W1 $1 >/dev/null && echo ping ok; \
             for i in 1 2 3 4 5 6 7 8 9 10; do wget -q -O- http://$1/ && break; sleep 0.2; done; \
             hostname; cat /etc/hostname; grep -v : /etc/hosts; ip route | grep default",
            "sh",
            &ip,
        ],
        &[],
    );
    // busybox ping needs a raw socket.
    let mut config = c.read_config();
    config["process"]["capabilities"] = caps_json(&["CAP_NET_RAW"]);
    c.write_config(&config);
    let out = t.run(&c, "client");
    out.ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], "ping ok", "{out:?}");
    assert_eq!(lines[1], "hello-from-web", "{out:?}");
    assert_eq!(lines[2], "client", "{out:?}");
    assert_eq!(lines[3], "client", "{out:?}");
    assert_eq!(lines[4], "127.0.0.1\tlocalhost", "{out:?}");
    assert!(
        lines[5].starts_with(&t.subnet_prefix()) && lines[5].ends_with("\tclient"),
        "{out:?}"
    );
    assert!(
        lines[6].starts_with(&format!("default via {} dev eth0", t.gateway())),
        "{out:?}"
    );
    // The image's /etc was not written to.
    assert_eq!(
        std::fs::read_to_string(rootfs().join("etc/hosts")).unwrap(),
        "127.0.0.1\tlocalhost\n"
    );
    delete(&t, "web");
}

#[test]
fn published_ports_answer_on_loopback_the_bridge_and_to_other_containers() {
    let Some(t) =
        Test::new("published_ports_answer_on_loopback_the_bridge_and_to_other_containers")
    else {
        return;
    };
    let (tcp, udp) = (free_port(), free_port());
    let b = bridged(
        &t,
        "svc",
        &[
            "sh",
            "-c",
            "echo svc-page >/tmp/index.html && httpd -p 80 -h /tmp && \
             exec nsbox-multitool udp-echo 5353 pong:",
        ],
        &[format!("{tcp}:80"), format!("{udp}:5353/udp")],
    );
    t.run_detached(&b, "svc").ok();
    wait_for_text(&t.ctr_stdout("svc"), "ready");
    let gw = t.gateway();

    assert_eq!(fetch(&format!("127.0.0.1:{tcp}")), "svc-page");
    assert_eq!(fetch(&format!("{gw}:{tcp}")), "svc-page");
    assert_eq!(
        udp_ask(&format!("127.0.0.1:{udp}"), "ping").as_deref(),
        Some("pong:ping")
    );
    assert_eq!(
        udp_ask(&format!("{gw}:{udp}"), "again").as_deref(),
        Some("pong:again")
    );

    // From another network namespace on the same bridge, through the
    // bridge's address and the published ports.
    let c = bridged(
        &t,
        "client",
        &[
            "sh",
            "-c",
            "wget -q -O- http://$1:$2/; nsbox-multitool udp-ask $1:$3 hello",
            "sh",
            &gw,
            &tcp.to_string(),
            &udp.to_string(),
        ],
        &[],
    );
    let out = t.run(&c, "client");
    out.ok();
    assert_eq!(out.stdout_lines(), ["svc-page", "pong:hello"], "{out:?}");
    delete(&t, "svc");
}

#[test]
fn three_web_servers_on_three_host_ports() {
    let Some(t) = Test::new("three_web_servers_on_three_host_ports") else {
        return;
    };
    let mut ports = Vec::new();
    for i in 1..=3 {
        let port = free_port();
        let id = format!("web{i}");
        let b = bridged(
            &t,
            &id,
            &args(&web(&format!("page-of-{id}"))),
            &[format!("{port}:80")],
        );
        t.run_detached(&b, &id).ok();
        ports.push((id, port));
    }
    for (id, port) in &ports {
        assert_eq!(fetch(&format!("127.0.0.1:{port}")), format!("page-of-{id}"));
    }
    let ips: Vec<String> = ports.iter().map(|(id, _)| ip_of(&t, id)).collect();
    assert!(
        ips[0] != ips[1] && ips[1] != ips[2] && ips[0] != ips[2],
        "{ips:?}"
    );
    for (id, _) in &ports {
        delete(&t, id);
    }
}

#[test]
fn the_same_host_port_twice_is_refused_and_leaves_nothing() {
    let Some(t) = Test::new("the_same_host_port_twice_is_refused_and_leaves_nothing") else {
        return;
    };
    let port = free_port();
    let a = bridged(&t, "first", &args(&web("first")), &[format!("{port}:80")]);
    t.run_detached(&a, "first").ok();
    let links_before = t.leaked_links();
    // Files named for an address.
    let reservations = || {
        std::fs::read_dir(t.root.join("@network").join(t.bridge()))
            .unwrap()
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_str()
                    .is_some_and(|n| n.parse::<std::net::Ipv4Addr>().is_ok())
            })
            .count()
    };
    assert_eq!(reservations(), 1);

    let b = bridged(
        &t,
        "second",
        &args(&web("second")),
        &[format!("{port}:8080")],
    );
    let out = t.create(&b, "second");
    out.fails_with(
        "second",
        &[
            &format!("host port {port}/tcp"),
            "already published",
            "first",
        ],
    );
    assert!(!t.root.join("second").exists());
    assert_eq!(reservations(), 1);
    assert_eq!(t.leaked_links(), links_before);

    // A port some other program on the host holds: refused too.
    let holder = TcpListener::bind("0.0.0.0:0").unwrap();
    let held = holder.local_addr().unwrap().port();
    let c = bridged(&t, "third", &["true"], &[format!("{held}:80")]);
    t.create(&c, "third").fails_with(
        "third",
        &[&format!("host port {held}/tcp"), "in use on the host"],
    );
    drop(holder);

    // Bad words are refused before anything is made.
    let d = bridged(&t, "bad", &["true"], &["80".to_string()]);
    t.create(&d, "bad")
        .fails_with("bad", &["published port \"80\""]);
    let e = t.bundle_with("badnet", &["true"], |c| {
        c["annotations"] = json!({ "nsbox.network": "bridge", "nsbox.subnet": "10.1.2.3/24" });
    });
    t.create(&e, "badnet")
        .fails_with("badnet", &["host bits", "10.1.2.0/24"]);

    // The first still serves.
    assert_eq!(fetch(&format!("127.0.0.1:{port}")), "first");
    delete(&t, "first");
}

#[test]
fn stop_and_delete_remove_the_veth_the_rules_and_the_address() {
    let Some(t) = Test::new("stop_and_delete_remove_the_veth_the_rules_and_the_address") else {
        return;
    };
    let port = free_port();
    let b = bridged(
        &t,
        "web",
        &["sh", "-c", "httpd -p 80 -h /tmp; read line; echo done"],
        &[format!("{port}:80")],
    );
    t.create(&b, "web").ok();
    let veth = t.state("web")["annotations"]["nsbox.veth"]
        .as_str()
        .unwrap()
        .to_string();
    let table = format!("nsbox-{}", t.bridge());
    assert!(links().contains(&veth));
    assert!(links().contains(&t.bridge()));
    assert!(nft_tables().contains(&table));
    assert!(t.root.join("@network").exists());

    // The workload ends by itself (stdin is /dev/null): the shim releases
    // the network as the container stops, before delete.
    t.rt(&["start", "web"]).ok();
    let st = t.wait_status("web", "stopped");
    assert!(st["annotations"].get("nsbox.ip").is_none(), "{st}");
    // The shim may still be at it for a moment after the init has gone.
    wait_for(
        "the shim to release the network",
        Duration::from_secs(5),
        || (t.network_leaks().is_empty() && !t.root.join("@network").exists()).then_some(()),
    );
    t.rt(&["delete", "web"]).ok();

    // A running one, deleted with --force.
    let b2 = bridged(&t, "web2", &args(&web("w2")), &[format!("{port}:80")]);
    t.run_detached(&b2, "web2").ok();
    assert_eq!(fetch(&format!("127.0.0.1:{port}")), "w2");
    t.rt(&["delete", "--force", "web2"]).ok();
    assert!(t.network_leaks().is_empty(), "{:?}", t.network_leaks());
    assert!(http_get(&format!("127.0.0.1:{port}")).is_err());
}

#[test]
fn delete_force_cleans_up_after_a_killed_shim() {
    let Some(t) = Test::new("delete_force_cleans_up_after_a_killed_shim") else {
        return;
    };
    let port = free_port();
    let b = bridged(&t, "web", &args(&web("orphan")), &[format!("{port}:80")]);
    t.run_detached(&b, "web").ok();
    assert_eq!(fetch(&format!("127.0.0.1:{port}")), "orphan");
    let init = t.state("web")["pid"].as_i64().unwrap() as i32;
    let shim = ppid(init).unwrap();
    assert_eq!(comm(shim).as_deref(), Some("shim"));
    // SAFETY: kill(2) of the shim this test started.
    unsafe { libc::kill(shim, libc::SIGKILL) };
    wait_for("the shim to die", Duration::from_secs(5), || {
        let gone = match proc_stat(shim) {
            None => true,
            Some((state, _, _)) => state == "Z",
        };
        gone.then_some(())
    });
    // The container runs on, and its network is all still there.
    assert!(!t.network_leaks().is_empty());
    t.rt(&["delete", "--force", "web"]).ok();
    assert!(t.network_leaks().is_empty(), "{:?}", t.network_leaks());
    assert!(!t.root.join("@network").exists());
    // The port is free again: another container can have it.
    let b2 = bridged(&t, "web2", &args(&web("again")), &[format!("{port}:80")]);
    t.run_detached(&b2, "web2").ok();
    assert_eq!(fetch(&format!("127.0.0.1:{port}")), "again");
    delete(&t, "web2");
}

#[test]
fn twenty_concurrent_creates_get_twenty_addresses() {
    let Some(t) = Test::new("twenty_concurrent_creates_get_twenty_addresses") else {
        return;
    };
    let ids: Vec<String> = (0..20).map(|i| format!("c{i}")).collect();
    for id in &ids {
        bridged(&t, id, &["sleep", "600"], &[]);
    }
    // Two of them also race for one host port: exactly one may have it.
    let port = free_port();
    for id in ["p1", "p2"] {
        bridged(&t, id, &["sleep", "600"], &[format!("{port}:80")]);
    }
    let results: Vec<(String, bool)> = std::thread::scope(|s| {
        let handles: Vec<_> = ids
            .iter()
            .map(String::as_str)
            .chain(["p1", "p2"])
            .map(|id| {
                let t = &t;
                s.spawn(move || {
                    let b = Bundle {
                        dir: t.work.join(id),
                    };
                    (id.to_string(), t.run_detached(&b, id).success())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (id, ok) in &results {
        if id.starts_with('c') {
            assert!(ok, "create {id} failed: {}", read_lossy(&t.ctr_stderr(id)));
        }
    }
    let winners = results
        .iter()
        .filter(|(id, ok)| id.starts_with('p') && *ok)
        .count();
    assert_eq!(winners, 1, "{results:?}");
    // The other was refused for the port, by name.
    for (id, ok) in &results {
        if id.starts_with('p') && !ok {
            let err = read_lossy(&t.ctr_stderr(id));
            assert!(
                err.contains(&format!("host port {port}/tcp")),
                "{id}: {err}"
            );
        }
    }

    let mut ips: Vec<String> = ids.iter().map(|id| ip_of(&t, id)).collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 20, "{ips:?}");
    assert!(ips.iter().all(|ip| ip.starts_with(&t.subnet_prefix())));

    std::thread::scope(|s| {
        for (id, ok) in &results {
            if *ok {
                let t = &t;
                s.spawn(move || t.rt(&["delete", "--force", id]).ok().code);
            }
        }
    });
}
