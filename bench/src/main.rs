//! nsbox-bench: nsbox side by side with runc and crun, in time and memory
//! (issues 6 and 16). `make bench` builds it and starts it the only way it runs:
//! under `tini -s` (which reaps the orphans that detached containers
//! leave), in a private mount namespace in which the cgroup2 mount at
//! /sys/fs/cgroup/unified is replaced by an empty tmpfs, because crun 1.8
//! refuses this machine's hybrid cgroup layout. Every runtime runs in that
//! same namespace, so the comparison stays fair.
//!
//! Every runtime gets the same bundle (setup::spec), its own `--root`
//! under a tmpfs of ours, and the same command line. Samples are taken in
//! rotating order (nsbox, crun, runc; then crun, runc, nsbox; ...), so
//! that drift in the machine hits all of them alike. Times are wall-clock,
//! from spawning the runtime to reaping it.
//!
//! Sections (numbers as in the issue):
//! 1. full foreground `run` of /bin/true (each runtime deletes the
//!    container itself when `run` ends in the foreground; checked), each
//!    run after an idle pause (`--gap-ms`); 1a. the same back to back, in
//!    batches of five per runtime; 1b. after a pause, state on the disk;
//! 2. `create`, `start`, `delete`, timed apart;
//! 3. N detached `sleep` containers started one after another, then
//!    killed and deleted;
//! 4. N containers alive at once: start time and the memory they hold
//!    outside the workload (memory.rs says what is counted), against crun
//!    under conmon with catatonit or tini as init;
//! 5. binary sizes;
//! 6. where the time of a full run goes (perf; trace.rs);
//! 7. to 9. what orchestrators wait for (issue 16; orchestrated.rs):
//!    `run -d` on a bridge with a published port beside `--net none`, the
//!    same with 1, 100 and 500 containers alive, and `exec`.
//!
//! Sections 1c and 1d are 1 and 1a with a writable root, as Docker and
//! Podman send it.
//!
//! Everything it makes (containers of every runtime, state roots, bundles
//! of conmon containers, mounts) is removed at the end, also after an error
//! or SIGINT/SIGTERM; results stay in target/bench/.

mod measure;
mod memory;
mod orchestrated;
mod report;
mod runtimes;
mod setup;
mod trace;

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use serde_json::{json, Value};

use measure::{ms, pidfd_open, read_pid_file, rotation, wait_pidfd, Runner, Stats};
use runtimes::{Conmon, ConmonContainer, Oci};

#[derive(Parser, Debug, Clone)]
#[command(
    name = "nsbox-bench",
    about = "nsbox beside runc and crun: time and memory (run it with `make bench`)"
)]
struct Args {
    /// Directory with nsbox's release binaries (runtime, shim, tiny-init).
    #[arg(long, default_value = "target/x86_64-unknown-linux-gnu/release")]
    nsbox_dir: PathBuf,
    /// Where results, bundles and the rootfs go.
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
    /// The script that builds the busybox rootfs.
    #[arg(long, default_value = "scripts/mkrootfs.sh")]
    mkrootfs: PathBuf,
    /// State roots of all runtimes (a tmpfs is mounted there, privately).
    #[arg(long, default_value = "/run/nsbox-bench")]
    state: PathBuf,
    /// Full runs per runtime (section 1), state on tmpfs.
    #[arg(long, default_value_t = 100)]
    runs: usize,
    /// Idle pause before each timed run of sections 1 and 2, in ms. The
    /// first move of a process into a cgroup after a quiet spell waits for
    /// an RCU grace period; shortly after another move it does not (see
    /// docs/performance.md). Back to back, a runtime's time thus depends on
    /// which one ran just before it; after a pause every runtime starts from
    /// the same quiet kernel, as a run typed at a shell does. Section 1 is
    /// also measured back to back.
    #[arg(long, default_value_t = 50)]
    gap_ms: u64,
    /// Full runs per runtime with the state roots on the disk (0: skip).
    #[arg(long, default_value_t = 40)]
    disk_runs: usize,
    /// create/start/delete cycles per runtime (section 2).
    #[arg(long, default_value_t = 50)]
    cycles: usize,
    /// Detached containers per batch (section 3).
    #[arg(long, default_value_t = 50)]
    detached: usize,
    /// Batches of detached containers per runtime.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Containers alive at once (section 4; 0: skip).
    #[arg(long, default_value_t = 200)]
    alive: usize,
    /// Runs per runtime under perf stat and under perf trace (0: skip).
    #[arg(long, default_value_t = 20)]
    traced: usize,
    /// `run -d` samples per case in section 7 (bridge, published port,
    /// `--net none`; 0: skip).
    #[arg(long, default_value_t = 30)]
    bridged: usize,
    /// Section 8: how many containers of a runtime are alive while its
    /// `run -d` is timed, comma-separated (0: skip).
    #[arg(long, default_value = "1,100,500", value_delimiter = ',')]
    crowd: Vec<usize>,
    /// `run -d` samples per level of section 8, over all its rounds.
    #[arg(long, default_value_t = 20)]
    crowd_samples: usize,
    /// Section 8's rounds: in each, every runtime in turn grows its crowd
    /// alone, level by level, and removes it.
    #[arg(long, default_value_t = 3)]
    crowd_rounds: usize,
    /// Section 8 also times `run -d` with every runtime's crowd of the
    /// last level alive at once (true or false).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    crowd_together: bool,
    /// `exec` of /bin/true per runtime (section 9; 0: skip).
    #[arg(long, default_value_t = 50)]
    execs: usize,
    /// Small counts everywhere: a smoke test of the bench itself.
    #[arg(long)]
    quick: bool,
    /// Another nsbox build to measure beside this one, as NAME=DIR (DIR
    /// holding its runtime, shim and tiny-init); may be repeated. For
    /// trying a change: both builds run interleaved in the same sections.
    #[arg(long, value_name = "NAME=DIR")]
    variant: Vec<String>,
}

