"""Reaps that happen inside a PID namespace. Run as the namespace's init:

    unshare --pid --fork python3 pid_namespace.py CASE

CASE is one of
  stop       a child (sleep 30) is stopped, the stop is reported by
             waitpid(WUNTRACED), then the child is killed and reaped
  subreaper  an orphan (sleep 1, whose parent exited at once) is reaped by
             a subreaper (prctl PR_SET_CHILD_SUBREAPER) below init
  init       the same orphan is reaped by the namespace's init (this process)
In every case the sleep is the only process that execs `sleep`."""
import ctypes
import os
import signal
import sys
import time

PR_SET_CHILD_SUBREAPER = 36


def orphan_a_sleeper():
    """Forks a `sleep 1` and exits at once, orphaning it."""
    if os.fork() == 0:
        os.execvp("sleep", ["sleep", "1"])
    os._exit(0)


def reap_all():
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return


def stop():
    pid = os.fork()
    if pid == 0:
        os.execvp("sleep", ["sleep", "30"])
    time.sleep(0.3)
    os.kill(pid, signal.SIGSTOP)
    _, status = os.waitpid(pid, os.WUNTRACED)
    assert os.WIFSTOPPED(status), status
    os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status), status


def subreaper():
    pid = os.fork()
    if pid == 0:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            os._exit(3)
        if os.fork() == 0:
            orphan_a_sleeper()
        reap_all()
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status


def init():
    assert os.getpid() == 1, "not the namespace's init: %d" % os.getpid()
    if os.fork() == 0:
        orphan_a_sleeper()
    reap_all()


{"stop": stop, "subreaper": subreaper, "init": init}[sys.argv[1]]()
