"""Load test: N visitors classify at once on the live app while one run trains.

Usage: python benchmarks/load_test.py [--sessions 8] [--rounds 3] [--port PORT]

Starts ``streamlit run app.py`` on localhost (caches, runs and data in a temp folder; the local
CIFAR-10 copy for the run), starts one training run in the trainer (``python -m core train``,
the same runs folder, so the app's trainer is busy), then opens N headless Chromium sessions (one
browser context each) that upload an ImageNet photo on the Classify page and wait for its label,
``--rounds`` times each. Prints p50/p95 time from upload to result, and the server's peak memory
(VmHWM of the Streamlit process; the training worker is a separate process and reported apart).
Traffic goes to 127.0.0.1 only; every loop is bounded. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "datasets"
CHROMIUM = os.environ.get("EFFNET_LAB_CHROMIUM", "/usr/bin/chromium")
WAIT_MS = 120_000  # a slow answer is a figure, not an error (expect's own default is 5 s)
PHOTO = SHARED / "imagenet-samples" / "n01860187_black_swan.JPEG"


def vm_hwm_mb(pid: int) -> float:
    """Peak resident memory of a live process (Linux), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(env: dict, port: int, log: Path) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(REPO / "app.py"),
        "--server.port",
        str(port),
        "--server.address",
        "127.0.0.1",
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        "--server.fileWatcherType",
        "none",
    ]
    with open(log, "wb") as out:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2):
                return proc
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit(f"streamlit did not start; see {log}")


def settings(env: dict) -> dict:
    """The queue, quota and priority settings the server ran with (read as the server reads them)."""
    code = (
        "import json; from core.platform import limits, workspace_settings as w; print(json.dumps({"
        "'max_jobs_per_owner': limits.max_jobs_per_owner(), 'max_queue': limits.max_queue(), "
        "'trainer_nice': limits.trainer_nice(), 'max_wall_s': limits.max_wall_s(), "
        "'workspace_quota_gb': w.workspace_quota_bytes() / 1e9, "
        "'total_quota_gb': w.total_quota_bytes() / 1e9, "
        "'upload_files_per_round': w.upload_files_per_round()}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)


async def visitor(browser, url: str, rounds: int, timings: list, errors: list) -> None:
    from playwright.async_api import expect

    context = await browser.new_context(viewport={"width": 1200, "height": 900})
    page = await context.new_page()
    page.set_default_timeout(300_000)
    try:
        for _ in range(rounds):
            await page.goto(url + "/classify")
            await expect(page.get_by_text("Upload one or more images")).to_be_visible(
                timeout=WAIT_MS
            )
            t0 = time.perf_counter()
            await page.locator("input[type=file]").first.set_input_files(str(PHOTO))
            await expect(page.get_by_text("black swan ·").first).to_be_visible(timeout=WAIT_MS)
            timings.append(time.perf_counter() - t0)
    except Exception as exc:  # a visitor's failure is a figure too
        errors.append(f"{type(exc).__name__}: {exc}"[:200])
    finally:
        await context.close()


async def visitors(url: str, sessions: int, rounds: int) -> tuple[list, list]:
    from playwright.async_api import async_playwright

    timings, errors = [], []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
            ],
        )
        await asyncio.gather(
            *(visitor(browser, url, rounds, timings, errors) for _ in range(sessions))
        )
        await browser.close()
    return timings, errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--port", type=int, default=0, help="default: a free port")
    parser.add_argument(
        "--browser-nice",
        type=int,
        default=19,
        help="niceness of the visitors' browsers (default 19: they stand for other machines)",
    )
    parser.add_argument(
        "--idle", action="store_true", help="no run training (the baseline to compare with)"
    )
    args = parser.parse_args()
    if not 1 <= args.sessions <= 32 or not 1 <= args.rounds <= 20:
        raise SystemExit("--sessions must be 1..32 and --rounds 1..20")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        env = {
            **os.environ,
            "EFFNET_LAB_RUNS": str(tmp / "runs"),
            "EFFNET_LAB_DATA": str(tmp / "data"),
            "EFFNET_LAB_CACHE": os.environ.get("EFFNET_LAB_CACHE", str(tmp / "cache")),
            "EFFNET_LAB_CIFAR10_DIR": str(SHARED / "cifar10"),
            "EFFNET_LAB_DOWNLOAD_TIMEOUT": "1",
            "TF_CPP_MIN_LOG_LEVEL": "2",
        }
        port = args.port or free_port()
        server = start_server(env, port, tmp / "server.log")
        url = f"http://127.0.0.1:{port}"
        trainer = None
        try:
            # Warm the server's model once, so every visitor measures classification, not the
            # one-off model load (which the first visitor of a fresh server pays).
            t0 = time.perf_counter()
            asyncio.run(visitors(url, 1, 1))
            warm = time.perf_counter() - t0
            trainer = (
                None
                if args.idle
                else subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "core",
                        "train",
                        "--preset",
                        "quick",
                        "--subset",
                        "20000",
                        "--epochs",
                        "100",  # the most EFFNET_LAB_MAX_EPOCHS allows by default
                        "--out",
                        str(tmp / "runs" / "busy-trainer"),
                    ],
                    cwd=REPO,
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
            deadline = time.time() + 300
            while trainer and not (tmp / "runs" / "busy-trainer" / "config.json").exists():
                if trainer.poll() is not None or time.time() > deadline:
                    raise SystemExit(
                        f"the training run did not start: {trainer.stderr.read()[-2000:]}"
                    )
                time.sleep(1)
            # The visitors' browsers run on their own machines in real use; here they share the
            # server's two cores, and eight Chromium renderers drawing the page take more CPU than
            # the server's classification itself (py-spy: the server's script threads used ~0.3
            # of a core while eight visitors waited 6 s). So from here on this process, and the
            # browsers it starts, run at --browser-nice: the server and the trainer were started
            # before, at their own priorities. --browser-nice 0 measures browsers and server as
            # equals (the figures of earlier rounds).
            if args.browser_nice:
                os.nice(args.browser_nice)
            started = time.perf_counter()
            timings, errors = asyncio.run(visitors(url, args.sessions, args.rounds))
            wall = time.perf_counter() - started
            still_training = trainer is not None and trainer.poll() is None
            if server.poll() is not None:
                raise SystemExit("the server died: " + (tmp / "server.log").read_text()[-3000:])
            peak = vm_hwm_mb(server.pid)
        finally:
            if trainer is not None and trainer.poll() is None:
                trainer.terminate()
                trainer.wait(timeout=120)
            server.terminate()
            server.wait(timeout=30)
    timings.sort()
    q = (
        statistics.quantiles(timings, n=20, method="inclusive")
        if len(timings) >= 2
        else timings * 19
    )
    result = {
        "sessions": args.sessions,
        "rounds": args.rounds,
        "results": len(timings),
        "errors": errors,
        "p50_s": round(statistics.median(timings), 2) if timings else None,
        "p95_s": round(q[18], 2) if timings else None,
        "max_s": round(max(timings), 2) if timings else None,
        "server_peak_mb": round(peak),
        "first_visit_with_model_load_s": round(warm, 1),
        "wall_s": round(wall, 1),
        "run_trained_throughout": still_training,
        "browser_nice": args.browser_nice,
        "settings": settings(env),
    }
    print(
        f"{args.sessions} sessions × {args.rounds} rounds while a run trains: "
        f"p50 {result['p50_s']} s, p95 {result['p95_s']} s to a result; server peak "
        f"{result['server_peak_mb']} MB; {len(errors)} errors"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