impl Args {
    fn quickened(mut self) -> Args {
        if self.quick {
            self.runs = self.runs.min(5);
            self.disk_runs = self.disk_runs.min(3);
            self.cycles = self.cycles.min(3);
            self.detached = self.detached.min(5);
            self.rounds = self.rounds.min(1);
            self.alive = self.alive.min(10);
            self.traced = self.traced.min(2);
            self.bridged = self.bridged.min(3);
            self.crowd = self.crowd.iter().map(|&n| n.min(5)).collect();
            self.crowd.dedup();
            self.crowd_samples = self.crowd_samples.min(3);
            self.crowd_rounds = self.crowd_rounds.min(1);
            self.execs = self.execs.min(3);
        }
        self
    }
}

/// Timed runs in a row per runtime in section 1a.
const BATCH: usize = 5;

struct Bundles {
    truth: PathBuf,
    /// /bin/true with a writable root.
    truth_rw: PathBuf,
    sleep: PathBuf,
    /// Where the bridged sections write a config.json per container.
    dir: PathBuf,
    rootfs: PathBuf,
}

struct Bench {
    args: Args,
    out: PathBuf,
    runner: Runner,
    /// nsbox, crun, runc: state on our tmpfs.
    rts: Vec<Oci>,
    /// The same with their state on the disk (the machine's /run here).
    disk: Vec<Oci>,
    conmons: Vec<Conmon>,
    bundles: Bundles,
    pids_dir: PathBuf,
    reaper: i32,
    perf: Option<PathBuf>,
    seq: usize,
    results: serde_json::Map<String, Value>,
    report: report::Report,
    conmon_pid_files: Vec<PathBuf>,
    /// The last host port the bridged sections published.
    next_port: u16,
}

fn main() {
    let args = Args::parse().quickened();
    measure::catch_stop_signals();
    match real_main(args) {
        Ok(()) => {}
        Err(e) => {
            eprintln!("nsbox-bench: {e:#}");
            std::process::exit(1);
        }
    }
}

fn real_main(args: Args) -> Result<()> {
    let reaper = setup::preflight()?;
    let out = absolute(&args.out)?;
    std::fs::create_dir_all(&out).with_context(|| format!("make {}", out.display()))?;
    let started = Instant::now();
    let mut bench = Bench::new(args, out, reaper.pid)?;
    bench.results.insert(
        "reaper".into(),
        json!({ "pid": reaper.pid, "name": reaper.name }),
    );
    let result = bench.run_all();
    let problems = bench.cleanup();
    bench
        .results
        .insert("loadavg_end".into(), json!(setup::loadavg()));
    bench.results.insert(
        "bench_seconds".into(),
        json!(started.elapsed().as_secs_f64().round()),
    );
    bench
        .results
        .insert("cleanup_problems".into(), json!(problems.clone()));
    let written = bench.write_results();
    for p in &problems {
        eprintln!("nsbox-bench: clean-up: {p}");
    }
    result?;
    written?;
    if !problems.is_empty() {
        bail!("clean-up left things behind (see above)");
    }
    println!(
        "\nnsbox-bench: done in {:.0} s; nothing left behind; results in {}",
        started.elapsed().as_secs_f64(),
        bench.out.display()
    );
    Ok(())
}

fn absolute(p: &Path) -> Result<PathBuf> {
    Ok(if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()?.join(p)
    })
}

/// nsbox's three binaries copied from `from` into `to`, as `make install`
/// (or a package) would put them; the runtime's path there.
///
/// The linker writes its output piecemeal, and executing such a file takes
/// more page faults than executing one written in one go, as a copy, or
/// dpkg's crun and runc, are: run straight from target/, nsbox would be
/// measured slower than it runs installed (docs/performance.md has by how
/// much). Every runtime is measured installed.
fn installed(from: &Path, to: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(to).with_context(|| format!("make {}", to.display()))?;
    for b in ["runtime", "shim", "tiny-init"] {
        let dst = to.join(b);
        // A new file, not one overwritten in place: never a half-copied
        // binary that a process may still be running.
        let tmp = to.join(format!(".{b}.tmp"));
        std::fs::copy(from.join(b), &tmp)
            .and_then(|_| std::fs::rename(&tmp, &dst))
            .with_context(|| format!("copy {} to {}", from.join(b).display(), dst.display()))?;
    }
    Ok(to.join("runtime"))
}

fn required(name: &str) -> Result<PathBuf> {
    runtimes::which(name).ok_or_else(|| {
        anyhow!("{name} not found: `make bench-deps` installs runc, crun, conmon, catatonit, tini")
    })
}

