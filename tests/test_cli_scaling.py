"""``python -m core scaling``: JSON and text output, exit codes, clear errors.

The calculator and the argument errors run ``core.cli.main`` in this process (what ``python -m
core`` calls, without a Python start-up per case); the timing commands run as a real subprocess,
as a user runs them, and are slow.
"""

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from core.cli import main
from core.models import scaling

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def run_cli(capsys):
    """``python -m core scaling ARGS`` in this process: its exit status, stdout and stderr."""

    def run(*args: str) -> SimpleNamespace:
        capsys.readouterr()  # drop anything printed before
        try:
            status = main(["scaling", *args])
        except SystemExit as exc:  # argparse's own errors (exit 2), as __main__'s sys.exit shows
            status = exc.code
        out, err = capsys.readouterr()
        return SimpleNamespace(returncode=status, stdout=out, stderr=err)

    return run


def run_module(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """``python -m core scaling ARGS`` as a real subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "core", "scaling", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_phi_json_is_one_object_matching_core(run_cli):
    result = run_cli("--phi", "1.5", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert set(data) == {"width", "depth", "resolution", "params", "flops", "stages"}
    expected = scaling.formula_network(1.5)
    assert data["width"] == pytest.approx(1.1**1.5) and data["depth"] == pytest.approx(1.2**1.5)
    assert (data["resolution"], data["params"], data["flops"]) == (
        expected.resolution,
        expected.params,
        expected.flops,
    )
    assert [s["layers"] for s in data["stages"]] == [r.layers for r in expected.stages]


def test_custom_bases_change_the_result(run_cli):
    default = json.loads(run_cli("--phi", "2", "--json").stdout)
    custom = json.loads(
        run_cli("--phi", "2", "--alpha", "1.4", "--beta", "1.05", "--gamma", "1.1", "--json").stdout
    )
    assert custom["depth"] == pytest.approx(1.4**2) and custom["resolution"] == round(224 * 1.1**2)
    assert custom["params"] != default["params"]


def test_variant_json_and_text(run_cli):
    data = json.loads(run_cli("--variant", "B7", "--json").stdout)
    assert (data["width"], data["depth"], data["resolution"]) == (2.0, 3.1, 600)
    assert data["params"] == scaling.official_network("b7").params
    assert data["implied_phi"] == pytest.approx(
        {"depth": 6.2055, "width": 7.2725, "resolution": 7.0497}, abs=1e-4
    )
    text = run_cli("--variant", "b0")
    assert text.returncode == 0
    assert "EfficientNet-B0" in text.stdout and "5,330,571" in text.stdout
    assert "MBConv6, k5x5" in text.stdout and "224x224" in text.stdout
    assert "implied phi (formula: 0): depth 0.00, width 0.00, resolution 0.00" in text.stdout


@pytest.mark.parametrize("variant", list(scaling.OFFICIAL))
def test_variant_json_has_implied_phi(variant, run_cli):
    data = json.loads(run_cli("--variant", variant, "--json").stdout)
    assert data["implied_phi"] == scaling.implied_phi(variant).to_dict()


def test_negative_phi_is_a_network_smaller_than_b0(run_cli):
    data = json.loads(run_cli("--phi", "-3", "--json").stdout)
    expected = scaling.formula_network(-3)
    assert data["width"] == pytest.approx(1.1**-3) and data["resolution"] == 147
    assert data["params"] == expected.params < scaling.official_network("b0").params
    assert "implied_phi" not in data  # only released variants imply a φ


@pytest.mark.parametrize(
    "args, message",
    [
        (["--phi", "-3.5"], "phi must be from -3 to 10"),
        (["--phi", "100"], "phi must be from -3 to 10, got 100"),
        (["--phi", "1e6"], "phi must be from -3 to 10"),
        (["--phi", "1", "--alpha", "0.9"], "alpha must be from 1 to 2"),
        (["--phi", "1", "--gamma", "inf"], "gamma must be a finite number"),
        (["--variant", "b3", "--beta", "1.2"], "--beta can only be used with --phi"),
        (["--phi", "abc"], "invalid float value"),
        (["--variant", "b9"], "invalid choice"),
        ([], "one of the arguments --phi --variant is required"),
        (["--phi", "1", "--variant", "b1"], "not allowed with"),
        (["--phi", "1", "sweep"], "--phi and --variant belong to the calculator"),
        (
            ["sweep", "--phis", "-3", "--base-resolution", "32"],
            "21 px; Keras builds EfficientNets from 32 px up",
        ),
        (["sweep", "--phis", "-4"], "phi must be from -3 to 10"),
        (["sweep", "--variants", "b9"], "invalid choice"),
        (["sweep", "--batch-sizes", "0"], "batch sizes must be whole numbers"),
        (["sweep", "--budget-s", "1"], "budget must be from 10"),
        (["sweep", "--alpha", "1.3"], "go with --phis"),
        (["search", "--data", "/no/such/folder"], "does not exist"),
        (["search", "--steps", "1.5", "1.6"], "no candidate satisfies"),
        (["search", "--budget-s", "1"], "budget must be from 30"),
        (["search", "--weights", "x"], "invalid choice"),
    ],
)
def test_invalid_values_exit_2_with_a_clear_message(args, message, run_cli):
    result = run_cli(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


@pytest.mark.slow
def test_sweep_json_times_each_network():
    result = run_module(
        "sweep", "--phis", "-1", "0", "--base-resolution", "48", "--batch-sizes", "1", "--json"
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert set(data) == {
        "device",
        "batch_sizes",
        "budget_s",
        "wall_s",
        "stopped",
        "points",
        "skipped",
    }
    assert [p["label"] for p in data["points"]] == ["φ = -1", "φ = 0"]
    assert data["points"][1]["flops"] == scaling.formula_network(0, base_resolution=48).flops
    assert all(p["ms_per_image"]["1"] > 0 for p in data["points"])
    assert data["device"].startswith(("CPU", "GPU")) and not data["stopped"]
    assert "Timing networks" in result.stderr  # the progress bar goes to stderr


@pytest.mark.slow
def test_sweep_text_names_the_device():
    result = run_module("sweep", "--variants", "b0", "--batch-sizes", "1")
    assert result.returncode == 0, result.stderr
    assert "Forward pass on CPU" in result.stdout or "Forward pass on GPU" in result.stdout
    assert "B0" in result.stdout and "5,330,571" in result.stdout and "ms/img @1" in result.stdout


@pytest.mark.slow
def test_search_json_fields(tiny_cifar):
    result = run_module(
        "search",
        "--data",
        str(tiny_cifar),
        "--budget-s",
        "60",
        "--steps",
        "1.0",
        "1.2",
        "--epochs",
        "1",
        "--subset",
        "40",
        "--test-subset",
        "20",
        "--weights",
        "none",
        "--json",
        timeout=600,
    )  # compiling: ~1 min a candidate
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert {
        "candidates",
        "repeats",
        "best",
        "worst",
        "spread",
        "noise",
        "device",
        "weights",
        "budget_s",
        "wall_s",
        "family",
        "train_images",
        "val_images",
        "test_images",
    } <= set(data)
    assert data["budget_s"] == 60 and data["train_images"] == 40
    assert [c["start"] for c in data["candidates"]] == ["scratch"] * 3  # weights none
    assert all(abs(c["constraint"] - 2) < 0.02 for c in data["candidates"])
    assert data["candidates"][0]["val_accuracy"] is not None
    assert data["candidates"][0]["test_accuracy"] is not None
