"""Shared fixtures: the data in ../shared, a mini CIFAR-10, run folders, an isolated cache/runs
folder, a live app and a browser.

The whole session runs offline-style: a short download timeout, caches, runs, the data root and
Keras's home (``KERAS_HOME``) in temp folders (never the user's), and the local CIFAR-10 copy
named through ``EFFNET_LAB_CIFAR10_DIR``.

Markers: ``slow`` (real training, subprocesses, the live app, or anything over about a second;
deselect with ``-m "not slow"`` for a quick inner loop of well under a minute) and ``browser``
(real Chromium; every test under ``tests/browser`` gets both).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from tests.mini_cifar import make_mini_cifar

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "datasets"
CHROMIUM = os.environ.get("EFFNET_LAB_CHROMIUM", "/usr/bin/chromium")

# Keras reads KERAS_HOME once, when it is first imported: its keras.json (backend, floatx) and
# models/, where core.models.weights looks for official ImageNet weights. A developer's own
# ~/.keras would change what the tests see (a cached B0 file turns "auto" weights into official
# weights instead of the offline Lite0 fallback), so the session gets an empty one, set here at
# import time, before any test module (or the subprocesses they start) imports Keras. The Lite0
# conversion the tests share lives in the session's EFFNET_LAB_CACHE (see ``_isolated_env``).
if "keras" in sys.modules:
    raise pytest.UsageError("keras was imported before tests/conftest.py could set KERAS_HOME")
_OUTER_KERAS_HOME = os.environ.get("KERAS_HOME")
KERAS_HOME = tempfile.mkdtemp(prefix="effnet-lab-keras-home-")
os.environ["KERAS_HOME"] = KERAS_HOME


def pytest_unconfigure(config):
    """Remove the session's Keras home and give back the caller's KERAS_HOME."""
    shutil.rmtree(KERAS_HOME, ignore_errors=True)
    if _OUTER_KERAS_HOME is None:
        os.environ.pop("KERAS_HOME", None)
    else:
        os.environ["KERAS_HOME"] = _OUTER_KERAS_HOME


def _require(path: Path, what: str) -> Path:
    """Return ``path`` if it exists; else skip locally, fail in CI (where it must exist)."""
    if path.exists():
        return path
    message = f"{what} not found at {path} (the workplace's ../shared datasets)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def pytest_collection_modifyitems(config, items):
    """Everything under tests/browser drives a real browser against the live app: slow too."""
    for item in items:
        if "browser" in item.path.parts:
            item.add_marker(pytest.mark.browser)
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session", autouse=True)
def _isolated_env(tmp_path_factory):
    """Point caches and runs at temp folders and make failed downloads fail fast."""
    base = tmp_path_factory.mktemp("effnet-lab")
    env = {
        "EFFNET_LAB_CACHE": os.environ.get("EFFNET_LAB_TEST_CACHE", str(base / "cache")),
        "EFFNET_LAB_RUNS": str(base / "runs"),
        "EFFNET_LAB_DATA": str(base / "data"),
        "EFFNET_LAB_DOWNLOAD_TIMEOUT": "2",
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    if (SHARED / "cifar10").exists():
        env["EFFNET_LAB_CIFAR10_DIR"] = str(SHARED / "cifar10")
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield env
    for key, value in old.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    return _require(SHARED, "shared datasets folder")


@pytest.fixture(scope="session")
def cifar10_dir() -> Path:
    return _require(SHARED / "cifar10", "CIFAR-10 image folder")


@pytest.fixture(scope="session")
def imagenet_samples_dir() -> Path:
    return _require(SHARED / "imagenet-samples", "ImageNet sample photos")


@pytest.fixture(scope="session")
def lite0_imagenet_classifier():
    """The ImageNet classifier on the offline Lite0 weights, built once for the session: a
    224-px model takes seconds to build and load, and the inference and Grad-CAM tests only
    read it."""
    from core.serving.inference import load_classifier

    return load_classifier("imagenet", "lite0")


@pytest.fixture(scope="session")
def jax_python() -> str:
    """A Python that runs core with KERAS_BACKEND=jax: ``EFFNET_LAB_JAX_PYTHON`` (e.g. a venv
    made from requirements-jax.txt, without TensorFlow) or this one (requirements-dev.txt
    installs jax[cpu]). Skipped locally without JAX; in CI, where it must exist, a failure."""
    python = os.environ.get("EFFNET_LAB_JAX_PYTHON") or sys.executable
    check = subprocess.run(
        [python, "-c", "import jax, keras"],
        capture_output=True,
        text=True,
        env={**os.environ, "KERAS_BACKEND": "jax"},
        timeout=300,
    )
    if check.returncode != 0:
        message = (
            f"JAX with Keras is not importable by {python} (pip install -r requirements-dev.txt)"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return python


_HIDE_TENSORFLOW = '''
import sys


class HideTensorFlow:
    """Import finder that answers as if TensorFlow were not installed."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "tf_keras"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, HideTensorFlow())
