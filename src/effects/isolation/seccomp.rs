//! A seccomp filter that keeps commands off the network: `socket(2)` works
//! for unix sockets only, and io_uring (which can open sockets on its own) is
//! refused. Every other system call is allowed; the file system is Landlock's
//! job. Refused calls fail with `EPERM`, so programs report an error rather
//! than die.

use std::io;

use libc::{
    BPF_ABS, BPF_JEQ, BPF_JGE, BPF_JMP, BPF_K, BPF_LD, BPF_RET, BPF_W, SECCOMP_RET_ALLOW,
    SECCOMP_RET_ERRNO, sock_filter,
};

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xC000_003E;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xC000_00B7;

/// x86_64's x32 system calls carry this bit; they are refused outright.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

// Offsets into `struct seccomp_data`.
const NR: u32 = 0;
const ARCH: u32 = 4;
/// The low 32 bits of the first argument (little-endian).
const ARG0: u32 = 16;

fn stmt(code: u32, k: u32) -> sock_filter {
    sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u32, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    }
}

/// The filter program: allow everything but non-unix sockets and io_uring.
pub fn no_network_filter() -> Vec<sock_filter> {
    let deny = SECCOMP_RET_ERRNO | (libc::EPERM as u32);
    let socket = libc::SYS_socket as u32;
    let io_uring = libc::SYS_io_uring_setup as u32;
    // Jump offsets count the instructions skipped after the jump itself.
    vec![
        /* 0 */ stmt(BPF_LD | BPF_W | BPF_ABS, ARCH),
        /* 1 */ jump(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH, 0, 7), // other ABI -> 9
        /* 2 */ stmt(BPF_LD | BPF_W | BPF_ABS, NR),
        /* 3 */ jump(BPF_JMP | BPF_JGE | BPF_K, X32_SYSCALL_BIT, 5, 0), // -> 9
        /* 4 */ jump(BPF_JMP | BPF_JEQ | BPF_K, socket, 2, 0), // -> 7
        /* 5 */ jump(BPF_JMP | BPF_JEQ | BPF_K, io_uring, 3, 0), // -> 9
        /* 6 */ stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        /* 7 */ stmt(BPF_LD | BPF_W | BPF_ABS, ARG0),
        /* 8 */ jump(BPF_JMP | BPF_JEQ | BPF_K, libc::AF_UNIX as u32, 1, 0), // -> 10
        /* 9 */ stmt(BPF_RET | BPF_K, deny),
        /* 10 */ stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    ]
}

/// Installs `filter` on the calling thread (inherited across fork and exec).
/// Runs between `fork` and `exec`: system calls only. Needs
/// `PR_SET_NO_NEW_PRIVS`, which Landlock has already set.
pub fn install(filter: &[sock_filter]) -> io::Result<()> {
    let program = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr().cast_mut(),
    };
    #[allow(unsafe_code)]
    // SAFETY: `program` points at `filter`, alive for the call; the kernel
    // copies the program and keeps no pointer to it.
    let done = unsafe {
        libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0
            && libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &program as *const libc::sock_fprog,
            ) == 0
    };
    if done {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_jump_lands_inside_the_program() {
        let filter = no_network_filter();
        for (i, ins) in filter.iter().enumerate() {
            if u32::from(ins.code) & 0x07 == BPF_JMP {
                assert!(i + 1 + usize::from(ins.jt) < filter.len(), "jt of {i}");
                assert!(i + 1 + usize::from(ins.jf) < filter.len(), "jf of {i}");
            }
        }
        let last = filter.last().map(|i| (u32::from(i.code), i.k));
        assert_eq!(last, Some((BPF_RET | BPF_K, SECCOMP_RET_ALLOW)));
    }
}