impl Bench {
    fn new(args: Args, out: PathBuf, reaper: i32) -> Result<Bench> {
        let nsbox_dir = absolute(&args.nsbox_dir)?;
        for b in ["runtime", "shim", "tiny-init"] {
            if !nsbox_dir.join(b).is_file() {
                bail!(
                    "{} missing: run `make build` first",
                    nsbox_dir.join(b).display()
                );
            }
        }
        let crun = required("crun")?;
        let runc = required("runc")?;
        let conmon = required("conmon")?;
        let catatonit = required("catatonit")?;
        let tini = required("tini-static")?;

        let nsbox = installed(&nsbox_dir, &out.join("bin/nsbox"))?;
        let state = absolute(&args.state)?;
        setup::mount_tmpfs(&state)?;
        let disk_state = out.join("disk-state");
        // crun with `--cgroup-manager=disabled` shows what joining the cgroup
        // v1 hierarchies costs a run (nsbox, like crun and runc, joins them).
        let mut rts = vec![Oci::new("nsbox", &nsbox, &state.join("nsbox"))];
        for v in &args.variant {
            let (name, dir) = v
                .split_once('=')
                .ok_or_else(|| anyhow!("--variant {v:?}: expected NAME=DIR"))?;
            let reserved = ["nsbox", "crun", "crun-nocg", "runc", "floor", "pids"];
            if name.is_empty()
                || reserved.contains(&name)
                || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            {
                bail!("--variant {v:?}: NAME must be new, and letters, digits and '-' only");
            }
            let dir = absolute(Path::new(dir))?;
            for b in ["runtime", "shim", "tiny-init"] {
                if !dir.join(b).is_file() {
                    bail!("--variant {name}: {} missing", dir.join(b).display());
                }
            }
            let runtime = installed(&dir, &out.join("bin").join(name))?;
            rts.push(Oci::new(name, &runtime, &state.join(name)));
        }
        rts.extend([
            Oci::new("crun", &crun, &state.join("crun")),
            Oci::new("crun-nocg", &crun, &state.join("crun-nocg"))
                .with_global("--cgroup-manager=disabled"),
            Oci::new("runc", &runc, &state.join("runc")),
        ]);
        let disk = rts
            .iter()
            .map(|r| Oci {
                root: disk_state.join(&r.name),
                ..r.clone()
            })
            .collect();
        let rootfs = setup::rootfs(
            &out,
            &absolute(&args.mkrootfs)?,
            &[catatonit.clone(), tini.clone()],
        )?;
        let b = out.join("bundles");
        let mut writable = setup::spec(&rootfs, &["/bin/true"]);
        writable["root"]["readonly"] = json!(false);
        let bundles = Bundles {
            truth: setup::write_bundle(&b.join("true"), &setup::spec(&rootfs, &["/bin/true"]))?,
            truth_rw: setup::write_bundle(&b.join("true-rw"), &writable)?,
            sleep: setup::write_bundle(
                &b.join("sleep"),
                &setup::spec(&rootfs, &["/bin/sleep", "3600"]),
            )?,
            dir: b.clone(),
            rootfs: rootfs.clone(),
        };
        let conmon_crun = Oci::new("crun", &crun, &state.join("crun-conmon"));
        let mut conmons = Vec::new();
        for (name, init) in [("catatonit", &catatonit), ("tini", &tini)] {
            let init_in_rootfs = format!("/bin/{}", init.file_name().unwrap().to_string_lossy());
            let template = setup::write_bundle(
                &b.join(format!("sleep-{name}")),
                &setup::spec(&rootfs, &[&init_in_rootfs, "--", "/bin/sleep", "3600"]),
            )?;
            conmons.push(Conmon {
                name: format!("crun+conmon+{name}"),
                conmon: conmon.clone(),
                crun: conmon_crun.clone(),
                dir: state.join(format!("conmon-{name}")),
                template,
            });
        }
        let pids_dir = state.join("pids");
        std::fs::create_dir_all(&pids_dir)?;
        let perf =
            runtimes::which("perf").filter(|p| trace::perf_works(p, &out.join("perf-check.txt")));
        let _ = std::fs::remove_file(out.join("perf-check.txt"));

        let mut results = serde_json::Map::new();
        let machine = setup::machine();
        let versions = json!({
            "nsbox": runtimes::version(&nsbox),
            "crun": runtimes::version(&crun),
            "runc": runtimes::version(&runc),
            "conmon": runtimes::version(&conmon),
            "catatonit": runtimes::version(&catatonit),
            "tini": runtimes::version(&tini),
        });
        let fs = json!({
            "state": setup::fs_name(&state),
            "disk_state": setup::fs_name(&out),
        });
        let mut report = report::Report::new(
            rts.iter().map(|r| r.name.clone()).collect(),
            args.variant
                .iter()
                .filter_map(|v| v.split_once('=').map(|(n, _)| n.to_string()))
                .collect(),
        );
        let load = setup::loadavg();
        if load
            .split_whitespace()
            .next()
            .and_then(|l| l.parse::<f64>().ok())
            .is_some_and(|l| l > 1.0)
        {
            eprintln!(
                "nsbox-bench: warning: load average {load}: the machine is busy, figures will be slow and noisy"
            );
        }
        report.header(&machine, &versions, &fs, &load);
        results.insert("loadavg_start".into(), json!(load));
        results.insert("machine".into(), machine);
        results.insert("versions".into(), versions);
        results.insert("filesystems".into(), fs);
        results.insert(
            "settings".into(),
            json!({
                "runs": args.runs, "disk_runs": args.disk_runs, "cycles": args.cycles,
                "detached": args.detached, "rounds": args.rounds, "alive": args.alive,
                "traced": args.traced, "quick": args.quick, "variants": args.variant,
                "bridged": args.bridged, "crowd": args.crowd,
                "crowd_samples": args.crowd_samples,
                "crowd_rounds": args.crowd_rounds, "crowd_together": args.crowd_together,
                "execs": args.execs,
                "bundle": setup::spec(&rootfs, &["/bin/true"]),
            }),
        );
        let runner = Runner::new(&out.join("stderr.log"))?;
        let mut bench = Bench {
            args,
            out,
            runner,
            rts,
            disk,
            conmons,
            bundles,
            pids_dir,
            reaper,
            perf,
            seq: 0,
            results,
            report,
            conmon_pid_files: Vec::new(),
            next_port: 0,
        };
        // A run killed before its clean-up may have left containers in the
        // roots on the disk: clear them before measuring.
        let stale = bench.cleanup();
        for p in stale {
            eprintln!("nsbox-bench: before the start: {p}");
        }
        std::fs::create_dir_all(&bench.pids_dir)?;
        Ok(bench)
    }

