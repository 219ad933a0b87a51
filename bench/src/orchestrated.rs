//! What an orchestrator waits for (issue 16): a detached container on a
//! bridge with a published port, on a host that already runs many, and
//! `exec` into a running one.
//!
//! runc and crun have no network of their own (an orchestrator's plugin
//! makes it: Podman's netavark, Docker's libnetwork), so they run with a
//! network namespace holding only `lo`, which is nsbox's `--net none`; the
//! cost of nsbox's bridge is its time over its own `--net none`. The
//! outside reference is Podman's: with netavark, `podman run -d -p` takes
//! ~54 ms more than with `--network none` (Podman 4.3 on this kind of
//! machine, measured for issue 16).
//!
//! Each nsbox build has a bridge and a subnet of its own in 10.250.0.0/16
//! (a bridge belongs to one state root), and host ports come from a range
//! checked free before each use.
//!
//! Sections:
//! 7. `run -d` of sleep: `--net none` for every runtime; nsbox on a bridge,
//!    without and with a published port, beside one container already on
//!    the bridge (as on a host that runs some); and the first container of
//!    a bridge (the bridge and its nftables table are made, and removed
//!    with it). Each sample is killed and deleted before the next (timed
//!    apart).
//! 8. the same `run -d` (a published port for nsbox, `--net none` for the
//!    others) with 1, 100, 500 of the runtime's own containers alive: in
//!    each of three rounds every runtime in turn grows its crowd alone;
//!    then with every runtime's 500 alive at once;
//! 9. `exec` of /bin/true into a running container.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};

use crate::measure::{ms, pidfd_open, read_pid_file, rotation, round3, Stats};
use crate::runtimes::Oci;
use crate::{opt_json, per_runtime, setup, trace, Bench};

/// Podman 4.3 + netavark: `run -d -p` over `run -d --network none`, in ms
/// (issue 16's measure on this kind of machine).
pub const PODMAN_PORT_OVER_NONE_MS: f64 = 54.0;

/// How a container is networked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Net {
    /// A network namespace with `lo` only.
    None,
    /// nsbox's bridge, no published port.
    Bridge,
    /// nsbox's bridge and one published tcp port.
    Port,
    /// The same on a bridge of its own that has no other container: the
    /// bridge and its table are made and removed with the container.
    PortFirst,
}

impl Net {
    fn label(self) -> &'static str {
        match self {
            Net::None => "--net none",
            Net::Bridge => "bridge",
            Net::Port => "bridge + 1 port",
            Net::PortFirst => "1st on its bridge",
        }
    }

    /// The table's row labels are short.
    fn short(self) -> &'static str {
        match self {
            Net::None => "none",
            Net::Bridge => "bridge",
            Net::Port => "port",
            Net::PortFirst => "port, 1st",
        }
    }
}

/// Whether a runtime of the bench is an nsbox build (nsbox or a variant).
fn is_nsbox(rt: &Oci) -> bool {
    !["crun", "crun-nocg", "runc"].contains(&rt.name.as_str())
}

/// How section 8 networks a runtime's containers: nsbox on its bridge
/// with a published port, the others with `lo` only.
fn crowd_net(rt: &Oci) -> Net {
    if is_nsbox(rt) {
        Net::Port
    } else {
        Net::None
    }
}

/// Round `r`'s share of `total` samples over `rounds` rounds: the
/// remainder goes to the first rounds.
fn share(total: usize, rounds: usize, r: usize) -> usize {
    total / rounds + usize::from(r < total % rounds)
}

/// One runtime's crowd grown alone in one round (section 8).
struct Grown {
    /// Per level, the timed `run -d`.
    samples: Vec<Vec<f64>>,
    /// The `run -d` that grew the crowd.
    fill: Vec<f64>,
    /// The traced runs, one set per traced level.
    traces: Vec<Vec<TracedRun>>,
    /// For an nsbox build, per traced level, the median timeline of its
    /// `run -d` (as section 7's): which step the growth lands on.
    timelines: Vec<Vec<String>>,
}

/// A runtime's line of section 8's table.
pub struct CrowdRow {
    pub name: String,
    /// Per level, its own crowd alone.
    pub at_level: Vec<Option<Stats>>,
    /// With every runtime's crowd of the last level at once.
    pub together: Option<Stats>,
    pub stop_all_ms: f64,
}

