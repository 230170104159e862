"""Read a legacy (pre-zip) ``torch.save`` state dict into numpy arrays, safely and without torch.

A PyTorch checkpoint is a pickle, and a pickle can run any code while it loads. This reader never
uses plain :mod:`pickle` loading on a file: :class:`RestrictedUnpickler` resolves only the few
globals a state dict needs (``OrderedDict``, the tensor and parameter rebuild functions, storage
types), so any other global (``os.system``, ``builtins.eval``, ...) is refused before it can run.
Every tensor view is checked against its storage (offset, shape and strides must stay inside the
bytes the file holds) before numpy touches the buffer, and every failure is a
:class:`TorchPickleError` with a one-line reason.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
from pathlib import Path

import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}
_MAX_DIMS = 16


class TorchPickleError(RuntimeError):
    """The file is not a readable legacy PyTorch state dict; nothing from it was executed."""


class UnsafePickleError(TorchPickleError):
    """The pickle named a global outside the allow-list; nothing from it was executed."""


class _StorageType:
    """Stands in for ``torch.<X>Storage``: only remembers the numpy dtype."""

    def __init__(self, name: str):
        self.name = name
        self.dtype = np.dtype(_STORAGE_DTYPES[name])


class _Storage:
    """A storage declared by the pickle; its bytes are filled in after the main pickle."""

    def __init__(self, dtype: np.dtype, size: int):
        self.dtype = dtype
        self.size = size
        self.data: np.ndarray | None = None


def _whole(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TorchPickleError(f"tensor {what} is not a whole number: {value!r}")
    return value


class _TensorRef:
    """A tensor view on a storage (resolved to a numpy array once storages are read)."""

    def __init__(self, storage: _Storage, offset: int, shape: tuple, stride: tuple):
        self.storage, self.offset, self.shape, self.stride = storage, offset, shape, stride

    def to_numpy(self) -> np.ndarray:
        """Copy the view out of its storage, after checking it lies wholly inside it.

        Raises:
            TorchPickleError: The storage was never read, or the view reaches outside it.
        """
        data = self.storage.data
        if data is None:
            raise TorchPickleError("tensor storage was never read: the file is truncated")
        offset, shape, stride = self.offset, self.shape, self.stride
        if len(shape) != len(stride) or len(shape) > _MAX_DIMS:
            raise TorchPickleError(f"tensor has shape {shape} but strides {stride}")
        if offset < 0 or any(n < 0 for n in shape) or any(s < 0 for s in stride):
            raise TorchPickleError(
                f"tensor view has a negative offset, size or stride "
                f"(offset {offset}, shape {shape}, strides {stride})"
            )
        if 0 in shape:
            return np.zeros(shape, dtype=data.dtype)
        last = offset + sum((n - 1) * s for n, s in zip(shape, stride))  # the farthest element
        if last >= len(data):
            raise TorchPickleError(
                f"tensor view (offset {offset}, shape {shape}, strides {stride}) reaches element "
                f"{last} of a storage holding {len(data)}: the file is damaged or crafted"
            )
        if not shape:
            return data[offset].copy()
        itemsize = data.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            data[offset:], shape=shape, strides=tuple(s * itemsize for s in stride), writeable=False
        )
        return np.array(view)  # copy: never alias the raw buffer


def _rebuild_tensor_v2(
    storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None
):
    """Safe replacement for ``torch._utils._rebuild_tensor_v2``."""
    if not isinstance(storage, _Storage):
        raise UnsafePickleError("tensor rebuilt from something that is not a storage")
    if not isinstance(size, (tuple, list)) or not isinstance(stride, (tuple, list)):
        raise TorchPickleError("tensor size and stride must be tuples")
    return _TensorRef(
        storage,
        _whole(storage_offset, "offset"),
        tuple(_whole(n, "size") for n in size),
        tuple(_whole(s, "stride") for s in stride),
    )


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    """Safe replacement for ``torch._utils._rebuild_parameter``."""
    return data


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the handful of globals a PyTorch state dict uses.

    Any other global (``os.system``, ``builtins.eval``, ...) raises :class:`UnsafePickleError`
    before it can be called, so a malicious file executes nothing.
    """

    def __init__(self, file, storages: dict[str, _Storage]):
        super().__init__(file)
        self._storages = storages

    def find_class(self, module: str, name: str):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor_v2
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise UnsafePickleError(
            f"refusing to load global {module}.{name}: only state-dict tensors are allowed"
        )

    def persistent_load(self, pid):
        # Legacy format: ('storage', storage_type, key, location, size[, view_metadata])
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise UnsafePickleError(f"unexpected persistent id {pid!r}")
        storage_type, key, size = pid[1], str(pid[2]), _whole(pid[4], "storage size")
        if not isinstance(storage_type, _StorageType):
            raise UnsafePickleError("persistent id names an unknown storage type")
        if size < 0:
            raise TorchPickleError(f"storage {key} has a negative size {size}")
        if len(pid) > 5 and pid[5] is not None:
            raise TorchPickleError("storage views are not supported in this reader")
        storage = self._storages.setdefault(key, _Storage(storage_type.dtype, size))
        if storage.dtype != storage_type.dtype or storage.size != size:
            raise TorchPickleError(f"storage {key} is declared twice with different types or sizes")
        return storage