    fn id(&mut self, who: &str) -> String {
        self.seq += 1;
        let short = who.replace("crun+conmon+", "cm-");
        format!("bench-{short}-{}", self.seq)
    }

    fn pid_file(&self, id: &str) -> PathBuf {
        self.pids_dir.join(format!("{id}.pid"))
    }

    fn run_all(&mut self) -> Result<()> {
        let r = self.sections();
        setup::sweep_crun_unified();
        r
    }

    fn sections(&mut self) -> Result<()> {
        let rts = self.rts.clone();
        self.warm_up(&rts)?;
        let runs = self.args.runs;
        let gap = Duration::from_millis(self.args.gap_ms);
        let truth = self.bundles.truth.clone();
        // 1c and 1d: a writable root, as Docker and Podman send it
        // (section 1's bundle has a read-only one, which costs crun more
        // than nsbox).
        let writable = self.bundles.truth_rw.clone();
        let idle = format!("each after {} ms idle", self.args.gap_ms);
        let back = "back to back, 5 in a row per runtime";
        for (key, bundle, pause, title) in [
            (
                "full_run",
                &truth,
                gap,
                format!("1. full run of /bin/true, foreground, {idle} (ms)"),
            ),
            (
                "full_run_back_to_back",
                &truth,
                Duration::ZERO,
                format!("1a. full run of /bin/true, {back} (ms)"),
            ),
            (
                "full_run_writable",
                &writable,
                gap,
                format!("1c. full run, writable root (as Docker and Podman send it), {idle} (ms)"),
            ),
            (
                "full_run_writable_back_to_back",
                &writable,
                Duration::ZERO,
                format!("1d. full run, writable root, {back} (ms)"),
            ),
        ] {
            let v = self.full_runs(&rts, bundle, runs, pause, &title)?;
            self.results.insert(key.into(), v);
            setup::sweep_crun_unified();
        }
        if self.args.disk_runs > 0 {
            let disk = self.disk.clone();
            let fs = setup::fs_name(&self.out);
            let v = self.full_runs(
                &disk,
                &truth,
                self.args.disk_runs,
                gap,
                &format!("1b. full run, state roots on the disk ({fs}) (ms)"),
            )?;
            self.results.insert("full_run_disk_state".into(), v);
            setup::sweep_crun_unified();
        }
        let v = self.phases(&rts)?;
        self.results.insert("create_start_delete".into(), v);
        setup::sweep_crun_unified();
        let v = self.detached(&rts)?;
        self.results.insert("detached".into(), v);
        setup::sweep_crun_unified();
        if self.args.alive > 0 {
            // Without cgroups crun keeps the same processes: no need to
            // count them twice.
            let with_cg: Vec<Oci> = rts
                .iter()
                .filter(|r| r.name != "crun-nocg")
                .cloned()
                .collect();
            let v = self.alive(&with_cg)?;
            self.results.insert("alive".into(), v);
            setup::sweep_crun_unified();
        }
        let v = self.sizes()?;
        self.results.insert("binary_sizes".into(), v);
        if self.args.traced > 0 {
            let v = self.breakdown(&rts)?;
            self.results.insert("breakdown".into(), v);
        }
        if self.args.bridged > 0 {
            let v = self.bridged(&rts)?;
            self.results.insert("bridged".into(), v);
            setup::sweep_crun_unified();
        }
        if self.args.crowd.iter().any(|&n| n > 0) {
            let v = self.crowd(&rts)?;
            self.results.insert("crowd".into(), v);
            setup::sweep_crun_unified();
        }
        if self.args.execs > 0 {
            let v = self.execs(&rts)?;
            self.results.insert("exec".into(), v);
            setup::sweep_crun_unified();
        }
        let goals = self.report.goals(&Value::Object(self.results.clone()));
        self.results.insert("goals".into(), goals);
        if !self.runner.warnings.is_empty() {
            let w: BTreeMap<&String, Value> = self
                .runner
                .warnings
                .iter()
                .map(|(k, (n, lines))| (k, json!({ "times": n, "lines": lines })))
                .collect();
            self.report.warnings(&self.runner.warnings);
            self.results
                .insert("stderr_while_succeeding".into(), json!(w));
        }
        Ok(())
    }

