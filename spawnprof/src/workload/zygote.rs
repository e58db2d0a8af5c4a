//! The zygote: a helper process forked from the spawner *before* the RSS
//! ballast is allocated, so its own page tables stay small. It forks+execs
//! the program on request and replies with the pid; the spawner times
//! request → reply. The zygote owns (and reaps) the children.
//!
//! Protocol over a `SOCK_SEQPACKET` socketpair: fixed 16-byte requests
//! (`op: u32, pid: i32, 0u64`) and 24-byte replies (three `i64`).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::Ordering;

use super::raw::{ExecArgs, exec_child};

const OP_SPAWN: u32 = 1;
const OP_WAIT: u32 = 2;
const OP_RUSAGE: u32 = 3;
const OP_RSS: u32 = 4;
const OP_QUIT: u32 = 5;

pub struct Zygote {
    sock: OwnedFd,
    pid: libc::pid_t,
}

fn tv_ns(tv: libc::timeval) -> i64 {
    tv.tv_sec * 1_000_000_000 + tv.tv_usec * 1_000
}

impl Zygote {
    /// Fork the zygote. Call while the process is single-threaded and
    /// before allocating the ballast. `exec` (and the strings it points to)
    /// must already describe the program; the zygote keeps its copy.
    pub fn start(exec: &ExecArgs) -> io::Result<Zygote> {
        let mut fds = [0; 2];
        // SAFETY: fds is a valid 2-element array.
        if unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
                0,
                fds.as_mut_ptr(),
            )
        } != 0
        {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: socketpair returned two fresh fds that we now own.
        let (ours, theirs) =
            unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: plain fork; the child only runs `serve`, which never returns.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(io::Error::last_os_error());
        }
        if pid == 0 {
            drop(ours);
            // SAFETY: prctl with an integer argument.
            unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
            serve(theirs.as_raw_fd(), exec);
        }
        drop(theirs);
        Ok(Zygote { sock: ours, pid })
    }

    /// The zygote's own pid.
    pub fn pid(&self) -> libc::pid_t {
        self.pid
    }

    fn call(&mut self, op: u32, pid: libc::pid_t) -> io::Result<[i64; 3]> {
        let mut req = [0u8; 16];
        req[..4].copy_from_slice(&op.to_ne_bytes());
        req[4..8].copy_from_slice(&pid.to_ne_bytes());
        let fd = self.sock.as_raw_fd();
        // SAFETY: buffers are valid for their lengths.
        let n = unsafe { libc::send(fd, req.as_ptr().cast(), req.len(), libc::MSG_NOSIGNAL) };
        if n != req.len() as isize {
            return Err(if n < 0 {
                io::Error::last_os_error()
            } else {
                io::ErrorKind::WriteZero.into()
            });
        }
        let mut rep = [0i64; 3];
        let n = loop {
            // SAFETY: as above.
            let n = unsafe { libc::recv(fd, rep.as_mut_ptr().cast(), 24, 0) };
            if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            break n;
        };
        if n != 24 {
            return Err(if n < 0 {
                io::Error::last_os_error()
            } else {
                io::Error::new(io::ErrorKind::UnexpectedEof, "zygote closed the connection")
            });
        }
        Ok(rep)
    }

    /// Ask for one fork+exec; returns the child's pid.
    pub fn spawn(&mut self) -> io::Result<libc::pid_t> {
        let [r, _, _] = self.call(OP_SPAWN, 0)?;
        if r < 0 {
            Err(io::Error::from_raw_os_error(-r as i32))
        } else {
            Ok(r as libc::pid_t)
        }
    }

    /// Have the zygote reap `pid`; returns the raw wait status.
    pub fn wait(&mut self, pid: libc::pid_t) -> io::Result<i32> {
        let [r, status, _] = self.call(OP_WAIT, pid)?;
        if r < 0 {
            Err(io::Error::from_raw_os_error(-r as i32))
        } else {
            Ok(status as i32)
        }
    }

    /// The zygote's own user and system CPU time so far, in ns.
    pub fn rusage(&mut self) -> io::Result<(u64, u64)> {
        let [u, s, _] = self.call(OP_RUSAGE, 0)?;
        Ok((u as u64, s as u64))
    }

    /// The zygote's VmRSS in bytes.
    pub fn rss(&mut self) -> io::Result<u64> {
        Ok(self.call(OP_RSS, 0)?[0] as u64)
    }
}

impl Drop for Zygote {
    fn drop(&mut self) {
        let _ = self.call(OP_QUIT, 0);
        let mut status = 0;
        // SAFETY: the zygote is our child.
        unsafe { libc::waitpid(self.pid, &mut status, 0) };
    }
}

/// The zygote's loop. Runs in the forked helper, never returns.
fn serve(fd: libc::c_int, exec: &ExecArgs) -> ! {
    loop {
        let mut req = [0u8; 16];
        // SAFETY: buffer valid for 16 bytes.
        let n = unsafe { libc::recv(fd, req.as_mut_ptr().cast(), req.len(), 0) };
        if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
            continue;
        }
        if n != 16 {
            break;
        }
        let op = u32::from_ne_bytes(req[..4].try_into().unwrap());
        let pid = i32::from_ne_bytes(req[4..8].try_into().unwrap());
        let mut rep = [0i64; 3];
        match op {
            OP_SPAWN => {
                exec.err.store(0, Ordering::Relaxed);
                // SAFETY: the zygote is single-threaded; the child only execs.
                let child = unsafe { libc::fork() };
                if child == 0 {
                    exec_child(exec as *const ExecArgs as *mut libc::c_void);
                }
                rep[0] = if child < 0 {
                    -i64::from(
                        io::Error::last_os_error()
                            .raw_os_error()
                            .unwrap_or(libc::EIO),
                    )
                } else {
                    i64::from(child)
                };
            }
            OP_WAIT => {
                let mut status = 0;
                let r = loop {
                    // SAFETY: waiting for one of our children.
                    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
                    if r < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                        continue;
                    }
                    break r;
                };
                rep[0] = if r < 0 {
                    -i64::from(
                        io::Error::last_os_error()
                            .raw_os_error()
                            .unwrap_or(libc::EIO),
                    )
                } else {
                    i64::from(r)
                };
                rep[1] = i64::from(status);
            }
            OP_RUSAGE => {
                // SAFETY: zeroed rusage is a valid out-parameter.
                let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
                // SAFETY: valid pointer.
                unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
                rep[0] = tv_ns(ru.ru_utime);
                rep[1] = tv_ns(ru.ru_stime);
            }
            OP_RSS => {
                rep[0] = crate::sys::procfs::self_status("VmRSS").unwrap_or(0) as i64;
            }
            _ => break,
        }
        // SAFETY: buffer valid for 24 bytes.
        unsafe { libc::send(fd, rep.as_ptr().cast(), 24, libc::MSG_NOSIGNAL) };
    }
    // Reap whatever is left, then leave without running the spawner's
    // destructors or atexit handlers.
    // SAFETY: plain libc calls.
    unsafe {
        while libc::waitpid(-1, std::ptr::null_mut(), 0) > 0 {}
        libc::_exit(0)
    }
}
