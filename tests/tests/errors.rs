//! Bad input and wrong states: each is refused with a non-zero exit and one
//! line on stderr naming the container and the cause, and leaves nothing
//! behind (the leak check of every test covers the last part).

mod common;

use common::*;
use std::fs;

/// Asserts that the state root is empty right now.
#[track_caller]
fn root_is_empty(t: &Test) {
    let left: Vec<_> = fs::read_dir(&t.root)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "a failed command left {left:?}");
}

/// The global options go before the command, as runc and crun take
/// them; after it they are refused with one line that says where they go,
/// and nothing is created.
#[test]
fn a_global_option_after_the_command_is_refused_saying_where_it_goes() {
    let Some(t) = Test::new("global_after_command") else {
        return;
    };
    let b = t.bundle("b", &["true"]);
    let other = t.work.join("other-root");
    for (option, value) in [
        ("--root", other.to_str().unwrap()),
        ("--log-format", "json"),
    ] {
        let out = t.rt(&["run", option, value, "-b", b.path(), "late"]);
        assert_eq!(out.code, Some(2), "{out:?}");
        let lines: Vec<&str> = out.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{out:?}");
        assert!(
            lines[0].contains(&format!("{option} goes before the command")),
            "{out:?}"
        );
        root_is_empty(&t);
        assert!(!other.exists(), "{out:?}");
    }
    // Before the command it is taken, and an unknown option still gets
    // clap's own message.
    t.rt(&["--log-format", "json", "run", "-b", b.path(), "early"])
        .ok();
    let out = t.rt(&["run", "--no-such-option", "-b", b.path(), "x"]);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("--no-such-option"), "{out:?}");
    root_is_empty(&t);
}

#[test]
fn missing_bundle_dir() {
    let Some(t) = Test::new("missing_bundle_dir") else {
        return;
    };
    let missing = t.work.join("nope");
    let out = t.rt(&["create", "-b", missing.to_str().unwrap(), "nobundle"]);
    out.fails_with(
        "nobundle",
        &[
            "bundle",
            missing.to_str().unwrap(),
            "no such file or directory",
        ],
    );
    root_is_empty(&t);
}

#[test]
fn missing_config_json() {
    let Some(t) = Test::new("missing_config_json") else {
        return;
    };
    let b = t.empty_bundle("b");
    let out = t.create(&b, "noconfig");
    out.fails_with("noconfig", &["config.json"]);
    root_is_empty(&t);
}

#[test]
fn malformed_config_json() {
    let Some(t) = Test::new("malformed_config_json") else {
        return;
    };
    let b = t.empty_bundle("b");
    fs::write(
        b.config_path(),
        "{ \"ociVersion\": \"1.0.2\", \"process\": ",
    )
    .unwrap();
    let out = t.create(&b, "badjson");
    out.fails_with("badjson", &["config.json"]);
    root_is_empty(&t);

    // Well-formed JSON that is not a config: args is not a list.
    let b = t.bundle_with("b2", &["true"], |c| c["process"]["args"] = json!("true"));
    let out = t.create(&b, "badtype");
    out.fails_with("badtype", &["config.json"]);
    root_is_empty(&t);
}

#[test]
fn missing_rootfs() {
    let Some(t) = Test::new("missing_rootfs") else {
        return;
    };
    let gone = t.work.join("no-such-rootfs");
    let b = t.bundle_with("b", &["true"], |c| c["root"]["path"] = json!(gone));
    let out = t.create(&b, "norootfs");
    out.fails_with("norootfs", &[gone.to_str().unwrap()]);
    root_is_empty(&t);

    let out = t.run(&b, "norootfs-run");
    out.fails_with("norootfs-run", &[gone.to_str().unwrap()]);
    root_is_empty(&t);
}

/// Entries of /run/nsbox-t that are not test roots ("PID-N"): a bad ID such
/// as ".." must not make the runtime write next to its root.
fn strays_next_to_root() -> Vec<String> {
    fs::read_dir(STATE_BASE)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| {
            !n.split_once('-').is_some_and(|(a, b)| {
                a.chars().all(|c| c.is_ascii_digit()) && b.chars().all(|c| c.is_ascii_digit())
            })
        })
        .collect()
}

/// What a refusal of an ID for a character says after the character.
const ALLOWED: &str = "only letters, digits, '_', '-', '.' and '+' are allowed";

/// `create` with a bad ID is refused with `cause`, names the ID (the empty
/// one can only be recognised by its cause), and makes nothing, not even
/// next to the state root or where the ID, taken as a path, leads.
fn refuses_id(name: &str, ids: &[(&str, &str)]) {
    let Some(t) = Test::new(name) else {
        return;
    };
    let b = t.bundle("b", &["true"]);
    for (id, cause) in ids {
        // "/abs" joined to the state root is /abs.
        let as_path = t.root.join(id);
        let existed = as_path.exists();
        let out = t.create(&b, id);
        out.fails_with(id, &[cause]);
        root_is_empty(&t);
        let strays = strays_next_to_root();
        assert!(
            strays.is_empty(),
            "ID {id:?} wrote {strays:?} next to the state root"
        );
        assert!(
            existed || !as_path.exists(),
            "ID {id:?} made {}",
            as_path.display()
        );
    }
}

#[test]
fn id_empty() {
    refuses_id("id_empty", &[("", "container ID is empty")]);
}

#[test]
fn id_too_long() {
    refuses_id(
        "id_too_long",
        &[(
            &"x".repeat(300),
            "container ID is 300 characters long, at most 128",
        )],
    );
}

