"""``python -m core scaling``: JSON and text output, exit codes, clear errors."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from core import scaling

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "core", "scaling", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_phi_json_is_one_object_matching_core():
    result = run_cli("--phi", "1.5", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert set(data) == {"width", "depth", "resolution", "params", "flops", "stages"}
    expected = scaling.formula_network(1.5)
    assert data["width"] == pytest.approx(1.1**1.5) and data["depth"] == pytest.approx(1.2**1.5)
    assert (data["resolution"], data["params"], data["flops"]) == (
        expected.resolution, expected.params, expected.flops)
    assert [s["layers"] for s in data["stages"]] == [r.layers for r in expected.stages]


def test_custom_bases_change_the_result():
    default = json.loads(run_cli("--phi", "2", "--json").stdout)
    custom = json.loads(run_cli("--phi", "2", "--alpha", "1.4", "--beta", "1.05",
                                "--gamma", "1.1", "--json").stdout)
    assert custom["depth"] == pytest.approx(1.4**2) and custom["resolution"] == round(224 * 1.1**2)
    assert custom["params"] != default["params"]


def test_variant_json_and_text():
    data = json.loads(run_cli("--variant", "B7", "--json").stdout)
    assert (data["width"], data["depth"], data["resolution"]) == (2.0, 3.1, 600)
    assert data["params"] == scaling.official_network("b7").params
    text = run_cli("--variant", "b0")
    assert text.returncode == 0
    assert "EfficientNet-B0" in text.stdout and "5,330,571" in text.stdout
    assert "MBConv6, k5x5" in text.stdout and "224x224" in text.stdout


@pytest.mark.parametrize("args, message", [
    (["--phi", "-1"], "phi must be from 0 to 10"),
    (["--phi", "100"], "phi must be from 0 to 10, got 100"),
    (["--phi", "1e6"], "phi must be from 0 to 10"),
    (["--phi", "1", "--alpha", "0.9"], "alpha must be from 1 to 2"),
    (["--phi", "1", "--gamma", "inf"], "gamma must be a finite number"),
    (["--variant", "b3", "--beta", "1.2"], "--beta can only be used with --phi"),
    (["--phi", "abc"], "invalid float value"),
    (["--variant", "b9"], "invalid choice"),
    ([], "one of the arguments --phi --variant is required"),
    (["--phi", "1", "--variant", "b1"], "not allowed with"),
])
def test_invalid_values_exit_2_with_a_clear_message(args, message):
    result = run_cli(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
