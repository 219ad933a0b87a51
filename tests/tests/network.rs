//! Networking: the none, host, path and bridge modes, published ports over
//! tcp and udp (from 127.0.0.1, from the bridge's address, and from another
//! container's namespace), clashes, tear-down on stop, delete and delete
//! --force, and concurrent creates; the nftables table changed element by
//! element (other containers' rules untouched), made again after someone
//! deleted it, 500 reservations that cost what the first did, and a veth
//! and bridge made as many containers want them (one queue each way, no
//! IPv6 address, no IPv6 at all on the host's end, no multicast snooping).
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

/// The IPv6 addresses on `dev` as /proc/net/if_inet6 lists them (one line
/// per address, the device's name last).
fn inet6_lines(if_inet6: &str, dev: &str) -> Vec<String> {
    if_inet6
        .lines()
        .filter(|l| l.split_whitespace().last() == Some(dev))
        .map(str::to_string)
        .collect()
}

/// `ip -d -j link show DEV`'s number of tx and rx queues, run in the
/// network namespace of `pid` when given.
fn queues(dev: &str, pid: Option<&str>) -> (u64, u64) {
    let mut cmd = match pid {
        Some(pid) => {
            let mut c = std::process::Command::new("nsenter");
            c.args(["-t", pid, "-n", "ip"]);
            c
        }
        None => std::process::Command::new("ip"),
    };
    let out = cmd
        .args(["-d", "-j", "link", "show", dev])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("ip link show {dev}: {e}: {out:?}"));
    let n = |k: &str| {
        v[0][k]
            .as_u64()
            .unwrap_or_else(|| panic!("{k} of {dev}: {v}"))
    };
    (n("num_tx_queues"), n("num_rx_queues"))
}

#[test]
fn each_end_of_a_veth_has_one_queue_and_no_ipv6_address() {
    // With a link-local address each end would send duplicate address
    // detection, MLD reports and router solicitations when it comes up,
    // which the bridge floods to every other container: a new container
    // would cost the host more CPU the more containers run.
    let Some(t) = Test::new("each_end_of_a_veth_has_one_queue_and_no_ipv6_address") else {
        return;
    };
    let b = bridged(&t, "v6", &["sleep", "60"], &[]);
    t.run_detached(&b, "v6").ok();
    let veth = t.state("v6")["annotations"]["nsbox.veth"]
        .as_str()
        .unwrap()
        .to_string();
    let host = std::fs::read_to_string("/proc/net/if_inet6").unwrap();
    assert_eq!(inet6_lines(&host, &veth), Vec::<String>::new(), "{host}");
    // The kernel makes the address when the link comes up, so it would be
    // there by now.
    let out = t.rt(&["exec", "v6", "cat", "/proc/net/if_inet6"]);
    out.ok();
    assert_eq!(
        inet6_lines(&out.stdout, "eth0"),
        Vec::<String>::new(),
        "{out:?}"
    );
    // IPv6 itself still works on the loopback.
    assert_eq!(inet6_lines(&out.stdout, "lo").len(), 1, "{out:?}");
    // Each end has the one queue a veth uses from the start: otherwise the
    // kernel makes one per CPU and cuts them down once the link exists,
    // waiting for an RCU grace period under the rtnl lock for each end.
    assert_eq!(queues(&veth, None), (1, 1));
    let pid = t.state("v6")["pid"].to_string();
    assert_eq!(queues("eth0", Some(&pid)), (1, 1));
    // The host's end has no IPv6 at all, so no route of the host's table
    // is its (one each, which the kernel walks on every link change), and
    // the bridge does no multicast snooping (which re-arms every port's
    // timers whenever one port comes up or goes down).
    let sysctl = format!("/proc/sys/net/ipv6/conf/{veth}/disable_ipv6");
    assert_eq!(std::fs::read_to_string(&sysctl).unwrap().trim(), "1");
    let routes = std::process::Command::new("ip")
        .args(["-6", "route", "show", "table", "all", "dev", &veth])
        .output()
        .unwrap();
    assert!(routes.status.success());
    assert_eq!(
        String::from_utf8_lossy(&routes.stdout),
        "",
        "IPv6 routes of {veth}"
    );
    let snooping = format!("/sys/class/net/{}/bridge/multicast_snooping", t.bridge());
    assert_eq!(std::fs::read_to_string(&snooping).unwrap().trim(), "0");
    delete(&t, "v6");
}