/// What a timeline file's lines are, after its first words.
fn timeline_legend(runs: usize) -> String {
    format!(
        "median time of each step over {runs} runs, in ms\n\
         # from the runtime's exec, (+ms since the step above); sendto: a netlink request"
    )
}

/// A started detached container.
struct Live {
    id: String,
    pidfd: OwnedFd,
}

/// One `run -d` under `perf trace -s`: ms per `process: call`. (Its wall
/// time is mostly perf's own start-up, so it is not kept.)
#[derive(Clone)]
struct TracedRun {
    calls: BTreeMap<String, f64>,
}

/// One system call of a process, its median time at two levels.
struct GrowthRow {
    call: String,
    first: f64,
    last: f64,
    /// A call that waits (trace::WAITS).
    waits: bool,
}

/// Where a run's time grew from one level of containers alive to
/// another: medians over the traced runs of each level, a call missing
/// from a run counting 0.
struct Growth {
    /// The growth of a run's time in calls that do not wait: the median
    /// of each run's sum at one level against the other's (a sum of the
    /// calls' medians would add up the calls' noise).
    non_wait: f64,
    /// Largest growth first.
    rows: Vec<GrowthRow>,
}

impl Growth {
    fn of(first: &[TracedRun], last: &[TracedRun]) -> Growth {
        let median = |xs: &[f64]| Stats::of(xs).map_or(0.0, |s| s.median);
        let at = |runs: &[TracedRun], call: &str| {
            median(
                &runs
                    .iter()
                    .map(|r| r.calls.get(call).copied().unwrap_or(0.0))
                    .collect::<Vec<_>>(),
            )
        };
        let waits = |call: &str| {
            call.rsplit_once(": ")
                .is_some_and(|(_, name)| trace::WAITS.contains(&name))
        };
        let busy = |runs: &[TracedRun]| {
            median(
                &runs
                    .iter()
                    .map(|r| {
                        r.calls
                            .iter()
                            .filter(|(c, _)| !waits(c))
                            .map(|(_, t)| t)
                            .sum()
                    })
                    .collect::<Vec<f64>>(),
            )
        };
        let mut calls: Vec<&String> = first
            .iter()
            .chain(last)
            .flat_map(|r| r.calls.keys())
            .collect();
        calls.sort();
        calls.dedup();
        let mut rows: Vec<GrowthRow> = calls
            .into_iter()
            .map(|c| GrowthRow {
                call: c.clone(),
                first: at(first, c),
                last: at(last, c),
                waits: waits(c),
            })
            .collect();
        rows.sort_by(|a, b| (b.last - b.first).total_cmp(&(a.last - a.first)));
        Growth {
            non_wait: busy(last) - busy(first),
            rows,
        }
    }

    fn table(&self, name: &str, lo: usize, hi: usize, runs: usize) -> String {
        let mut t = format!(
            "# {name}: run -d under perf trace -s, medians of {runs} runs, ms\n\
             # from {lo} to {hi} alive, the system calls that do not wait grew {:+.3}\n\
             # {:<40}{:>10}{:>10}{:>10}\n",
            self.non_wait, "process: system call", lo, hi, "growth"
        );
        for r in self.rows.iter().filter(|r| r.first.max(r.last) >= 0.005) {
            let mark = if r.waits { "  (waits)" } else { "" };
            t.push_str(&format!(
                "  {:<40}{:>10.3}{:>10.3}{:>+10.3}{mark}\n",
                r.call,
                r.first,
                r.last,
                r.last - r.first
            ));
        }
        t.push('\n');
        t
    }

    fn json(&self, lo: usize, hi: usize) -> Value {
        let rows: Vec<Value> = self
            .rows
            .iter()
            .filter(|r| !r.waits)
            .take(10)
            .map(
                |r| json!({"call": r.call, "first_ms": round3(r.first), "last_ms": round3(r.last)}),
            )
            .collect();
        json!({
            "levels": [lo, hi],
            "non_wait_growth_ms": round3(self.non_wait),
            "largest_growth": rows,
        })
    }
}

impl Bench {
    /// The bridge and subnet of the `k`th runtime; `first` for the one
    /// that only ever has one container.
    fn bench_bridge(&self, k: usize, first: bool) -> (String, String) {
        let n = 2 * k + usize::from(first);
        (format!("nsbench{n}"), format!("10.250.{}.0/22", 4 * n))
    }

