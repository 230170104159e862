"""The Ray executor: a dispatched job's worker as a detached Ray actor on the cluster.

Only *how and where* a dispatched job's worker starts changes (:mod:`core.jobs.queue` keeps the
queue, turns, caps and cancel exactly as with local workers). :func:`launch` creates a named,
detached actor (namespace ``effnet-lab``, name ``job-<id>``): detached, so it outlives the app
replica that dispatched it (any replica, or the next worker, can look it up by name). It asks
for one GPU for a "trainer" job when the cluster has GPUs, else one CPU, spread over the nodes,
so a head started with no CPUs never runs jobs.

The actor runs the same worker as the local executor, ``python -m core job DIR`` (with
``--executor ray --node IP``), as its child process, with the project on ``PYTHONPATH`` and as
its working directory; the project and the runs folder must be at the same paths on every node
(one shared store). A child process rather than the job in the actor itself, because each job
then gets a fresh process whose memory (TensorFlow's, the GPU's) is returned when it exits, the
worker's signal handling and priority work as they do locally, and its PID identifies it on its
machine. While the child runs, the actor refreshes the job folder's heartbeat (so the job counts
as alive from other hosts even before the child writes its own identity) and turns a ``kill``
request in the job folder into SIGKILL of its child (a ``stop`` request the worker reads itself).

Ray is imported only here and only in Ray mode; the actor's class is defined inside a function
so Ray ships it by value and a node needs nothing of ``core`` importable to start it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from core.platform import cluster
from core.platform.errors import first_line
from core.platform.reachability import tcp_unreachable_reason

NAMESPACE = "effnet-lab"
_WIDTH_TTL_S = 5.0  # the node count is asked of the cluster at most this often per process
_width_cache: list = [0.0, 1]
# Settings that travel with a job to its node (unless the node's own environment sets them).
_FORWARD_PREFIXES = (
    "EFFNET_LAB_",
    "KERAS_BACKEND",
    "KERAS_HOME",
    "TF_CPP_MIN_LOG_LEVEL",
    "XLA_FLAGS",
)


def forwarded_env() -> dict:
    """This process's settings that a job's worker on another node needs (read at submit)."""
    return {k: v for k, v in os.environ.items() if k.startswith(_FORWARD_PREFIXES)}


def connect() -> None:
    """Join the cluster :func:`core.platform.cluster.ray_address` names (once per process).

    An address that does not accept a connection within
    :func:`core.platform.cluster.ray_connect_s` seconds is refused before ``ray.init`` (which
    would retry for minutes).

    Raises:
        core.platform.cluster.ExecutorError: The cluster cannot be reached or joined (one line).
    """
    try:
        import ray
    except ImportError:
        raise cluster.ExecutorError(
            "EFFNET_LAB_EXECUTOR=ray needs Ray: pip install -r requirements-ray.txt"
        ) from None
    if ray.is_initialized():
        return
    address, timeout = cluster.ray_address(), cluster.ray_connect_s()
    if address != "auto":
        host, _, port = address.split("://", 1)[-1].rpartition(":")
        if not host or not port.isdigit():
            raise cluster.ExecutorError(f"RAY_ADDRESS must be HOST:PORT or auto, got {address!r}")
        reason = tcp_unreachable_reason(host, int(port), timeout)
        if reason is not None:
            raise cluster.ExecutorError(
                f"cannot reach the Ray cluster at {address} ({reason}): start it, or set "
                "RAY_ADDRESS to its head's address (or EFFNET_LAB_EXECUTOR=local)"
            )
    try:
        ray.init(
            address=address,
            namespace=NAMESPACE,
            log_to_driver=False,
            logging_level="ERROR",
        )
    except Exception as exc:  # ConnectionError, RuntimeError, ...: one line, whatever Ray raised
        first = first_line(exc)
        raise cluster.ExecutorError(f"cannot join the Ray cluster at {address}: {first}") from None


def _worker_nodes() -> list[dict]:
    import ray

    return [
        n
        for n in ray.nodes()
        if n.get("Alive")
        and (n.get("Resources", {}).get("CPU", 0) > 0 or n.get("Resources", {}).get("GPU", 0) > 0)
    ]


def width() -> int:
    """Jobs one slot may run at once: ``EFFNET_LAB_RAY_SLOTS``, else the alive nodes with CPUs
    or GPUs (at least 1, so a queue waits rather than stalls while a node restarts)."""
    fixed = cluster.ray_slots()
    if fixed is not None:
        return fixed
    now = time.monotonic()
    if now - _width_cache[0] > _WIDTH_TTL_S:
        connect()
        _width_cache[:] = [now, max(1, len(_worker_nodes()))]
    return _width_cache[1]


def _resources(slot: str) -> dict:
    import ray

    if slot == "trainer" and ray.cluster_resources().get("GPU", 0) >= 1:
        return {"num_gpus": 1, "num_cpus": 0}
    return {"num_cpus": 1}


def _actor_class():
    """The job actor's class, defined here so that Ray pickles it by value (stdlib only).

    The job starts in the actor's *constructor*, not in a method called afterwards: a detached
    actor's creation belongs to the cluster (GCS), but a method call belongs to the process that
    made it and is lost when that process exits first. The process that dispatches the next job
    is often the finishing worker itself, which exits at once, and whose own actor holds the
    node's CPU until then, so the new actor cannot even start before it has gone. When its
    child ends, the actor kills itself, which frees its resources.
    """

    class JobActor:
        def __init__(self, job_dir: str, root: str, env: dict, beat_s: float, deadline: float):
            import threading

            threading.Thread(
                target=self._run, args=(job_dir, root, env, beat_s, deadline), daemon=True
            ).start()

        @staticmethod
        def _run(job_dir: str, root: str, env: dict, beat_s: float, deadline: float) -> None:
            import subprocess
            import sys

            import ray

            try:
                job = Path(job_dir)
                if time.time() > deadline:  # its dispatch already counts as failed: never run late
                    return
                try:  # a restart after its node died finds the mark of its first start
                    (job / "actor-started").touch(exist_ok=False)
                except FileExistsError:
                    return
                node = ray.util.get_node_ip_address()
                child_env = {
                    **env.get("forward", {}),
                    **os.environ,  # the node's own settings win (e.g. CUDA_VISIBLE_DEVICES)
                    **env.get("spec", {}),
                    "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]).strip(
                        os.pathsep
                    ),
                    "PYTHONUNBUFFERED": "1",
                    "EFFNET_LAB_EXECUTOR": "ray",  # the worker hands its slot on through Ray too
                    "RAY_ADDRESS": ray.get_runtime_context().gcs_address,
                }
                with open(job / "worker.log", "ab") as log:
                    child = subprocess.Popen(
                        [sys.executable, "-m", "core", "job", job_dir, "--executor", "ray"]
                        + ["--node", node],
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        env=child_env,
                        cwd=root,
                    )
                last = 0.0
                while child.poll() is None:
                    if time.monotonic() - last >= beat_s:
                        try:
                            (job / "heartbeat").write_text(f"{time.time():.3f}\n")
                        except OSError:
                            pass
                        last = time.monotonic()
                    try:
                        if (job / "stop").read_text().strip() == "kill":
                            child.kill()
                    except OSError:
                        pass
                    time.sleep(min(beat_s, 0.5))
            finally:  # free the actor's resources; nobody waits for a result
                try:
                    ray.kill(ray.get_runtime_context().current_actor, no_restart=True)
                finally:
                    os._exit(0)

    return JobActor


def launch(job_dir: Path, slot: str, spec: dict, root: Path, deadline: float) -> None:
    """Start the worker of the job in ``job_dir`` as a detached actor (returns at once)."""
    connect()
    import ray

    actor = ray.remote(_actor_class()).options(
        name=f"job-{job_dir.name}",
        namespace=NAMESPACE,
        lifetime="detached",
        scheduling_strategy="SPREAD",
        # One restart: an actor placed on a node that died before it started (a node is seen dead
        # only after Ray's health checks) is created again elsewhere; one that had started its
        # job returns at once when restarted (its actor-started mark exists): no job runs twice.
        max_restarts=1,
        **_resources(slot),
    )
    env = {"forward": spec.get("ray_env", {}), "spec": spec.get("env", {})}
    actor.remote(str(job_dir), str(root), env, cluster.heartbeat_s(), deadline)
    # The actor's registration reaches the cluster asynchronously; the finishing worker that
    # dispatches the next job exits right after this call, which would lose it. Return only once
    # the cluster knows the actor by name (from then on its creation no longer needs us).
    until = time.monotonic() + 30
    while True:
        try:
            ray.get_actor(f"job-{job_dir.name}", namespace=NAMESPACE)
            return
        except ValueError:
            if time.monotonic() > until:
                raise
            time.sleep(0.05)
