"""core.data.datasets and core.data.splits: managed datasets built step by step, owners, browser names, and
splits stored once that stay put when images come and go."""

from __future__ import annotations

import io
import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.data import catalog, datasets, names, splits
from core.data.catalog import list_datasets
from core.data.datasets import DatasetError
from core.data.loading import load_dataset


@pytest.fixture(autouse=True)
def data_root(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("EFFNET_LAB_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("EFFNET_LAB_CACHE", str(tmp_path / "cache"))
    return tmp_path / "data"


def jpeg(seed: int, size=(32, 32)) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def stored(data_root: Path, name: str) -> dict:
    return json.loads((data_root / name / splits.SPLITS_FILE).read_text())["files"]


# Workspace owner tags (as the app makes them: 16 hex digits) and their datasets' refs.
ME, ALICE, BOB, YOU = "0123456789abcdef", "a11ce00000000000", "b0b0000000000000", "00000000000000ff"
PETS = catalog.dataset_ref("pets", ME)
ALICES = catalog.dataset_ref("pets", ALICE)


def build(name="pets", owner=ME, n=10, classes=("cat", "dog")) -> None:
    datasets.create(name, owner)
    ref = catalog.dataset_ref(name, owner)
    for c in classes:
        datasets.add_class(ref, c, owner)
        report = datasets.add_images(
            ref, c, [(f"{c}{i}.jpg", jpeg(hash((c, i)) % 10_000)) for i in range(n)], owner
        )
        assert len(report["added"]) == n and not report["rejected"]


def test_build_a_dataset_step_by_step(data_root):
    build()
    assert list_datasets(ME) == ["pets"] and list_datasets() == []
    info = datasets.info(PETS)
    assert info.owner == ME and info.classes == {"cat": 10, "dog": 10} and info.splits == ()
    assert sorted(datasets.list_images(PETS, "cat"))[:2] == ["cat/cat0.jpg", "cat/cat1.jpg"]
    ds = load_dataset(PETS, use_cache=False)
    assert (
        ds.class_names == ["cat", "dog"] and len(ds.y_train) + len(ds.y_val) + len(ds.y_test) == 20
    )

    datasets.rename_class(PETS, "cat", "kitten", ME)
    assert datasets.info(PETS).classes == {"dog": 10, "kitten": 10}
    assert all(not p.startswith("cat/") for p in stored(data_root / "w" / ME, "pets"))
    assert datasets.delete_images(PETS, ["kitten/cat0.jpg", "kitten/cat1.jpg"], ME) == 2
    assert datasets.info(PETS).classes["kitten"] == 8
    assert "kitten/cat0.jpg" not in stored(data_root / "w" / ME, "pets")
    datasets.delete_class(PETS, "dog", ME)
    assert datasets.info(PETS).classes == {"kitten": 8}
    datasets.delete(PETS, ME)
    assert list_datasets(ME) == [] and list((data_root / "w" / ME).iterdir()) == []
    assert [p.name for p in data_root.iterdir()] == ["w"]  # no temporary folder left


def test_only_the_owner_or_the_operator_may_change_a_dataset():
    build(owner=ALICE)
    for change in (
        lambda o: datasets.add_class(ALICES, "bird", o),
        lambda o: datasets.rename_class(ALICES, "cat", "x", o),
        lambda o: datasets.delete_class(ALICES, "cat", o),
        lambda o: datasets.add_images(ALICES, "cat", [("a.jpg", jpeg(1))], o),
        lambda o: datasets.delete_images(ALICES, ["cat/cat0.jpg"], o),
        lambda o: datasets.delete(ALICES, o),
    ):
        with pytest.raises(DatasetError, match="only be changed in the workspace"):
            change(BOB)
    assert datasets.info(ALICES).classes == {"cat": 10, "dog": 10}
    datasets.create("shared", owner=None)  # the command line: read-only for every session
    assert not datasets.can_edit("shared", ALICE) and datasets.can_edit("shared", None)
    datasets.delete(ALICES, None)  # the operator may delete anything
    assert list_datasets() == ["shared"] and list_datasets(ALICE) == []


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "  ",
        ".",
        "..",
        "a/b",
        "a\\b",
        ".hidden",
        "tab\there",
        "x" * 65,
        "train",
        "Test",
        "dataset.json",
    ],
)
def test_browser_class_names_are_cleaned_or_refused(bad):
    datasets.create("pets", ME)
    with pytest.raises(DatasetError):
        datasets.add_class(PETS, bad, ME)
    datasets.add_class(PETS, "  Grey cat ", ME)
    assert datasets.info(PETS).classes == {"Grey cat": 0}


