"""``python -m core train`` and ``python -m core bench`` on a tiny slice of the real CIFAR-10 images."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from core.cli import main
from core.training import runs

REPO = Path(__file__).resolve().parents[1]
RUN_FILES = {
    "status.json",
    "config.json",
    "classes.json",
    "preprocessing.json",
    "history.csv",
    "model.keras",
    "confusion.json",
    "results.json",
    "predictions.npz",
}
TINY = ["--backbone", "lite0", "--weights", "lite0", "--resolution", "32", "--batch-size", "32"]


@pytest.fixture(scope="module")
def mini(tiny_cifar) -> Path:
    return tiny_cifar


def last_json(stdout: str) -> dict:
    lines = [line for line in stdout.strip().splitlines() if line.strip()]
    return json.loads(lines[-1])


def cli(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "core", *args],
        cwd=REPO,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **kwargs,
    )


@pytest.mark.slow
def test_train_command_end_to_end(mini, tmp_path):
    out = tmp_path / "run1"
    proc = cli("train", "--data", str(mini), *TINY, "--epochs", "1", "--out", str(out))
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    result = last_json(stdout)
    assert len(stdout.strip().splitlines()) == 1  # stdout holds only the JSON line
    assert {"run_dir", "val_accuracy", "test_accuracy", "epochs", "wall_s", "device"} <= set(result)
    assert "validation split" in result["protocol"] and result["best_epoch"] == 1
    assert result["run_dir"] == str(out) and result["epochs"] == 1 and result["status"] == "done"
    assert 0.0 <= result["test_accuracy"] <= 1.0 and result["wall_s"] > 0
    assert set(os.listdir(out)) == RUN_FILES
    assert runs.load_run(out).test_accuracy == result["test_accuracy"]
    assert "img/s" in stderr and "ETA" in stderr and "epoch 1:" in stderr
    assert "Traceback" not in stderr
    # The trained run classifies images through the classify command: by folder and by .keras file.
    image = str(next(mini.rglob("*.jpg")))
    classes = runs.load_run(out).class_names
    for model in (str(out), str(out / "model.keras")):
        proc = cli("classify", "--model", model, "--top", "2", image)
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr
        line = json.loads(stdout)
        assert line["top"][0]["label"] in classes and len(line["top"]) == 2


def start_and_wait_for_epoch_1(
    mini, out, **popen
) -> tuple[subprocess.Popen, list[str], threading.Thread]:
    proc = cli("train", "--data", str(mini), *TINY, "--epochs", "100", "--out", str(out), **popen)
    seen: list[str] = []
    reader = threading.Thread(target=lambda: seen.extend(proc.stderr), daemon=True)
    reader.start()
    deadline = time.time() + 240
    while not any(line.startswith("epoch 1:") for line in seen):
        assert proc.poll() is None, "".join(seen)
        assert time.time() < deadline, "training never reached epoch 1"
        time.sleep(0.1)
    return proc, seen, reader


def _ignore_sigint():
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as a shell does for `cmd &` in a script


@pytest.mark.slow
@pytest.mark.parametrize(
    "signum, status, said, popen",
    [
        (signal.SIGINT, 130, "Ctrl-C: stopping", {}),
        (signal.SIGTERM, 143, "SIGTERM: stopping", {}),  # docker stop, systemd
        (signal.SIGINT, 130, "Ctrl-C: stopping", {"preexec_fn": _ignore_sigint}),
    ],
    ids=["ctrl-c", "sigterm", "ctrl-c-when-started-ignoring-it"],
)
def test_signals_stop_cleanly_and_keep_the_run(mini, tmp_path, signum, status, said, popen):
    out = tmp_path / "interrupted"
    proc, seen, reader = start_and_wait_for_epoch_1(mini, out, **popen)
    proc.send_signal(signum)
    stdout = proc.stdout.read()
    proc.wait(timeout=120)
    reader.join(5)
    stderr = "".join(seen)
    assert proc.returncode == status, stderr
    result = last_json(stdout)
    assert result["status"] == "stopped" and result["stopped"] and 1 <= result["epochs"] < 100
    assert said in stderr and "Traceback" not in stderr
    info = runs.load_run(out)
    assert info.status == "stopped" and info.has_model


@pytest.mark.slow
def test_two_commands_with_the_same_out_folder(mini, tmp_path):
    """The second is refused at once (exit 2); the first run's results are intact."""
    out = tmp_path / "shared"
    first, _seen, _reader = start_and_wait_for_epoch_1(mini, out)
    second = cli("train", "--data", str(mini), *TINY, "--epochs", "1", "--out", str(out))
    _, err = second.communicate(timeout=120)
    assert second.returncode == 2 and "already exists" in err and "Traceback" not in err
    first.send_signal(signal.SIGINT)
    first.communicate(timeout=120)
    assert runs.load_run(out).status == "stopped"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--epochs", "0"], "epochs must be"),
        (["--mode", "sideways"], "mode must be one of"),
        (["--backbone", "b9"], "backbone must be one of"),
        (["--lr", "-1"], "lr (learning rate) must be"),
        (["--data", "/no/such/folder"], "does not exist"),
        (["--weights", "/no/such.h5"], "weights must be one of"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(args, message, capsys):
    assert main(["train", *args]) == 2
    captured = capsys.readouterr()
    assert message in captured.err and captured.err.startswith("error: ")
    assert captured.out == ""


def test_unparseable_argument_exits_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--epochs", "many"])
    assert exc.value.code == 2
    assert "invalid int value" in capsys.readouterr().err


@pytest.mark.slow
def test_bad_data_layout_and_taken_out_folder(tmp_path, capsys):
    one_class = tmp_path / "one"
    (one_class / "cats").mkdir(parents=True)
    assert (
        main(["train", "--data", str(one_class), "--weights", "none", "--out", str(tmp_path / "r")])
        == 2
    )
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    assert not (tmp_path / "r").exists()  # nothing is written for bad input
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "file.txt").write_text("x")
    assert main(["train", "--out", str(taken)]) == 2
    assert "already exists" in capsys.readouterr().err