'''


@pytest.fixture
def jax_without_tensorflow(tmp_path) -> dict:
    """Environment for a process tree on JAX where TensorFlow cannot be imported (as on GPU
    images without it): KERAS_BACKEND=jax and a ``sitecustomize`` on PYTHONPATH hiding it."""
    site = tmp_path / "hide-tensorflow"
    site.mkdir()
    (site / "sitecustomize.py").write_text(_HIDE_TENSORFLOW)
    path = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": path}


@pytest.fixture(scope="session")
def mini_cifar(cifar10_dir, tmp_path_factory) -> Path:
    """20 train + 10 test real CIFAR-10 images per class, as symlinks (decoding is instant)."""
    return make_mini_cifar(cifar10_dir, tmp_path_factory.mktemp("mini-cifar10"))


@pytest.fixture(scope="session")
def tiny_cifar(cifar10_dir, tmp_path_factory) -> Path:
    """10 train + 5 test real CIFAR-10 images per class, as symlinks (for CLI runs)."""
    return make_mini_cifar(cifar10_dir, tmp_path_factory.mktemp("tiny-cifar10"), 10, 5)


@pytest.fixture
def unreadable_dir(tmp_path):
    """A directory this process may not read: chmod 000, or (as root, who ignores modes) a
    /proc entry the kernel refuses."""
    locked = tmp_path / "locked"
    (locked / "class").mkdir(parents=True)
    locked.chmod(0)
    try:
        os.listdir(locked)
    except PermissionError:
        yield locked
        locked.chmod(0o755)
        return
    locked.chmod(0o755)
    for candidate in ("/proc/1/cwd", "/proc/1/root", "/proc/1/map_files"):
        try:
            os.listdir(candidate)
        except PermissionError:
            yield Path(candidate)
            return
        except OSError:
            continue
    pytest.skip("running as root and no directory here refuses root: cannot test permission errors")


RUN_CLASSES = ["cat", "dog", "bird"]


def tiny_model(size: int = 8, classes: int = len(RUN_CLASSES)):
    """A small Keras classifier taking 0..255 pixels (for hand-made runs)."""
    import keras

    inputs = keras.Input((size, size, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(classes, activation="softmax")(x)
    return keras.Model(inputs, outputs)


def make_run(
    root: Path,
    name: str,
    *,
    created=None,
    status="done",
    model=None,
    accuracy=0.5,
    owner=None,
    results: dict | None = None,
) -> Path:
    """A hand-made run folder written through core.training.run_writer.RunWriter (no training); ``results``
    adds keys to its results.json (e.g. ``wall_s``, ``latency_ms``)."""
    import json

    from core.training.run_writer import RunWriter

    writer = RunWriter(root / name)
    writer.start({"mode": "frozen", "epochs": 2}, RUN_CLASSES, owner=owner)
    writer.history(
        [
            {"epoch": 1, "loss": 1.5, "accuracy": 0.4, "val_loss": 1.4, "val_accuracy": 0.45},
            {"epoch": 2, "loss": 1.1, "accuracy": 0.6, "val_loss": 1.2, "val_accuracy": 0.5},
        ]
    )
    if created is not None:  # fake the start time so listing order is testable
        status_file = root / name / "status.json"
        data = json.loads(status_file.read_text())
        data["created"] = created
        status_file.write_text(json.dumps(data))
    if model is not None:
        writer.model(model)
    if status != "running":  # six test images, one mistake: cat → dog at 0.9
        from core.training.evaluation import evaluate

        probs = np.array(
            [
                [0.8, 0.1, 0.1],
                [0.05, 0.9, 0.05],
                [0.2, 0.7, 0.1],
                [0.3, 0.6, 0.1],
                [0.025, 0.025, 0.95],
                [0.3, 0.2, 0.5],
            ],
            dtype="float32",
        )
        images = (np.arange(6 * 8 * 8 * 3) % 256).astype(np.uint8).reshape(6, 8, 8, 3)
        scores = evaluate(probs, np.array([0, 0, 1, 1, 2, 2]), images, RUN_CLASSES)
        writer.finish(
            {"status": status, "test_accuracy": accuracy, "epochs": 2, **(results or {})},
            scores["confusion"],
            scores["predictions"],
        )
    return root / name


def texts(elements) -> str:
    """AppTest elements' text as shown (Markdown escapes of user text removed)."""
    return re.sub(r"\\(.)", r"\1", " ".join(str(e.value) for e in elements))


def no_temp_files(folder: Path) -> bool:
    """True when an atomic writer left no temp file behind."""
    return not [p for p in folder.rglob("*") if ".tmp" in p.name]


# ----- a live app and a real browser ------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def live_app(env: dict, log: Path):
    """``streamlit run app.py`` on a free localhost port, its output in ``log``: yields its base
    URL once it answers, and stops it afterwards."""
    port = _free_port()
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
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"streamlit exited early:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as resp:
                if resp.status == 200:
                    break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail(f"streamlit did not start within 60 s:\n{log.read_text()}")
    try:
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="session")
def app_url(_isolated_env, tmp_path_factory):
    """One live app for the session's browser tests; yields its base URL."""
    log = tmp_path_factory.mktemp("streamlit") / "server.log"
    with live_app({**os.environ, **_isolated_env}, log) as url:
        yield url


@pytest.fixture(scope="session")
def browser():
    """Headless Debian chromium driven by Playwright (never Playwright's own download)."""
    if not Path(CHROMIUM).exists():
        message = f"chromium not found at {CHROMIUM} (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
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
        yield browser
        browser.close()


@pytest.fixture()
def page(browser):
    """A fresh page (own context) per test, with a generous default timeout for a 2-core CPU."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(60_000)
    yield page
    context.close()