def _load_restricted(f, storages: dict[str, _Storage]):
    return RestrictedUnpickler(f, storages).load()


def read_torch_legacy(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a legacy (non-zip) ``torch.save`` state dict into numpy arrays, without torch.

    Layout: magic pickle, protocol pickle, sys-info pickle, the state-dict pickle (tensors refer
    to storages by persistent id), a pickle listing storage keys, then for each key an int64
    element count followed by the raw little-endian bytes.

    Args:
        path: The ``.pth`` file.

    Returns:
        Parameter name → numpy array.

    Raises:
        UnsafePickleError: The file names a global outside the allow-list.
        TorchPickleError: The file is not a legacy PyTorch checkpoint, is truncated, or holds a
            view outside its storage.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise TorchPickleError(f"cannot read weights file {path}: {exc.strerror or exc}") from exc
    if raw[:2] == b"PK":
        raise TorchPickleError(
            f"{path} is a zip-format PyTorch file; only the legacy format is supported"
        )
    f = io.BytesIO(raw)
    storages: dict[str, _Storage] = {}
    try:
        magic = _load_restricted(f, storages)
        if magic != LEGACY_MAGIC:
            raise TorchPickleError(f"{path} is not a legacy PyTorch checkpoint (bad magic number)")
        _load_restricted(f, storages)  # protocol version
        sys_info = _load_restricted(f, storages)
        if isinstance(sys_info, dict) and not sys_info.get("little_endian", True):
            raise TorchPickleError("big-endian checkpoints are not supported")
        state = _load_restricted(f, storages)
        keys = _load_restricted(f, storages)
    except TorchPickleError:
        raise
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        IndexError,
        KeyError,
        AttributeError,
        RecursionError,
        MemoryError,
        OverflowError,
    ) as exc:
        raise TorchPickleError(f"{path} is not a readable PyTorch checkpoint: {exc}") from exc
    if not isinstance(state, dict):
        raise TorchPickleError(f"{path} does not hold a state dict")
    if not isinstance(keys, (list, tuple)):
        raise TorchPickleError(f"{path} has no list of storages")
    for key in keys:
        storage = storages.get(str(key))
        header = f.read(8)
        if storage is None or len(header) != 8:
            raise TorchPickleError(f"{path} is truncated or inconsistent (storage {key})")
        (count,) = struct.unpack("<q", header)
        if count != storage.size:
            raise TorchPickleError(
                f"{path} is inconsistent: storage {key} declares {storage.size} "
                f"elements but holds {count}"
            )
        nbytes = count * storage.dtype.itemsize
        if nbytes > len(raw) - f.tell():
            raise TorchPickleError(f"{path} is truncated (storage {key})")
        buf = f.read(nbytes)
        storage.data = np.frombuffer(buf, dtype=storage.dtype.newbyteorder("<"))
    out = {}
    for name, value in state.items():
        if not isinstance(value, _TensorRef):
            raise TorchPickleError(f"entry {name!r} is not a tensor")
        out[str(name)] = value.to_numpy()
    return out
