//! The hooks the runtime itself runs, after the fact: poststart once the
//! workload has started (`start`, `run`), poststop once the container is
//! gone (`delete`, `run`). A failing one is a warning and the rest still
//! run (runtime-spec). The hooks before the start are the shim's.

use nsbox_host::state::{State, Status};

fn run_warning(kind: &str, hooks: &[protocol::Hook], st: &State, status: Status, pid: i32) {
    if hooks.is_empty() {
        return;
    }
    let state = st.oci_state_as(status, pid).to_string();
    for h in hooks {
        if let Err(e) = nsbox_host::hooks::run(kind, h, &state, &[]) {
            log::warn!("{}: {e}", st.id);
        }
    }
}

pub fn poststart(st: &State) {
    let pid = st.init.map_or(0, |i| i.pid);
    run_warning("poststart", &st.hooks.poststart, st, Status::Running, pid);
}

pub fn poststop(st: &State) {
    run_warning("poststop", &st.hooks.poststop, st, Status::Stopped, 0);
}
