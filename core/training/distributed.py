"""One model trained by several processes, and so several hosts: data parallel on JAX.

N processes (``--processes N``) each run the project's ordinary training
(:func:`core.training.run.train`) with a :class:`ProcessGroup`: they join one
``jax.distributed`` system (what ``keras.distribution.initialize`` does, see :func:`worker`),
and the head trains under Keras's ``DataParallel`` over the *global* device list, every process
feeding its share of each global batch (:func:`core.training.fit.shard_positions`). JAX's
compiled train step sums the gradients across processes (over gloo on CPUs), so the result is
the model one process trains with the same global batch, to float rounding; nothing here
reduces anything by hand.
Process 0 writes the run like any other run (the run tools load it unchanged).

What is distributed is frozen mode's training: the head on the backbone's cached features. Each
process extracts (or reads from a shared cache) the same features with a process-local model,
so the distributed model is the head that trains; the saved classifier is the whole image →
class network. Fine-tuning (the backbone inside the step) is refused for now: its validation
and feature paths would each need their own multi-process treatment.

Two launchers start the processes:

- ``local``: N subprocesses on this machine, the coordinator on ``EFFNET_LAB_COORDINATOR_HOST``
  (default ``127.0.0.1``) at a free port.
- ``ray``: N Ray actors, one per bundle of a ``SPREAD`` placement group (so on different nodes
  where there are enough), each starting the same subprocess on its node; the coordinator is
  the first actor's node IP. Ray Train's ``JaxTrainer`` is not used: it sets up JAX for TPUs and
  GPUs only, not CPU processes.

Each process is a fresh ``python -m core.training.distributed`` with ``KERAS_BACKEND=jax``
in its environment (Keras reads it once, at import). The JAX coordinator listens on the
coordinator's address only; the gloo collectives listen on the address the host's name resolves
to (loopback here; on several hosts it must be one the others reach).
"""

from __future__ import annotations

import ctypes
import functools
import importlib.util
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from core.platform import paths
from core.platform.errors import UserError
from core.platform.runtime import DevicePlan, backend
from core.training.options import TrainConfig
from core.training.run import train

LAUNCHERS = ("local", "ray")
# The most processes one run may use (a typo like --processes 1000 must not fork a thousand).
MAX_PROCESSES = 64
# Where the local launcher's JAX coordinator listens: loopback, so nothing outside this machine
# can join; set another 127.x address if 127.0.0.1 is busy or not allowed.
COORDINATOR_HOST_ENV = "EFFNET_LAB_COORDINATOR_HOST"
COORDINATOR_HOST_DEFAULT = "127.0.0.1"
# Seconds a launch may take in all before its processes are ended (a lost peer would otherwise
# leave the others waiting in a collective for ever).
TIMEOUT_ENV = "EFFNET_LAB_DISTRIBUTED_TIMEOUT_S"
TIMEOUT_DEFAULT = 6 * 3600.0
# The line a worker process ends with: this prefix, then its result as JSON.
_RESULT_PREFIX = "EFFNET_LAB_RESULT "


class DistributedError(UserError):
    """Multi-process training cannot run as asked (options, backend, launcher)."""


def check(config: TrainConfig, processes: int, launcher: str) -> None:
    """Refuse, in one line, what multi-process training cannot do.

    Raises:
        DistributedError: Bad process count or launcher, a mode other than frozen, a batch
            that does not split over the processes, or a Keras backend other than JAX.
    """
    if not 1 <= processes <= MAX_PROCESSES:
        raise DistributedError(f"--processes must be from 1 to {MAX_PROCESSES}, got {processes}")
    if launcher not in LAUNCHERS:
        raise DistributedError(
            f"--launcher must be one of {', '.join(LAUNCHERS)}, got {launcher!r}"
        )
    if processes == 1:
        return
    if config.mode != "frozen":
        raise DistributedError(
            "training over several processes supports --mode frozen only (the head on cached "
            "features)"
        )
    if config.batch_size % processes:
        raise DistributedError(
            f"the batch size ({config.batch_size}) must be a multiple of --processes ({processes})"
        )
    if launcher == "ray" and not os.environ.get("RAY_ADDRESS"):
        raise DistributedError(
            "--launcher ray needs RAY_ADDRESS: the address (HOST:PORT) of the Ray cluster's head"
        )
    if launcher == "ray" and importlib.util.find_spec("ray") is None:
        raise DistributedError("--launcher ray needs Ray: pip install -r requirements-dev.txt")
    if backend() != "jax":
        raise DistributedError(
            f"training over several processes needs the JAX backend (this is {backend()}): "
            "set KERAS_BACKEND=jax"
        )