    /// A host port nothing holds now, from 20000 up (tcp and udp alike).
    fn free_port(&mut self) -> Result<u16> {
        for _ in 0..10_000 {
            self.next_port = if self.next_port < 20000 || self.next_port >= 60000 {
                20000
            } else {
                self.next_port + 1
            };
            let p = self.next_port;
            if TcpListener::bind((Ipv4Addr::UNSPECIFIED, p)).is_ok()
                && UdpSocket::bind((Ipv4Addr::UNSPECIFIED, p)).is_ok()
            {
                return Ok(p);
            }
        }
        bail!("no free host port in 20000-60000")
    }

    /// A bundle of sleep for runtime `k` and `net`: the shared spec with
    /// nsbox's annotations. Written before each container (untimed): the
    /// port changes.
    fn net_bundle(&mut self, rts: &[Oci], k: usize, net: Net) -> Result<PathBuf> {
        let mut spec = setup::spec(&self.bundles.rootfs, &["/bin/sleep", "3600"]);
        if net != Net::None {
            let (bridge, subnet) = self.bench_bridge(k, net == Net::PortFirst);
            let mut a = json!({
                "nsbox.network": "bridge",
                "nsbox.bridge": bridge,
                "nsbox.subnet": subnet,
            });
            if matches!(net, Net::Port | Net::PortFirst) {
                a["nsbox.ports"] = json!(format!("{}:80", self.free_port()?));
            }
            spec["annotations"] = a;
        }
        let dir = self
            .bundles
            .dir
            .join(format!("sleep-{}-{:?}", rts[k].name, net).to_lowercase());
        setup::write_bundle(&dir, &spec)
    }

    /// `run -d` one container; its time.
    fn start_one(&mut self, rts: &[Oci], k: usize, net: Net) -> Result<(Live, f64)> {
        let bundle = self.net_bundle(rts, k, net)?;
        let rt = &rts[k];
        let id = self.id(&rt.name);
        let pf = self.pid_file(&id);
        let t = self
            .runner
            .time(&rt.name, &mut rt.run_detached(&bundle, &pf, &id))?;
        let pidfd = pidfd_open(read_pid_file(&pf)?)?;
        let _ = std::fs::remove_file(&pf);
        Ok((Live { id, pidfd }, ms(t)))
    }

    /// kill + delete of one container; its time.
    fn stop_one(&mut self, rt: &Oci, c: Live) -> Result<f64> {
        let t = Instant::now();
        self.stop_all(rt, &[(c.id, c.pidfd)])?;
        Ok(ms(t.elapsed()))
    }

