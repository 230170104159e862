"""A real two-node Ray cluster on loopback, for tests and benchmarks (``ray start``, not ``ray.init``).

The head (``127.0.0.2``) has no CPUs, so every task must land on a worker node (``127.0.0.3``,
``127.0.0.4``, ...): a test that work ran "on the cluster" then proves something. Ray otherwise
turns ``127.0.0.1`` into the machine's interface address, which this workplace does not allow,
hence the other loopback addresses.

Every process belongs to the cluster's own temp dir, so :meth:`LocalRayCluster.stop` (and
:meth:`LocalRayCluster.kill_worker`) end exactly the processes this cluster started, by PID, and
their children first (Ray's agents outlive their raylet), never by name (no ``ray stop``).

Example::

    with LocalRayCluster(workers=1) as cluster:
        os.environ["RAY_ADDRESS"] = cluster.address
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HEAD_IP = "127.0.0.2"


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _ray_cli() -> list[str]:
    """The ``ray`` command of this interpreter (the one whose ``ray`` package the tests import)."""
    exe = Path(sys.executable).with_name("ray")
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "ray.scripts.scripts"]


def _all_pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def _cmdline(pid: int) -> str:
    try:
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except OSError:
        return ""


def _environ_has(pid: int, needle: bytes) -> bool:
    try:
        return needle in Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False


def _children(pid: int) -> list[int]:
    """All descendants of ``pid`` (children first collected, so none escapes to init unseen)."""
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        try:
            kids = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
        except OSError:
            kids = []
        for kid in map(int, kids):
            found.append(kid)
            frontier.append(kid)
    return found


class LocalRayCluster:
    """A head with no CPUs and ``workers`` worker nodes, each with ``cpus`` CPUs, on loopback.

    Attributes:
        address: ``HOST:PORT`` of the head, what ``RAY_ADDRESS`` takes.
        temp_dir: The cluster's own temp dir (logs, sockets); removed on stop.
        worker_ips: The worker nodes' addresses, in start order.
    """

    def __init__(self, workers: int = 1, cpus: int = 2, gpus: int = 0):
        self.workers, self.cpus, self.gpus = workers, cpus, gpus
        self.port = _free_port(HEAD_IP)
        self.address = f"{HEAD_IP}:{self.port}"
        # Short: Ray's unix sockets live under it, and a socket path has a ~107-byte limit.
        self.temp_dir = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))
        self.worker_ips = [f"127.0.0.{3 + i}" for i in range(workers)]
        # Each node's processes carry a marker in their environment, so that we find them (and
        # only them) by PID, children included, whatever Ray named them.
        self._markers = {
            ip: f"EFFNET_LAB_RAY_NODE={self.temp_dir.name}-{ip}"
            for ip in [HEAD_IP, *self.worker_ips]
        }

    # ----- start and stop ---------------------------------------------------------------------
    def _start_node(self, ip: str, args: list[str]) -> None:
        name, value = self._markers[ip].split("=", 1)
        env = {**os.environ, name: value, "RAY_USAGE_STATS_ENABLED": "0"}
        env.pop("RAY_ADDRESS", None)
        subprocess.run(
            [
                *_ray_cli(),
                "start",
                "--node-ip-address",
                ip,
                "--temp-dir",
                str(self.temp_dir),
                *args,
            ],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=180,
        )

    def start(self) -> LocalRayCluster:
        """Start the head, then the worker nodes; returns self once every node has joined."""
        try:
            self._start_node(
                HEAD_IP,
                [
                    "--head",
                    "--port",
                    str(self.port),
                    "--num-cpus",
                    "0",
                    "--num-gpus",
                    "0",
                    "--include-dashboard",
                    "false",
                    "--disable-usage-stats",
                ],
            )
            for ip in self.worker_ips:
                self.add_worker(ip)
        except BaseException:
            self.stop()
            raise
        return self

    def add_worker(self, ip: str) -> None:
        """Start (or restart) the worker node ``ip`` and join it to the head."""
        args = [
            "--address",
            self.address,
            "--num-cpus",
            str(self.cpus),
            "--num-gpus",
            str(self.gpus),
        ]
        self._start_node(ip, args)

    def node_pids(self, ip: str) -> list[int]:
        """The live processes of node ``ip`` (found by their environment marker), with children."""
        marker = self._markers[ip].encode()
        roots = [pid for pid in _all_pids() if pid != os.getpid() and _environ_has(pid, marker)]
        pids = []
        for pid in roots:
            for p in [*_children(pid), pid]:
                if p not in pids:
                    pids.append(p)
        return pids

    def kill_worker(self, ip: str | None = None) -> int:
        """SIGKILL every process of worker node ``ip`` (default: the first): the node "dies".

        Returns:
            How many processes were killed.
        """
        return self._kill(self.node_pids(ip or self.worker_ips[0]))

    @staticmethod
    def _kill(pids: list[int]) -> int:
        n = 0
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                n += 1
            except OSError:
                pass
        return n

    def stop(self) -> None:
        """End every process of the cluster (workers first, by PID) and remove its temp dir."""
        for _ in range(3):  # a dying raylet may still be starting a worker: sweep again
            pids = [p for ip in [*self.worker_ips, HEAD_IP] for p in self.node_pids(ip)]
            if not pids:
                break
            self._kill(pids)
            time.sleep(0.5)
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def __enter__(self) -> LocalRayCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


if __name__ == "__main__":  # a smoke check: python tests/ray_cluster.py
    with LocalRayCluster(workers=1) as c:
        import ray

        ray.init(address=c.address, log_to_driver=False)
        print("nodes:", [(n["NodeManagerAddress"], n["Resources"].get("CPU")) for n in ray.nodes()])

        @ray.remote(num_cpus=1)
        def where():
            return ray.util.get_node_ip_address()

        print("task ran on", ray.get(where.remote()))
        ray.shutdown()