@dataclass(frozen=True)
class ProcessGroup:
    """This process's place among the N that train one model (see the module docstring).

    Attributes:
        index: This process's index, 0 to count - 1 (0 writes the run).
        count: How many processes.
        devices: Keras's names of every device of every process, in process order.
    """

    index: int
    count: int
    devices: tuple[str, ...]

    @property
    def device_count(self) -> int:
        return len(self.devices)

    @functools.cached_property
    def distribution(self):
        """Keras's ``DataParallel`` over the global devices; each process feeds its own share
        of every batch, so Keras must not shard a dataset itself."""
        import keras

        dist = keras.distribution.DataParallel(devices=list(self.devices))
        dist.auto_shard_dataset = False
        return dist

    def scope(self):
        """The distribution's scope: models built in it, and ``fit`` run in it, span the group."""
        return self.distribution.scope()

    def local_plan(self) -> DevicePlan:
        """The device plan for this process's own work (features, validation, the saved
        model): its first local device, no distribution."""
        import jax

        from core.platform.runtime import precision

        device = jax.local_devices()[0]
        kind = "gpu" if device.platform == "gpu" else "cpu"
        name = device.device_kind if kind == "gpu" else "CPU"
        return DevicePlan(
            kind, (f"{device.platform}:{device.id}",), (name,), precision(kind == "gpu")
        )

    def describe(self, plan: DevicePlan) -> str:
        """E.g. ``CPU (2 cores, x86_64) × 2 processes (data parallel over 2 devices)``."""
        over = f"data parallel over {self.device_count} devices"
        return f"{plan.describe()} × {self.count} processes ({over})"

    def replicate(self, model):
        """A copy of ``model`` built in the group's scope (its variables span the group), with
        ``model``'s weights."""
        import keras

        with self.scope():
            twin = keras.models.clone_model(model)
        twin.set_weights(model.get_weights())
        return twin


def coordinator_host() -> str:
    """``EFFNET_LAB_COORDINATOR_HOST``: the local launcher's coordinator address (loopback)."""
    return os.environ.get(COORDINATOR_HOST_ENV, "").strip() or COORDINATOR_HOST_DEFAULT


def timeout_s() -> float:
    """``EFFNET_LAB_DISTRIBUTED_TIMEOUT_S``: the most seconds one launch may take."""
    return paths.positive_number(TIMEOUT_ENV, TIMEOUT_DEFAULT, "seconds")


def free_port(host: str) -> int:
    """A TCP port free on ``host`` now (the coordinator binds it moments later)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def train_distributed(
    config: TrainConfig, processes: int, launcher: str = "local", runs_root: Path | None = None
) -> dict:
    """Train ``config`` over ``processes`` processes started by ``launcher``; process 0 saves
    the run (under ``runs_root``, default the runs folder, which must be one every host sees).

    Returns:
        Process 0's :meth:`core.training.run.RunResult.to_dict`, plus ``"processes"``: for each
        process its index, node (host address) and PID.

    Raises:
        DistributedError: What :func:`check` refuses.
        RuntimeError: A process failed (its last lines of output say why).
    """
    config.validate()
    check(config, processes, launcher)
    spec = {
        "config": config.to_dict(),
        "runs_root": str(runs_root) if runs_root is not None else None,
        "count": processes,
    }
    launch = _launch_ray if launcher == "ray" else _launch_local
    results = sorted(launch(spec, processes), key=lambda r: r["index"])
    out = dict(results[0]["result"])
    out["processes"] = [{k: r[k] for k in ("index", "node", "pid")} for r in results]
    return out


def _worker_env() -> dict:
    """The environment of a worker process: JAX as Keras's backend, the project importable."""
    root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["KERAS_BACKEND"] = "jax"  # Keras reads it once, at import: the process must start so
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return env


def _start(spec: dict, index: int, coordinator: str, env: dict, folder: Path):
    """Start worker ``index`` (output to files in ``folder``: pipes could fill and block)."""
    out = open(folder / f"{index}.out", "w+b")  # noqa: SIM115 (closed by _collect)
    cmd = [
        sys.executable,
        "-m",
        "core.training.distributed",
        json.dumps(spec),
        str(index),
        coordinator,
    ]
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen(
        cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=root, preexec_fn=_die_with_parent
    )
    return proc, out


def _die_with_parent() -> None:
    """In a worker, before it runs: on Linux, be killed when the launcher (or the Ray actor
    that started it) dies, so no training process outlives its launch."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL


def _collect(procs: list, deadline: float) -> list[str]:
    """Wait for every worker; if one fails (or time runs out) end the others by PID, since they
    would wait for it in a collective. Returns each one's output."""
    failed = None
    pending = list(procs)
    while pending and failed is None:
        for proc, _ in list(pending):
            if proc.poll() is not None:
                pending.remove((proc, _))
                if proc.returncode != 0:
                    failed = proc
        if time.time() > deadline and failed is None:
            for proc, out in procs:
                proc.kill()
                proc.wait()
                out.close()
            raise RuntimeError(f"the training processes ran past {TIMEOUT_ENV}")
        time.sleep(0.2)
    for proc, _ in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    texts = []
    for _, out in procs:
        out.seek(0)
        texts.append(out.read().decode(errors="replace"))
        out.close()
    if failed is not None:
        i = [p for p, _ in procs].index(failed)
        tail = "\n".join(texts[i].strip().splitlines()[-15:])
        raise RuntimeError(f"training process {i} failed (exit {failed.returncode}):\n{tail}")
    return texts