def test_browser_file_names_are_cleaned():
    build(n=1)
    report = datasets.add_images(
        PETS,
        "cat",
        [
            ("../../etc/evil.jpg", jpeg(1)),
            ("C:\\Users\\me\\photo.jpg", jpeg(2)),
            (".hidden.jpg", jpeg(3)),
            ("no-extension", jpeg(4)),
            ("a\x00b.jpg", jpeg(5)),
            ("x" * 300 + ".jpg", jpeg(6)),
            ("cat0.jpg", jpeg(7)),
            ("fake.jpg", b"not an image"),
        ],
        ME,
    )
    added = sorted(report["added"])
    assert "cat/evil.jpg" in added and "cat/photo.jpg" in added and "cat/hidden.jpg" in added
    assert "cat/no-extension.jpg" in added and "cat/ab.jpg" in added
    assert "cat/cat0-2.jpg" in added  # never overwrites an image with the same name
    assert all(len(Path(p).name) <= names.MAX_FILE_NAME for p in added)
    assert [r["file"] for r in report["rejected"]] == ["fake.jpg"]
    assert datasets.info(PETS).classes["cat"] == 8


def test_dataset_names_and_collisions():
    datasets.create("pets", ME)
    with pytest.raises(DatasetError, match="already exists"):
        datasets.create("pets", ME)
    datasets.create("pets", YOU)  # names are per workspace: another's are never in the way
    datasets.create("pets", None)  # nor in the shared data root
    for bad in ("a b", "../pets", "cifar10", "weights", ".x", ""):
        with pytest.raises(DatasetError, match="cannot name a dataset"):
            datasets.create(bad, ME)
    with pytest.raises(DatasetError, match="No dataset named"):
        datasets.delete("missing", None)


# ----- stored splits --------------------------------------------------------------------------
def test_the_stored_split_is_stratified_and_survives_additions(data_root):
    build(n=20)
    first = stored(data_root / "w" / ME, "pets")
    per_class = Counter((p.split("/")[0], s) for p, s in first.items())
    assert per_class == {
        ("cat", "train"): 14,
        ("cat", "val"): 2,
        ("cat", "test"): 4,
        ("dog", "train"): 14,
        ("dog", "val"): 2,
        ("dog", "test"): 4,
    }
    datasets.add_images(PETS, "cat", [(f"new{i}.jpg", jpeg(900 + i)) for i in range(10)], ME)
    after = stored(data_root / "w" / ME, "pets")
    assert {p: after[p] for p in first} == first  # nothing already split has moved
    new = Counter(s for p, s in after.items() if p.startswith("cat/new"))
    # 30 cats now: 6 for test and 2 for validation (10 % of the other 24), as a fresh split would.
    assert new == {"train": 8, "test": 2}
    ds = load_dataset(PETS, use_cache=False)
    assert ds.split.startswith("36/4/10 train/validation/test; test: stored split, 20 %")


def test_the_split_depends_only_on_the_files():
    files = [(f"c{label}/{i}.jpg", label) for label in range(3) for i in range(17)]
    one = splits.assign(files, ("val", "test"))
    assert one == splits.assign(list(reversed(files)), ("val", "test"))
    assert splits.assign(files, ("val",)).keys() == one.keys()
    assert set(splits.assign(files, ("val",)).values()) == {"train", "val"}


