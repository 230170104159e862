"""``python -m core runs``: every run's name, status, test accuracy and path."""

import json

from conftest import make_run

from core.cli import main


def test_runs_lists_each_status(tmp_path, capsys):
    make_run(tmp_path, "finished", created=3.0, accuracy=0.75)
    make_run(tmp_path, "halted", created=2.0, status="stopped")
    dead = make_run(tmp_path, "crashed", created=1.0, status="running")
    status = json.loads((dead / "status.json").read_text())
    status["worker"] = {"pid": 2**22 + 12345, "start": 1, "boot": None}  # no such process
    (dead / "status.json").write_text(json.dumps(status))
    assert main(["runs", "--root", str(tmp_path), "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["name"], r["status"]) for r in rows] == [
        ("finished", "done"),
        ("halted", "stopped"),
        ("crashed", "interrupted"),
    ]
    assert rows[0]["test_accuracy"] == 0.75 and rows[0]["path"] == str(tmp_path / "finished")
    assert main(["runs", "--root", str(tmp_path)]) == 0
    table = capsys.readouterr().out
    assert "75.00%" in table and "interrupted" in table


def test_runs_on_an_empty_or_missing_folder(tmp_path, capsys):
    assert main(["runs", "--root", str(tmp_path)]) == 0
    assert "no runs yet" in capsys.readouterr().out
    assert main(["runs", "--root", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
