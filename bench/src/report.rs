//! The printed table (also written to target/bench/report.txt) and the
//! goals of issue 6, checked against the results.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::measure::{round3, Stats};
use crate::orchestrated::CrowdRow;
use crate::runtimes::Oci;

const LABEL: usize = 18;
const CELL: usize = 21;
const RATIO: usize = 11;
/// The runtimes nsbox's median is divided by in the ratio columns.
const AGAINST: [&str; 3] = ["crun", "crun-nocg", "runc"];

pub struct Report {
    lines: Vec<String>,
    /// The runtimes of the time tables, in column order.
    columns: Vec<String>,
    /// Other nsbox builds (--variant), each also divided by nsbox.
    variants: Vec<String>,
}

/// `median (min-max)`.
pub fn cell(s: Option<Stats>) -> String {
    match s {
        Some(s) => format!("{} ({}-{})", num(s.median), num(s.min), num(s.max)),
        None => "-".into(),
    }
}

fn num(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else if x >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

fn ratio(a: Option<Stats>, b: Option<Stats>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b.median > 0.0 => format!("{:.2}x", a.median / b.median),
        _ => "-".into(),
    }
}

fn get(v: &Value, path: &[&str]) -> Option<f64> {
    let mut cur = v;
    for p in path {
        cur = cur.get(*p)?;
    }
    cur.as_f64()
}

impl Report {
    pub fn new(columns: Vec<String>, variants: Vec<String>) -> Report {
        Report {
            lines: Vec::new(),
            columns,
            variants,
        }
    }

    pub fn text(&self) -> String {
        self.lines.join("\n")
    }

    fn push(&mut self, s: String) {
        self.lines.push(s);
    }

    pub fn header(&mut self, machine: &Value, versions: &Value, fs: &Value, load: &str) {
        self.push("nsbox bench (issues 6 and 16): nsbox beside crun and runc".into());
        self.push(format!(
            "machine: {} CPUs, {}, Linux {}, {} MiB",
            machine["nproc"],
            machine["cpu"].as_str().unwrap_or("?"),
            machine["kernel"].as_str().unwrap_or("?"),
            machine["mem_total_mib"]
        ));
        let v = |k: &str| versions[k].as_str().unwrap_or("?").to_string();
        self.push(format!(
            "versions: {} | {} | {} | {}",
            v("nsbox"),
            v("crun"),
            v("runc"),
            v("conmon")
        ));
        self.push(format!(
            "state roots on {}; times are wall-clock ms from spawn to reap: median (min-max);",
            fs["state"].as_str().unwrap_or("?")
        ));
        self.push(
            "crun-nocg: crun --cgroup-manager=disabled (what cgroups cost crun); /X: nsbox's median over X's"
                .into(),
        );
        self.push(format!(
            "load average at the start: {load}; the bench runs at nice {}",
            machine["nice"]
        ));
    }

    pub fn section(&mut self, title: &str) {
        self.push(String::new());
        self.push(title.to_string());
        let mut line = format!("  {:<LABEL$}", "");
        for c in &self.columns {
            line.push_str(&format!("{c:>CELL$}"));
        }
        for a in AGAINST {
            line.push_str(&format!("{:>RATIO$}", format!("/{a}")));
        }
        for v in &self.variants {
            line.push_str(&format!("{:>RATIO$}", format!("{v}/nsbox")));
        }
        self.push(line);
    }

    /// A row: each runtime's cell, then nsbox's median over each other's.
    pub fn row(&mut self, label: &str, rts: &[Oci], stats: &[Option<Stats>]) {
        let by = |n: &str| rts.iter().position(|r| r.name == n).and_then(|i| stats[i]);
        let mut line = format!("  {label:<LABEL$}");
        for c in &self.columns {
            line.push_str(&format!("{:>CELL$}", cell(by(c))));
        }
        for a in AGAINST {
            line.push_str(&format!("{:>RATIO$}", ratio(by("nsbox"), by(a))));
        }
        for v in &self.variants {
            line.push_str(&format!("{:>RATIO$}", ratio(by(v), by("nsbox"))));
        }
        self.push(line);
    }