    /// A few untimed runs, so that no runtime pays for a cold page cache.
    fn warm_up(&mut self, rts: &[Oci]) -> Result<()> {
        for rt in rts {
            for _ in 0..3 {
                let id = self.id(&rt.name);
                self.runner
                    .run(&rt.name, &mut rt.run_fg(&self.bundles.truth, &id))?;
            }
        }
        Ok(())
    }

    fn full_runs(
        &mut self,
        rts: &[Oci],
        bundle: &Path,
        runs: usize,
        gap: Duration,
        title: &str,
    ) -> Result<Value> {
        let mut samples = vec![Vec::new(); rts.len()];
        let mut floor = Vec::new();
        // Back to back, a run would inherit the kernel state of whichever
        // runtime ran before it (see --gap-ms): each runtime then runs
        // BATCH times in a row, after one untimed run, so that it follows
        // only itself; the batches still rotate, against drift.
        let batch = if gap.is_zero() { BATCH } else { 1 };
        for i in 0..runs.div_ceil(batch) {
            for k in rotation(rts.len(), i) {
                if batch > 1 {
                    let id = self.id(&rts[k].name);
                    self.runner
                        .run(&rts[k].name, &mut rts[k].run_fg(bundle, &id))?;
                }
                for _ in 0..batch {
                    let id = self.id(&rts[k].name);
                    std::thread::sleep(gap);
                    let t = self
                        .runner
                        .time(&rts[k].name, &mut rts[k].run_fg(bundle, &id))?;
                    samples[k].push(ms(t));
                }
            }
            let t = self.runner.time("floor", &mut Command::new("/bin/true"))?;
            floor.push(ms(t));
        }
        for rt in rts {
            let left = rt.list()?;
            if !left.is_empty() {
                bail!(
                    "{}: a foreground run left {} container(s) behind: {left:?}",
                    rt.name,
                    left.len()
                );
            }
        }
        let stats: Vec<Option<Stats>> = samples.iter().map(|s| Stats::of(s)).collect();
        self.report.section(title);
        self.report.row("run", rts, &stats);
        self.report.note(&format!(
            "process-start floor (/bin/true alone): {}",
            report::cell(Stats::of(&floor))
        ));
        let mut v = per_runtime(rts, &stats);
        v.insert("floor_true".into(), opt_json(Stats::of(&floor)));
        Ok(Value::Object(v))
    }

    fn phases(&mut self, rts: &[Oci]) -> Result<Value> {
        let n = rts.len();
        let (mut c, mut s, mut d) = (
            vec![Vec::new(); n],
            vec![Vec::new(); n],
            vec![Vec::new(); n],
        );
        for i in 0..self.args.cycles {
            for k in rotation(n, i) {
                let rt = &rts[k];
                let id = self.id(&rt.name);
                let pf = self.pid_file(&id);
                std::thread::sleep(Duration::from_millis(self.args.gap_ms));
                let t = self
                    .runner
                    .time(&rt.name, &mut rt.create(&self.bundles.truth, &pf, &id))?;
                c[k].push(ms(t));
                let fd = pidfd_open(read_pid_file(&pf)?)?;
                let t = self.runner.time(&rt.name, &mut rt.start(&id))?;
                s[k].push(ms(t));
                if !wait_pidfd(&fd, Duration::from_secs(20)) {
                    bail!("{}: {id}: /bin/true did not end", rt.name);
                }
                let t = self.runner.time(&rt.name, &mut rt.delete(&id))?;
                d[k].push(ms(t));
                let _ = std::fs::remove_file(&pf);
            }
        }
        self.report
            .section("2. create, start, delete timed apart (/bin/true) (ms)");
        let mut v = serde_json::Map::new();
        for (name, xs) in [("create", &c), ("start", &s), ("delete", &d)] {
            let stats: Vec<Option<Stats>> = xs.iter().map(|x| Stats::of(x)).collect();
            self.report.row(name, rts, &stats);
            v.insert(name.into(), Value::Object(per_runtime(rts, &stats)));
        }
        let sums: Vec<Vec<f64>> = (0..n)
            .map(|k| {
                (0..c[k].len())
                    .map(|j| c[k][j] + s[k][j] + d[k][j])
                    .collect()
            })
            .collect();
        let stats: Vec<Option<Stats>> = sums.iter().map(|x| Stats::of(x)).collect();
        self.report.row("sum", rts, &stats);
        v.insert("sum".into(), Value::Object(per_runtime(rts, &stats)));
        Ok(Value::Object(v))
    }

