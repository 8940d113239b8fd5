"""A real Ray cluster of two nodes on this machine for the tests (tests/servers.py has the tracking servers).

``ray_cluster`` starts a head and a second node (``ray start --block``), each in a session of its own, waits (bounded)
until both are alive, and kills every process of those sessions after: nothing is left running, and nothing else is
touched (``ray stop`` would stop every Ray process of the machine, another user's too). The nodes talk over loopback
addresses, but Ray's servers listen on every interface whatever ``--node-ip-address`` says (Ray has no option for it).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from servers import free_port


def session_processes(sid: int) -> list[int]:
    """The pids of the processes of session ``sid`` (Ray's workers change their process group, not their session)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after "pid (comm)": state ppid pgrp session ...
        except (OSError, IndexError):
            continue  # gone meanwhile
        if int(fields[3]) == sid and fields[0] != "Z":
            pids.append(int(stat.parent.name))
    return pids


@contextmanager
def own_session(args: list[str], log: Path, env: dict | None = None, cwd: Path | None = None) -> Iterator[subprocess.Popen]:
    """``args`` started in a session of its own (output to ``log``); every process of that session killed after."""
    with open(log, "w") as out:
        proc = subprocess.Popen(args, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield proc
    finally:
        deadline = time.time() + 30
        while (pids := session_processes(proc.pid)) and time.time() < deadline:
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.2)
        proc.wait(timeout=10)
        assert not session_processes(proc.pid), f"processes of {args[:3]} left running"


# --------------------------------------------------------------------------- a Ray cluster of two nodes

#: Each node on an address of its own on the loopback interface, as two machines would be. Not 127.0.0.1: Ray
#: replaces that by the machine's routable address (ray._private.services.resolve_ip_for_localhost).
HEAD_IP, WORKER_IP = "127.0.0.2", "127.0.0.3"
OBJECT_STORE_BYTES = 80 * 1024 * 1024  # Ray's default is 30% of the memory; the jobs pass nothing through it


@dataclass(frozen=True)
class RayCluster:
    address: str  # the head's GCS, host:port: ray.init(address=...) / hydra.launcher.ray.init.address
    nodes: dict[str, str]  # node IP -> Ray node id
    cpus: dict[str, int]  # node IP -> CPUs it offers


@contextmanager
def ray_cluster(folder: Path, env: dict[str, str], head_cpus: int = 1, worker_cpus: int = 2) -> Iterator[RayCluster]:
    """A head and a second node (a second raylet, as a second machine would run), both alive; ``env`` is the environment
    of their processes, hence of the jobs' Ray workers (e.g. RUNNER_DATA_DIR). Logs in ``folder``; Ray's own files in a
    short temporary directory (its socket paths must stay under 108 characters)."""
    port = free_port()
    address = f"{HEAD_IP}:{port}"
    env = {**env, "RAY_USAGE_STATS_ENABLED": "0"}
    common = ["--block", "--object-store-memory", str(OBJECT_STORE_BYTES), "--disable-usage-stats", "--log-style", "record"]
    with tempfile.TemporaryDirectory(prefix="rt-", dir="/tmp") as temp, ExitStack() as stack:
        head = [*ray_start(), "--head", "--port", str(port), "--node-ip-address", HEAD_IP, "--num-cpus", str(head_cpus)]
        head += ["--include-dashboard=false", "--ray-client-server-port", str(free_port()), "--temp-dir", f"{temp}/h", *common]
        stack.enter_context(own_session(head, folder / "ray-head.log", env, folder))
        # started at once: `ray start --address` waits for the head's GCS
        worker = [*ray_start(), "--address", address, "--node-ip-address", WORKER_IP, "--num-cpus", str(worker_cpus)]
        worker += ["--temp-dir", f"{temp}/w", *common]
        stack.enter_context(own_session(worker, folder / "ray-worker.log", env, folder))
        nodes = alive_nodes(address, 2, env, timeout=90)
        yield RayCluster(address, nodes, {HEAD_IP: head_cpus, WORKER_IP: worker_cpus})


def ray_start() -> list[str]:
    """``ray start`` with this Python."""
    return [sys.executable, "-m", "ray.scripts.scripts", "start"]


#: Connects as a driver, waits for ``n`` alive nodes, prints {ip: node id}. In a process of its own: the tests'
#: process never imports Ray.
NODES = """
import json, sys, time, ray
ray.init(address=sys.argv[1], logging_level="ERROR", log_to_driver=False)
deadline = time.time() + float(sys.argv[3])
while len(alive := [n for n in ray.nodes() if n["Alive"]]) < int(sys.argv[2]) and time.time() < deadline:
    time.sleep(0.2)
print(json.dumps({n["NodeManagerAddress"]: n["NodeID"] for n in alive}))
"""


def alive_nodes(address: str, n: int, env: dict, timeout: float) -> dict[str, str]:
    out = subprocess.run(
        [sys.executable, "-c", NODES, address, str(n), str(timeout)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout + 30,
    )
    nodes = json.loads(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 and out.stdout.strip() else {}
    if len(nodes) < n:
        raise RuntimeError(f"the Ray cluster at {address} has {len(nodes)} of {n} nodes alive: {out.stderr[-2000:]}")
    return nodes
