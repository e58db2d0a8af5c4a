//! One way of creating a process per [`Method`]. A [`Lane`] is the state a
//! spawning thread keeps (prepared argv, a clone3 stack, posix_spawn
//! attributes, its zygote); [`Lane::prepare`] does the untimed per-spawn
//! setup and [`Lane::launch`] is exactly the part that gets timed.
//!
//! The tokio methods live in `runner::tokio_mode` because they need a runtime.

use std::ffi::CString;
use std::io;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::Command;
use std::sync::atomic::{AtomicI32, Ordering};

use libc::c_char;

use super::config::{Method, Reap};
use super::raw::{self, ChildStack, ExecArgs};
use super::zygote::Zygote;

/// Stack for clone3-vfork children. glibc's execvp keeps the PATH candidate
/// on the stack; 256 KiB leaves ample room for long PATHs.
const CHILD_STACK: usize = 256 << 10;

/// The program and its argv, prepared once, shared read-only by all lanes.
pub struct Program {
    /// As given on the command line (absolute path or bare name).
    pub program: String,
    pub args: Vec<String>,
    /// Bare names go through PATH (execvp / posix_spawnp).
    pub search_path: bool,
    c_program: CString,
    _c_args: Vec<CString>,
    argv: Vec<*const c_char>,
}

// SAFETY: the raw pointers in `argv` point into `c_program`/`_c_args`, which
// are owned, never mutated, and live as long as the Program.
unsafe impl Send for Program {}
// SAFETY: as above; shared access is read-only.
unsafe impl Sync for Program {}

impl Program {
    pub fn new(program: &str, args: &[String]) -> io::Result<Program> {
        let nul = |_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "NUL byte in program or argument",
            )
        };
        let c_program = CString::new(program).map_err(nul)?;
        let c_args = args
            .iter()
            .map(|a| CString::new(a.as_str()).map_err(nul))
            .collect::<io::Result<Vec<_>>>()?;
        let mut argv = Vec::with_capacity(c_args.len() + 2);
        argv.push(c_program.as_ptr());
        argv.extend(c_args.iter().map(|a| a.as_ptr()));
        argv.push(std::ptr::null());
        Ok(Program {
            program: program.to_string(),
            args: args.to_vec(),
            search_path: !program.contains('/'),
            c_program,
            _c_args: c_args,
            argv,
        })
    }

    /// Fresh exec arguments for a raw child (the lane keeps them at a stable
    /// address; the child writes `err`).
    pub fn exec_args(&self) -> Box<ExecArgs> {
        Box::new(ExecArgs {
            path: self.c_program.as_ptr(),
            argv: self.argv.as_ptr(),
            search_path: self.search_path,
            err: AtomicI32::new(0),
        })
    }

    fn std_command(&self) -> Command {
        let mut c = Command::new(&self.program);
        c.args(&self.args);
        c
    }
}

/// A child to reap after the timed part.
#[derive(Debug)]
pub enum Child {
    /// Our direct child, reaped with waitpid.
    Pid(libc::pid_t),
    Std(std::process::Child),
    /// A child of the lane's zygote.
    Zygote(libc::pid_t),
}

/// Result of one timed spawn call.
#[derive(Debug)]
pub struct Outcome {
    /// The child, when one was created (also when its exec failed, for the
    /// vfork-style methods, which must still reap it).
    pub child: Option<Child>,
    /// The spawn call reported an error (fork/clone failure, or an exec
    /// failure reported synchronously).
    pub failed: bool,
}

impl Outcome {
    const FAILED: Outcome = Outcome {
        child: None,
        failed: true,
    };

    fn spawned(child: Child) -> Outcome {
        Outcome {
            child: Some(child),
            failed: false,
        }
    }
}

/// Untimed per-spawn preparation handed to [`Lane::launch`].
pub enum Pending {
    Raw,
    Std(Command),
}

/// posix_spawn attributes as std sets them: empty signal mask
/// (POSIX_SPAWN_SETSIGMASK) and SIGPIPE reset to default (POSIX_SPAWN_SETSIGDEF).
struct SpawnAttr(Box<libc::posix_spawnattr_t>);

impl SpawnAttr {
    fn new() -> io::Result<SpawnAttr> {
        // SAFETY: posix_spawnattr_init initialises the boxed (stable) struct;
        // the setters get that same pointer and a local sigset_t.
        unsafe {
            let mut attr: Box<libc::posix_spawnattr_t> = Box::new(std::mem::zeroed());
            let p: *mut libc::posix_spawnattr_t = &mut *attr;
            let rc = libc::posix_spawnattr_init(p);
            if rc != 0 {
                return Err(io::Error::from_raw_os_error(rc));
            }
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::posix_spawnattr_setsigmask(p, &set);
            libc::sigaddset(&mut set, libc::SIGPIPE);
            libc::posix_spawnattr_setsigdefault(p, &set);
            let flags = libc::POSIX_SPAWN_SETSIGMASK | libc::POSIX_SPAWN_SETSIGDEF;
            libc::posix_spawnattr_setflags(p, flags as libc::c_short);
            Ok(SpawnAttr(attr))
        }
    }
}

