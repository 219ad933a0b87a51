//! `attach`: this terminal connected to the terminal of a detached
//! container, which its shim keeps; the detach keys leave it running.

use anyhow::{anyhow, bail, Result};
use nsbox_host::state::{ContainerDir, Status};
use protocol::RuntimeToShim;

use crate::options::GlobalOptions;
use crate::shim_client;
use crate::tty::{self, Ending, Outcome};

pub fn attach(g: &GlobalOptions, id: &str, detach_keys: &str) -> Result<i32> {
    let keys = parse_detach_keys(detach_keys)?;
    let (dir, st) = g.container(id)?;
    st.can_attach()?;
    let ch = shim_client::connect(&dir)?;
    ch.send(&RuntimeToShim::Attach, &[])?;
    let mut fds = ch
        .wait_for_attached()
        .map_err(shim_client::channel_error)?
        .into_iter();
    let (Some(stream), Some(master)) = (fds.next(), fds.next()) else {
        bail!("the shim sent no terminal");
    };
    drop(ch);
    match tty::relay(
        &stream,
        Some(&master),
        Ending::Detachable { detach_keys: keys },
    )? {
        Outcome::Detached => {
            eprintln!(
                "\r\nruntime: detached from {id}; it runs on (runtime attach {id} to come back)\r"
            );
            Ok(0)
        }
        Outcome::Closed | Outcome::Exited(_) => exit_code(&dir),
    }
}

/// The shim closes the terminal's stream when the container stops: its
/// exit code, once the shim has recorded it. Never a made-up 0.
fn exit_code(dir: &ContainerDir) -> Result<i32> {
    let st = shim_client::recorded_stop(dir, dir.load()?)?;
    match (st.current_status(), st.exit_code) {
        (Status::Stopped, Some(code)) => Ok(code),
        (Status::Stopped, None) => Err(anyhow!(
            "the container stopped, but its shim recorded no exit code (it ended first)"
        )),
        (status, _) => Err(anyhow!(
            "the shim closed the terminal, and the container is {status}"
        )),
    }
}

/// Docker's notation: "ctrl-p,ctrl-q", "ctrl-a,d"; ctrl-@ to ctrl-_ and
/// single characters.
pub fn parse_detach_keys(s: &str) -> Result<Vec<u8>> {
    let mut keys = Vec::new();
    for k in s.split(',') {
        let k = k.trim();
        let lower = k.to_ascii_lowercase();
        if let Some(c) = lower.strip_prefix("ctrl-") {
            let c = c.as_bytes();
            match c {
                [b @ b'a'..=b'z'] => keys.push(b - b'a' + 1),
                [b'@'] => keys.push(0),
                [b @ (b'[' | b'\\' | b']' | b'^' | b'_')] => keys.push(b - b'@'),
                _ => bail!("--detach-keys {s:?}: unknown key {k:?}"),
            }
        } else if k.len() == 1 {
            keys.push(k.as_bytes()[0]);
        } else {
            return Err(anyhow!("--detach-keys {s:?}: unknown key {k:?}"));
        }
    }
    if keys.is_empty() {
        bail!("--detach-keys is empty");
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    #[test]
    fn detach_keys_as_docker_writes_them() {
        assert_eq!(
            super::parse_detach_keys("ctrl-p,ctrl-q").unwrap(),
            crate::tty::DETACH_KEYS
        );
        assert_eq!(super::parse_detach_keys("ctrl-a,d").unwrap(), [1, b'd']);
        assert!(super::parse_detach_keys("ctrl-ü").is_err());
    }
}
