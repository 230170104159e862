"""AppTest for the Data page: import a zip, build a dataset (classes, uploads, camera), edit and
delete it; datasets private to their session like runs, the operator's read-only; the health check
as a job, also on the Train page."""

from __future__ import annotations

import hashlib
import io
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from app_session import go, open_page
from conftest import texts
from PIL import Image
from streamlit.testing.v1 import AppTest

from core.data import catalog, datasets
from core.jobs import runner as jobs


def jpeg(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def zip_bytes(n: int = 4) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for c in ("cat", "dog"):
            for i in range(n):
                z.writestr(f"pets/{c}/{i}.jpg", jpeg(i + (100 if c == "dog" else 0)))
        z.writestr("__MACOSX/pets/._cat", b"junk")
    return buf.getvalue()


def owner_of(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def ref(name: str, token: str = "alice") -> str:
    """How core names the dataset ``name`` of the workspace whose secret is ``token``."""
    return catalog.dataset_ref(name, owner_of(token))


@pytest.fixture
def isolated(monkeypatch, tmp_path) -> Path:
    monkeypatch.setenv("EFFNET_LAB_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("EFFNET_LAB_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("EFFNET_LAB_CACHE", str(tmp_path / "cache"))
    return tmp_path


def session(page: str = "data", token: str = "alice") -> AppTest:
    """A visitor's session of the app (``token`` tells visitors apart) on ``page``."""
    return open_page(page, token=token)


def import_and_wait(at: AppTest, timeout: float = 120) -> AppTest:
    """Click Import, then rerun until the import job has ended (it runs in a worker process)."""
    at.button(key="data_import").click().run()
    deadline = time.time() + timeout
    while time.time() < deadline and not (at.success or at.error):
        time.sleep(0.5)
        at.run()
    return at


def test_import_a_zip_through_the_page(isolated):
    at = session().run()
    assert not at.exception
    assert "No datasets yet" in texts(at.info)
    at.text_input(key="data_zip_name").set_value("pets")
    at.file_uploader(key="data_zip_0").set_value(("pets.zip", zip_bytes(), "application/zip"))
    at.run()
    import_and_wait(at)
    assert not at.exception and not at.error
    assert "Imported pets: 8 images in 2 classes" in texts(at.success)
    assert [p.name for p in (isolated / "data" / "w" / owner_of("alice")).iterdir()] == ["pets"]
    assert at.selectbox(key="data_pick").value == ref("pets")
    assert "Yours" in texts(at.caption)
    assert datasets.owner_of(ref("pets")) == owner_of("alice")
    skipped = at.dataframe[0].value  # the import report comes first
    assert list(skipped["entry"]) == ["__MACOSX/pets/._cat"]
    at.file_uploader(key="data_zip_1")  # a fresh, empty uploader for the next zip

    at.text_input(key="data_zip_name").set_value("pets")  # the same name again
    at.file_uploader(key="data_zip_1").set_value(("again.zip", zip_bytes(), "application/zip"))
    at.run()
    at.button(key="data_import").click().run()  # refused at once: no job, no staging file
    assert "Nothing was imported: A dataset named 'pets' already exists" in texts(at.error)
    assert [p.name for p in (isolated / "data" / "w" / owner_of("alice")).iterdir()] == ["pets"]


def test_an_import_survives_a_reload_and_a_failed_one_says_why_in_one_line(isolated):
    at = session().run()
    at.text_input(key="data_zip_name").set_value("pets")
    bad = io.BytesIO()
    with zipfile.ZipFile(bad, "w") as z:  # one class only: refused by the worker
        z.writestr("cat/0.jpg", jpeg(0))
    at.file_uploader(key="data_zip_0").set_value(("one.zip", bad.getvalue(), "application/zip"))
    at.run()
    at.button(key="data_import").click().run()
    job_id = at.session_state["job_zip_import"]
    reloaded = session().run()  # a new session of the same workspace finds the job again
    deadline = time.time() + 120
    while time.time() < deadline and not reloaded.error:
        time.sleep(0.5)
        reloaded.run()
    assert reloaded.session_state["job_zip_import"] == job_id
    (error,) = reloaded.error
    assert error.value.startswith("Nothing was imported: Only one class")
    assert "\n" not in error.value and str(isolated) not in error.value
    assert list((isolated / "data" / "w" / owner_of("alice")).iterdir()) == []


def test_build_edit_and_delete_a_dataset_in_the_browser(isolated):
    at = session().run()
    at.text_input(key="data_new_name").set_value("my_pets").run()
    at.button(key="data_create").click().run()
    assert "Created dataset my_pets" in texts(at.success)
    for name in ("*cat*", "dog"):
        at.text_input(key="data_new_class").set_value(name).run()
        at.button(key="data_add_class").click().run()
        assert f"Added class {name}." in texts(at.success)  # literally, not italic
    assert datasets.info(ref("my_pets")).classes == {"*cat*": 0, "dog": 0}

    at.selectbox(key="data_class").set_value("*cat*").run()
    at.file_uploader(key="data_upload_0").set_value(
        [(f"{i}.jpg", jpeg(i), "image/jpeg") for i in range(3)] + [("bad.jpg", b"no", "image/jpeg")]
    )
    at.run()
    at.button(key="data_add_images").click().run()
    assert "Added 3 image(s) to *cat*; 1 refused" in texts(at.success)
    assert "Refused bad.jpg" in texts(at.warning)
    at.camera_input(key="data_camera_0").set_value(("photo.jpg", jpeg(9), "image/jpeg"))
    at.run()
    at.button(key="data_add_photo").click().run()
    assert "Added 1 image(s) to *cat*." in texts(at.success)
    assert datasets.info(ref("my_pets")).classes["*cat*"] == 4
    assert any(f.startswith("*cat*/camera-") for f in datasets.list_images(ref("my_pets"), "*cat*"))

    at.multiselect(key="data_doomed").set_value(["*cat*/0.jpg"]).run()
    at.button(key="data_delete_images").click().run()
    assert "Deleted 1 image(s)." in texts(at.success)
    at.text_input(key="data_rename_to").set_value("kitten").run()
    at.button(key="data_rename").click().run()
    assert datasets.info(ref("my_pets")).classes == {"dog": 0, "kitten": 3}
    at.selectbox(key="data_class").set_value("dog").run()
    at.button(key="data_delete_class").click().run()
    assert datasets.info(ref("my_pets")).classes == {"kitten": 3}
    at.button(key="data_delete_dataset").click().run()
    assert not at.exception and "Deleted dataset my_pets." in texts(at.success)
    assert datasets.list_datasets(owner_of("alice")) == []


def test_datasets_are_private_and_the_operators_are_read_only(isolated):
    datasets.create("shared", owner=None, classes=["a", "b"])  # the command line's
    alice = session(token="alice").run()
    alice.text_input(key="data_new_name").set_value("alices").run()
    alice.button(key="data_create").click().run()
    assert alice.selectbox(key="data_pick").options == ["alices", "shared"]
    assert alice.button(key="data_add_class")  # hers: the edit controls are there

    bob = session(token="bob").run()
    assert bob.selectbox(key="data_pick").options == ["shared"]  # never sees alice's
    assert "Read-only" in texts(bob.caption)
    assert not [b for b in bob.button if b.key in ("data_add_class", "data_delete_dataset")]
    with pytest.raises(datasets.DatasetError):  # nor can a crafted call change it
        datasets.delete(ref("alices"), owner_of("bob"))

    # The Train page offers each session the same datasets.
    train_bob = session("train", "bob").run()
    assert train_bob.selectbox(key="train_data").options == ["cifar10", "shared"]
    train_alice = session("train", "alice").run()
    assert train_alice.selectbox(key="train_data").options == ["cifar10", "alices", "shared"]
    assert not train_alice.exception


@pytest.mark.slow
def test_the_health_check_runs_as_a_job_on_both_pages(isolated):
    at = session().run()  # one session across pages
    at.text_input(key="data_zip_name").set_value("pets")
    at.file_uploader(key="data_zip_0").set_value(("pets.zip", zip_bytes(6), "application/zip"))
    at.run()
    import_and_wait(at)
    at.button(key="data_health_start").click().run()
    check = jobs.open_job(at.session_state["job_data_check"])
    assert check.args["dataset_id"] == datasets.dataset_id(ref("pets"))  # checked in the worker
    deadline = time.time() + 120
    while time.time() < deadline and not [m for m in at.metric if m.label == "Leaks"]:
        time.sleep(1)
        at.run()
    assert not at.exception and not at.error
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Images"] == "12" and metrics["Classes"] == "2" and metrics["Leaks"] == "0"
    assert at.button(key="data_health_start").label == "Check again"
    assert len(at.image) == 2  # the sample grid: one row of thumbnails per class
    at.toggle(key="data_health_augment").set_value(True).run()
    assert not at.exception and len(at.image) == 2 + 2  # plus a row per class: 5 draws of one image

    go(at, "train")
    at.selectbox(key="train_data").set_value(ref("pets")).run()
    (expander,) = [e for e in at.expander if "Dataset check" in e.label]
    assert "pets" in expander.label
    assert {m.label: m.value for m in at.metric}["Images"] == "12"  # this session's report
    at.selectbox(key="train_data").set_value("cifar10").run()
    assert at.button(key="train_health_start").label == "Check this dataset"  # not checked yet