#[test]
fn a_bridged_run_starts_its_workload_only_once_the_network_is_in() {
    // The shim plugs the network in while tiny-init sets the container up;
    // held back here (a test hook), the plugging in ends last, and the
    // workload must still find its address and route.
    let Some(t) = Test::new("a_bridged_run_starts_its_workload_only_once_the_network_is_in") else {
        return;
    };
    let b = bridged(&t, "late", &["sh", "-c", "ip route | grep default"], &[]);
    let mut cmd = t.command(&["run", "-b", b.path(), "late"]);
    cmd.env("NSBOX_NETWORK_DELAY_MS", "300");
    let out = t.rt_cmd(cmd);
    out.ok();
    assert!(
        out.stdout
            .starts_with(&format!("default via {} dev eth0", t.gateway())),
        "{out:?}"
    );
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

/// The handles of the table, its chains, maps and rules (`nft -a -j`):
/// they change when the table is made again, and only then.
fn table_handles(table: &str) -> Vec<(String, u64)> {
    let out = std::process::Command::new(nft())
        .args(["-a", "-j", "list", "table", "ip", table])
        .output()
        .expect("run nft");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let mut handles: Vec<(String, u64)> = v["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|o| {
            let (kind, body) = o.as_object()?.iter().next()?;
            Some((kind.clone(), body["handle"].as_u64()?))
        })
        .filter(|(kind, _)| kind != "metainfo")
        .collect();
    handles.sort();
    handles
}

/// `nft list map ip TABLE MAP`, as a person reads it.
fn map_listing(table: &str, map: &str) -> String {
    let out = std::process::Command::new(nft())
        .args(["list", "map", "ip", table, map])
        .output()
        .expect("run nft");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn each_container_changes_only_its_own_elements_of_the_table() {
    let Some(t) = Test::new("each_container_changes_only_its_own_elements_of_the_table") else {
        return;
    };
    let table = format!("nsbox-{}", t.bridge());
    let (pa, pb) = (free_port(), free_port());
    let a = bridged(&t, "a", &args(&web("page-a")), &[format!("{pa}:80")]);
    t.run_detached(&a, "a").ok();
    assert_eq!(fetch(&format!("127.0.0.1:{pa}")), "page-a");
    let ip_a = ip_of(&t, "a");

    // What `nft list table` shows a person.
    let out = std::process::Command::new(nft())
        .args(["list", "table", "ip", &table])
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&out.stdout);
    let br = t.bridge();
    for line in [
        format!("iifname \"{br}\" ip daddr 127.0.0.0/8 drop"),
        "fib daddr type local dnat ip to meta l4proto . th dport map @ports_any".to_string(),
        "dnat ip to ip daddr . meta l4proto . th dport map @ports_ip".to_string(),
        format!("oifname \"{br}\" ct status dnat ip saddr 127.0.0.0/8 masquerade"),
        format!("ip saddr {} oifname != \"{br}\" masquerade", t.subnet()),
        format!("oifname \"{br}\" drop"),
        format!("tcp . {pa} : {ip_a} . 80"),
    ] {
        assert!(listing.contains(&line), "{line:?} not in\n{listing}");
    }
    let before = table_handles(&table);
    assert!(before.len() > 10, "{before:?}");

    // A second container, on one host address: its element only.
    let b = bridged(
        &t,
        "b",
        &args(&web("page-b")),
        &[format!("127.0.0.1:{pb}:80")],
    );
    t.run_detached(&b, "b").ok();
    let ip_b = ip_of(&t, "b");
    assert_eq!(fetch(&format!("127.0.0.1:{pb}")), "page-b");
    assert_eq!(fetch(&format!("127.0.0.1:{pa}")), "page-a");
    assert_eq!(table_handles(&table), before, "the table was made again");
    let on_ip = map_listing(&table, "ports_ip");
    assert!(
        on_ip.contains(&format!("127.0.0.1 . tcp . {pb} : {ip_b} . 80")),
        "{on_ip}"
    );
    let any = map_listing(&table, "ports_any");
    assert!(any.contains(&format!("tcp . {pa} : {ip_a} . 80")), "{any}");
    assert!(!any.contains(&ip_b), "{any}");

    // Its delete takes its element away, and nothing else.
    t.rt(&["delete", "--force", "b"]).ok();
    assert!(!map_listing(&table, "ports_ip").contains(&ip_b));
    assert!(http_get(&format!("127.0.0.1:{pb}")).is_err());
    assert_eq!(fetch(&format!("127.0.0.1:{pa}")), "page-a");
    assert_eq!(table_handles(&table), before, "the table was made again");

    // The last one takes the table, the bridge and the records along.
    t.rt(&["delete", "--force", "a"]).ok();
    assert!(t.network_leaks().is_empty(), "{:?}", t.network_leaks());
    assert!(!t.root.join("@network").exists());
}