    pub(crate) fn bridged(&mut self, rts: &[Oci]) -> Result<Value> {
        let mut cases: Vec<(usize, Net)> = Vec::new();
        for (k, rt) in rts.iter().enumerate() {
            cases.push((k, Net::None));
            if is_nsbox(rt) {
                cases.extend([(k, Net::Bridge), (k, Net::Port), (k, Net::PortFirst)]);
            }
        }
        // One container already on each bridge, and one `--net none`
        // container beside the others' samples, as on a host that runs
        // some.
        let mut anchors: Vec<(usize, Live)> = Vec::new();
        let result = (|| -> Result<Vec<(Vec<f64>, Vec<f64>)>> {
            for (k, rt) in rts.iter().enumerate() {
                let net = if is_nsbox(rt) { Net::Bridge } else { Net::None };
                anchors.push((k, self.start_one(rts, k, net)?.0));
            }
            let mut samples = vec![(Vec::new(), Vec::new()); cases.len()];
            for i in 0..self.args.bridged {
                for c in rotation(cases.len(), i) {
                    let (k, net) = cases[c];
                    std::thread::sleep(Duration::from_millis(self.args.gap_ms));
                    let (live, t) = self.start_one(rts, k, net)?;
                    samples[c].0.push(t);
                    let rt = rts[k].clone();
                    samples[c].1.push(self.stop_one(&rt, live)?);
                }
            }
            Ok(samples)
        })();
        let mut stopped = Ok(());
        for (k, a) in anchors {
            let rt = rts[k].clone();
            if let Err(e) = self.stop_one(&rt, a) {
                stopped = Err(e);
            }
        }
        let samples = result?;
        stopped?;
        let traced = self.trace_bridged(rts)?;

        self.report.section(&format!(
            "7. run -d of sleep, {} each, after {} ms idle; killed and deleted after each (ms)",
            self.args.bridged, self.args.gap_ms
        ));
        let mut v = serde_json::Map::new();
        let mut medians: Vec<(usize, Net, f64)> = Vec::new();
        for net in [Net::None, Net::Bridge, Net::Port, Net::PortFirst] {
            for (label, which) in [("run -d", 0), ("stop", 1)] {
                let stats: Vec<Option<Stats>> = (0..rts.len())
                    .map(|k| {
                        cases.iter().position(|&c| c == (k, net)).and_then(|c| {
                            Stats::of(if which == 0 {
                                &samples[c].0
                            } else {
                                &samples[c].1
                            })
                        })
                    })
                    .collect();
                if stats.iter().all(Option::is_none) {
                    continue;
                }
                if which == 0 {
                    for (k, s) in stats.iter().enumerate() {
                        if let Some(s) = s {
                            medians.push((k, net, s.median));
                        }
                    }
                }
                self.report
                    .row(&format!("{} {label}", net.short()), rts, &stats);
                v.insert(
                    format!("{net:?} {label}").to_lowercase().replace(' ', "_"),
                    json!(per_runtime(rts, &stats)),
                );
            }
        }
        let median =
            |k: usize, net: Net| medians.iter().find(|m| m.0 == k && m.1 == net).map(|m| m.2);
        let mut over = serde_json::Map::new();
        for (k, rt) in rts.iter().enumerate().filter(|(_, r)| is_nsbox(r)) {
            let (Some(none), Some(bridge), Some(port)) = (
                median(k, Net::None),
                median(k, Net::Bridge),
                median(k, Net::Port),
            ) else {
                continue;
            };
            self.report.note(&format!(
                "{}: the bridge adds {:.2} ms to run -d, with a published port {:.2} ms \
                 (Podman 4.3 + netavark: ~{PODMAN_PORT_OVER_NONE_MS:.0} ms)",
                rt.name,
                bridge - none,
                port - none
            ));
            over.insert(
                rt.name.clone(),
                json!({
                    "bridge_over_none_ms": crate::measure::round3(bridge - none),
                    "port_over_none_ms": crate::measure::round3(port - none),
                }),
            );
        }
        v.insert("over_none".into(), Value::Object(over));
        if traced {
            self.report.note(
                "timeline of nsbox's run -d with a published port: target/bench/trace-nsbox-bridged.txt",
            );
        }
        v.insert(
            "podman_port_over_none_ms_reference".into(),
            json!(PODMAN_PORT_OVER_NONE_MS),
        );
        Ok(Value::Object(v))
    }

    /// nsbox's `run -d` with a published port under perf trace, beside a
    /// container on the bridge: the median timeline of its steps, with its
    /// netlink requests and the network lock, in trace-nsbox-bridged.txt.
    /// False without perf.
    fn trace_bridged(&mut self, rts: &[Oci]) -> Result<bool> {
        if self.perf.is_none() {
            return Ok(false);
        }
        let Some(k) = rts.iter().position(|r| r.name == "nsbox") else {
            return Ok(false);
        };
        let rt = rts[k].clone();
        let runs = self.args.traced.min(self.args.bridged);
        let anchor = self.start_one(rts, k, Net::Bridge)?.0;
        let result = self.timeline(rts, k, Net::Port, runs);
        let stopped = self.stop_one(&rt, anchor);
        let lines = result?;
        stopped?;
        std::fs::write(
            self.out.join("trace-nsbox-bridged.txt"),
            format!(
                "# `nsbox run -d` of sleep on a bridge with one published port, beside a container\n\
                 # on that bridge, under perf trace: {}\n{}\n",
                timeline_legend(runs),
                lines.join("\n")
            ),
        )?;
        Ok(true)
    }

