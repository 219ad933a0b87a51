//! `--systemd-cgroup`'s D-Bus calls: systemd makes, changes and stops the
//! container's scope (names and places: nsbox_host::cgroups::systemd).
//! The runtime makes the scope when the shim, having cloned tiny-init,
//! asks for it (`MakeScope`), sets its properties on `update`, and stops
//! it on `delete` and on a failed create. The shim holds no D-Bus client:
//! systemd collects an empty scope by itself, and the runtime's `delete`
//! resets a failed one.
//!
//! The calls run on a tokio current-thread runtime made for the call and
//! dropped after it, so no thread outlives a call: the runtime forks after
//! some of them (a foreground run's relay, hooks).

use std::future::Future;

use futures_util::StreamExt;
use nsbox_host::cgroups::shares_to_weight;
use nsbox_host::cgroups::systemd::{SystemdError, JOB_TIMEOUT};
use protocol::{CgroupPaths, Resources, SystemdUnit};
use zbus::message::Type as MessageType;
use zbus::zvariant::{OwnedObjectPath, Value};
use zbus::{Connection, MatchRule, MessageStream};

const DESTINATION: &str = "org.freedesktop.systemd1";
const MANAGER_PATH: &str = "/org/freedesktop/systemd1";
const MANAGER: &str = "org.freedesktop.systemd1.Manager";

type Result<T> = std::result::Result<T, SystemdError>;

/// The unit properties for `r`, where systemd has them (the values
/// agree with what cgroups::v2 writes into the files).
fn resource_properties(r: &Resources) -> Vec<(&'static str, Value<'static>)> {
    let max_or = |v: i64| if v < 0 { u64::MAX } else { v as u64 };
    let mut props: Vec<(&'static str, Value<'static>)> = Vec::new();
    if let Some(m) = &r.memory {
        if let Some(v) = m.limit.filter(|&v| v != 0) {
            props.push(("MemoryMax", Value::from(max_or(v))));
        }
        if let Some(v) = m.reservation.filter(|&v| v != 0) {
            props.push(("MemoryLow", Value::from(max_or(v))));
        }
        // OCI's swap is memory plus swap; systemd's is swap alone. What
        // does not convert is the files' to refuse, clearly.
        match (m.swap, m.limit) {
            (Some(s), _) if s < 0 => props.push(("MemorySwapMax", Value::from(u64::MAX))),
            (Some(s), Some(l)) if l > 0 && s >= l => {
                props.push(("MemorySwapMax", Value::from((s - l) as u64)))
            }
            _ => {}
        }
    }
    if let Some(c) = &r.cpu {
        if let Some(s) = c.shares.filter(|&s| s != 0) {
            props.push(("CPUWeight", Value::from(shares_to_weight(s))));
        }
        let period = c.period.unwrap_or(0);
        if period != 0 {
            props.push(("CPUQuotaPeriodUSec", Value::from(period)));
        }
        if c.quota.is_some() || period != 0 {
            props.push((
                "CPUQuotaPerSecUSec",
                Value::from(quota_per_sec(c.quota, period)),
            ));
        }
        if let Some(bits) = c.cpus.as_deref().and_then(range_to_bits) {
            props.push(("AllowedCPUs", Value::from(bits)));
        }
        if let Some(bits) = c.mems.as_deref().and_then(range_to_bits) {
            props.push(("AllowedMemoryNodes", Value::from(bits)));
        }
    }
    if let Some(v) = r.pids_limit.filter(|&v| v > 0 || v == -1) {
        props.push(("TasksMax", Value::from(max_or(v))));
    }
    for (key, value) in &r.unified {
        let value = value.trim();
        let num = || -> Option<u64> {
            if value == "max" {
                Some(u64::MAX)
            } else {
                value.parse().ok()
            }
        };
        let name = match key.as_str() {
            "memory.max" => "MemoryMax",
            "memory.high" => "MemoryHigh",
            "memory.low" => "MemoryLow",
            "memory.min" => "MemoryMin",
            "memory.swap.max" => "MemorySwapMax",
            "pids.max" => "TasksMax",
            "cpu.weight" => "CPUWeight",
            _ => continue,
        };
        if let Some(n) = num() {
            props.push((name, Value::from(n)));
        }
    }
    props
}

/// systemd keeps a CPU quota as microseconds per second, in whole
/// percents: a fractional one is rounded up, so that what the kernel gets
/// is never below what was asked (runc's rule).
fn quota_per_sec(quota: Option<i64>, period: u64) -> u64 {
    match quota {
        Some(q) if q > 0 => {
            let period = if period == 0 { 100_000 } else { period };
            let per_sec = q as u64 * 1_000_000 / period;
            per_sec.div_ceil(10_000) * 10_000
        }
        _ => u64::MAX,
    }
}