impl Drop for SpawnAttr {
    fn drop(&mut self) {
        // SAFETY: initialised in new().
        unsafe { libc::posix_spawnattr_destroy(&mut *self.0) };
    }
}

/// Per-thread spawning state.
pub struct Lane<'p> {
    method: Method,
    prog: &'p Program,
    exec: Box<ExecArgs>,
    stack: Option<ChildStack>,
    attr: Option<SpawnAttr>,
    zygote: Option<Zygote>,
    reap: Reap,
}

// SAFETY: ExecArgs' raw pointers point into the Sync `Program` borrowed for
// 'p; everything else is owned by the lane and used by one thread at a time.
unsafe impl Send for Lane<'_> {}

impl<'p> Lane<'p> {
    /// `zygote` must be given for [`Method::Zygote`] (started before the
    /// ballast was allocated) and is ignored otherwise.
    pub fn new(method: Method, prog: &'p Program, zygote: Option<Zygote>) -> io::Result<Lane<'p>> {
        let stack = match method {
            Method::Clone3Vfork => Some(ChildStack::new(CHILD_STACK)?),
            _ => None,
        };
        let attr = match method {
            Method::PosixSpawn => Some(SpawnAttr::new()?),
            _ => None,
        };
        if method == Method::Zygote && zygote.is_none() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "zygote lane without a zygote",
            ));
        }
        Ok(Lane {
            method,
            prog,
            exec: prog.exec_args(),
            stack,
            attr,
            zygote,
            reap: Reap::Waitpid,
        })
    }

    /// Wait for this lane's own children ([`Child::Pid`]) with `reap`.
    pub fn reaping_with(mut self, reap: Reap) -> Self {
        self.reap = reap;
        self
    }

    pub fn zygote_mut(&mut self) -> Option<&mut Zygote> {
        self.zygote.as_mut()
    }

    /// Untimed setup for the next spawn (building a std `Command`).
    pub fn prepare(&self) -> Pending {
        match self.method {
            Method::Std => Pending::Std(self.prog.std_command()),
            Method::StdEnv => {
                let mut c = self.prog.std_command();
                c.env("SPAWNPROF_X", "1");
                Pending::Std(c)
            }
            Method::StdFork => {
                let mut c = self.prog.std_command();
                // SAFETY: the closure does nothing, which is async-signal-safe.
                unsafe { c.pre_exec(|| Ok(())) };
                Pending::Std(c)
            }
            _ => Pending::Raw,
        }
    }

    /// The timed part: create one process.
    pub fn launch(&mut self, pending: Pending) -> Outcome {
        match (self.method, pending) {
            (_, Pending::Std(mut cmd)) => match cmd.spawn() {
                Ok(c) => Outcome::spawned(Child::Std(c)),
                Err(_) => Outcome::FAILED,
            },
            (Method::ForkExec, _) => self.fork_exec(),
            (Method::VforkExec | Method::Clone3Vfork, _) => self.vfork_exec(),
            (Method::PosixSpawn, _) => self.posix_spawn(),
            (Method::Zygote, _) => match self.zygote.as_mut().map(Zygote::spawn) {
                Some(Ok(pid)) => Outcome::spawned(Child::Zygote(pid)),
                _ => Outcome::FAILED,
            },
            (m, Pending::Raw) => unreachable!("{m} is not a synchronous method"),
        }
    }

    // The methods below are the arms of `launch`, inlined into it so that
    // the timed call stays the one function it was.

    #[inline(always)]
    fn fork_exec(&mut self) -> Outcome {
        // SAFETY: the child only calls exec_child (execv/execvp and
        // _exit), async-signal-safe even in a multi-threaded parent.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            raw::exec_child(&*self.exec as *const ExecArgs as *mut libc::c_void);
        }
        if pid < 0 {
            Outcome::FAILED
        } else {
            // exec failures show up as exit status 127 when reaped.
            Outcome::spawned(Child::Pid(pid))
        }
    }

    /// vfork or clone3 with CLONE_VFORK on the lane's stack; the child
    /// reports a failed exec in `exec.err` before it exits.
    #[inline(always)]
    fn vfork_exec(&mut self) -> Outcome {
        self.exec.err.store(0, Ordering::Relaxed);
        // SAFETY: exec args and argv live in self/prog; the stack is ours.
        let r = unsafe {
            match self.stack.as_mut() {
                Some(stack) => raw::clone3_vfork_exec(&self.exec, stack),
                None => raw::vfork_exec(&self.exec),
            }
        };
        match r {
            Ok(pid) => Outcome {
                child: Some(Child::Pid(pid)),
                failed: self.exec.err.load(Ordering::Relaxed) != 0,
            },
            Err(_) => Outcome::FAILED,
        }
    }

    #[inline(always)]
    fn posix_spawn(&mut self) -> Outcome {
        let mut pid: libc::pid_t = 0;
        let attr: *const libc::posix_spawnattr_t = match &self.attr {
            Some(a) => &*a.0,
            None => std::ptr::null(),
        };
        // SAFETY: environ is read at call time, like std does; argv is
        // NUL-terminated and owned by prog.
        let rc = unsafe {
            let envp = libc::environ as *const *mut c_char;
            let argv = self.prog.argv.as_ptr() as *const *mut c_char;
            let path = self.prog.c_program.as_ptr();
            if self.prog.search_path {
                libc::posix_spawnp(&mut pid, path, std::ptr::null(), attr, argv, envp)
            } else {
                libc::posix_spawn(&mut pid, path, std::ptr::null(), attr, argv, envp)
            }
        };
        // On an exec failure glibc has already reaped the child.
        if rc == 0 {
            Outcome::spawned(Child::Pid(pid))
        } else {
            Outcome::FAILED
        }
    }

    /// Wait for a child; returns true when it exited with status 127 (the
    /// conventional "exec failed" status of the fork-based children).
    pub fn reap(&mut self, child: Child) -> io::Result<bool> {
        let status = match child {
            Child::Std(mut c) => c.wait()?.into_raw(),
            Child::Pid(pid) => match self.reap {
                Reap::Waitpid => waitpid(pid)?,
                Reap::Waitid => waitid(pid)?,
            },
            Child::Zygote(pid) => match self.zygote.as_mut() {
                Some(z) => z.wait(pid)?,
                None => return Err(io::Error::other("zygote child without a zygote")),
            },
        };
        Ok(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 127)
    }
}

