"""Forks N children; each starts a sleeping thread and a second thread that
execs /bin/echo, so the exec comes from a thread that is not the leader (the
kernel's de_thread then gives the exec'ing thread the process's pid).

    thread_exec.py N

Exits 0 when every child exited 0 (echo did)."""
import os
import sys
import threading
import time


def child():
    threading.Thread(target=time.sleep, args=(30,), daemon=True).start()
    t = threading.Thread(
        target=lambda: os.execv("/bin/echo", ["echo", "exec from a thread"])
    )
    t.start()
    t.join()
    os._exit(99)  # not reached: the exec replaces the whole process


def main():
    pids = []
    for _ in range(int(sys.argv[1])):
        pid = os.fork()
        if pid == 0:
            child()
        pids.append(pid)
    failed = 0
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        if not (os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0):
            failed += 1
    sys.exit(1 if failed else 0)


main()
