"""One base for "the user's input is wrong" (core/platform/errors.py), mapped once by the command
line (exit 2, one line) and once by the pages (components/errors.py: one line, no server path)."""

from __future__ import annotations

import pytest

from components import errors as page_errors
from core.cli import CliError, main
from core.data.catalog import DataError
from core.data.datasets import DatasetError
from core.data.images import ImageError
from core.data.zipimport import ZipImportError
from core.models.weights import WeightsError
from core.platform.errors import UserError, error_kind, error_message
from core.training.feature_memory import FeatureMemoryError
from core.training.option import OptionError
from core.training.options import TrainConfig


@pytest.mark.parametrize(
    "cls",
    [
        DataError,
        DatasetError,
        ZipImportError,
        ImageError,
        WeightsError,
        FeatureMemoryError,
        OptionError,
    ],
)
def test_every_input_error_is_a_user_error_and_reads_as_input(cls):
    exc = cls("the folder has no class folders")
    assert isinstance(exc, UserError) and isinstance(exc, ValueError)
    assert error_kind(exc) == "input"
    assert error_message(exc) == "the folder has no class folders"


def test_a_bug_reads_as_a_crash_with_its_type():
    exc = KeyError("x")
    assert error_kind(exc) == "crash"
    assert error_message(exc) == "KeyError: 'x'"


def test_train_config_validation_raises_an_option_error():
    with pytest.raises(OptionError, match="epochs must be a whole number"):
        TrainConfig(epochs=0).validate()


def test_cli_maps_a_user_error_from_any_layer_to_one_line_and_exit_2(capsys, tmp_path):
    # The weights check sits in core.models, two layers under the command: no wrapper between.
    status = main(["classify", "--weights", str(tmp_path / "no.h5"), str(tmp_path / "x.jpg")])
    err = capsys.readouterr().err
    assert status == 2
    assert err.startswith("error: unknown weights source") and err.count("\n") == 1
    assert "Traceback" not in err


def test_cli_error_keeps_its_own_status(capsys, monkeypatch):
    from core.cli import runs as runs_cli

    def fail(args):
        raise CliError("train failed: boom", status=1)

    monkeypatch.setattr(runs_cli, "run", fail)
    assert main(["runs"]) == 1
    assert capsys.readouterr().err == "error: train failed: boom\n"


def test_page_message_is_literal_and_names_no_server_path():
    exc = DataError("data folder /srv/effnet/data/my_*cats* does not exist")
    line = page_errors.message(exc, "Cannot start: ")
    assert line.startswith("Cannot start: ")
    assert "/srv" not in line and "effnet" not in line
    assert r"my\_\*cats\*" in line  # Markdown shown literally
    assert page_errors.message("boom", "Failed: ") == "Failed: boom"