@pytest.mark.slow
def test_bench_seed_on_a_tiny_subset(mini, tmp_path, capsys):
    status = main(
        [
            "bench",
            "seed",
            "--data",
            str(mini),
            "--backbone",
            "lite0",
            "--weights",
            "lite0",
            "--epochs",
            "2",
            "--subset",
            "60",
            "--out",
            str(tmp_path / "seed"),
        ]
    )
    out = capsys.readouterr().out
    assert status == 0
    result = last_json(out)
    assert set(result) >= {"test_accuracy", "wall_s", "blog_way_s", "speedup", "weights"}
    assert result["weights"].startswith("lite0") and result["epochs"] == 2
    assert result["blog_way_s"] > 0 and result["speedup"] == pytest.approx(
        result["blog_way_s"] / result["wall_s"], abs=0.006
    )  # rounded to 2 decimals
    assert "blog way:" in out and "speedup:" in out
    config = runs.load_run(tmp_path / "seed").config
    assert (config["mode"], config["resolution"], config["batch_size"], config["optimizer"]) == (
        "frozen",
        32,
        64,
        "adam",
    )


@pytest.mark.slow
def test_bench_best_on_a_tiny_subset(mini, tmp_path, capsys):
    status = main(
        [
            "bench",
            "best",
            "--data",
            str(mini),
            "--recipe",
            "cpu",
            "--weights",
            "lite0",
            "--epochs",
            "1",
            "--subset",
            "40",
            "--test-subset",
            "20",
            "--out",
            str(tmp_path / "best"),
        ]
    )
    result = last_json(capsys.readouterr().out)
    assert status == 0
    assert result["preset"] == "best-cpu" and result["recipe"]["mode"] == "finetune"
    assert result["recipe"]["epochs"] == 1 and 0.0 <= result["test_accuracy"] <= 1.0
    assert {"load_s", "features_s", "train_s"} <= set(result["timings"])


def test_permission_denied_paths_are_one_line_errors(unreadable_dir, capsys):
    for args in (
        ["train", "--data", str(unreadable_dir)],
        ["train", "--out", str(unreadable_dir / "run")],
    ):
        assert main(args) == 2, args
        err = capsys.readouterr().err
        assert err.startswith("error: ") and "Permission denied" in err, err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