    /// Section 8. "500 alive" is 500 of the runtime's own containers on the
    /// host, as the goal reads: in each round every runtime in turn grows
    /// its crowd alone, timing `run -d` at each level, and removes it. The
    /// kernel's part of the growth (pivot_root walks every task on the
    /// host, a mount every superblock of its type) follows what the whole
    /// host holds, so a runtime timed beside the others' crowds would meet
    /// four times its own. A round takes a runtime's levels within seconds
    /// of each other, and the rounds rotate the runtimes' order: a busy
    /// spell of the machine hits a level of one round, not one runtime's
    /// every sample. Then, with `--crowd-together`, every runtime's crowd
    /// of the last level at once, and `run -d` of each in turn: the
    /// figure of a host that runs them all.
    pub(crate) fn crowd(&mut self, rts: &[Oci]) -> Result<Value> {
        let mut levels = self.args.crowd.clone();
        levels.sort_unstable();
        levels.dedup();
        // crun without cgroups keeps the same processes as crun.
        let ks: Vec<usize> = (0..rts.len())
            .filter(|&k| rts[k].name != "crun-nocg")
            .collect();
        let rounds = self.args.crowd_rounds.max(1);
        let mut xs: Vec<Vec<Vec<f64>>> = vec![vec![Vec::new(); levels.len()]; rts.len()];
        let mut fill: Vec<Vec<f64>> = vec![Vec::new(); rts.len()];
        let mut stop_all: Vec<Vec<f64>> = vec![Vec::new(); rts.len()];
        // In the first round, at the first and the last level, each
        // runtime's run -d under perf trace -s: where the growth goes.
        let traced_levels = match (levels.first(), levels.last()) {
            (Some(&lo), Some(&hi)) if lo < hi && self.perf.is_some() && self.args.traced > 0 => {
                vec![lo, hi]
            }
            _ => Vec::new(),
        };
        let mut traces: Vec<Vec<Vec<TracedRun>>> = vec![Vec::new(); rts.len()];
        let mut timelines: Vec<Vec<Vec<String>>> = vec![Vec::new(); rts.len()];
        for r in 0..rounds {
            let samples = share(self.args.crowd_samples, rounds, r);
            for j in rotation(ks.len(), r) {
                let k = ks[j];
                let trace_at: &[usize] = if r == 0 { &traced_levels } else { &[] };
                let mut alive = Vec::new();
                let grown = self.grow_alone(rts, k, &levels, samples, trace_at, &mut alive);
                let t = Instant::now();
                let stopped = self.stop_live(&rts[k], alive);
                stop_all[k].push(ms(t.elapsed()));
                let grown = grown.with_context(|| format!("{} alone", rts[k].name))?;
                stopped?;
                for (li, s) in grown.samples.into_iter().enumerate() {
                    xs[k][li].extend(s);
                }
                fill[k].extend(grown.fill);
                if !grown.traces.is_empty() {
                    traces[k] = grown.traces;
                }
                if !grown.timelines.is_empty() {
                    timelines[k] = grown.timelines;
                }
            }
        }
        let together = match levels.last() {
            Some(&hi) if self.args.crowd_together && levels.len() > 1 => {
                Some(self.crowd_together(rts, &ks, hi)?)
            }
            _ => None,
        };
        let mut v = serde_json::Map::new();
        let mut table: Vec<CrowdRow> = Vec::new();
        for &k in &ks {
            let at_level: Vec<Option<Stats>> = xs[k].iter().map(|x| Stats::of(x)).collect();
            let all = together.as_ref().and_then(|t| Stats::of(&t[k]));
            let stop = Stats::of(&stop_all[k]).map_or(0.0, |s| s.median);
            let mut o = json!({
                "net": crowd_net(&rts[k]).label(),
                "levels": levels,
                "rounds": rounds,
                "run_d": at_level.iter().map(|s| opt_json(*s)).collect::<Vec<_>>(),
                "fill_run_d": opt_json(Stats::of(&fill[k])),
                "kill_delete_all_ms": round3(stop),
            });
            if together.is_some() {
                o["together"] = json!({
                    "runtimes": ks.len(),
                    "alive_each": levels.last(),
                    "run_d": opt_json(all),
                });
            }
            v.insert(rts[k].name.clone(), o);
            table.push(CrowdRow {
                name: format!("{} ({})", rts[k].name, crowd_net(&rts[k]).label()),
                at_level,
                together: all,
                stop_all_ms: stop,
            });
        }
        self.report.crowd(
            &levels,
            &table,
            self.args.crowd_samples,
            rounds,
            together.is_some().then_some(ks.len()),
        );
        let mut text = String::new();
        for &k in &ks {
            let [first, last] = traces[k].as_slice() else {
                continue;
            };
            let g = Growth::of(first, last);
            let (lo, hi) = (traced_levels[0], traced_levels[1]);
            let top: Vec<String> = g
                .rows
                .iter()
                .filter(|r| !r.waits)
                .take(4)
                .map(|r| format!("{} {:+.2}", r.call.replace(": ", " "), r.last - r.first))
                .collect();
            self.report.note(&format!(
                "{}: run -d under perf trace -s, from {lo} to {hi} of its own alive: \
                 system calls that do not wait {:+.2} ms, most in {}",
                rts[k].name,
                g.non_wait,
                top.join(", ")
            ));
            text.push_str(&g.table(&rts[k].name, lo, hi, first.len()));
            if let Some(o) = v.get_mut(&rts[k].name) {
                o["trace"] = g.json(lo, hi);
            }
        }
        if !text.is_empty() {
            std::fs::write(self.out.join("trace-crowd.txt"), text)?;
            self.report
                .note("(every system call's time at both levels: target/bench/trace-crowd.txt)");
        }
        for &k in &ks {
            let [first, last] = timelines[k].as_slice() else {
                continue;
            };
            let (lo, hi) = (traced_levels[0], traced_levels[1]);
            let file = format!("trace-{}-crowd.txt", rts[k].name);
            std::fs::write(
                self.out.join(&file),
                format!(
                    "# `{} run -d` of sleep on a bridge with one published port, under perf trace:\n\
                     # {}\n\n# with {lo} of its own alive\n{}\n\n# with {hi} of its own alive\n{}\n",
                    rts[k].name,
                    timeline_legend(self.args.traced.min(self.args.crowd_samples)),
                    first.join("\n"),
                    last.join("\n"),
                ),
            )?;
            self.report.note(&format!(
                "(the timeline of {}'s run -d at both levels: target/bench/{file})",
                rts[k].name
            ));
        }
        Ok(Value::Object(v))
    }