#[test]
fn a_table_deleted_by_hand_comes_back_with_the_next_container() {
    let Some(t) = Test::new("a_table_deleted_by_hand_comes_back_with_the_next_container") else {
        return;
    };
    let table = format!("nsbox-{}", t.bridge());
    let port = free_port();
    let a = bridged(&t, "a", &args(&web("still-here")), &[format!("{port}:80")]);
    t.run_detached(&a, "a").ok();
    assert_eq!(fetch(&format!("127.0.0.1:{port}")), "still-here");
    let st = std::process::Command::new(nft())
        .args(["delete", "table", "ip", &table])
        .status()
        .unwrap();
    assert!(st.success());
    assert!(http_get(&format!("127.0.0.1:{port}")).is_err());

    // The next container, even one without ports, makes it again, with
    // the elements of every container on the bridge.
    let b = bridged(&t, "b", &["sleep", "600"], &[]);
    t.run_detached(&b, "b").ok();
    assert!(nft_tables().contains(&table));
    assert_eq!(fetch(&format!("127.0.0.1:{port}")), "still-here");

    // Deleted by hand again: the delete of a container with ports still
    // succeeds (nothing to take out), and the last one leaves nothing.
    let st = std::process::Command::new(nft())
        .args(["delete", "table", "ip", &table])
        .status()
        .unwrap();
    assert!(st.success());
    t.rt(&["delete", "--force", "a"]).ok();
    t.rt(&["delete", "--force", "b"]).ok();
    assert!(t.network_leaks().is_empty(), "{:?}", t.network_leaks());
    assert!(!t.root.join("@network").exists());
}

/// A /22 outside the tests' 10.192.0.0/11, of this process's own: no
/// bridge is made for it (the reservations below never reach the kernel).
fn reservation_subnet() -> protocol::Subnet {
    let n = (std::process::id() % 64) as u8;
    protocol::Subnet {
        addr: std::net::Ipv4Addr::new(10, 226, n * 4, 0),
        prefix: 22,
    }
}

#[test]
fn five_hundred_reservations_cost_what_the_first_did() {
    use nsbox_host::network::{release, reserve};
    use protocol::{BridgeNetwork, PortMapping, PortProtocol};
    let Some(t) = Test::new("five_hundred_reservations_cost_what_the_first_did") else {
        return;
    };
    let files = t.work.join("etc-files");
    std::fs::create_dir_all(&files).unwrap();
    let subnet = reservation_subnet();
    let settings = |ports: Vec<PortMapping>| BridgeNetwork {
        root: t.root.to_string_lossy().into_owned(),
        bridge: t.bridge(),
        subnet,
        ports,
        hostname: "r".into(),
    };
    let mut held = Vec::new();
    let mut took = Vec::new();
    let mut ported = Vec::new();
    for i in 0..500 {
        // Every tenth publishes a port. A port free_port() found free may
        // be taken before the reservation binds it (by the tests beside
        // this one): another is tried then, and only the reservation that
        // got its port is timed.
        let mut tries = 0;
        let (r, ms) = loop {
            tries += 1;
            let ports = if i % 10 == 0 {
                vec![PortMapping {
                    host_ip: None,
                    host_port: free_port(),
                    container_port: 80,
                    protocol: PortProtocol::Tcp,
                }]
            } else {
                Vec::new()
            };
            let start = std::time::Instant::now();
            match reserve(&settings(ports), &format!("r{i}"), &files) {
                Ok(r) => break (r, start.elapsed().as_secs_f64() * 1000.0),
                Err(e) if tries < 5 && e.to_string().contains("already in use") => continue,
                Err(e) => panic!("reserve r{i}: {e}"),
            }
        };
        if let Some(p) = r.endpoint.ports.first() {
            ported.push((format!("r{i}"), *p));
        }
        took.push(ms);
        // Addresses in order from the first: the hint finds a free one
        // at the first try.
        let want = u32::from(subnet.addr) + 2 + i;
        assert_eq!(u32::from(r.endpoint.ip), want, "r{i}");
        held.push(r);
    }
    let median = |xs: &[f64]| {
        let mut v = xs.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (first, last) = (median(&took[..50]), median(&took[450..]));
    eprintln!("reserve: first 50 {first:.3} ms, last 50 {last:.3} ms (medians)");
    // Flat: a reservation reads no other reservation. (Reading all of
    // them, as before, took ten times as long at 500.)
    assert!(
        last < 5.0 * first + 0.5,
        "first {first:.3} ms, last {last:.3} ms"
    );

    // A port one of them holds, and a container that has one already.
    let (owner, p) = &ported[7];
    let err = reserve(&settings(vec![*p]), "late", &files)
        .err()
        .expect("a held port is refused");
    assert!(
        err.to_string().contains(&format!(
            "{}/tcp is already published by container {owner}",
            p.host_port
        )),
        "{err}"
    );
    let err = reserve(&settings(Vec::new()), "r3", &files)
        .err()
        .expect("a second reservation is refused");
    assert!(err.to_string().contains("r3 already has address"), "{err}");

    // Given back in another order; the bridge's record goes with the last.
    let bridge_file = t.root.join("@network").join(t.bridge()).join("bridge.json");
    for i in (0..500).rev().step_by(2).chain((0..500).step_by(2)) {
        release(&t.root, &format!("r{i}")).unwrap_or_else(|e| panic!("release r{i}: {e}"));
        if i == 1 {
            assert!(bridge_file.exists());
        }
    }
    drop(held);
    assert!(!t.root.join("@network").exists());
    assert!(t.network_leaks().is_empty(), "{:?}", t.network_leaks());
}
