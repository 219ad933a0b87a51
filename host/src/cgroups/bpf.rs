//! cgroup v2 has no devices.allow: device access is decided by an eBPF
//! program of type BPF_PROG_TYPE_CGROUP_DEVICE attached to the cgroup.
//! This builds one from the OCI rules (the last rule that matches a device
//! decides, as with runc's and crun's programs; no rule matching allows,
//! as a new v1 devices cgroup does), loads it, and attaches it with
//! BPF_F_ALLOW_MULTI so that an ancestor's program still applies too.
//!
//! The program sees `struct bpf_cgroup_dev_ctx { u32 access_type; u32
//! major; u32 minor; }`, where access_type is (access << 16) | type.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use protocol::DeviceRule;

use super::{CgroupError, Result};

/// One `struct bpf_insn`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    code: u8,
    /// dst_reg in the low nibble, src_reg in the high one.
    regs: u8,
    off: i16,
    imm: i32,
}

const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const R3: u8 = 3;
const R4: u8 = 4;
const R5: u8 = 5;

const LDX_MEM_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const ALU32_AND_K: u8 = 0x54; // BPF_ALU | BPF_AND | BPF_K
const ALU32_RSH_K: u8 = 0x74; // BPF_ALU | BPF_RSH | BPF_K
const ALU32_MOV_X: u8 = 0xbc; // BPF_ALU | BPF_MOV | BPF_X
const ALU64_MOV_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
const JNE_K: u8 = 0x55; // BPF_JMP | BPF_JNE | BPF_K
const JNE_X: u8 = 0x5d; // BPF_JMP | BPF_JNE | BPF_X
const EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT

const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;
const ACC_MKNOD: i32 = 1;
const ACC_READ: i32 = 2;
const ACC_WRITE: i32 = 4;

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: dst | (src << 4),
        off,
        imm,
    }
}

/// The program for `rules`, in order (a later rule overrides an earlier one).
pub fn program(rules: &[DeviceRule]) -> Vec<Insn> {
    let mut p = vec![
        // r2 = type, r3 = access, r4 = major, r5 = minor
        insn(LDX_MEM_W, R2, R1, 0, 0),
        insn(ALU32_AND_K, R2, 0, 0, 0xffff),
        insn(LDX_MEM_W, R3, R1, 0, 0),
        insn(ALU32_RSH_K, R3, 0, 0, 16),
        insn(LDX_MEM_W, R4, R1, 4, 0),
        insn(LDX_MEM_W, R5, R1, 8, 0),
    ];
    // Checked from the last rule back: the first that matches decides.
    for rule in rules.iter().rev() {
        let mut checks: Vec<(u8, u8, i32)> = Vec::new(); // (code, reg, imm)
        let mut block = Vec::new();
        match rule.kind {
            'c' => checks.push((JNE_K, R2, DEV_CHAR)),
            'b' => checks.push((JNE_K, R2, DEV_BLOCK)),
            _ => {}
        }
        let mut access = 0;
        for c in rule.access.chars() {
            access |= match c {
                'm' => ACC_MKNOD,
                'r' => ACC_READ,
                'w' => ACC_WRITE,
                _ => 0,
            };
        }
        if rule.access.is_empty() {
            access = ACC_MKNOD | ACC_READ | ACC_WRITE;
        }
        let partial_access = access != ACC_MKNOD | ACC_READ | ACC_WRITE;
        // The rule covers the request only if every access asked for is
        // one it names: (r3 & access) == r3.
        if partial_access {
            block.push(insn(ALU32_MOV_X, R1, R3, 0, 0));
            block.push(insn(ALU32_AND_K, R1, 0, 0, access));
        }
        if let Some(major) = rule.major {
            checks.push((JNE_K, R4, major as i32));
        }
        if let Some(minor) = rule.minor {
            checks.push((JNE_K, R5, minor as i32));
        }
        // Each jump skips to the next block: past the remaining checks and
        // the two instructions of the verdict.
        let n_jumps = checks.len() + usize::from(partial_access);
        let mut left = n_jumps;
        let mut emit_jump = |block: &mut Vec<Insn>, code: u8, reg: u8, src: u8, imm: i32| {
            left -= 1;
            block.push(insn(code, reg, src, (left + 2) as i16, imm));
        };
        if partial_access {
            emit_jump(&mut block, JNE_X, R1, R3, 0);
        }
        for (code, reg, imm) in checks {
            emit_jump(&mut block, code, reg, 0, imm);
        }
        block.push(insn(ALU64_MOV_K, R0, 0, 0, i32::from(rule.allow)));
        block.push(insn(EXIT, 0, 0, 0, 0));
        p.extend(block);
        // A rule that matches everything decides for every earlier one:
        // the verifier refuses code that can never run.
        if n_jumps == 0 {
            return p;
        }
    }
    // No rule matched: allowed, as in a new v1 devices cgroup.
    p.push(insn(ALU64_MOV_K, R0, 0, 0, 1));
    p.push(insn(EXIT, 0, 0, 0, 0));
    p
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

#[repr(C)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    /// The rest of `union bpf_attr`, zero.
    rest: [u8; 64],
}

#[repr(C)]
struct ProgAttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
    rest: [u8; 44],
}

fn bpf_err(what: &str, dir: &Path) -> CgroupError {
    let e = std::io::Error::last_os_error();
    CgroupError::Invalid(format!(
        "{what} the device program of {}: {e}",
        dir.display()
    ))
}