def test_a_folder_outside_the_data_root_is_never_written_but_its_split_is_honoured(tmp_path):
    build(n=10)
    copy = tmp_path / "elsewhere"
    import shutil

    shutil.copytree(Path(datasets.path_of(PETS)), copy)
    ds = load_dataset(str(copy), use_cache=False)
    assert "stored split" in ds.split  # honours the copied splits.json
    (copy / splits.SPLITS_FILE).unlink()
    ds = load_dataset(str(copy), use_cache=False)
    assert "stratified 20 %" in ds.split and not (copy / splits.SPLITS_FILE).exists()


def test_a_dataset_placed_in_the_data_root_gets_its_split_stored_on_first_load(data_root):
    for c, seed in (("red", 0), ("blue", 1)):
        (data_root / "placed" / c).mkdir(parents=True)
        for i in range(5):
            (data_root / "placed" / c / f"{i}.jpg").write_bytes(jpeg(seed * 100 + i))
    first = load_dataset("placed", use_cache=False)
    assert (data_root / "placed" / splits.SPLITS_FILE).is_file()
    again = load_dataset("placed")
    assert first.split == again.split and np.array_equal(first.y_test, again.y_test)
    assert datasets.info("placed").owner is None  # read-only in the app


# ----- jobs from the app name datasets by ref, resolved under the data root only ----------------
@pytest.mark.slow
@pytest.mark.parametrize("owner", [ALICE, None], ids=["workspace", "shared"])
@pytest.mark.parametrize("name", ["data", "runs"])
def test_app_jobs_refuse_a_vanished_dataset_named_like_a_project_folder(
    data_root, tmp_path, monkeypatch, name, owner, request
):
    """A dataset named like a folder of the project (where workers run), in a workspace or the
    shared root, is picked by a visitor for a check and a training, then deleted before the
    workers start: they must not fall back to that folder."""
    from core.jobs import runner as jobs
    from core.platform import paths
    from core.training.options import TrainConfig

    # What a path fallback would scan (workers run in the project): made here when this
    # checkout has none yet, so the test means the same in a fresh one.
    folder = paths.PROJECT_ROOT / name
    if not folder.is_dir():
        folder.mkdir()
        request.addfinalizer(lambda: shutil.rmtree(folder, ignore_errors=True))
    assert folder.is_dir()
    monkeypatch.setenv("EFFNET_LAB_RUNS", str(tmp_path / "runs"))
    build(name, owner=owner, n=3)
    ref = catalog.dataset_ref(name, owner)
    app = {"managed": True, "user": ALICE}  # as session.dataset_args() makes them
    datasets.delete(ref, owner)
    check = jobs.submit("data_check", {"data": ref, **app}, owner=ALICE)
    train = jobs.submit(
        "train",
        {"config": TrainConfig(data=ref, epochs=1).to_dict(), "owner": ALICE, **app},
        owner=ALICE,
    )
    for job in (check, train):
        snap = job.wait(timeout=180)
        assert snap.status.value == "error", (job.kind, snap)
        assert snap.error == (
            f"There is no dataset named {name!r} (it may have been deleted): pick another."
        )
    made = [p.name for p in (tmp_path / "runs").iterdir() if p.name != ".jobs"]
    assert not made  # no run folder was made