    /// Runtime `k`'s crowd, alone, grown level by level into `alive`
    /// (which the caller removes, whatever happens here): `samples` timed
    /// `run -d` at each level, each killed and deleted before the next,
    /// and the traced runs at the levels in `trace_at`.
    fn grow_alone(
        &mut self,
        rts: &[Oci],
        k: usize,
        levels: &[usize],
        samples: usize,
        trace_at: &[usize],
        alive: &mut Vec<Live>,
    ) -> Result<Grown> {
        let net = crowd_net(&rts[k]);
        let mut g = Grown {
            samples: vec![Vec::new(); levels.len()],
            fill: Vec::new(),
            traces: Vec::new(),
            timelines: Vec::new(),
        };
        for (li, &level) in levels.iter().enumerate() {
            while alive.len() < level {
                let (c, t) = self.start_one(rts, k, net)?;
                g.fill.push(t);
                alive.push(c);
            }
            for _ in 0..samples {
                std::thread::sleep(Duration::from_millis(self.args.gap_ms));
                let (c, t) = self.start_one(rts, k, net)?;
                g.samples[li].push(t);
                self.stop_one(&rts[k], c)?;
            }
            if trace_at.contains(&level) {
                g.traces.push(self.trace_crowd(rts, k, net)?);
                if is_nsbox(&rts[k]) {
                    let runs = self.args.traced.min(self.args.crowd_samples);
                    g.timelines.push(self.timeline(rts, k, net, runs)?);
                }
            }
        }
        Ok(g)
    }

    /// Every runtime's crowd of `level` alive at once (grown together, one
    /// container each in turn), and `run -d` of each runtime in turn with
    /// the samples rotating among them: per runtime, its times.
    fn crowd_together(&mut self, rts: &[Oci], ks: &[usize], level: usize) -> Result<Vec<Vec<f64>>> {
        let mut alive: Vec<Vec<Live>> = (0..rts.len()).map(|_| Vec::new()).collect();
        let mut xs: Vec<Vec<f64>> = vec![Vec::new(); rts.len()];
        let result = (|| -> Result<()> {
            for _ in 0..level {
                for &k in ks {
                    let (c, _) = self.start_one(rts, k, crowd_net(&rts[k]))?;
                    alive[k].push(c);
                }
            }
            for i in 0..self.args.crowd_samples {
                for j in rotation(ks.len(), i) {
                    let k = ks[j];
                    std::thread::sleep(Duration::from_millis(self.args.gap_ms));
                    let (c, t) = self.start_one(rts, k, crowd_net(&rts[k]))?;
                    xs[k].push(t);
                    self.stop_one(&rts[k], c)?;
                }
            }
            Ok(())
        })();
        let mut stopped = Ok(());
        for &k in ks {
            if let Err(e) = self.stop_live(&rts[k], std::mem::take(&mut alive[k])) {
                stopped = Err(e);
            }
        }
        result.context("every runtime's crowd at once")?;
        stopped?;
        Ok(xs)
    }