/// "0-2,7" as systemd's CPU (or NUMA node) mask: bit n of byte n/8.
fn range_to_bits(list: &str) -> Option<Vec<u8>> {
    let mut bits: Vec<u8> = Vec::new();
    for part in list.trim().split(',').filter(|p| !p.is_empty()) {
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (
                a.trim().parse::<usize>().ok()?,
                b.trim().parse::<usize>().ok()?,
            ),
            None => {
                let n = part.trim().parse::<usize>().ok()?;
                (n, n)
            }
        };
        if lo > hi || hi >= 1 << 16 {
            return None;
        }
        for n in lo..=hi {
            if bits.len() <= n / 8 {
                bits.resize(n / 8 + 1, 0);
            }
            bits[n / 8] |= 1 << (n % 8);
        }
    }
    (!bits.is_empty()).then_some(bits)
}

/// Run one exchange with systemd on a runtime of its own, dropped (with
/// the connection) before this returns: no thread is left behind.
fn block_on<T>(f: impl Future<Output = Result<T>>) -> Result<T> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(SystemdError::Runtime)?;
    rt.block_on(f)
}

/// The system bus, as go-systemd (runc's) tries first. systemd's own
/// socket (/run/systemd/private, no bus daemon) is no way for zbus, which
/// refuses the messages there: systemd signs them with its well-known name
/// where the specification has a unique one.
async fn connect() -> Result<Connection> {
    Connection::system()
        .await
        .map_err(|e| SystemdError::Connect(Box::new(e)))
}

/// A call to the manager, with its reply's body.
async fn call<B, R>(conn: &Connection, method: &'static str, unit: &str, body: &B) -> Result<R>
where
    B: serde::Serialize + zbus::zvariant::DynamicType,
    R: for<'d> zbus::zvariant::DynamicDeserialize<'d>,
{
    let err = |source| SystemdError::Call {
        call: method,
        unit: unit.to_string(),
        source: Box::new(source),
    };
    let reply = tokio::time::timeout(
        JOB_TIMEOUT,
        conn.call_method(Some(DESTINATION), MANAGER_PATH, Some(MANAGER), method, body),
    )
    .await
    .map_err(|_| SystemdError::Timeout {
        call: method,
        unit: unit.to_string(),
    })?
    .map_err(err)?;
    reply.body().deserialize().map_err(err)
}

/// JobRemoved signals, listened to before the job is asked for, so that
/// none is missed.
async fn job_events(conn: &Connection) -> Result<MessageStream> {
    let rule = MatchRule::builder()
        .msg_type(MessageType::Signal)
        .interface(MANAGER)
        .and_then(|b| b.member("JobRemoved"))
        .and_then(|b| b.path(MANAGER_PATH))
        .map(|b| b.build())
        .map_err(|e| SystemdError::Connect(Box::new(e)))?;
    MessageStream::for_match_rule(rule, conn, None)
        .await
        .map_err(|e| SystemdError::Connect(Box::new(e)))
}

/// How the job `job` ended ("done", "failed", "canceled", ...).
async fn job_result(
    events: &mut MessageStream,
    job: &OwnedObjectPath,
    call: &'static str,
    unit: &str,
) -> Result<String> {
    let wait = async {
        while let Some(msg) = events.next().await {
            let Ok(msg) = msg else { continue };
            let body = msg.body();
            let Ok((_, path, _, result)) =
                body.deserialize::<(u32, OwnedObjectPath, String, String)>()
            else {
                continue;
            };
            if path == *job {
                return Some(result);
            }
        }
        None
    };
    match tokio::time::timeout(JOB_TIMEOUT, wait).await {
        Ok(Some(result)) => Ok(result),
        Ok(None) => Err(SystemdError::Call {
            call,
            unit: unit.to_string(),
            source: Box::new(zbus::Error::InputOutput(std::sync::Arc::new(
                std::io::Error::from(std::io::ErrorKind::UnexpectedEof),
            ))),
        }),
        Err(_) => Err(SystemdError::Timeout {
            call,
            unit: unit.to_string(),
        }),
    }
}

const UNIT_EXISTS: &str = "org.freedesktop.systemd1.UnitExists";

fn is_dbus_error(e: &SystemdError, name: &str) -> bool {
    match e {
        SystemdError::Call { source, .. } => {
            matches!(source.downcast_ref::<zbus::Error>(), Some(zbus::Error::MethodError(n, _, _)) if n.as_str() == name)
        }
        _ => false,
    }
}

/// Make the container's scope with `pid` (tiny-init) in it, its limits as
/// properties, and wait until systemd has it running. A scope of the same
/// name left failed by an earlier container is reset and tried again once,
/// as runc does; a live one is another container's, and refused.
pub fn start_scope(paths: &CgroupPaths, pid: i32, resources: &Resources) -> Result<()> {
    let Some(unit) = &paths.systemd else {
        return Ok(());
    };
    block_on(async {
        let conn = connect().await?;
        let mut events = job_events(&conn).await?;
        let mut props: Vec<(&str, Value)> = vec![
            (
                "Description",
                Value::from(format!("nsbox container {}", unit.unit)),
            ),
            ("Slice", Value::from(unit.slice.clone())),
            ("PIDs", Value::from(vec![pid as u32])),
            ("Delegate", Value::from(true)),
            ("MemoryAccounting", Value::from(true)),
            ("CPUAccounting", Value::from(true)),
            ("IOAccounting", Value::from(true)),
            ("TasksAccounting", Value::from(true)),
            ("DefaultDependencies", Value::from(false)),
        ];
        props.extend(resource_properties(resources));
        let aux: Vec<(&str, Vec<(&str, Value)>)> = Vec::new();
        let body = (unit.unit.as_str(), "replace", props, aux);
        let job: OwnedObjectPath = match call(&conn, "StartTransientUnit", &unit.unit, &body).await
        {
            Err(e) if is_dbus_error(&e, UNIT_EXISTS) => {
                let exists = || SystemdError::Exists(unit.unit.clone());
                let _: () = call(&conn, "ResetFailedUnit", &unit.unit, &(&unit.unit,))
                    .await
                    .map_err(|_| exists())?;
                match call(&conn, "StartTransientUnit", &unit.unit, &body).await {
                    Err(e) if is_dbus_error(&e, UNIT_EXISTS) => return Err(exists()),
                    other => other?,
                }
            }
            other => other?,
        };
        let result = job_result(&mut events, &job, "StartTransientUnit", &unit.unit).await?;
        if result != "done" {
            let _: Result<()> = call(&conn, "ResetFailedUnit", &unit.unit, &(&unit.unit,)).await;
            return Err(SystemdError::Job {
                call: "StartTransientUnit",
                unit: unit.unit.clone(),
                result,
            });
        }
        Ok(())
    })?;
    check_placed(paths, pid)
}

/// systemd names the scope's cgroup from its own root: make sure that is
/// the path we computed (and record), rather than write limits elsewhere.
fn check_placed(paths: &CgroupPaths, pid: i32) -> Result<()> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    let found = text
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .unwrap_or_default()
        .to_string();
    if found == paths.path {
        return Ok(());
    }
    Err(SystemdError::Elsewhere {
        pid,
        found,
        expected: paths.path.clone(),
    })
}