/// waitid(P_PID, pid, WEXITED), retrying on EINTR; returns the status
/// waitpid would have given, so callers read both alike.
pub fn waitid(pid: libc::pid_t) -> io::Result<i32> {
    // SAFETY: an all-zero siginfo_t is valid; waiting for our own child.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    retry_on_eintr(|| unsafe {
        libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, libc::WEXITED)
    })?;
    // SAFETY: a SIGCHLD siginfo filled in by a successful waitid.
    let status = unsafe { info.si_status() };
    Ok(if info.si_code == libc::CLD_EXITED {
        (status & 0xff) << 8
    } else {
        status & 0x7f
    })
}

/// waitpid, retrying on EINTR; returns the raw status.
pub fn waitpid(pid: libc::pid_t) -> io::Result<i32> {
    let mut status = 0;
    // SAFETY: waiting for our own child.
    retry_on_eintr(|| unsafe { libc::waitpid(pid, &mut status, 0) })?;
    Ok(status)
}

/// Calls `syscall` until it is not interrupted by a signal; its error as
/// an io::Error when it returns a negative value.
fn retry_on_eintr(mut syscall: impl FnMut() -> libc::c_int) -> io::Result<libc::c_int> {
    loop {
        let r = syscall();
        if r >= 0 {
            return Ok(r);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(method: Method, program: &str) -> (bool, bool) {
        let prog = Program::new(program, &[]).unwrap();
        let zygote = (method == Method::Zygote).then(|| Zygote::start(&prog.exec_args()).unwrap());
        let mut lane = Lane::new(method, &prog, zygote).unwrap();
        let p = lane.prepare();
        let out = lane.launch(p);
        let exit127 = match out.child {
            Some(c) => lane.reap(c).unwrap(),
            None => false,
        };
        (out.failed, exit127)
    }

    #[test]
    fn sync_methods_spawn_true() {
        let mut methods = vec![
            Method::ForkExec,
            Method::PosixSpawn,
            Method::Std,
            Method::StdEnv,
            Method::StdFork,
        ];
        if raw::SUPPORTED {
            methods.extend([Method::VforkExec, Method::Clone3Vfork]);
        }
        for m in methods {
            assert_eq!(one(m, "/bin/true"), (false, false), "{m}");
            assert_eq!(one(m, "true"), (false, false), "{m} bare name");
        }
    }

    #[test]
    fn failures_are_counted() {
        let missing = "/nonexistent/spawnprof-missing";
        assert_eq!(one(Method::ForkExec, missing), (false, true));
        assert_eq!(one(Method::PosixSpawn, missing), (true, false));
        assert_eq!(one(Method::Std, missing), (true, false));
        assert_eq!(one(Method::StdFork, missing), (true, false));
        if raw::SUPPORTED {
            assert_eq!(one(Method::VforkExec, missing), (true, true));
            assert_eq!(one(Method::Clone3Vfork, missing), (true, true));
        }
    }

    #[test]
    fn zygote_round_trip() {
        let prog = Program::new("/bin/true", &[]).unwrap();
        let exec = prog.exec_args();
        let mut z = Zygote::start(&exec).unwrap();
        let pid = z.spawn().unwrap();
        assert_ne!(pid, z.pid());
        let status = z.wait(pid).unwrap();
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
        assert!(z.rss().unwrap() > 0);
        z.rusage().unwrap();
    }
}
