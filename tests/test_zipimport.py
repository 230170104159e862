"""Hostile and ordinary zips through core.data.zipimport: nothing outside the dataset, no symlinks,
bombs refused with bounded memory, junk listed, corrupt images counted, all or nothing."""

from __future__ import annotations

import io
import os
import stat
import struct
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.data import zipimport
from core.data.datasets import DatasetError, info, read_meta
from core.data.loading import load_dataset
from core.data.zipimport import MAX_ENTRIES, ZipImportError, directory_size, import_zip
from core.jobs import runner
from core.platform import workspaces
from core.platform.progress import JobStatus, Progress


@pytest.fixture(autouse=True)
def data_root(tmp_path, monkeypatch) -> Path:
    """A data root of its own, inside a folder the tests can search for escaped files."""
    root = tmp_path / "inside" / "data"
    monkeypatch.setenv("EFFNET_LAB_DATA", str(root))
    monkeypatch.setenv("EFFNET_LAB_CACHE", str(tmp_path / "cache"))
    return root


def png(seed: int, size=(24, 24)) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def make_zip(entries, path: Path | None = None) -> io.BytesIO | Path:
    """``entries``: (name, bytes) or (ZipInfo, bytes) pairs."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in entries:
            z.writestr(name, data)
    if path is not None:
        path.write_bytes(buf.getvalue())
        return path
    buf.seek(0)
    return buf


def classes(n_per_class=3, prefix="", names=("cat", "dog")):
    return [
        (f"{prefix}{c}/{i}.png", png(hash((c, i)) % 1000))
        for c in names
        for i in range(n_per_class)
    ]


def entries_on_disk(base: Path) -> set[str]:
    return {p.relative_to(base).as_posix() for p in base.rglob("*")}


def assert_nothing_left(data_root: Path) -> None:
    """No dataset and no temporary folder after a failed import."""
    assert not data_root.exists() or list(data_root.iterdir()) == []


def test_an_ordinary_zip_becomes_a_dataset_with_a_stored_split(data_root):
    report = import_zip(make_zip(classes(10)), "pets", owner=None, label="pets.zip")
    assert report["classes"] == {"cat": 10, "dog": 10} and report["images"] == 20
    assert report["skipped_count"] == report["invalid_count"] == 0
    assert report["stored_split"] == {"train": 14, "val": 2, "test": 4}
    assert read_meta(data_root / "pets")["owner"] is None  # the command line's: shared
    assert info("pets").source == "zip pets.zip"
    ds = load_dataset("pets", use_cache=False)
    assert "stored split" in ds.split and ds.split.startswith("14/2/4 train/validation/test")
    assert {p.name for p in data_root.iterdir()} == {"pets"}  # no temp folder left


def test_path_slips_absolute_paths_and_backslashes_never_leave_the_dataset(data_root, tmp_path):
    hostile = [
        "../evil.png",
        "cat/../../evil.png",
        "/tmp/evil-abs.png",
        "C:/evil.png",
        "C:\\evil.png",
        "cat\\..\\..\\evil.png",
        "cat/./x.png",
        "cat//y.png",
    ]
    report = import_zip(make_zip(classes() + [(n, png(7)) for n in hostile]), "pets", None)
    assert report["images"] == 6
    reasons = {s["entry"]: s["reason"] for s in report["skipped"]}
    assert set(reasons) == set(hostile) and all(
        r.startswith("unsafe name") for r in reasons.values()
    )
    assert not any("evil" in p for p in entries_on_disk(tmp_path))
    assert not Path("/tmp/evil-abs.png").exists()


def test_symlinks_and_special_files_are_never_created(data_root, tmp_path):
    link = zipfile.ZipInfo("cat/link.png")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    dir_link = zipfile.ZipInfo("cat/sub")
    dir_link.external_attr = (stat.S_IFLNK | 0o777) << 16
    fifo = zipfile.ZipInfo("dog/pipe.png")
    fifo.external_attr = (stat.S_IFIFO | 0o644) << 16
    through = ("cat/sub/through.png", png(5))  # would land outside if cat/sub were a link
    report = import_zip(
        make_zip(
            classes() + [(link, b"/etc/passwd"), (dir_link, str(tmp_path)), (fifo, b""), through]
        ),
        "pets",
        None,
    )
    reasons = {s["entry"]: s["reason"] for s in report["skipped"]}
    assert reasons["cat/link.png"].startswith("symlink") and reasons["cat/sub"].startswith(
        "symlink"
    )
    assert reasons["dog/pipe.png"].startswith("special file")
    dataset = data_root / "pets"
    assert not any(p.is_symlink() for p in dataset.rglob("*"))
    assert (dataset / "cat" / "sub" / "through.png").is_file()  # a real folder inside
    assert not (tmp_path / "through.png").exists()


def test_junk_is_skipped_and_listed(data_root):
    junk = [
        "__MACOSX/cat/._0.png",
        "cat/.DS_Store",
        ".hidden/x.png",
        "cat/.secret.png",
        "dog/notes.txt",
        "Thumbs.db",
        "cat/readme",
    ]
    report = import_zip(make_zip(classes() + [(n, b"x") for n in junk]), "pets", None)
    assert report["images"] == 6 and report["skipped_count"] == len(junk)
    reasons = {s["entry"]: s["reason"] for s in report["skipped"]}
    assert reasons["__MACOSX/cat/._0.png"].startswith("junk")
    assert reasons["cat/.DS_Store"].startswith("junk")
    assert reasons["dog/notes.txt"] == "not an image file"
    assert entries_on_disk(data_root / "pets") >= {"cat/0.png", "dog/2.png"}
    assert not any(".DS_Store" in p or "notes" in p for p in entries_on_disk(data_root / "pets"))


def test_a_wrapper_folder_is_removed_and_split_folders_are_kept(data_root):
    nested = [
        (f"export/photos/{split}/{c}/{i}.png", png(i + 10 * j))
        for j, (split, c) in enumerate((s, c) for s in ("train", "test") for c in ("a", "b"))
        for i in range(4)
    ]
    report = import_zip(make_zip(nested), "nested", None)
    assert report["split_folders"] == ["train", "test"] and report["classes"] == {"a": 8, "b": 8}
    assert report["stored_split"] == {"train": 6, "val": 2}  # validation carved from train/, stored
    assert (data_root / "nested" / "train" / "a" / "0.png").is_file()
    ds = load_dataset("nested", use_cache=False)
    assert "test: the test/ folder" in ds.split and "validation: stored split" in ds.split


def test_a_corrupt_image_is_counted_not_fatal(data_root):
    truncated = png(1, (64, 64))[:60]
    report = import_zip(
        make_zip(
            classes()
            + [("cat/broken.png", truncated), ("dog/empty.jpg", b""), ("cat/0.png/x.png", png(9))]
        ),
        "pets",
        None,
    )
    assert report["images"] == 6 and report["invalid_count"] == 3
    assert {i["entry"] for i in report["invalid"]} == {
        "cat/broken.png",
        "dog/empty.jpg",
        "cat/0.png/x.png",
    }
    assert not (data_root / "pets" / "cat" / "broken.png").exists()


def test_an_entry_over_the_size_cap_is_skipped_without_extracting(data_root):
    zeros = b"\0" * (zipimport.MAX_ENTRY_BYTES + 1)  # compresses to ~25 KB: a small bomb
    report = import_zip(make_zip(classes() + [("cat/huge.bmp", zeros)]), "pets", None)
    assert report["images"] == 6
    assert [s["reason"] for s in report["skipped"]] == ["larger than 25 MB uncompressed"]
    assert report["bytes"] < 100_000


def test_the_total_cap_refuses_the_zip_and_leaves_nothing(data_root, monkeypatch):
    monkeypatch.setattr(zipimport, "MAX_TOTAL_BYTES", 2000)
    with pytest.raises(ZipImportError, match="uncompressed; the limit"):
        import_zip(make_zip(classes(20)), "pets", None)
    assert_nothing_left(data_root)


def lying_zip(real: bytes, claimed: int) -> io.BytesIO:
    """A zip whose headers claim ``claimed`` bytes for an entry that inflates to ``real``."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in classes():
            z.writestr(name, data)
        z.writestr("cat/bomb.bmp", real)
    raw = bytearray(buf.getvalue())
    size = struct.pack("<L", len(real))
    patched = raw.replace(size, struct.pack("<L", claimed))  # local header and directory alike
    assert patched != raw
    return io.BytesIO(bytes(patched))