    /// kill + delete of the containers in `live`.
    fn stop_live(&mut self, rt: &Oci, live: Vec<Live>) -> Result<()> {
        let live: Vec<(String, OwnedFd)> = live.into_iter().map(|c| (c.id, c.pidfd)).collect();
        self.stop_all(rt, &live)
    }

    /// `run -d` of runtime `k` under `perf trace -s`, as many times as
    /// --traced (at most --crowd-samples): each run's time in each system
    /// call.
    fn trace_crowd(&mut self, rts: &[Oci], k: usize, net: Net) -> Result<Vec<TracedRun>> {
        let Some(perf) = self.perf.clone() else {
            return Ok(Vec::new());
        };
        let mut runs = Vec::new();
        for _ in 0..self.args.traced.min(self.args.crowd_samples) {
            let text = self.traced_run_d(rts, k, net, |out, inner| {
                trace::summary_cmd(&perf, out, inner)
            })?;
            runs.push(TracedRun {
                calls: trace::syscall_totals(&text),
            });
        }
        Ok(runs)
    }

    /// The median timeline of `runs` runs of `run -d` of runtime `k` (an
    /// nsbox build), each under perf trace with the steps' events and the
    /// network's (netlink requests, the network lock).
    fn timeline(&mut self, rts: &[Oci], k: usize, net: Net, runs: usize) -> Result<Vec<String>> {
        let Some(perf) = self.perf.clone() else {
            return Ok(Vec::new());
        };
        let events = format!("{},{}", trace::TRACE_EVENTS, trace::NETWORK_EVENTS);
        let mut traced = Vec::new();
        for _ in 0..runs {
            let text = self.traced_run_d(rts, k, net, |out, inner| {
                trace::trace_cmd_with(&perf, out, inner, &events)
            })?;
            traced.push(text.lines().filter_map(trace::parse_line).collect());
        }
        Ok(trace::median_timeline(&traced))
    }

    /// One `run -d` of runtime `k` after the idle gap, under the perf
    /// command `traced` makes around the runtime's (writing to the file it
    /// is given), then killed and deleted: what perf wrote (its file is
    /// removed).
    fn traced_run_d(
        &mut self,
        rts: &[Oci],
        k: usize,
        net: Net,
        traced: impl Fn(&Path, &Command) -> Command,
    ) -> Result<String> {
        let rt = rts[k].clone();
        let bundle = self.net_bundle(rts, k, net)?;
        let id = self.id(&rt.name);
        let pf = self.pid_file(&id);
        let inner = rt.run_detached(&bundle, &pf, &id);
        let scratch = self.out.join("perf.tmp");
        std::thread::sleep(Duration::from_millis(self.args.gap_ms));
        let ran = self.runner.run(&rt.name, &mut traced(&scratch, &inner));
        let text = std::fs::read_to_string(&scratch).unwrap_or_default();
        self.remove_scratch();
        ran?;
        let pidfd = pidfd_open(read_pid_file(&pf)?)?;
        let _ = std::fs::remove_file(&pf);
        self.stop_one(&rt, Live { id, pidfd })?;
        Ok(text)
    }

    /// perf's output file (`perf.tmp`) and the copy perf keeps of the one
    /// before it (FILE.old).
    pub(crate) fn remove_scratch(&self) {
        let _ = std::fs::remove_file(self.out.join("perf.tmp"));
        let _ = std::fs::remove_file(self.out.join("perf.tmp.old"));
    }