/// Load the program for `rules` and attach it to the cgroup at `dir`.
pub fn attach(dir: &Path, rules: &[DeviceRule]) -> Result<()> {
    let prog = program(rules);
    let mut log = vec![0u8; 64 * 1024];
    let mut name = [0u8; 16];
    name[..12].copy_from_slice(b"nsbox_device");
    let attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: prog.len() as u32,
        insns: prog.as_ptr() as u64,
        license: c"Apache".as_ptr() as u64,
        log_level: 1,
        log_size: log.len() as u32,
        log_buf: log.as_mut_ptr() as u64,
        kern_version: 0,
        prog_flags: 0,
        prog_name: name,
        rest: [0; 64],
    };
    // SAFETY: bpf(2) reads `attr` and the buffers it points to, which live
    // until it returns, and writes at most log_size bytes into `log`.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_LOAD,
            &attr as *const ProgLoadAttr,
            std::mem::size_of::<ProgLoadAttr>(),
        )
    };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        let verifier = String::from_utf8_lossy(&log)
            .trim_end_matches('\0')
            .lines()
            .last()
            .unwrap_or("")
            .to_string();
        return Err(CgroupError::Invalid(format!(
            "load the device program of {}: {e} {verifier}",
            dir.display()
        )));
    }
    // SAFETY: bpf(2) returned a new fd.
    let prog_fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let cg = std::fs::File::open(dir).map_err(|e| CgroupError::Io {
        path: dir.display().to_string(),
        source: e,
    })?;
    let attr = ProgAttachAttr {
        target_fd: cg.as_raw_fd() as u32,
        attach_bpf_fd: prog_fd.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        replace_bpf_fd: 0,
        rest: [0; 44],
    };
    // SAFETY: bpf(2) reads `attr`; the fds in it are open.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_ATTACH,
            &attr as *const ProgAttachAttr,
            std::mem::size_of::<ProgAttachAttr>(),
        )
    };
    if r < 0 {
        return Err(bpf_err("attach", dir));
    }
    // The cgroup holds the program now; our fd may go.
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(
        allow: bool,
        kind: char,
        major: Option<i64>,
        minor: Option<i64>,
        access: &str,
    ) -> DeviceRule {
        DeviceRule {
            allow,
            kind,
            major,
            minor,
            access: access.into(),
        }
    }

    /// Runs the program on one request, as the kernel would.
    fn eval(p: &[Insn], kind: i32, access: i32, major: i32, minor: i32) -> i64 {
        let ctx = [(access << 16 | kind) as u32, major as u32, minor as u32];
        let mut r = [0i64; 11];
        let mut pc = 0usize;
        loop {
            let i = p[pc];
            let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
            pc += 1;
            match i.code {
                LDX_MEM_W => r[dst] = ctx[i.off as usize / 4] as i64,
                ALU32_AND_K => r[dst] = ((r[dst] as u32) & i.imm as u32) as i64,
                ALU32_RSH_K => r[dst] = ((r[dst] as u32) >> i.imm) as i64,
                ALU32_MOV_X => r[dst] = (r[src] as u32) as i64,
                ALU64_MOV_K => r[dst] = i.imm as i64,
                JNE_K if r[dst] != i.imm as i64 => pc += i.off as usize,
                JNE_X if r[dst] != r[src] => pc += i.off as usize,
                JNE_K | JNE_X => {}
                EXIT => return r[0],
                other => panic!("unknown opcode {other:#x}"),
            }
        }
    }

    #[test]
    fn last_matching_rule_decides() {
        let rules = vec![
            rule(false, 'a', None, None, "rwm"),
            rule(true, 'c', Some(1), Some(3), "rwm"),
            rule(true, 'c', Some(136), None, "rw"),
            rule(false, 'c', Some(136), Some(2), "w"),
        ];
        let p = program(&rules);
        let rw = ACC_READ | ACC_WRITE;
        assert_eq!(eval(&p, DEV_CHAR, rw, 1, 3), 1, "/dev/null");
        assert_eq!(eval(&p, DEV_CHAR, ACC_MKNOD, 1, 3), 1);
        assert_eq!(eval(&p, DEV_CHAR, rw, 1, 5), 0, "/dev/zero is not listed");
        assert_eq!(
            eval(&p, DEV_BLOCK, rw, 1, 3),
            0,
            "a block 1:3 is not the char one"
        );
        assert_eq!(eval(&p, DEV_CHAR, ACC_READ, 136, 7), 1, "pts, read");
        assert_eq!(
            eval(&p, DEV_CHAR, ACC_MKNOD, 136, 7),
            0,
            "pts, mknod not granted"
        );
        assert_eq!(
            eval(&p, DEV_CHAR, ACC_WRITE, 136, 2),
            0,
            "the later deny wins"
        );
        assert_eq!(eval(&p, DEV_CHAR, ACC_READ, 136, 2), 1);
        // The deny-all rule is the last block: nothing after it.
        assert_eq!(p.last().unwrap().code, EXIT);
        assert_eq!(p[p.len() - 2], insn(ALU64_MOV_K, R0, 0, 0, 0));
        // No rule: everything allowed.
        assert_eq!(eval(&program(&[]), DEV_BLOCK, ACC_MKNOD, 8, 0), 1);
    }
}