def test_a_zip_lying_about_its_sizes_is_cut_off(data_root):
    report = import_zip(lying_zip(b"\0" * 20_000_000, 100), "pets", None)
    assert report["images"] == 6
    assert {i["entry"]: i["reason"] for i in report["invalid"]}["cat/bomb.bmp"].startswith(
        "damaged"
    )
    assert report["bytes"] < 100_000  # it stopped at the claimed size, never inflated 20 MB


def test_too_many_entries_are_refused_before_parsing(data_root, monkeypatch):
    monkeypatch.setattr(zipimport, "MAX_ENTRIES", 50)
    with pytest.raises(ZipImportError, match="directory is too large"):
        import_zip(make_zip([(f"cat/{i}.png", b"") for i in range(60)]), "pets", None)
    # An end record that understates the count: the walk counts the real records (and stops).
    raw = bytearray(make_zip([(f"cat/{i}.png", b"") for i in range(60)]).getvalue())
    at = raw.rfind(b"PK\x05\x06")
    raw[at + 8 : at + 12] = struct.pack("<2H", 1, 1)
    assert directory_size(io.BytesIO(bytes(raw))) == 51
    with pytest.raises(ZipImportError, match=r"60 entries|limit is 50"):
        import_zip(io.BytesIO(bytes(raw)), "pets", None)
    assert_nothing_left(data_root)


