//! systemd on the test host: whether it runs (`make test-cgroup2`'s
//! systemd VM), and what `--systemd-cgroup` must do where it does not.

use std::path::Path;

use super::Test;

/// Does systemd run this host? (sd_booted(3)'s test, as nsbox's.)
pub fn systemd_runs() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// Without systemd, `--systemd-cgroup` is refused by `verb` (create or
/// run) in one line that names systemd, before anything is made.
pub fn refused_without_systemd(t: &Test, verb: &str) {
    let b = t.bundle("no-systemd", &["true"]);
    let out = t.rt(&["--systemd-cgroup", verb, "-b", b.path(), "sd"]);
    let err = out.fails_with("sd", &["systemd is not running"]);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    t.rt(&["--systemd-cgroup", "delete", "--force", "sd"]).ok();
}
