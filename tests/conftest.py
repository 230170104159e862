"""Shared fixtures: the data in ../shared, an isolated cache/runs folder, a live app and a browser.

The whole session runs offline-style: a short download timeout, caches and runs in temp folders
(never the user's), and the local CIFAR-10 copy named through ``EFFNET_LAB_CIFAR10_DIR``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "datasets"
CHROMIUM = os.environ.get("EFFNET_LAB_CHROMIUM", "/usr/bin/chromium")


def _require(path: Path, what: str) -> Path:
    """Return ``path`` if it exists; else skip locally, fail in CI (where it must exist)."""
    if path.exists():
        return path
    message = f"{what} not found at {path} (the workplace's ../shared datasets)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)




@pytest.fixture(scope="session", autouse=True)
def _isolated_env(tmp_path_factory):
    """Point caches and runs at temp folders and make failed downloads fail fast."""
    base = tmp_path_factory.mktemp("effnet-lab")
    env = {
        "EFFNET_LAB_CACHE": os.environ.get("EFFNET_LAB_TEST_CACHE", str(base / "cache")),
        "EFFNET_LAB_RUNS": str(base / "runs"),
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


# ----- a live app and a real browser ------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def app_url(_isolated_env, tmp_path_factory):
    """Start ``streamlit run app.py`` on a free localhost port; yield its base URL."""
    port = _free_port()
    log = tmp_path_factory.mktemp("streamlit") / "server.log"
    env = {**os.environ, **_isolated_env}
    cmd = [sys.executable, "-m", "streamlit", "run", str(REPO / "app.py"), "--server.port", str(port),
           "--server.address", "127.0.0.1", "--server.headless", "true",
           "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]
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
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


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
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage"],
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
