"""Benchmark: job start latency and a queue of quick demos, the local executor against Ray.

Usage: python benchmarks/ray_jobs.py [--quick] [--jobs 8] [--starts 3] [--no-local] [--no-ray]

Two measurements, each with the local executor (worker processes beside this script, one trainer
slot) and then with Ray (``EFFNET_LAB_EXECUTOR=ray``, ``RAY_ADDRESS`` of a two-node cluster on
loopback started by ``tests/ray_cluster.py``: ``LocalRayCluster(workers=2, cpus=1)``):

(a) **start latency**: ``--starts`` real "measure" jobs (time a tiny network's forward pass), one
    after another; for each, from :func:`core.jobs.runner.submit` to its worker running
    (``worker.json`` last written, by the worker itself once its Python runs) and to its first
    progress event (``events.jsonl``, after its imports);
(b) **a queue of quick demos**: ``--jobs`` small real training runs (the quick-demo preset on a
    few CIFAR-10 images per class, symlinked from the local copy), submitted at once by three
    owners in blocks (the first owner's jobs first), so the fair turns show in the start order.
    Prints each job's owner, wait and run time in start order, the total, the per-job time (mean
    run), the per-job overhead ((slots × total − Σ run) / jobs: slot time spent on anything but
    running: starting workers, imports, handing the slot on), and the extrapolation
    "with N GPU nodes: total ≈ ceil(jobs/N) × (per-job time + overhead)".

Times come from the job folders (``spec.json``'s submit time, the events' own timestamps), read
through :class:`core.jobs.runner.Job`. Everything runs in a temporary store (runs and data roots,
removed at the end; the cache too unless ``--cache``); jobs still running when the script ends are
killed, and the Ray cluster's processes are ended by PID. A first quick demo warms the cache
(converted weights, decoded images) and is reported apart. When this version of ``core`` has no
Ray executor yet, the Ray half says so in one line and is skipped. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))  # ray_cluster.LocalRayCluster

from mini_cifar import make_mini_cifar as mini_cifar  # noqa: E402

from core.jobs import runner  # noqa: E402
from core.platform import paths  # noqa: E402
from core.training import preset_config  # noqa: E402

OWNERS = ("ana", "ben", "cy")
MEASURE_ARGS = {"width": 1.0, "depth": 1.0, "resolution": 32, "batch_sizes": [1]}
JOB_TIMEOUT_S = 1800


# ----- the data and the jobs ----------------------------------------------------------------------
def demo_config(data: Path, quick: bool) -> dict:
    """The quick-demo preset, shrunk to a few images per class (``--quick``: smaller still)."""
    config = preset_config(
        "quick",
        data=str(data),
        subset=None,
        test_subset=None,
        resolution=32 if quick else 96,
        epochs=2 if quick else 5,
    )
    config.validate()
    return config.to_dict()


def events(job: runner.Job) -> list[dict]:
    """Every complete progress event of ``job`` so far (JSON lines in ``events.jsonl``, each with
    its time ``t``), in order."""
    try:
        data = (job.dir / "events.jsonl").read_bytes()
    except FileNotFoundError:
        return []
    found = []
    for line in data.split(b"\n")[:-1]:  # the last piece is empty or still being written
        try:
            found.append(json.loads(line))
        except ValueError:
            continue
    return found


def submitted_at(job: runner.Job) -> float:
    """When ``job`` was submitted (its ``spec.json``)."""
    return float(json.loads((job.dir / "spec.json").read_text(encoding="utf-8"))["submitted"])


def timing(job: runner.Job) -> dict:
    """When ``job`` was submitted, began running (its first event that is not "queued") and
    ended (its final event), from its folder."""
    seen = events(job)
    begun = [e["t"] for e in seen if e.get("e") not in ("queued", "finish")]
    ended = [e["t"] for e in seen if e.get("e") == "finish"]
    submitted = submitted_at(job)
    start = begun[0] if begun else (ended[0] if ended else math.nan)
    end = ended[-1] if ended else math.nan
    return {"submitted": submitted, "start": start, "end": end, "run": end - start}


def submit(kind: str, args: dict, owner: str, root: Path, env: dict) -> runner.Job:
    return runner.submit(
        kind, {**args, "runs_root": str(root)}, owner=owner, runs_root=root, env=env
    )


def finish(jobs: list[runner.Job]) -> list[str]:
    """Wait for every job (bounded); kill what is left. Returns the outcome of each."""
    deadline = time.monotonic() + JOB_TIMEOUT_S
    outcomes = []
    for job in jobs:
        snap = job.wait(timeout=max(1.0, deadline - time.monotonic()))
        if snap.active:
            job.kill()
            outcomes.append("killed (timeout)")
        else:
            outcomes.append(snap.status.value + (f": {snap.error}" if snap.error else ""))
    return outcomes


# ----- (a) start latency --------------------------------------------------------------------------
def start_latency(label: str, starts: int, root: Path, env: dict) -> dict:
    """``starts`` measure jobs in a row; for each, submit → worker running and submit → first
    progress event. "Worker running" is when ``worker.json`` was last written: whoever starts a
    worker records it there first, and the worker itself rewrites it once its Python runs."""
    up, first = [], []
    for i in range(starts):
        t0 = time.time()
        job = submit("measure", MEASURE_ARGS, "bench", root, env)
        (outcome,) = finish([job])
        seen = [e for e in events(job) if e.get("e") != "queued"]
        try:
            up.append((job.dir / "worker.json").stat().st_mtime - t0)
        except FileNotFoundError:
            up.append(math.nan)
        first.append(seen[0]["t"] - t0 if seen else math.nan)
        print(
            f"  {label} start {i + 1}: worker running {up[-1]:.2f} s, first event "
            f"{first[-1]:.2f} s ({outcome})",
            flush=True,
        )
    return {"up": statistics.median(up), "first": statistics.median(first)}


# ----- (b) a queue of quick demos -----------------------------------------------------------------
def queue_of_demos(
    label: str, n_jobs: int, slots: int, config: dict, root: Path, env: dict
) -> dict:
    """``n_jobs`` quick demos submitted at once, owners in blocks; prints the start order, each
    job's wait and run, the total, and the per-job time and overhead."""
    owners = [OWNERS[min(i * len(OWNERS) // n_jobs, len(OWNERS) - 1)] for i in range(n_jobs)]
    jobs = []
    try:
        for owner in owners:
            jobs.append(submit("train", {"config": config}, owner, root, env))
    finally:
        outcomes = finish(jobs)
    rows = sorted(
        ({**timing(job), "owner": job.owner, "outcome": out} for job, out in zip(jobs, outcomes)),
        key=lambda r: r["start"],
    )
    t0 = min(r["submitted"] for r in rows)
    total = max(r["end"] for r in rows) - t0
    runs = [r["run"] for r in rows]
    per_job = statistics.fmean(runs)
    overhead = (slots * total - sum(runs)) / n_jobs
    print(f"  {label}: {n_jobs} quick demos on {slots} slot(s)")
    print(f"    submit order: {' '.join(owners)}")
    print(f"    start order:  {' '.join(r['owner'] for r in rows)}")
    print("    job  owner  start   wait    run  outcome   (seconds; wait: submit → first event)")
    for i, r in enumerate(rows, 1):
        print(
            f"    {i:3d}  {r['owner']:5s} {r['start'] - t0:6.1f} {r['start'] - r['submitted']:6.1f} "
            f"{r['run']:6.1f}  {r['outcome']}"
        )
    print(
        f"    total {total:.1f} s · per-job time {per_job:.1f} s (mean run) · per-job overhead "
        f"{overhead:.1f} s ((slots × total − Σ run) / jobs)",
        flush=True,
    )
    return {"total": total, "per_job": per_job, "overhead": overhead, "slots": slots}


def extrapolate(label: str, n_jobs: int, figures: dict) -> None:
    """The total for N GPU nodes from the measured per-job time and overhead."""
    p, o = figures["per_job"], figures["overhead"]
    for n in [n for n in (1, 2, 4, 8) if n < n_jobs] + [n_jobs]:
        waves = math.ceil(n_jobs / n)
        print(
            f"  {label}: with {n} GPU node(s): total ≈ ceil({n_jobs}/{n}) × ({p:.1f} s + "
            f"{o:.1f} s overhead) = {waves * (p + o):.1f} s"
        )
    print(
        "  (per-job time as measured on these nodes; a GPU node trains each job faster, the "
        "overhead stays)"
    )


# ----- the two halves -----------------------------------------------------------------------------
def ray_missing() -> str | None:
    """None when this core has a Ray executor and Ray is importable; else the one line why not."""
    try:
        import ray  # noqa: F401
    except ImportError:
        return "Ray half skipped: ray is not installed (pip install 'ray[default]')."
    if not any(
        "EFFNET_LAB_EXECUTOR" in path.read_text(encoding="utf-8", errors="replace")
        for path in (REPO / "core").rglob("*.py")
    ):
        return (
            "Ray half skipped: EFFNET_LAB_EXECUTOR=ray is not supported by this version of core "
            "yet (nothing in core/ reads EFFNET_LAB_EXECUTOR)."
        )
    return None


def half(label: str, args, slots: int, config: dict, store: Path, env: dict) -> None:
    root = store / f"runs-{label}"
    root.mkdir()
    print(f"\n== {label} ==", flush=True)
    warm = submit("train", {"config": config}, "warmup", root, env)
    (outcome,) = finish([warm])
    print(f"  warm-up quick demo (cache, imports): {timing(warm)['run']:.1f} s ({outcome})")
    print("(a) start latency, submit → worker running / first progress event")
    lat = start_latency(label, args.starts, root, env)
    print(f"  {label}: median worker running {lat['up']:.2f} s, first event {lat['first']:.2f} s")
    print("(b) a queue of quick demos")
    figures = queue_of_demos(label, args.jobs, slots, config, root, env)
    extrapolate(label, args.jobs, figures)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny: fewer images, 32 px, 2 epochs")
    parser.add_argument("--jobs", type=int, default=8, help="quick demos in the queue (8)")
    parser.add_argument("--starts", type=int, default=3, help="measure jobs timed for latency (3)")
    parser.add_argument("--cache", help="a cache folder to use (default: a temporary one)")
    parser.add_argument("--no-local", action="store_true", help="skip the local executor")
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray executor")
    args = parser.parse_args()
    cifar = paths.cifar10_dir()
    if cifar is None or not cifar.is_dir():
        raise SystemExit("needs the local CIFAR-10 copy: set EFFNET_LAB_CIFAR10_DIR")
    if args.jobs < 1 or args.starts < 1:
        raise SystemExit("--jobs and --starts must be at least 1")

    store = Path(tempfile.mkdtemp(prefix="effnet-lab-ray-jobs-"))
    cache = Path(args.cache) if args.cache else store / "cache"
    # The submitting process reads the caps: room for the whole queue; workers inherit the rest.
    os.environ.update(
        {
            "EFFNET_LAB_RUNS": str(store / "runs"),
            "EFFNET_LAB_DATA": str(store / "data"),
            "EFFNET_LAB_CACHE": str(cache),
            "EFFNET_LAB_CIFAR10_DIR": str(cifar),
            "EFFNET_LAB_MAX_JOBS_PER_OWNER": str(args.jobs + 1),
            "EFFNET_LAB_MAX_QUEUE": str(args.jobs + 1),
            "TF_CPP_MIN_LOG_LEVEL": "2",
        }
    )
    env = {"EFFNET_LAB_CACHE": str(cache), "TF_CPP_MIN_LOG_LEVEL": "2"}
    n_train, n_test = (10, 4) if args.quick else (30, 10)
    data = mini_cifar(cifar, store / "mini-cifar10", n_train, n_test)
    config = demo_config(data, args.quick)
    print(
        f"quick demo: {config['backbone']} {config['mode']} at {config['resolution']} px, "
        f"{config['epochs']} epochs, {n_train} train + {n_test} test images per class; "
        f"store {store}"
    )
    try:
        if not args.no_local:
            os.environ.pop("EFFNET_LAB_EXECUTOR", None)
            half("local", args, 1, config, store, env)
        if not args.no_ray:
            missing = ray_missing()
            if missing:
                print(f"\n{missing}")
            else:
                from ray_cluster import LocalRayCluster

                with LocalRayCluster(workers=2, cpus=1) as cluster:
                    os.environ.update(
                        {"EFFNET_LAB_EXECUTOR": "ray", "RAY_ADDRESS": cluster.address}
                    )
                    ray_env = {**env, "EFFNET_LAB_EXECUTOR": "ray", "RAY_ADDRESS": cluster.address}
                    half("ray", args, len(cluster.worker_ips), config, store, ray_env)
    finally:
        shutil.rmtree(store, ignore_errors=True)


if __name__ == "__main__":
    main()
