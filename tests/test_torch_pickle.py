"""The restricted legacy-PyTorch reader: real weights read, forbidden globals refused before they
run, and every tensor view checked against its storage (crafted files cannot read past a buffer
or crash the process)."""

import os
import pickle
import struct
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

from core.models.lite0 import lite0_package_path
from core.models.torch_pickle import (
    LEGACY_MAGIC,
    TorchPickleError,
    UnsafePickleError,
    _Storage,
    _TensorRef,
    read_torch_legacy,
)

REPO = Path(__file__).resolve().parents[1]


def _legacy_file(path, state_pickle: bytes, keys=(), storages=()):
    """Write a file in the legacy torch.save layout around a given state-dict pickle."""
    with open(path, "wb") as f:
        for obj in (LEGACY_MAGIC, 1001, {"protocol_version": 1001, "little_endian": True}):
            pickle.dump(obj, f, protocol=2)
        f.write(state_pickle)
        pickle.dump(list(keys), f, protocol=2)
        for data in storages:
            f.write(struct.pack("<q", data.size))
            f.write(data.astype("<f4").tobytes())
    return path


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _EvalEvil:
    def __reduce__(self):
        return (eval, ("__import__('os').getcwd()",))


def test_reads_packaged_lite0_state_dict():
    state = read_torch_legacy(lite0_package_path())
    assert len(state) == 296
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_conv_stem.weight"].dtype == np.float32
    assert state["_fc.weight"].shape == (1000, 1280)
    assert state["_bn0.num_batches_tracked"].dtype == np.int64
    # Real trained weights, not zeros: BN running variances are positive and varied.
    var = state["_bn1.running_var"]
    assert (var > 0).all() and var.std() > 0


def test_refuses_forbidden_global_and_executes_nothing(tmp_path):
    marker = tmp_path / "pwned"
    evil = _legacy_file(
        tmp_path / "evil.pth", pickle.dumps(OrderedDict(x=_Evil(marker)), protocol=2)
    )
    with pytest.raises(UnsafePickleError, match=r"posix.system|os.system"):
        read_torch_legacy(evil)
    assert not marker.exists()


def test_refuses_builtins_eval(tmp_path):
    evil = _legacy_file(tmp_path / "eval.pth", pickle.dumps({"x": _EvalEvil()}, protocol=2))
    with pytest.raises(UnsafePickleError, match=r"(__builtin__|builtins)\.eval"):
        read_torch_legacy(evil)


def test_refuses_evil_magic_pickle(tmp_path):
    """The very first pickle is checked too, not only the state dict."""
    marker = tmp_path / "pwned2"
    path = tmp_path / "evil_magic.pth"
    path.write_bytes(pickle.dumps(_Evil(marker), protocol=2))
    with pytest.raises(UnsafePickleError):
        read_torch_legacy(path)
    assert not marker.exists()


def test_truncated_and_garbage_files_give_clear_errors(tmp_path):
    raw = lite0_package_path().read_bytes()
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(TorchPickleError, match="truncated"):
        read_torch_legacy(truncated)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"\x00not a pickle at all" * 10)
    with pytest.raises(TorchPickleError):
        read_torch_legacy(garbage)
    zipped = tmp_path / "zip.pth"
    zipped.write_bytes(b"PK\x03\x04rest")
    with pytest.raises(TorchPickleError, match="zip"):
        read_torch_legacy(zipped)
    with pytest.raises(TorchPickleError, match="cannot read"):
        read_torch_legacy(tmp_path / "missing.pth")


def test_reader_handles_offsets_and_strides(tmp_path):
    """A tensor that is a strided view into a shared storage comes out right."""
    storage = _Storage(np.dtype("float32"), 12)
    storage.data = np.arange(12, dtype="float32")
    # a transposed 3x2 view starting at element 2
    ref = _TensorRef(storage, 2, (3, 2), (1, 3))
    np.testing.assert_array_equal(ref.to_numpy(), np.arange(2, 8, dtype="float32").reshape(2, 3).T)


def _frag(obj) -> bytes:
    """The pickle opcodes for a plain value (int, str, tuple of ints), without PROTO and STOP."""
    return pickle.dumps(obj, protocol=2)[2:-1]


def _crafted(path, offset, shape, stride, declared=4, stored=4):
    """A legacy file whose one tensor is a view (offset, shape, stride) on a small storage,
    written opcode by opcode as torch.save would (torch itself is not needed)."""
    storage_id = (
        b"("
        + _frag("storage")
        + b"ctorch\nFloatStorage\n"
        + _frag("0")
        + _frag("cpu")
        + _frag(declared)
        + b"tQ"
    )  # MARK ... TUPLE, BINPERSID
    tensor = (
        b"ctorch._utils\n_rebuild_tensor_v2\n("
        + storage_id
        + _frag(offset)
        + _frag(tuple(shape))
        + _frag(tuple(stride))
        + b"tR"
    )  # GLOBAL, MARK args TUPLE, REDUCE
    state = (
        b"\x80\x02}" + _frag("w") + tensor + b"s."
    )  # PROTO, EMPTY_DICT, key, value, SETITEM, STOP
    return _legacy_file(path, state, keys=["0"], storages=[np.arange(stored, dtype="float32")])


def test_crafted_file_round_trips_when_honest(tmp_path):
    state = read_torch_legacy(_crafted(tmp_path / "ok.pth", 1, (3,), (1,)))
    np.testing.assert_array_equal(state["w"], [1.0, 2.0, 3.0])


@pytest.mark.parametrize(
    "offset, shape, stride, message",
    [
        (3, (2,), (1,), "reaches element 4"),  # one past the end
        (0, (2, 2), (2, 1 << 40), "reaches element"),  # a huge stride (segfaulted before)
        (-1, (2,), (1,), "negative"),
        (0, (2,), (-1,), "negative"),
        (0, (2, 2), (1,), "strides"),
    ],
)
def test_views_outside_their_storage_are_refused(tmp_path, offset, shape, stride, message):
    path = _crafted(tmp_path / "bad.pth", offset, shape, stride)
    assert path.stat().st_size < 400  # a few hundred bytes are enough to attack a reader
    with pytest.raises(TorchPickleError, match=message):
        read_torch_legacy(path)


def test_storage_size_must_match_its_bytes(tmp_path):
    with pytest.raises(TorchPickleError, match="declares 8 elements but holds 4"):
        read_torch_legacy(_crafted(tmp_path / "lie.pth", 0, (2,), (1,), declared=8, stored=4))


def test_a_huge_stride_never_crashes_the_process(tmp_path):
    """In a subprocess, so a segfault would show as a signal, not take the test run down."""
    path = _crafted(tmp_path / "stride.pth", 0, (2, 2), (1, 1 << 50))
    code = (
        "import sys; from core.models.torch_pickle import read_torch_legacy, TorchPickleError\n"
        "try:\n    read_torch_legacy(sys.argv[1])\nexcept TorchPickleError as e:\n"
        "    print('refused:', e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0 and out.stdout.startswith("refused:"), out.stderr