def zip64_liar(path: Path, entries: int, classic_count: int, classic_size: int) -> Path:
    """A zip of ``entries`` empty directory records whose classic end record says
    ``classic_count`` entries in ``classic_size`` bytes while its ZIP64 record tells the truth
    (zipfile believes the ZIP64 record whenever its locator is there)."""
    record = struct.pack(
        "<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0
    )
    directory = (record + b"x") * entries
    zip64_at = len(directory)
    tail = struct.pack(
        "<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, entries, entries, len(directory), 0
    )
    tail += struct.pack("<4sLQL", b"PK\x06\x07", 0, zip64_at, 1)
    tail += struct.pack(
        "<4s4H2LH", b"PK\x05\x06", 0, 0, classic_count, classic_count, classic_size, 0, 0
    )
    path.write_bytes(directory + tail)
    return path


@pytest.mark.slow  # builds and parses a 300 000-entry zip (~2 s)
def test_a_zip64_record_that_contradicts_the_classic_one_is_refused_quickly(data_root, tmp_path):
    import time
    import tracemalloc

    # 300 000 entries in ~14 MB; the classic record claims 1 entry in an empty directory.
    liar = zip64_liar(tmp_path / "liar.zip", 300_000, 1, 0)
    with zipfile.ZipFile(liar) as z:  # what zipfile itself would believe
        assert len(z.infolist()) == 300_000
    tracemalloc.start()
    began = time.monotonic()
    try:
        with pytest.raises(ZipImportError, match="end records disagree"):
            import_zip(liar, "pets", None)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.monotonic() - began < 2.0
    assert peak < 2 * 2**20  # the end records and one 64 KiB tail, never the directory
    assert_nothing_left(data_root)