#[test]
fn id_with_slash() {
    let cause = format!("container ID has '/': {ALLOWED}");
    refuses_id(
        "id_with_slash",
        &[("a/b", &cause), ("../escape", &cause), ("/abs", &cause)],
    );
}

#[test]
fn id_dots() {
    refuses_id(
        "id_dots",
        &[
            ("..", "container ID \"..\" is not a name"),
            (".", "container ID \".\" is not a name"),
        ],
    );
}

#[test]
fn id_with_space_or_newline() {
    refuses_id(
        "id_with_space_or_newline",
        &[
            ("with space", &format!("container ID has ' ': {ALLOWED}")),
            // The line escapes it, so that it stays one line.
            ("new\nline", &format!("container ID has '\\n': {ALLOWED}")),
        ],
    );
}

#[test]
fn duplicate_id() {
    let Some(t) = Test::new("duplicate_id") else {
        return;
    };
    let b = t.bundle("b", &["true"]);
    t.create(&b, "twice").ok();
    let pid = t.state("twice")["pid"].as_i64();
    let out = t.exec_to(
        t.command(&["create", "-b", b.path(), "twice"]),
        &t.work.join("second.out"),
        &t.work.join("second.err"),
        TIMEOUT,
    );
    out.fails_with("twice", &["container already exists"]);
    // The first one is untouched.
    let s = t.state("twice");
    assert_eq!(s["status"], "created", "{s}");
    assert_eq!(s["pid"].as_i64(), pid, "{s}");
    t.rt(&["delete", "twice"]).ok();
}

#[test]
fn unknown_id() {
    let Some(t) = Test::new("unknown_id") else {
        return;
    };
    for verb in [
        vec!["start", "ghost"],
        vec!["state", "ghost"],
        vec!["kill", "ghost"],
        vec!["kill", "ghost", "KILL"],
        vec!["delete", "ghost"],
        vec!["ps", "ghost"],
    ] {
        let out = t.rt(&verb);
        // The step is the verb.
        out.fails_with(
            "ghost",
            &[&format!("{} ghost", verb[0]), "container does not exist"],
        );
    }
    root_is_empty(&t);
}

#[test]
fn unknown_signal() {
    let Some(t) = Test::new("unknown_signal") else {
        return;
    };
    let b = t.bundle("b", &[MT, "sleep", "30"]);
    t.run_detached(&b, "sigs").ok();
    for bad in ["NOPE", "0x9", "999", "SIGFOO"] {
        t.rt(&["kill", "sigs", bad]).fails_with("sigs", &[bad]);
    }
    assert_eq!(t.status("sigs"), "running");
    t.rt(&["delete", "--force", "sigs"]).ok();
}

#[test]
fn start_of_a_running_container() {
    let Some(t) = Test::new("start_of_a_running_container") else {
        return;
    };
    let b = t.bundle("b", &[MT, "sleep", "30"]);
    t.run_detached(&b, "twice").ok();
    let pid = t.state("twice")["pid"].as_i64();
    t.rt(&["start", "twice"])
        .fails_with("twice", &["cannot start a running container"]);
    let s = t.state("twice");
    assert_eq!(s["status"], "running", "{s}");
    assert_eq!(s["pid"].as_i64(), pid, "{s}");
    t.rt(&["delete", "--force", "twice"]).ok();
}

#[test]
fn delete_of_a_running_container() {
    let Some(t) = Test::new("delete_of_a_running_container") else {
        return;
    };
    let b = t.bundle("b", &[MT, "sleep", "30"]);
    t.run_detached(&b, "busy").ok();
    let s = t.state("busy");
    let pid = s["pid"].as_i64().unwrap() as i32;
    let start = proc_stat(pid).unwrap().2;
    let shim = ppid(pid).unwrap();
    let shim_start = proc_stat(shim).unwrap().2;

    t.rt(&["delete", "busy"])
        .fails_with("busy", &["cannot delete a running container", "--force"]);
    assert_eq!(t.status("busy"), "running");
    assert!(alive(pid, start));

    t.rt(&["delete", "--force", "busy"]).ok();
    // Once delete returns, nothing of the container is left.
    assert!(
        !alive(pid, start),
        "tiny-init {pid} outlived delete --force"
    );
    assert!(
        !alive(shim, shim_start),
        "the shim {shim} outlived delete --force"
    );
    assert!(
        !t.root.join("busy").exists(),
        "the state dir outlived delete --force"
    );
    t.rt(&["state", "busy"])
        .fails_with("busy", &["container does not exist"]);
}

#[test]
fn missing_executable_gives_127() {
    let Some(t) = Test::new("missing_executable_gives_127") else {
        return;
    };
    let b = t.bundle("b", &["/bin/no-such-program"]);
    let out = t.run(&b, "enoent");
    out.code_is(127);
    let b = t.bundle("b2", &["no-such-program-in-path"]);
    t.run(&b, "enoent-path").code_is(127);
}

#[test]
fn non_executable_gives_126() {
    let Some(t) = Test::new("non_executable_gives_126") else {
        return;
    };
    let b = t.bundle("b", &["/etc/issue"]);
    t.run(&b, "eacces").code_is(126);
    let b = t.bundle("b2", &["/etc"]);
    t.run(&b, "eisdir").code_is(126);
}

#[test]
fn bad_cwd() {
    let Some(t) = Test::new("bad_cwd") else {
        return;
    };
    let b = t.bundle_with("b", &["true"], |c| {
        c["process"]["cwd"] = json!("/no/such/dir")
    });
    let out = t.run(&b, "cwd");
    assert_ne!(out.code, Some(0), "a missing cwd was accepted:\n{out:?}");
    assert!(out.stderr.contains("/no/such/dir"), "{out:?}");
}