    fn detached(&mut self, rts: &[Oci]) -> Result<Value> {
        let n = rts.len();
        let count = self.args.detached;
        let (mut total, mut each, mut stop) = (
            vec![Vec::new(); n],
            vec![Vec::new(); n],
            vec![Vec::new(); n],
        );
        for round in 0..self.args.rounds {
            for k in rotation(n, round) {
                let rt = rts[k].clone();
                let mut live: Vec<(String, OwnedFd)> = Vec::new();
                let mut sum = 0.0;
                let result = (|| -> Result<()> {
                    for _ in 0..count {
                        let id = self.id(&rt.name);
                        let pf = self.pid_file(&id);
                        let t = self.runner.time(
                            &rt.name,
                            &mut rt.run_detached(&self.bundles.sleep, &pf, &id),
                        )?;
                        sum += ms(t);
                        each[k].push(ms(t));
                        live.push((id, pidfd_open(read_pid_file(&pf)?)?));
                    }
                    Ok(())
                })();
                let t = Instant::now();
                let stopped = self.stop_all(&rt, &live);
                if result.is_ok() && stopped.is_ok() {
                    total[k].push(sum);
                    stop[k].push(ms(t.elapsed()));
                }
                result?;
                stopped?;
            }
        }
        let title = format!(
            "3. {count} detached sleep containers, one after another ({} rounds) (ms)",
            self.args.rounds
        );
        self.report.section(&title);
        let mut v = serde_json::Map::new();
        for (name, xs) in [
            ("start all", &total),
            ("one start", &each),
            ("kill+delete all", &stop),
        ] {
            let stats: Vec<Option<Stats>> = xs.iter().map(|x| Stats::of(x)).collect();
            self.report.row(name, rts, &stats);
            v.insert(
                name.replace(' ', "_"),
                Value::Object(per_runtime(rts, &stats)),
            );
        }
        v.insert("containers".into(), json!(count));
        Ok(Value::Object(v))
    }