def test_an_honest_zip64_directory_is_bounded_by_entries_and_file_size(data_root, tmp_path):
    # Saturated classic fields defer to the ZIP64 record, whose count is over the limit.
    big = zip64_liar(tmp_path / "big.zip", MAX_ENTRIES + 1, 0xFFFF, 0xFFFFFFFF)
    with pytest.raises(ZipImportError, match="directory is too large"):
        import_zip(big, "pets", None)
    # A ZIP64 directory size beyond the file itself (and beyond what the limit can need).
    raw = bytearray(zip64_liar(tmp_path / "small.zip", 10, 0xFFFF, 0xFFFFFFFF).read_bytes())
    at = raw.rfind(b"PK\x06\x06")
    raw[at + 40 : at + 48] = struct.pack("<Q", 2**40)
    with pytest.raises(ZipImportError, match="directory is too large"):
        directory_size(io.BytesIO(bytes(raw)))
    raw[at + 40 : at + 48] = struct.pack("<Q", 10_000)
    with pytest.raises(ZipImportError, match="out of bounds"):
        directory_size(io.BytesIO(bytes(raw)))
    assert (
        directory_size(io.BytesIO(zip64_liar(tmp_path / "ok.zip", 10, 10, 470).read_bytes())) == 10
    )
    assert_nothing_left(data_root)


def test_encrypted_entries_are_skipped(data_root):
    raw = bytearray(make_zip(classes() + [("cat/locked.png", png(3))]).getvalue())
    name = b"cat/locked.png"
    local, central = raw.find(name) - 30, raw.rfind(name) - 46
    assert raw[local : local + 4] == b"PK\x03\x04" and raw[central : central + 4] == b"PK\x01\x02"
    raw[local + 6] |= 1  # the "encrypted" flag, in both headers
    raw[central + 8] |= 1
    report = import_zip(io.BytesIO(bytes(raw)), "pets", None)
    assert [s["reason"] for s in report["skipped"]] == ["encrypted"]


@pytest.mark.parametrize(
    "entries, message",
    [
        ([("cat/0.png", png(0)), ("cat/1.png", png(1))], "Only one class"),
        ([("notes.txt", b"x")], "no images in class folders"),
        ([("a.png", png(0)), ("b.png", png(1))], "no images in class folders"),
        ([("cat/0.png", b"bad"), ("dog/0.png", png(1))], "Only one class"),
        (
            [
                ("train/cat/0.png", png(0)),
                ("train/dog/0.png", png(1)),
                ("test/cat/0.png", png(2)),
                ("test/bird/0.png", png(3)),
            ],
            "different classes",
        ),
    ],
)
def test_an_unusable_zip_fails_and_leaves_nothing_behind(data_root, entries, message):
    with pytest.raises(ZipImportError, match=message) as err:
        import_zip(make_zip(entries), "pets", None)
    assert ".tmp" not in str(err.value)  # the message names the zip, not our temp folder
    assert_nothing_left(data_root)


def test_not_a_zip_and_bad_names_are_clear_errors(data_root, tmp_path):
    with pytest.raises(ZipImportError, match="Not a zip"):
        import_zip(io.BytesIO(b"hello, not a zip"), "pets", None)
    for bad in ("../x", "a b", "", ".hidden", "cifar10", "x" * 65):
        with pytest.raises(DatasetError, match="cannot name a dataset"):
            import_zip(make_zip(classes()), bad, None)
    import_zip(make_zip(classes(), tmp_path / "p.zip"), "pets", None)
    with pytest.raises(DatasetError, match="already exists"):
        import_zip(make_zip(classes()), "pets", None)
    assert {p.name for p in data_root.iterdir()} == {"pets"}


# ----- the import as a job: staging file, worker process, Stop ---------------------------------
TAG = "0123456789abcdef"  # a workspace's owner tag


