"""A pre-forking server: its workers exist before a profiler attaches.

    prefork_server.py FLAG WORKERS GRANDCHILDREN

Forks WORKERS workers, prints their pids on one line, and waits for them.
Each worker waits (up to 60 s) for the file FLAG to exist, then forks and execs /bin/true
GRANDCHILDREN times (waiting for each, 50 ms apart) and exits."""
import os
import sys
import time


def worker(flag, grandchildren):
    deadline = time.monotonic() + 60  # a test that failed never writes it
    while not os.path.exists(flag):
        if time.monotonic() > deadline:
            os._exit(1)
        time.sleep(0.01)
    for _ in range(grandchildren):
        pid = os.fork()
        if pid == 0:
            os.execv("/bin/true", ["true"])
        os.waitpid(pid, 0)
        time.sleep(0.05)
    os._exit(0)


def main():
    flag, workers, grandchildren = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    pids = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:
            worker(flag, grandchildren)
        pids.append(pid)
    print(" ".join(map(str, pids)), flush=True)
    for pid in pids:
        os.waitpid(pid, 0)


main()
