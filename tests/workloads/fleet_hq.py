"""Runs one `spawnprof bench` per simulated node on a HyperQueue local
cluster (a server and workers in this process, on loopback).

Usage: fleet_hq.py SPEC.json SERVER_DIR
SPEC.json: [{"name": ..., "argv": [...], "env": {...}, "log": path}, ...]

The tasks run one after another (each depends on the previous): the
benches time spawns and must not share the machine's CPUs. Exit status:
0 all ran, 1 a task failed, 3 hyperqueue cannot be imported, 4 the
cluster could not be started or used.
"""
import json
import sys

try:
    from hyperqueue import Job, LocalCluster
    from hyperqueue.cluster import WorkerConfig
except Exception as e:  # noqa: BLE001 - any import problem means "unusable"
    print(f"hyperqueue cannot be imported: {e}")
    sys.exit(3)


def main():
    spec_path, server_dir = sys.argv[1], sys.argv[2]
    with open(spec_path) as f:
        tasks = json.load(f)
    try:
        cluster = LocalCluster(server_dir)
    except Exception as e:  # noqa: BLE001
        print(f"HyperQueue's LocalCluster did not start: {e}")
        sys.exit(4)
    with cluster:
        try:
            for _ in tasks:
                cluster.start_worker(WorkerConfig(cores=1))
            client = cluster.client()
        except Exception as e:  # noqa: BLE001
            print(f"HyperQueue's workers or client did not start: {e}")
            sys.exit(4)
        job = Job()
        previous = None
        for t in tasks:
            previous = job.program(
                t["argv"],
                env=t["env"],
                stdout=t["log"],
                stderr=t["log"] + ".err",
                deps=[previous] if previous is not None else (),
            )
        submitted = client.submit(job)
        ok = client.wait_for_jobs([submitted], raise_on_error=False)
        if not ok:
            print(f"HyperQueue job failed: {client.get_failed_tasks(submitted)}")
            sys.exit(1)
    print(f"HyperQueue ran {len(tasks)} benches on {len(tasks)} workers")


main()
