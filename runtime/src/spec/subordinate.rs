//! The caller's subordinate ids (/etc/subuid, /etc/subgid), which a
//! rootless container's mappings may use beside the caller's own id, as
//! newuidmap and newgidmap allow.

use protocol::IdMap;

use super::Result;

/// The caller's entries in /etc/subuid or /etc/subgid ("name:start:count",
/// or "uid:start:count"), as (start, count).
fn subordinate_ranges(file: &str, id: u32, name: Option<&str>) -> Vec<(u32, u32)> {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let mut f = l.trim().split(':');
            let (who, start, count) = (f.next()?, f.next()?, f.next()?);
            let mine = who == id.to_string() || Some(who) == name;
            if !mine {
                return None;
            }
            Some((start.parse().ok()?, count.parse().ok()?))
        })
        .collect()
}

fn user_name(uid: u32) -> Option<String> {
    nix::unistd::User::from_uid(uid.into())
        .ok()
        .flatten()
        .map(|u| u.name)
}

/// newuidmap/newgidmap let a user map their own id and the ranges that
/// /etc/subuid and /etc/subgid give them, nothing else: refuse anything
/// beyond that here, where the error can say why.
pub(super) fn check_subordinate(what: &str, maps: &[IdMap], own: u32, file: &str) -> Result<()> {
    let uid = nix::unistd::getuid().as_raw();
    let name = user_name(uid);
    let ranges = subordinate_ranges(file, uid, name.as_deref());
    for m in maps {
        if m.host == own && m.size == 1 {
            continue;
        }
        let inside = ranges.iter().any(|&(start, count)| {
            m.host >= start && m.host as u64 + m.size as u64 <= start as u64 + count as u64
        });
        if !inside {
            let have: Vec<String> = ranges
                .iter()
                .map(|(s, c)| format!("{s}-{}", *s as u64 + *c as u64 - 1))
                .collect();
            refuse!(
                "{what} mapping {}:{}:{} is beyond your own {what} {own} and your subordinate {what}s in {file} ({})",
                m.container,
                m.host,
                m.size,
                if have.is_empty() { "none".to_string() } else { have.join(", ") }
            );
        }
    }
    Ok(())
}

/// `runtime spec --rootless`: container 0 is the caller; 1 and up are the
/// caller's first subordinate range, where there is one.
pub fn rootless_maps() -> (Vec<IdMap>, Vec<IdMap>) {
    let uid = nix::unistd::getuid().as_raw();
    let gid = nix::unistd::getgid().as_raw();
    let name = user_name(uid);
    let build = |own: u32, file: &str| {
        let mut maps = vec![IdMap {
            container: 0,
            host: own,
            size: 1,
        }];
        if let Some(&(start, count)) = subordinate_ranges(file, uid, name.as_deref()).first() {
            maps.push(IdMap {
                container: 1,
                host: start,
                size: count.min(u32::MAX - 1),
            });
        }
        maps
    };
    (build(uid, "/etc/subuid"), build(gid, "/etc/subgid"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_found_by_name_or_by_uid() {
        let f = std::env::temp_dir().join(format!("nsbox-subuid-{}", std::process::id()));
        std::fs::write(
            &f,
            "alice:100000:65536\n1001:200000:1000\nbob:300000:10\nbad line\n",
        )
        .unwrap();
        let f = f.to_str().unwrap();
        assert_eq!(
            subordinate_ranges(f, 1001, Some("alice")),
            [(100000, 65536), (200000, 1000)]
        );
        assert_eq!(subordinate_ranges(f, 1002, None), []);
        std::fs::remove_file(f).unwrap();
    }
}