def test_app_jobs_use_only_datasets_the_workspace_may_use(data_root):
    """Another workspace's dataset reads exactly like a deleted one (and names no tag); shared
    ones (data root, no owner) are for all, an owned one left in the data root only for the
    operator; the command line (no ``managed``) keeps accepting paths."""
    from core.data import health

    def check(ref, user):
        return health.check_job({"data": ref, "managed": True, "user": user}, None)

    build("pets", owner=BOB, n=3)
    build("shared", owner=None, n=3)
    build("legacy", owner=None, n=3)
    datasets.write_meta(data_root / "legacy", BOB, "an app session before workspaces")
    bobs = catalog.dataset_ref("pets", BOB)
    for ref, user in ((bobs, ALICE), ("legacy", ALICE), (catalog.dataset_ref("x", ALICE), ALICE)):
        with pytest.raises(DatasetError) as refused:
            check(ref, user)
        assert str(refused.value) == catalog.gone_message(ref)
        assert BOB not in str(refused.value) and ALICE not in str(refused.value)
    assert check("shared", ALICE)["images"] == 6
    assert check(bobs, BOB)["images"] == 6
    assert check(bobs, None)["images"] == 6  # the operator (the single user) may use any
    assert check("legacy", None)["images"] == 6
    # A ref spelled as a path, or a workspace's folder named by its path, is no dataset.
    for spec in ("../data/shared", str(data_root / "shared"), f"w/{BOB}/../shared"):
        with pytest.raises(DatasetError):
            check(spec, ALICE)
    assert health.check_job({"data": str(data_root / "shared")}, None)["images"]  # a CLI path
    with pytest.raises(catalog.DataError, match="no dataset named 'elsewhere'"):
        catalog.resolve("elsewhere", managed_only=True)
    with pytest.raises(catalog.DataError, match="no dataset named 'gone'"):
        catalog.resolve(catalog.dataset_ref("gone", ALICE), managed_only=True)
    assert catalog.resolve("elsewhere") == Path("elsewhere")


def test_messages_name_workspace_datasets_not_their_folders(data_root):
    """What a data error says about a folder in the data root: the dataset's name, never the
    server's path or the workspace's tag."""
    folder = data_root / "w" / ALICE / "pets"
    assert catalog.describe(folder) == "dataset 'pets'"
    assert catalog.describe(folder / "train" / "cat") == "dataset 'pets' (train/cat)"
    assert catalog.describe(data_root / "shared") == "dataset 'shared'"
    assert catalog.describe(data_root / ".tmp-pets-x") == "the new dataset"
    assert catalog.describe(data_root) == "the data folder"
    build("pets", owner=ALICE, n=1, classes=("cat",))
    with pytest.raises(catalog.DataError) as one_class:
        load_dataset(catalog.dataset_ref("pets", ALICE))
    text = str(one_class.value)
    assert "dataset 'pets'" in text and str(data_root) not in text and ALICE not in text


# ----- immutable ids --------------------------------------------------------------------------------
def test_each_dataset_gets_an_immutable_id_and_old_ones_get_one_on_first_listing(tmp_path):
    tag = "0123456789abcdef"
    first = datasets.create("pets", tag, classes=["cat", "dog"])
    ref = catalog.dataset_ref("pets", tag)
    made = (first / catalog.ID_FILE).read_text()
    assert len(made) == 32 and int(made, 16) >= 0
    assert datasets.dataset_id(ref) == made == datasets.dataset_id(ref)  # stable
    assert datasets.dataset_id("cifar10") == "cifar10"
    assert datasets.dataset_id(catalog.dataset_ref("nope", tag)) is None

    old = catalog.data_root(tag) / "old"  # made before ids existed: no id file
    (old / "cat").mkdir(parents=True)
    assert not (old / catalog.ID_FILE).exists()
    assert "old" in catalog.list_datasets(tag)
    assert len((old / catalog.ID_FILE).read_text()) == 32


def test_a_job_refuses_a_dataset_deleted_and_recreated_under_its_name(tmp_path):
    tag = "0123456789abcdef"
    ref = catalog.dataset_ref("pets", tag)
    datasets.create("pets", tag, classes=["cat", "dog"])
    args = {"managed": True, "user": tag, "dataset_id": datasets.dataset_id(ref)}
    assert datasets.managed_job(args, ref)  # the same dataset: fine
    datasets.delete(ref, tag)
    with pytest.raises(datasets.DatasetError, match="no dataset named"):
        datasets.managed_job(args, ref)
    datasets.create("pets", tag, classes=["cat", "dog"])  # a new one under the old name
    with pytest.raises(datasets.DatasetError, match="deleted or replaced"):
        datasets.managed_job(args, ref)
    with pytest.raises(datasets.DatasetError):  # never a server folder by its name
        datasets.managed_job({"managed": True, "user": tag}, "data")