/// Stop the container's scope (systemd kills what is left in it and
/// removes its cgroup) and forget it; a scope systemd has already stopped
/// and collected is no error.
pub fn stop_scope(unit: &SystemdUnit) -> Result<()> {
    block_on(async {
        let conn = connect().await?;
        let mut events = job_events(&conn).await?;
        let stopped = match call::<_, OwnedObjectPath>(
            &conn,
            "StopUnit",
            &unit.unit,
            &(&unit.unit, "replace"),
        )
        .await
        {
            Err(e) if is_dbus_error(&e, "org.freedesktop.systemd1.NoSuchUnit") => Ok(()),
            Err(e) => Err(e),
            Ok(job) => {
                let result = job_result(&mut events, &job, "StopUnit", &unit.unit).await?;
                if result == "done" {
                    Ok(())
                } else {
                    Err(SystemdError::Job {
                        call: "StopUnit",
                        unit: unit.unit.clone(),
                        result,
                    })
                }
            }
        };
        // A scope that failed (its processes OOM-killed, say) stays loaded
        // until reset, and its name taken.
        let _: Result<()> = call(&conn, "ResetFailedUnit", &unit.unit, &(&unit.unit,)).await;
        stopped
    })
}

/// `update`: the new limits as the scope's properties too, so that systemd
/// does not put back the old ones when it next applies the unit's settings.
pub fn set_properties(unit: &SystemdUnit, resources: &Resources) -> Result<()> {
    let props = resource_properties(resources);
    if props.is_empty() {
        return Ok(());
    }
    block_on(async {
        let conn = connect().await?;
        call(
            &conn,
            "SetUnitProperties",
            &unit.unit,
            &(unit.unit.as_str(), true, props),
        )
        .await
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::{CpuResources, MemoryResources};

    #[test]
    fn limits_become_properties() {
        let r = Resources {
            memory: Some(MemoryResources {
                limit: Some(64 << 20),
                swap: Some(96 << 20),
                ..Default::default()
            }),
            cpu: Some(CpuResources {
                shares: Some(1024),
                quota: Some(50_000),
                period: Some(100_000),
                cpus: Some("0-1,9".into()),
                mems: None,
            }),
            pids_limit: Some(-1),
            ..Default::default()
        };
        let props = resource_properties(&r);
        let get = |k: &str| props.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone());
        assert_eq!(get("MemoryMax"), Some(Value::from(64u64 << 20)));
        assert_eq!(get("MemorySwapMax"), Some(Value::from(32u64 << 20)));
        assert_eq!(get("CPUWeight"), Some(Value::from(39u64)));
        assert_eq!(get("CPUQuotaPerSecUSec"), Some(Value::from(500_000u64)));
        assert_eq!(get("CPUQuotaPeriodUSec"), Some(Value::from(100_000u64)));
        assert_eq!(get("AllowedCPUs"), Some(Value::from(vec![0b11u8, 0b10])));
        assert_eq!(get("TasksMax"), Some(Value::from(u64::MAX)));
    }

    #[test]
    fn fractional_quotas_round_up_to_a_percent() {
        assert_eq!(quota_per_sec(Some(33_333), 100_000), 340_000);
        assert_eq!(quota_per_sec(Some(-1), 100_000), u64::MAX);
        assert_eq!(quota_per_sec(None, 0), u64::MAX);
    }
}
