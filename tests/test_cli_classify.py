"""``python -m core classify`` end to end, as a user runs it (a real subprocess)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "core", *args],
        cwd=REPO,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.slow
def test_classifies_good_files_and_reports_bad_ones(imagenet_samples_dir, tmp_path):
    good = sorted(imagenet_samples_dir.glob("*.JPEG"))[:3]
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(good[0].read_bytes()[:3000])
    huge = tmp_path / "huge.jpg"
    with open(huge, "wb") as f:
        f.truncate(26 * 2**20)
    files = [
        str(good[0]),
        str(empty),
        str(good[1]),
        str(text),
        str(truncated),
        str(huge),
        str(tmp_path / "missing.jpg"),
        str(good[2]),
    ]
    result = run_cli("classify", "--top", "3", *files)
    assert result.returncode == 1, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["file"] for line in lines] == files  # one line per input, in order
    for i in (0, 2, 7):
        assert len(lines[i]["top"]) == 3 and lines[i]["model"] == "imagenet"
        assert {"index", "label", "prob"} <= set(lines[i]["top"][0])
        assert lines[i]["weights"]
    assert lines[0]["top"][0]["label"] == "tench"
    assert "empty" in lines[1]["error"]
    assert "not an image" in lines[3]["error"]
    assert "truncated" in lines[4]["error"]
    assert "limit" in lines[5]["error"]
    assert "cannot read" in lines[6]["error"]
    assert "Traceback" not in result.stderr
    assert "weights" in result.stderr  # says which weights are in use and why


@pytest.mark.slow
def test_all_good_exits_zero_with_lite0(imagenet_samples_dir):
    photo = imagenet_samples_dir / "n07747607_orange.JPEG"
    result = run_cli("classify", "--weights", "lite0", "--top", "1", str(photo))
    assert result.returncode == 0, result.stderr
    line = json.loads(result.stdout)
    assert line["top"][0]["label"] == "orange" and "lite0" in line["weights"]


@pytest.mark.slow
def test_bad_arguments_exit_two(tmp_path):
    for args, message in [
        (["classify", "--top", "0", "x.jpg"], "--top"),
        (["classify", "--weights", "nonsense", "x.jpg"], "unknown weights source"),
        (["classify", "--model", str(tmp_path / "no-such-run"), "x.jpg"], "neither"),
        (["classify"], "FILE"),
    ]:
        result = run_cli(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr
        assert "Traceback" not in result.stderr


_MEASURED = (
    "import sys\nfrom core.cli import main\nstatus = main(sys.argv[1:])\n"
    "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM:')][0]\n"
    "print('VmHWM', hwm.split()[1], file=sys.stderr)\nsys.exit(status)\n"
)


def _peak_rss_mb(args: list[str]) -> tuple[int, str, float]:
    """Run ``python -m core ARGS``; return its exit status, stdout and peak memory (MB).

    The peak is the process's own VmHWM, read at its end: ``ru_maxrss`` would also count the
    pages it shared with this (large) test process between fork and exec.
    """
    proc = subprocess.run(
        [sys.executable, "-c", _MEASURED, *args],
        cwd=REPO,
        text=True,
        capture_output=True,
        timeout=300,
    )
    kb = [line.split()[1] for line in proc.stderr.splitlines() if line.startswith("VmHWM ")]
    assert kb, proc.stderr[-2000:]
    return proc.returncode, proc.stdout, int(kb[0]) / 1024


@pytest.mark.slow
def test_memory_stays_bounded_whatever_the_image_claims(tmp_path):
    """A 320-byte 1×60000 strip once took 16.9 GB (the short side was scaled up to 256 px before
    cropping); a 40-megapixel RGBA PNG is the largest image allowed. Both stay under 1.4 GB."""
    Image.new("RGB", (1, 60000), (10, 200, 30)).save(tmp_path / "thin.png")
    h, w = 6600, 6000
    ramp = np.linspace(0, 255, w, dtype=np.float32)[None, :].repeat(h, 0)  # compresses well
    rgba = np.stack([ramp, ramp[:, ::-1], ramp / 2, np.full((h, w), 200, np.float32)], -1).astype(
        np.uint8
    )
    Image.fromarray(rgba, "RGBA").save(tmp_path / "big.png")
    assert (tmp_path / "thin.png").stat().st_size < 1000
    for name in ("thin.png", "big.png"):
        status, out, peak = _peak_rss_mb(["classify", "--top", "1", str(tmp_path / name)])
        assert status == 0 and json.loads(out)["top"], out
        assert peak <= 1400, f"{name}: peak memory {peak:.0f} MB"