    /// kill (SIGKILL) every container, wait until each init has ended, then
    /// delete each; every step of every container, even after a failure.
    fn stop_all(&mut self, rt: &Oci, live: &[(String, OwnedFd)]) -> Result<()> {
        let mut first_err = None;
        for (id, _) in live {
            if let Err(e) = self.runner.run(&rt.name, &mut rt.kill(id)) {
                first_err.get_or_insert(e);
            }
        }
        for (id, fd) in live {
            if !wait_pidfd(fd, Duration::from_secs(20)) {
                first_err.get_or_insert(anyhow!("{}: {id} did not end after SIGKILL", rt.name));
            }
        }
        for (id, _) in live {
            if let Err(e) = self.runner.run(&rt.name, &mut rt.delete(id)) {
                first_err.get_or_insert(e);
            }
            let _ = std::fs::remove_file(self.pid_file(id));
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn alive(&mut self, rts: &[Oci]) -> Result<Value> {
        let count = self.args.alive;
        let conmons = self.conmons.clone();
        let names: Vec<String> = rts
            .iter()
            .map(|r| r.name.clone())
            .chain(conmons.iter().map(|c| c.name.clone()))
            .collect();
        let mut v = serde_json::Map::new();
        let mut starts: Vec<Option<Stats>> = Vec::new();
        let mut totals: Vec<Option<Stats>> = Vec::new();
        let mut stops: Vec<Option<Stats>> = Vec::new();
        let mut mem: Vec<Value> = Vec::new();
        for (k, name) in names.iter().enumerate() {
            settle();
            let (avail0, shmem0) = memory::meminfo();
            let mut each = Vec::new();
            let mut inits = Vec::new();
            let t_all = Instant::now();
            let (measured, stop_time) = if k < rts.len() {
                let rt = rts[k].clone();
                let mut live = Vec::new();
                let r = (|| -> Result<Value> {
                    for _ in 0..count {
                        let id = self.id(&rt.name);
                        let pf = self.pid_file(&id);
                        let t = self.runner.time(
                            &rt.name,
                            &mut rt.run_detached(&self.bundles.sleep, &pf, &id),
                        )?;
                        each.push(ms(t));
                        let pid = read_pid_file(&pf)?;
                        inits.push(pid);
                        live.push((id, pidfd_open(pid)?));
                    }
                    Ok(self.measure_memory(&inits, count, avail0, shmem0))
                })();
                let t = Instant::now();
                let stopped = self.stop_all(&rt, &live);
                (r.and_then(|m| stopped.map(|_| m)), ms(t.elapsed()))
            } else {
                let cm = conmons[k - rts.len()].clone();
                let mut live: Vec<ConmonContainer> = Vec::new();
                let r = (|| -> Result<Value> {
                    for _ in 0..count {
                        let id = self.id(&cm.name);
                        let t = Instant::now();
                        let c = cm.start(&mut self.runner, &id);
                        each.push(ms(t.elapsed()));
                        let c = c?;
                        inits.push(c.init_pid);
                        self.conmon_pid_files.push(c.conmon_pid_file.clone());
                        live.push(c);
                    }
                    Ok(self.measure_memory(&inits, count, avail0, shmem0))
                })();
                let t = Instant::now();
                let stopped = self.stop_conmon(&cm, &live);
                (r.and_then(|m| stopped.map(|_| m)), ms(t.elapsed()))
            };
            let total = ms(t_all.elapsed()) - stop_time;
            let measured = measured.with_context(|| format!("{name}: {count} containers"))?;
            starts.push(Stats::of(&each));
            totals.push(Stats::of(&[each.iter().sum::<f64>()]));
            stops.push(Stats::of(&[stop_time]));
            let _ = total;
            mem.push(measured.clone());
            v.insert(
                name.clone(),
                json!({
                    "one_start": opt_json(Stats::of(&each)),
                    "start_all_ms": measure::round3(each.iter().sum::<f64>()),
                    "kill_delete_all_ms": measure::round3(stop_time),
                    "memory": measured,
                }),
            );
        }
        self.report
            .alive(count, &names, &starts, &totals, &stops, &mem);
        v.insert("containers".into(), json!(count));
        Ok(Value::Object(v))
    }

    fn measure_memory(&self, inits: &[i32], count: usize, avail0: i64, shmem0: i64) -> Value {
        // Let the helpers finish their start-up before we look.
        std::thread::sleep(Duration::from_millis(500));
        let procs = memory::processes();
        // SAFETY: getpid cannot fail.
        let me = unsafe { libc::getpid() };
        let stop: BTreeSet<i32> = [1, self.reaper, me].into_iter().collect();
        let pids = memory::overhead_pids(&procs, inits, &stop, "sleep");
        let mut v = memory::account(&procs, &pids, count);
        let (avail1, shmem1) = memory::meminfo();
        let per = |kib: i64| measure::round3(kib as f64 / count.max(1) as f64);
        v["shmem_kib_per_container"] = json!(per(shmem1 - shmem0));
        v["mem_available_drop_kib_per_container"] = json!(per(avail0 - avail1));
        v
    }

    fn stop_conmon(&mut self, cm: &Conmon, live: &[ConmonContainer]) -> Result<()> {
        let mut first_err = None;
        let mut fds = Vec::new();
        for c in live {
            let conmon_pid = read_pid_file(&c.conmon_pid_file).ok();
            fds.push((
                pidfd_open(c.init_pid).ok(),
                conmon_pid.and_then(|p| pidfd_open(p).ok()),
            ));
            if let Err(e) = self.runner.run(&cm.name, &mut cm.crun.kill(&c.id)) {
                first_err.get_or_insert(e);
            }
        }
        for (c, (init, conmon)) in live.iter().zip(&fds) {
            for fd in [init, conmon].into_iter().flatten() {
                if !wait_pidfd(fd, Duration::from_secs(20)) {
                    first_err.get_or_insert(anyhow!("{}: {} did not end", cm.name, c.id));
                }
            }
        }
        for c in live {
            if let Err(e) = self.runner.run(&cm.name, &mut cm.crun.delete(&c.id)) {
                first_err.get_or_insert(e);
            }
            let _ = std::fs::remove_dir_all(cm.bundle(&c.id));
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn sizes(&mut self) -> Result<Value> {
        let dir = absolute(&self.args.nsbox_dir)?;
        let mut list: Vec<(String, PathBuf)> = ["runtime", "shim", "tiny-init"]
            .iter()
            .map(|b| (format!("nsbox {b}"), dir.join(b)))
            .collect();
        for b in ["runc", "crun", "conmon", "catatonit", "tini-static"] {
            if let Some(p) = runtimes::which(b) {
                list.push((b.to_string(), p));
            }
        }
        let mut v = serde_json::Map::new();
        let mut rows = Vec::new();
        for (name, path) in list {
            let bytes = std::fs::metadata(&path)
                .with_context(|| format!("stat {}", path.display()))?
                .len();
            let libs = shared_libraries(&path);
            rows.push((name.clone(), bytes, libs));
            v.insert(
                name,
                json!({ "path": path, "bytes": bytes, "shared_libraries": libs }),
            );
        }
        self.report.sizes(&rows);
        Ok(Value::Object(v))
    }

    fn breakdown(&mut self, rts: &[Oci]) -> Result<Value> {
        let Some(perf) = self.perf.clone() else {
            self.report.section(
                "6. breakdown: skipped (perf trace does not work here; apt-get install linux-perf)",
            );
            return Ok(json!("skipped: perf not available"));
        };
        let n = rts.len();
        let mut cpu: Vec<BTreeMap<String, Vec<f64>>> = vec![BTreeMap::new(); n];
        let mut phases: Vec<BTreeMap<&'static str, Vec<f64>>> = vec![BTreeMap::new(); n];
        let mut failed = vec![0usize; n];
        let mut traces: Vec<Vec<Vec<trace::Event>>> = vec![Vec::new(); n];
        let scratch = self.out.join("perf.tmp");
        for i in 0..self.args.traced {
            for k in rotation(n, i) {
                let rt = &rts[k];
                let id = self.id(&rt.name);
                let inner = rt.run_fg(&self.bundles.truth, &id);
                self.runner
                    .run(&rt.name, &mut trace::stat_cmd(&perf, &scratch, &inner))?;
                let text = std::fs::read_to_string(&scratch).unwrap_or_default();
                for (ev, val) in trace::parse_stat(&text) {
                    cpu[k].entry(ev).or_default().push(val);
                }
                let id = self.id(&rt.name);
                let inner = rt.run_fg(&self.bundles.truth, &id);
                self.runner
                    .run(&rt.name, &mut trace::trace_cmd(&perf, &scratch, &inner))?;
                let text = std::fs::read_to_string(&scratch).unwrap_or_default();
                let events: Vec<trace::Event> =
                    text.lines().filter_map(trace::parse_line).collect();
                match trace::phases(&events, "/bin/true") {
                    Ok(p) => {
                        for (name, val) in p {
                            phases[k].entry(name).or_default().push(val);
                        }
                    }
                    Err(e) => {
                        failed[k] += 1;
                        if failed[k] == 1 {
                            eprintln!("nsbox-bench: {}: trace not understood: {e}", rt.name);
                        }
                    }
                }
                if i == 0 {
                    std::fs::write(self.out.join(format!("trace-{}.raw.txt", rt.name)), &text)?;
                }
                traces[k].push(events);
            }
        }
        for (k, rt) in rts.iter().enumerate() {
            let lines = trace::median_timeline(&traces[k]).join("\n");
            std::fs::write(
                self.out.join(format!("trace-{}.txt", rt.name)),
                format!(
                    "# `{} run` of /bin/true under perf trace: median time of each step over {} runs,\n\
                     # in ms from the runtime's exec, (+ms since the step above)\n{lines}\n",
                    rt.name,
                    traces[k].len()
                ),
            )?;
        }
        self.remove_scratch();
        self.report.breakdown(rts, &cpu, &phases, self.args.traced);
        let mut v = serde_json::Map::new();
        for k in 0..n {
            let c: BTreeMap<&String, Value> = cpu[k]
                .iter()
                .map(|(ev, xs)| (ev, opt_json(Stats::of(xs))))
                .collect();
            v.insert(
                rts[k].name.clone(),
                json!({
                    "perf_stat": c,
                    "phases_ms": trace::phases_json(&phases[k]),
                    "traces_not_understood": failed[k],
                }),
            );
        }
        Ok(Value::Object(v))
    }

    /// Removes every container of ours from every root, and everything the
    /// bench made outside target/bench. Returns what it could not remove
    /// or what it had to remove by force.
    fn cleanup(&mut self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut all: Vec<Oci> = self.rts.clone();
        all.extend(self.disk.clone());
        if let Some(c) = self.conmons.first() {
            all.push(c.crun.clone());
        }
        for rt in &all {
            match rt.list() {
                Ok(ids) => {
                    for id in ids {
                        problems.push(format!(
                            "{}: {id} was still there (deleted by force)",
                            rt.name
                        ));
                        let mut cmd = rt.delete_force(&id);
                        if let Err(e) = self.runner.run(&rt.name, &mut cmd) {
                            problems.push(format!("{}: delete --force {id}: {e:#}", rt.name));
                        }
                    }
                }
                Err(e) => problems.push(format!("{e:#}")),
            }
        }
        for f in std::mem::take(&mut self.conmon_pid_files) {
            if let Ok(pid) = read_pid_file_now(&f) {
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                if comm.trim() == "conmon" {
                    problems.push(format!("conmon {pid} was still running (killed)"));
                    // SAFETY: kill with a pid we checked is a conmon of ours.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        }
        for c in &self.conmons {
            let _ = std::fs::remove_dir_all(&c.dir);
        }
        for rt in &all {
            let _ = std::fs::remove_dir_all(&rt.root);
        }
        let _ = std::fs::remove_dir_all(&self.pids_dir);
        let _ = std::fs::remove_dir_all(self.out.join("disk-state"));
        setup::sweep_crun_unified();
        // Orphans of ours: children of our reaper other than us, after a
        // moment for exits in flight.
        std::thread::sleep(Duration::from_millis(300));
        // SAFETY: getpid cannot fail.
        let me = unsafe { libc::getpid() };
        for (pid, p) in memory::processes() {
            if p.ppid == self.reaper && pid != me && self.reaper > 1 {
                problems.push(format!("process {pid} ({}) is still running", p.comm));
            }
        }
        problems
    }

    fn write_results(&mut self) -> Result<()> {
        let state = absolute(&self.args.state)?;
        setup::unmount(&state);
        let _ = std::fs::remove_dir(&state);
        let text = self.report.text();
        println!("{text}");
        std::fs::write(self.out.join("report.txt"), &text)?;
        let json = serde_json::to_string_pretty(&Value::Object(self.results.clone()))?;
        std::fs::write(self.out.join("results.json"), json + "\n")?;
        Ok(())
    }
}

fn read_pid_file_now(p: &Path) -> Result<i32> {
    std::fs::read_to_string(p)?
        .trim()
        .parse()
        .map_err(|e| anyhow!("{}: {e}", p.display()))
}

/// Give the kernel a moment to finish tearing down the last namespaces.
fn settle() {
    std::thread::sleep(Duration::from_millis(300));
}

fn opt_json(s: Option<Stats>) -> Value {
    s.map_or(Value::Null, |s| s.json())
}

fn per_runtime(rts: &[Oci], stats: &[Option<Stats>]) -> serde_json::Map<String, Value> {
    rts.iter()
        .zip(stats)
        .map(|(r, s)| (r.name.clone(), opt_json(*s)))
        .collect()
}

/// How many shared libraries a binary loads (0: statically linked).
fn shared_libraries(path: &Path) -> usize {
    Command::new("ldd")
        .arg(path)
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter(|l| l.contains("=>"))
                .count()
        })
        .unwrap_or(0)
}
