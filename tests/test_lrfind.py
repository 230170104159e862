"""The learning-rate finder (core/training/lrfind.py): its suggestion rules, a real sweep on cached
features, the ``lr-find`` command, and the Train page's finder with its one-click apply."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core.training import TrainConfig
from core.training.lrfind import find_lr, lr_schedule, suggest

REPO = Path(__file__).resolve().parents[1]


def test_schedule_rises_exponentially():
    lrs = lr_schedule(7, 1e-6, 1.0)
    assert lrs[0] == pytest.approx(1e-6) and lrs[-1] == pytest.approx(1.0)
    np.testing.assert_allclose(lrs[1:] / lrs[:-1], 10.0)


def test_suggestion_on_a_textbook_curve():
    """Flat, then falling fastest around 1e-3, a minimum near 1e-2, then blowing up."""
    lrs = lr_schedule(100, 1e-6, 1.0)
    x = np.log10(lrs)
    losses = 2.3 - 1.5 / (1 + np.exp(-(x + 3) * 3)) + np.where(x > -2, (x + 2) ** 2 * 8, 0)
    out = suggest(lrs, losses)
    assert 3e-4 < out["steepest"] < 5e-3
    assert 1e-4 < out["min_over_10"] < 3e-3
    assert out["suggested"] == min(out["steepest"], out["min_over_10"])
    assert suggest(lrs[:3], losses[:3]) == {
        "steepest": None,
        "min_over_10": None,
        "suggested": None,
    }


@pytest.mark.slow
def test_sweep_on_cached_head_features(mini_cifar):
    config = TrainConfig(
        data=str(mini_cifar), backbone="lite0", weights="lite0", batch_size=16, cache_features=False
    )
    out = find_lr(config, steps=30, start=1e-5, end=10.0)
    assert out["images"] == 180  # 30 steps × 16 would be 480: the whole training split
    assert len(out["lrs"]) == len(out["losses"]) == len(out["smoothed"]) <= 30
    assert out["lrs"][0] == pytest.approx(1e-5)
    assert all(a < b for a, b in zip(out["lrs"], out["lrs"][1:]))
    assert out["suggested"] and 1e-5 <= out["suggested"] <= 10
    assert out["weights"].startswith("lite0") and not out["stopped"]
    assert out["trains_on"] == "cached pooled features"


@pytest.mark.slow
def test_lr_find_command(tiny_cifar, tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "core",
            "lr-find",
            "--data",
            str(tiny_cifar),
            "--backbone",
            "lite0",
            "--weights",
            "lite0",
            "--mode",
            "finetune",
            "--finetune-blocks",
            "1",
            "--no-augment",
            "--batch-size",
            "8",
            "--steps",
            "20",
        ],
        cwd=REPO,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    *table, summary, line = result.stdout.splitlines()
    out = json.loads(line)
    assert len(out["lrs"]) <= 20 and out["images"] == 90
    assert summary.startswith("suggested learning rate:")
    assert table and table[0].startswith("  lr")
    assert out["trains_on"] == "cached feature maps"  # the top blocks, on maps extracted once
    bad = subprocess.run(
        [sys.executable, "-m", "core", "lr-find", "--steps", "2"],
        cwd=REPO,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "--steps" in bad.stderr


@pytest.mark.slow
def test_train_page_finder_applies_its_suggestion(tmp_path, monkeypatch, mini_cifar):
    from app_session import open_page

    from core.jobs import runner as jobs
    from core.platform.progress import JobStatus

    monkeypatch.setenv("EFFNET_LAB_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("EFFNET_LAB_CIFAR10_DIR", str(mini_cifar))
    at = open_page("train").run()
    for field, value in dict(backbone="lite0", weights="lite0", batch_size=16).items():
        (at.selectbox if field != "batch_size" else at.number_input)(
            key=f"train_{field}"
        ).set_value(value)
    at.button(key="train_lr_find").click().run()
    assert not at.exception and not at.error
    snap = jobs.open_job(at.session_state["job_lr_find"]).wait(timeout=600)
    assert snap.status is JobStatus.DONE, snap.error
    at.run()
    assert not at.exception and not at.error
    use = at.button(key="train_lr_use")
    value = float(use.label.rsplit(" ", 1)[-1])
    assert value == pytest.approx(snap.result["suggested"], rel=0.05)
    use.click().run()
    assert at.number_input(key="train_lr").value == value
    assert "Learning rate set to" in " ".join(s.value for s in at.success)
