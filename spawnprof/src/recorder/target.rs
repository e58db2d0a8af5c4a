//! The traced process: a command started and held before its exec until
//! the probes trace it, or a running process adopted by pid.
use std::{
    ffi::CString,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
};

use anyhow::{Context as _, Result, bail};
use tokio::sync::oneshot;

use crate::{probe::Session, sys::memlock::memlock_limit_to_restore};

/// What to trace.
#[derive(Clone, Debug)]
pub enum Target {
    /// Start this command and trace it and all its descendants.
    Command(Vec<String>),
    /// Trace a running process (all its threads).
    Pid(u32),
}

/// The traced process as the probes know it: by its host pid, which in a
/// PID namespace is learnt only once a probe has run in it. Until then the
/// probes look for it on every run; once it is found they stop.
pub(super) struct RootResolver {
    /// Its pid as spawnprof knows it, until the host pid is known.
    pub pending: Option<u32>,
}

impl RootResolver {
    pub fn resolve(&mut self, session: &mut Session) -> Result<()> {
        if let Some(pid) = self.pending
            && session.host_tgid(pid)?.is_some()
        {
            self.pending = None;
        }
        Ok(())
    }
}

/// A child forked and held before its exec until it has been added to the
/// traced set, so its exec is seen. (std's Command cannot do this: its spawn
/// waits for the exec itself.)
pub(super) struct GatedChild {
    pub pid: u32,
    /// argv[0], for the message when the exec fails.
    command: String,
    gate: OwnedFd,
    exec_status: OwnedFd,
}

impl GatedChild {
    pub fn spawn(argv: &[String], stdout: Option<&std::fs::File>) -> Result<Self> {
        let stdout_fd = stdout.map(|f| f.as_raw_fd());
        let cargs: Vec<CString> = argv
            .iter()
            .map(|a| CString::new(a.as_str()))
            .collect::<Result<_, _>>()
            .context("the command contains a NUL byte")?;
        let mut ptrs: Vec<*const libc::c_char> = cargs.iter().map(|c| c.as_ptr()).collect();
        ptrs.push(std::ptr::null());
        let gate = pipe()?;
        let status = pipe()?;
        let memlock = memlock_limit_to_restore();
        // SAFETY: the child only calls async-signal-safe functions (read,
        // execvp, write, _exit) on memory prepared before the fork.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            bail!("fork failed: {}", std::io::Error::last_os_error());
        }
        if pid == 0 {
            unsafe {
                // Drop our copies of the parent's ends, so a parent that dies
                // gives us EOF instead of a wait forever.
                libc::close(gate.1.as_raw_fd());
                libc::close(status.0.as_raw_fd());
                let mut byte = 0u8;
                if libc::read(gate.0.as_raw_fd(), (&raw mut byte).cast(), 1) != 1 {
                    libc::_exit(127);
                }
                if let Some(fd) = stdout_fd
                    && libc::dup2(fd, 1) < 0
                {
                    libc::_exit(127);
                }
                // The command runs with the limits it was given, not ours.
                if let Some(limit) = &memlock {
                    libc::setrlimit(libc::RLIMIT_MEMLOCK, limit);
                }
                libc::execvp(ptrs[0], ptrs.as_ptr());
                let errno = *libc::__errno_location();
                libc::write(status.1.as_raw_fd(), (&raw const errno).cast(), 4);
                libc::_exit(exec_failure_status(errno));
            }
        }
        drop(gate.0);
        drop(status.1);
        Ok(Self {
            pid: pid as u32,
            command: argv[0].clone(),
            gate: gate.1,
            exec_status: status.0,
        })
    }

    /// Lets the child exec; the receiver yields its exit code
    /// (128+signal when killed).
    pub fn release(self) -> Result<oneshot::Receiver<Option<i32>>> {
        let byte = 1u8;
        // SAFETY: writing one byte from a valid buffer to our pipe end.
        unsafe { libc::write(self.gate.as_raw_fd(), (&raw const byte).cast(), 1) };
        drop(self.gate);
        let pid = self.pid;
        let command = self.command;
        let status_fd = self.exec_status;
        let (tx, rx) = oneshot::channel();
        std::thread::Builder::new()
            .name("spawnprof-wait".into())
            .spawn(move || {
                let mut errno = 0i32;
                // EOF (0 bytes): the exec succeeded and closed the pipe.
                let n = unsafe { libc::read(status_fd.as_raw_fd(), (&raw mut errno).cast(), 4) };
                if n == 4 {
                    crate::say!("spawnprof: {}", exec_failure_message(&command, errno));
                }
                let mut status = 0;
                let rc = unsafe { libc::waitpid(pid as i32, &mut status, 0) };
                let code = (rc == pid as i32).then(|| {
                    if libc::WIFEXITED(status) {
                        libc::WEXITSTATUS(status)
                    } else {
                        128 + libc::WTERMSIG(status)
                    }
                });
                let _ = tx.send(code);
            })?;
        Ok(rx)
    }
}

/// The exit status of a command whose exec failed, as POSIX shells, `env`
/// and `timeout` give it: 127 when it was not found, 126 when it was found
/// but could not be run.
fn exec_failure_status(errno: i32) -> i32 {
    match errno {
        libc::ENOENT | libc::ENOTDIR => 127,
        _ => 126,
    }
}

/// Why CMD did not run, with what to check.
fn exec_failure_message(command: &str, errno: i32) -> String {
    let why = match errno {
        libc::ENOENT | libc::ENOTDIR if command.contains('/') => {
            "no such file (check the path)".to_string()
        }
        libc::ENOENT | libc::ENOTDIR => "command not found (check the name and PATH)".into(),
        libc::EACCES => "permission denied (a directory, a file without execute permission \
             (`chmod +x`), or on a noexec mount)"
            .into(),
        _ => std::io::Error::from_raw_os_error(errno).to_string(),
    };
    format!("cannot run {command}: {why}")
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid out-array of two ints.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        bail!("pipe2 failed: {}", std::io::Error::last_os_error());
    }
    // SAFETY: pipe2 returned two fresh descriptors we now own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}