    pub fn note(&mut self, s: &str) {
        self.push(format!("  {s}"));
    }

    pub fn alive(
        &mut self,
        count: usize,
        names: &[String],
        starts: &[Option<Stats>],
        totals: &[Option<Stats>],
        stops: &[Option<Stats>],
        mem: &[Value],
    ) {
        self.push(String::new());
        self.push(format!(
            "4. {count} containers alive at once: start time, and host memory outside the workload"
        ));
        self.push(format!(
            "  {:<24}{:>22}{:>12}{:>12}{:>14}{:>14}",
            "", "one start ms", "all ms", "stop all ms", "PSS KiB/ctr", "RSS KiB/ctr"
        ));
        for (i, name) in names.iter().enumerate() {
            let m = &mem[i];
            let f = |k: &str| {
                m.get(k)
                    .and_then(Value::as_f64)
                    .map_or("-".into(), |x| format!("{x:.0}"))
            };
            self.push(format!(
                "  {:<24}{:>22}{:>12}{:>12}{:>14}{:>14}",
                name,
                cell(starts[i]),
                totals[i].map_or("-".into(), |s| format!("{:.0}", s.median)),
                stops[i].map_or("-".into(), |s| format!("{:.0}", s.median)),
                f("pss_kib_per_container"),
                f("rss_kib_per_container"),
            ));
            if let Some(by) = m.get("by_process").and_then(Value::as_object) {
                let parts: Vec<String> = by
                    .iter()
                    .map(|(n, x)| {
                        format!(
                            "{n} {:.0}",
                            x["pss_kib_per_container"].as_f64().unwrap_or(0.0)
                        )
                    })
                    .collect();
                if !parts.is_empty() {
                    self.push(format!(
                        "  {:<24}  PSS KiB/ctr by process: {}",
                        "",
                        parts.join(", ")
                    ));
                }
            }
        }
        self.push("  counted: every process of the container except the workload (sleep):".into());
        self.push(
            "  nsbox shim + tiny-init; conmon + catatonit/tini; nothing for detached runc/crun,"
                .into(),
        );
        self.push(
            "  whose init is the workload. PSS splits shared pages among their users; Shmem and"
                .into(),
        );
        self.push(
            "  MemAvailable deltas per container are in results.json (noisy, informative only)."
                .into(),
        );
    }

    /// Section 8: each runtime's crowd alone per level, and, when
    /// `together` names how many runtimes, with all their crowds of the
    /// last level at once.
    pub fn crowd(
        &mut self,
        levels: &[usize],
        rows: &[CrowdRow],
        samples: usize,
        rounds: usize,
        together: Option<usize>,
    ) {
        self.push(String::new());
        self.push(format!(
            "8. run -d with containers of its own alive, {samples} samples per level \
             in {rounds} round(s) (ms)"
        ));
        let (lo, hi) = (levels[0], levels[levels.len() - 1]);
        let mut head = format!("  {:<28}", "");
        for l in levels {
            head.push_str(&format!("{:>CELL$}", format!("{l} alive")));
        }
        if levels.len() > 1 {
            head.push_str(&format!("{:>12}", format!("{hi}/{lo}")));
        }
        if let Some(n) = together {
            head.push_str(&format!(
                "{:>CELL$}{:>12}",
                format!("{n} x {hi} at once"),
                format!("/{lo}")
            ));
        }
        head.push_str(&format!("{:>14}", "stop all ms"));
        self.push(head);
        for row in rows {
            let s = &row.at_level;
            let mut line = format!("  {:<28}", row.name);
            for x in s {
                line.push_str(&format!("{:>CELL$}", cell(*x)));
            }
            if levels.len() > 1 {
                line.push_str(&format!("{:>12}", ratio(s[s.len() - 1], s[0])));
            }
            if together.is_some() {
                line.push_str(&format!(
                    "{:>CELL$}{:>12}",
                    cell(row.together),
                    ratio(row.together, s[0])
                ));
            }
            line.push_str(&format!("{:>14.0}", row.stop_all_ms));
            self.push(line);
        }
        if let Some(n) = together {
            self.note(&format!(
                "(\"{hi} alive\": the runtime's own {hi} on the host; \"at once\": \
                 all {n} runtimes' crowds alive, {} containers)",
                n * hi
            ));
        }
    }