def _parse(text: str) -> dict:
    for line in reversed(text.splitlines()):
        if line.startswith(_RESULT_PREFIX):
            return json.loads(line[len(_RESULT_PREFIX) :])
    raise RuntimeError("a training process ended without its result line")


def run_processes(spec: dict, indices: list[int], coordinator: str, node: str) -> list[dict]:
    """Run workers ``indices`` of ``spec`` here, as subprocesses, on the host ``node`` names;
    their results (each with ``node``)."""
    env = _worker_env()
    with tempfile.TemporaryDirectory(prefix="effnet-dp-") as tmp:
        procs = [_start(spec, i, coordinator, env, Path(tmp)) for i in indices]
        texts = _collect(procs, time.time() + timeout_s())
    return [{**_parse(t), "node": node} for t in texts]


def _launch_local(spec: dict, processes: int) -> list[dict]:
    host = coordinator_host()
    return run_processes(spec, list(range(processes)), f"{host}:{free_port(host)}", host)


@functools.cache
def _ray_actor_class():
    """The Ray actor that runs one worker on its node (defined lazily: Ray imports only here)."""
    import ray

    @ray.remote(num_cpus=1)
    class DataParallelProcess:
        """One training process on this actor's node."""

        def address(self) -> str:
            """A coordinator address on this node: its IP and a port free there now."""
            ip = ray.util.get_node_ip_address()
            return f"{ip}:{free_port(ip)}"

        def run(self, spec: dict, index: int, coordinator: str) -> dict:
            return run_processes(spec, [index], coordinator, ray.util.get_node_ip_address())[0]

    return DataParallelProcess


def _launch_ray(spec: dict, processes: int) -> list[dict]:
    """One actor per bundle of a SPREAD placement group on the cluster ``RAY_ADDRESS`` names
    (else a local Ray); the coordinator at the first one's node."""
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    started = not ray.is_initialized()
    if started:
        ray.init(address=os.environ.get("RAY_ADDRESS") or None, log_to_driver=False)
    # The settings a worker reads (paths, caches, limits) travel with it to other nodes.
    env = {k: v for k, v in os.environ.items() if k.startswith("EFFNET_LAB_")}
    group = placement_group([{"CPU": 1}] * processes, strategy="SPREAD")
    actors = []
    try:
        ray.get(group.ready(), timeout=timeout_s())
        cls = _ray_actor_class()
        actors = [
            cls.options(
                scheduling_strategy=PlacementGroupSchedulingStrategy(group, i),
                runtime_env={"env_vars": env},
            ).remote()
            for i in range(processes)
        ]
        coordinator = ray.get(actors[0].address.remote())
        refs = [a.run.remote(spec, i, coordinator) for i, a in enumerate(actors)]
        deadline, pending = time.time() + timeout_s(), list(refs)
        while pending:  # the first failure ends the launch (the others would wait for it)
            done, pending = ray.wait(pending, timeout=max(1.0, deadline - time.time()))
            if not done:
                raise RuntimeError(f"the training processes ran past {TIMEOUT_ENV}")
            ray.get(done)
        return ray.get(refs)
    finally:  # killing an actor ends its training process too (see _die_with_parent)
        for actor in actors:
            ray.kill(actor)
        remove_placement_group(group)
        if started:
            ray.shutdown()


def worker(spec: dict, index: int, coordinator: str) -> dict:
    """One process of the group: join it, train with it, return this process's result."""
    import jax
    import keras

    config = TrainConfig.from_dict(spec["config"])
    # CPUs exchange gradients over gloo (jax 0.10's default, set here so it never changes).
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    # What keras.distribution.initialize does, but with the coordinator bound to its own
    # address: Keras passes no bind address, and JAX then listens on every interface ([::]).
    # Keras's other step there (agreeing on a random seed over the processes) is not needed:
    # every process seeds Keras with the run's seed itself.
    keras.utils.set_random_seed(config.seed)
    jax.distributed.initialize(
        coordinator_address=coordinator,
        num_processes=spec["count"],
        process_id=index,
        coordinator_bind_address=coordinator if index == 0 else None,
    )
    group = ProcessGroup(index, spec["count"], tuple(keras.distribution.list_devices()))
    root = spec.get("runs_root")
    result = train(config, runs_root=Path(root) if root else None, group=group)
    return {"index": index, "pid": os.getpid(), "result": result.to_dict()}


def main(argv: list[str]) -> int:
    """``python -m core.training.distributed SPEC INDEX COORDINATOR`` (started by a launcher)."""
    spec, index, coordinator = json.loads(argv[0]), int(argv[1]), argv[2]
    result = worker(spec, index, coordinator)
    print(_RESULT_PREFIX + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
