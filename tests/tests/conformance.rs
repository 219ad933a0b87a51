//! runtime-spec's MUSTs and its 1.1/1.2 additions, each checked where it
//! shows (inside the container, or on the host), as runtime-tools'
//! `validation/` and youki's `tests/contest` check them: linux.devices,
//! rootfsPropagation, recursive mount options, personality, scheduler, CPU
//! affinity, time namespaces, idmapped mounts and the rest.

mod common;

use common::*;

/// A new user namespace mapping container 0..65536 to host `base`...
fn userns(c: &mut Value, base: u32) {
    let map = json!([{ "containerID": 0, "hostID": base, "size": 65536 }]);
    c["linux"]["uidMappings"] = map.clone();
    c["linux"]["gidMappings"] = map;
    c["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({ "type": "user" }));
}

/// "TYPE MAJOR:MINOR MODE UID:GID" of each path, as the container sees it.
const STAT_DEVICES: &str = "for d in \"$@\"; do stat -c '%n %F %t:%T %a %u:%g' \"$d\"; done";

fn stat_devices(paths: &[&'static str]) -> Vec<&'static str> {
    let mut args = vec!["sh", "-c", STAT_DEVICES, "sh"];
    args.extend(paths);
    args
}

/// linux.devices: made at their paths (parents too) with their type,
/// numbers, mode and owner, under a device list that denies all (as
/// runtime-tools' default config has it); a missing fileMode is 0666.
#[test]
fn linux_devices_are_made_as_listed() {
    let Some(t) = Test::new("linux_devices") else {
        return;
    };
    let paths = [
        "/dev/test1",
        "/dev/test2",
        "/dev/test3",
        "/dev/sub/dir/kmsg",
    ];
    let b = t.bundle_with("b", &stat_devices(&paths), |c| {
        c["linux"]["devices"] = json!([
            { "path": "/dev/test1", "type": "c", "major": 10, "minor": 666,
              "fileMode": 432, "uid": 0, "gid": 0 },
            { "path": "/dev/test2", "type": "b", "major": 8, "minor": 666,
              "fileMode": 432, "uid": 1, "gid": 2 },
            { "path": "/dev/test3", "type": "p", "major": 8, "minor": 666, "fileMode": 432 },
            { "path": "/dev/sub/dir/kmsg", "type": "c", "major": 1, "minor": 11 }
        ]);
        c["linux"]["resources"] = json!({ "devices": [{ "allow": false, "access": "rwm" }] });
    });
    let out = t.run(&b, "dev");
    out.ok();
    assert_eq!(
        out.stdout_lines(),
        [
            "/dev/test1 character special file a:29a 660 0:0",
            "/dev/test2 block special file 8:29a 660 1:2",
            "/dev/test3 fifo 0:0 660 0:0",
            "/dev/sub/dir/kmsg character special file 1:b 666 0:0",
        ],
        "{out:?}"
    );
}

/// In a user namespace mknod is refused: the host's node is bound there
/// instead, as runc does; the container then sees the host's device.
#[test]
fn linux_devices_in_a_user_namespace_are_the_hosts_nodes() {
    let Some(t) = Test::new("linux_devices_userns") else {
        return;
    };
    let b = t.bundle_with("b", &stat_devices(&["/dev/kmsg"]), |c| {
        userns(c, 200000);
        c["linux"]["devices"] = json!([
            { "path": "/dev/kmsg", "type": "c", "major": 1, "minor": 11, "fileMode": 420 }
        ]);
    });
    let out = t.run(&b, "devu");
    out.ok();
    let host = std::fs::metadata("/dev/kmsg").unwrap();
    let mode = std::os::unix::fs::PermissionsExt::mode(&host.permissions()) & 0o7777;
    // The host's root shows as the overflow id (nobody) inside.
    assert_eq!(
        out.stdout_lines(),
        [format!(
            "/dev/kmsg character special file 1:b {mode:o} 65534:65534"
        )],
        "{out:?}"
    );
}