@pytest.fixture
def runs_root(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "inside" / "runs"
    monkeypatch.setenv("EFFNET_LAB_RUNS", str(root))
    return root


def stage(entries, owner=TAG) -> str:
    return zipimport.stage_upload(make_zip(entries), owner)


def test_a_staged_zip_is_imported_by_a_worker_and_the_staging_file_goes(data_root, runs_root):
    staged = stage(classes(4))
    folder = data_root / "w" / TAG
    assert [p.name for p in folder.iterdir()] == [f".tmp-upload-{staged}.zip"]
    assert workspaces.usage(TAG) > 0  # the staging file counts while it exists
    job = runner.submit(
        "zip_import",
        {"staging": staged, "name": "pets", "owner": TAG, "label": "pets.zip"},
        owner=TAG,
    )
    snap = job.wait(timeout=120)
    assert snap.status is JobStatus.DONE, snap.error
    assert snap.result["images"] == 8 and snap.done == snap.total == 8
    assert "MB written" in snap.message
    assert [p.name for p in folder.iterdir()] == ["pets"]  # the staging file is gone
    assert info(f"w/{TAG}/pets").source == "zip pets.zip"


def test_a_failed_job_leaves_no_staging_file_and_no_dataset(data_root, runs_root):
    staged = stage([("cat/0.png", png(0))])  # one class: refused
    job = runner.submit("zip_import", {"staging": staged, "name": "pets", "owner": TAG}, owner=TAG)
    snap = job.wait(timeout=120)
    assert snap.status is JobStatus.ERROR and "Only one class" in snap.error
    assert list((data_root / "w" / TAG).iterdir()) == []
    assert not list(data_root.glob(".tmp-*"))


def test_stop_of_an_import_leaves_nothing_behind(data_root, runs_root):
    staged = stage(classes(20))
    done, presses = [], []

    def stop_after_three(event):  # the Stop button, pressed while entries are being written
        if event["e"] == "advance":
            done.append(event["done"])
            if event["done"] == 3:  # from another thread, as the worker's signal handler does
                presses.append(threading.Thread(target=progress.request_stop))
                presses[-1].start()

    progress = Progress(sinks=(stop_after_three,))
    result = zipimport.import_job({"staging": staged, "name": "pets", "owner": TAG}, progress)
    presses[0].join()
    assert result is None
    assert 3 <= max(done) < 40  # stopped at a next entry, not at the end
    assert list((data_root / "w" / TAG).iterdir()) == []  # no dataset, no staging file
    assert not list(data_root.glob(".tmp-*"))  # no temporary folder
    assert workspaces.usage(TAG) == 0  # the quota sees nothing left


def test_the_quota_is_checked_in_the_job_before_writing(data_root, runs_root, monkeypatch):
    staged = stage(classes(4))
    monkeypatch.setenv("EFFNET_LAB_WORKSPACE_QUOTA_GB", "0.00001")  # 10 kB
    with pytest.raises(workspaces.QuotaError):
        zipimport.import_job({"staging": staged, "name": "pets", "owner": TAG}, Progress())
    assert list((data_root / "w" / TAG).iterdir()) == []
    assert not list(data_root.glob(".tmp-*"))


def test_hostile_zips_are_refused_in_the_job_too(data_root, runs_root, monkeypatch):
    monkeypatch.setattr(zipimport, "MAX_ENTRIES", 5)
    staged = stage(classes(4))  # 8 entries
    with pytest.raises(ZipImportError, match="entries"):
        zipimport.import_job({"staging": staged, "name": "pets", "owner": TAG}, Progress())
    assert list((data_root / "w" / TAG).iterdir()) == []


def test_staging_ids_never_name_a_path_and_abandoned_files_are_removed(data_root):
    for bad in ("../../etc/passwd", "x", None, "A" * 32):
        with pytest.raises(ZipImportError, match="upload it again"):
            zipimport.staging_path(TAG, bad)
    with pytest.raises(ValueError):
        zipimport.staging_path("../other", "0" * 32)
    old = zipimport.staging_path(TAG, stage(classes(1)))
    os.utime(old, (0, 0))  # abandoned long ago
    fresh = zipimport.staging_path(TAG, stage(classes(1)))
    assert not old.exists() and fresh.exists()