    pub(crate) fn execs(&mut self, rts: &[Oci]) -> Result<Value> {
        let mut live: Vec<Option<Live>> = Vec::new();
        let result = (|| -> Result<Vec<Vec<f64>>> {
            for k in 0..rts.len() {
                live.push(Some(self.start_one(rts, k, Net::None)?.0));
            }
            let mut samples = vec![Vec::new(); rts.len()];
            for i in 0..self.args.execs {
                for k in rotation(rts.len(), i) {
                    let id = live[k]
                        .as_ref()
                        .map(|c| c.id.clone())
                        .ok_or_else(|| anyhow!("no container"))?;
                    let t = self
                        .runner
                        .time(&rts[k].name, &mut rts[k].cmd(&["exec", &id, "/bin/true"]))?;
                    samples[k].push(ms(t));
                }
            }
            Ok(samples)
        })();
        let mut stopped = Ok(());
        for (k, c) in live.iter_mut().enumerate() {
            if let Some(c) = c.take() {
                let rt = rts[k].clone();
                if let Err(e) = self.stop_one(&rt, c) {
                    stopped = Err(e);
                }
            }
        }
        let samples = result?;
        stopped?;
        let stats: Vec<Option<Stats>> = samples.iter().map(|s| Stats::of(s)).collect();
        self.report.section(&format!(
            "9. exec of /bin/true into a running container, {} each, back to back (ms)",
            self.args.execs
        ));
        self.report.row("exec", rts, &stats);
        Ok(Value::Object(per_runtime(rts, &stats)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_share_the_samples_and_the_first_rounds_take_the_remainder() {
        let shares: Vec<usize> = (0..3).map(|r| share(20, 3, r)).collect();
        assert_eq!(shares, [7, 7, 6]);
        assert_eq!(
            (0..3).map(|r| share(2, 3, r)).collect::<Vec<_>>(),
            [1, 1, 0]
        );
        assert_eq!(share(20, 1, 0), 20);
    }

    fn run(calls: &[(&str, f64)]) -> TracedRun {
        TracedRun {
            calls: calls.iter().map(|(c, t)| (c.to_string(), *t)).collect(),
        }
    }

    #[test]
    fn growth_takes_medians_counts_a_missing_call_as_zero_and_leaves_waits_out() {
        let first = [
            run(&[("tiny-init: pivot_root", 0.05), ("shim: recvfrom", 2.0)]),
            run(&[("tiny-init: pivot_root", 0.07), ("shim: recvfrom", 2.2)]),
            run(&[("tiny-init: pivot_root", 0.06), ("shim: recvfrom", 1.8)]),
        ];
        let last = [
            run(&[("tiny-init: pivot_root", 0.9), ("shim: recvfrom", 5.0)]),
            run(&[
                ("tiny-init: pivot_root", 1.1),
                ("shim: recvfrom", 6.0),
                ("runtime: write", 0.5),
            ]),
            run(&[
                ("tiny-init: pivot_root", 1.0),
                ("shim: recvfrom", 5.5),
                ("runtime: write", 0.3),
            ]),
        ];
        let g = Growth::of(&first, &last);
        let calls: Vec<&str> = g.rows.iter().map(|r| r.call.as_str()).collect();
        assert_eq!(
            calls,
            ["shim: recvfrom", "tiny-init: pivot_root", "runtime: write"]
        );
        assert!(g.rows[0].waits && !g.rows[1].waits && !g.rows[2].waits);
        assert!((g.rows[1].last - g.rows[1].first - 0.94).abs() < 1e-9);
        // write: 0 in the first level, median of 0, 0.5 and 0.3 in the last.
        assert!((g.rows[2].last - 0.3).abs() < 1e-9 && g.rows[2].first == 0.0);
        // Each run's sum: 0.05, 0.07, 0.06 against 0.9, 1.6, 1.3.
        assert!((g.non_wait - (1.3 - 0.06)).abs() < 1e-9);
        assert!(g.table("nsbox", 1, 500, 3).contains("(waits)"));
    }

    #[test]
    fn the_shims_exec_behind_its_parent_is_not_growth() {
        let first = [run(&[
            ("shim: execve", 1.35),
            ("tiny-init: pivot_root", 0.05),
        ])];
        let last = [run(&[
            ("shim: execve", 3.03),
            ("tiny-init: pivot_root", 0.55),
        ])];
        let g = Growth::of(&first, &last);
        assert!((g.non_wait - 0.5).abs() < 1e-9, "{}", g.non_wait);
        assert!(g.rows.iter().any(|r| r.call == "shim: execve" && r.waits));
    }
}