    pub fn sizes(&mut self, rows: &[(String, u64, usize)]) {
        self.push(String::new());
        self.push("5. binary sizes".into());
        for (name, bytes, libs) in rows {
            let link = if *libs == 0 {
                "static".to_string()
            } else {
                format!("dynamic, {libs} shared libraries")
            };
            self.push(format!(
                "  {:<24}{:>10.2} MiB   {link}",
                name,
                *bytes as f64 / (1024.0 * 1024.0)
            ));
        }
        let total: u64 = rows
            .iter()
            .filter(|r| r.0.starts_with("nsbox"))
            .map(|r| r.1)
            .sum();
        self.push(format!(
            "  {:<24}{:>10.2} MiB",
            "nsbox, all three",
            total as f64 / (1024.0 * 1024.0)
        ));
    }

    pub fn breakdown(
        &mut self,
        rts: &[Oci],
        cpu: &[BTreeMap<String, Vec<f64>>],
        phases: &[BTreeMap<&'static str, Vec<f64>>],
        runs: usize,
    ) {
        self.section(&format!(
            "6. breakdown of a full run, {runs} runs each: perf stat (software counters), perf trace (phases, ms)"
        ));
        let stat = |k: usize, key: &str| cpu[k].get(key).and_then(|v| Stats::of(v));
        for (label, key) in [
            ("CPU ms (task-clock)", "task-clock"),
            ("context switches", "context-switches"),
            ("page faults", "page-faults"),
        ] {
            let stats: Vec<Option<Stats>> = (0..rts.len()).map(|k| stat(k, key)).collect();
            self.row(label, rts, &stats);
        }
        for (name, _) in crate::trace::PHASES.iter().chain(&[("total", "")]) {
            let stats: Vec<Option<Stats>> = (0..rts.len())
                .map(|k| phases[k].get(name).and_then(|v| Stats::of(v)))
                .collect();
            self.row(name, rts, &stats);
        }
        for (name, what) in crate::trace::PHASES {
            self.push(format!("    {name:<13} {what}"));
        }
        self.push(
            "  (runs under perf trace are a little slower; median timeline of every step, with the"
                .into(),
        );
        self.push("  messages and fsyncs between them: target/bench/trace-RUNTIME.txt)".into());
    }

    pub fn warnings(&mut self, w: &BTreeMap<String, (usize, Vec<String>)>) {
        self.push(String::new());
        self.push("stderr of commands that succeeded:".into());
        for (who, (n, lines)) in w {
            self.push(format!("  {who}: {n} time(s), e.g. {}", lines.join(" | ")));
        }
    }

    /// The goals of issues 6 and 16, as ratios of medians; printed and
    /// returned.
    pub fn goals(&mut self, r: &Value) -> Value {
        let full = match (
            get(r, &["full_run", "nsbox", "median"]),
            get(r, &["full_run", "crun", "median"]),
        ) {
            (Some(a), Some(b)) => Some(a / b),
            _ => None,
        };
        let back_to_back = match (
            get(r, &["full_run_back_to_back", "nsbox", "median"]),
            get(r, &["full_run_back_to_back", "crun", "median"]),
        ) {
            (Some(a), Some(b)) => Some(a / b),
            _ => None,
        };
        let det = match (
            get(r, &["detached", "start_all", "nsbox", "median"]),
            get(r, &["detached", "start_all", "crun", "median"]),
        ) {
            (Some(a), Some(b)) => Some(a / b),
            _ => None,
        };
        let port_over_none = get(r, &["bridged", "over_none", "nsbox", "port_over_none_ms"]);
        let crowd = r["crowd"]["nsbox"]["run_d"].as_array().and_then(|a| {
            let first = a.first()?.get("median")?.as_f64()?;
            let last = a.last()?.get("median")?.as_f64()?;
            (a.len() > 1 && first > 0.0).then(|| last / first)
        });
        let crowd_levels = r["crowd"]["nsbox"]["levels"]
            .as_array()
            .and_then(|l| Some((l.first()?.as_u64()?, l.last()?.as_u64()?)));
        let writable = match (
            get(r, &["full_run_writable_back_to_back", "nsbox", "median"]),
            get(r, &["full_run_writable_back_to_back", "crun", "median"]),
        ) {
            (Some(a), Some(b)) => Some(a / b),
            _ => None,
        };
        let ours = get(r, &["alive", "nsbox", "memory", "pss_kib_per_container"]);
        let theirs = get(
            r,
            &[
                "alive",
                "crun+conmon+catatonit",
                "memory",
                "pss_kib_per_container",
            ],
        );
        let met = |b: bool| if b { "met" } else { "NOT met" };
        self.push(String::new());
        self.push("goals (issue 6):".into());
        if let Some(x) = full {
            self.push(format!(
                "  full run <= 0.8 x crun:                       nsbox/crun = {x:.2}  {}",
                met(x <= 0.8)
            ));
        }
        if let Some(x) = back_to_back {
            self.push(format!(
                "    (back to back, section 1a:                 nsbox/crun = {x:.2}  {})",
                met(x <= 0.8)
            ));
        }
        if let Some(x) = det {
            self.push(format!(
                "  detached starts <= crun:                      nsbox/crun = {x:.2}  {}",
                met(x <= 1.0)
            ));
        }
        if let (Some(a), Some(b)) = (ours, theirs) {
            self.push(format!(
                "  per-container PSS < conmon + catatonit:       {a:.0} KiB vs {b:.0} KiB  {}",
                met(a < b)
            ));
        }
        self.push("goals (issue 16):".into());
        if let Some(x) = port_over_none {
            self.push(format!(
                "  bridge + published port adds <= 4 ms to run -d: {x:.2} ms  {}",
                met(x <= 4.0)
            ));
        }
        if let (Some(x), Some((lo, hi))) = (crowd, crowd_levels) {
            self.push(format!(
                "  run -d with {hi} of its own alive <= 1.15 x with {lo}: {x:.2}  {}",
                met(x <= 1.15)
            ));
        }
        if let Some(x) = writable {
            self.push(format!(
                "  writable root, back to back <= 0.7 x crun:   nsbox/crun = {x:.2}  {}",
                met(x <= 0.7)
            ));
        }
        if let Some(a) = ours {
            self.push(format!(
                "  memory per container < 200 KiB:              {a:.0} KiB  {}",
                met(a < 200.0)
            ));
        }
        json!({
            "port_over_none_ms": port_over_none.map(round3),
            "port_over_none_met": port_over_none.map(|x| x <= 4.0),
            "crowd_last_over_first": crowd.map(round3),
            "crowd_met": crowd.map(|x| x <= 1.15),
            "writable_back_to_back_nsbox_over_crun": writable.map(round3),
            "writable_met": writable.map(|x| x <= 0.7),
            "memory_200_kib_met": ours.map(|a| a < 200.0),
            "full_run_nsbox_over_crun": full.map(round3),
            "full_run_goal": 0.8,
            "full_run_met": full.map(|x| x <= 0.8),
            "full_run_back_to_back_nsbox_over_crun": back_to_back.map(round3),
            "detached_nsbox_over_crun": det.map(round3),
            "detached_met": det.map(|x| x <= 1.0),
            "pss_kib_per_container_nsbox": ours,
            "pss_kib_per_container_conmon_catatonit": theirs,
            "memory_met": ours.zip(theirs).map(|(a, b)| a < b),
        })
    }
}
