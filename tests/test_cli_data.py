"""``python -m core data``: import a zip, list, check (JSON), delete; bad input is exit 2 in one line."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from test_health import planted, smooth

from core.cli import main

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def data_root(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("EFFNET_LAB_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("EFFNET_LAB_CACHE", str(tmp_path / "cache"))
    return tmp_path / "data"


def zip_of(folder: Path, out: Path) -> Path:
    with zipfile.ZipFile(out, "w") as z:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                z.write(path, "wrapper/" + path.relative_to(folder).as_posix())
        z.writestr("wrapper/.DS_Store", b"junk")
    return out


def test_import_list_check_delete(tmp_path, capsys, data_root):
    archive = zip_of(planted(tmp_path / "src"), tmp_path / "planted.zip")
    assert main(["data", "import", str(archive), "--name", "planted", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["classes"] == {"a": 11, "b": 12}  # the broken JPEG was refused
    assert report["invalid_count"] == 1 and report["skipped_count"] == 1
    assert report["split_folders"] == ["train", "test"]

    assert main(["data", "list", "--json"]) == 0
    (row,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert row["name"] == "planted" and row["images"] == 23 and "read-only" in row["owner"]

    assert main(["data", "check", "planted", "--json"]) == 0
    check = json.loads(capsys.readouterr().out)
    for field in (
        "classes",
        "images",
        "unreadable",
        "duplicates",
        "near_duplicates",
        "leaks",
        "imbalance",
    ):
        assert field in check, field
    assert check["duplicates_count"] == 2 and check["near_duplicates_count"] == 1
    # The two planted across train/ and test/, plus the same-folder pair if the stored split
    # sent one of them to validation.
    stored = json.loads((data_root / "planted" / "splits.json").read_text())["files"]
    apart = stored["train/a/0.png"] != stored["train/a/dup.png"]
    assert check["leaks_count"] == 2 + apart and check["classes"] == {"a": 11, "b": 12}

    assert main(["data", "check", "planted"]) == 0
    text = capsys.readouterr().out
    assert f"leaks: {2 + apart}" in text and "(cached)" in text

    assert main(["data", "delete", "planted"]) == 0
    assert main(["data", "list"]) == 0
    assert "no datasets yet" in capsys.readouterr().out


def test_bad_input_is_exit_2_with_one_line(tmp_path, capsys):
    not_zip = tmp_path / "x.zip"
    not_zip.write_text("hello")
    cases = [
        (["data", "import", str(not_zip), "--name", "x"], "Not a zip"),
        (["data", "import", str(tmp_path / "missing.zip"), "--name", "x"], "not found"),
        (["data", "import", str(not_zip), "--name", "bad name"], "cannot name a dataset"),
        (["data", "check", str(tmp_path / "nowhere")], "not found"),
        (["data", "delete", "nothing"], "No dataset named"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.slow
def test_check_as_a_command(tmp_path):
    folder = tmp_path / "two"
    for c, base in (("x", 0), ("y", 10)):
        (folder / c).mkdir(parents=True)
        for i in range(3):
            smooth(base + i).save(folder / c / f"{i}.png")
    out = subprocess.run(
        [sys.executable, "-m", "core", "data", "check", str(folder), "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["images"] == 6 and report["classes"] == {"x": 3, "y": 3}
    assert "Checking images" in out.stderr  # progress on stderr, JSON alone on stdout
