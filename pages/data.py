"""Data page: import a zip or build a dataset in the browser (classes, uploads, camera), edit it,
and check its health before training.

Datasets live in the workspace's own data folder, one folder each (:mod:`core.data.datasets`). A
dataset made here is this workspace's, like its runs: only this workspace sees it, trains on it
and may change or delete it, within its disk quota. Datasets without an owner (from the command
line, or placed in the data folder) are shown to everyone, read-only.
"""

import time

import streamlit as st

from components import dataset_panel, errors, job_panel, plain, session
from core.data import catalog, datasets, images, names, zipimport
from core.data.names import MAX_CLASS_NAME
from core.platform.errors import UserError
from pages import ICONS

# Streamlit keeps an upload in the server's memory until it is saved as the import job's staging
# file in the workspace (it counts against the quota until the job has consumed it).
# server.maxUploadSize in .streamlit/config.toml must be at least this (it caps every upload).
ZIP_UPLOAD_MB = 200
IMAGE_UPLOAD_MB = images.MAX_FILE_BYTES // 2**20
IMAGE_TYPES = list(images.EXTENSIONS)


def notice(text: str) -> None:
    """Show ``text`` (a success) after the rerun that follows a change."""
    st.session_state["data_notice"] = text
    st.rerun()


def fresh_key(name: str) -> str:
    """A widget key that changes after each use, so an uploader or camera starts empty again."""
    return f"{name}_{st.session_state.get(f'{name}_n', 0)}"


def used(name: str) -> None:
    st.session_state[f"{name}_n"] = st.session_state.get(f"{name}_n", 0) + 1


def show_import_report(report: dict) -> None:
    """What an import kept, skipped and refused."""
    classes = ", ".join(f"{c} {n}" for c, n in report["classes"].items())
    st.success(
        f"Imported {plain(report['name'])}: {report['images']} images in "
        f"{len(report['classes'])} classes ({plain(classes)})."
    )
    for key, title in (("skipped", "Skipped entries"), ("invalid", "Not usable images")):
        if report[f"{key}_count"]:
            st.markdown(f"**{title}** ({report[f'{key}_count']})")
            st.dataframe(report[key], hide_index=True, key=f"data_report_{key}")


# ----- new datasets -------------------------------------------------------------------------------
def start_import(upload, name: str) -> None:
    """Save the upload as a staging file in this workspace and start the import job on it."""
    owner = session.data_owner()
    try:
        names.check_new_name(name, owner)  # a bad or taken name: said now, not after the queue
        session.make_room(upload.size, "this zip")  # before a byte is written
        staged = zipimport.stage_upload(upload, owner)
        try:
            session.start_job(
                "zip_import",
                {"staging": staged, "name": name, "owner": owner, "label": upload.name},
            )
        except Exception:  # refused (QueueFull): no job will consume it
            zipimport.discard_staged(owner, staged)
            raise
    except (UserError, OSError) as exc:
        errors.show(exc, "Nothing was imported: ")
    else:
        used("data_zip")
        st.rerun()


def import_outcome(job, snap) -> None:
    """A finished import: its report, and the new dataset picked below (once per job)."""
    report = snap.result
    if st.session_state.get("data_import_picked") != job.id:
        st.session_state["data_import_picked"] = job.id
        st.session_state["data_pick"] = catalog.dataset_ref(report["name"], session.data_owner())
    show_import_report(report)


def new_dataset_section() -> None:
    zip_tab, empty_tab = st.tabs(["Import a zip", "Start an empty dataset"])
    with zip_tab:
        st.caption(
            f"One folder per class (or train/, val/ and test/ folders of class folders), "
            f"optionally inside one folder. Up to {ZIP_UPLOAD_MB} MB; hidden files, "
            "__MACOSX and non-images are skipped and listed; every image is checked."
        )
        name = st.text_input("Name of the new dataset", key="data_zip_name", max_chars=64)
        upload = st.file_uploader(
            "Zip file", type=["zip"], key=fresh_key("data_zip"), max_upload_size=ZIP_UPLOAD_MB
        )
        job = session.my_job("zip_import")
        busy = job is not None and job.snapshot().active
        if st.button("Import", key="data_import", type="primary", disabled=upload is None or busy):
            start_import(upload, name)
        job_panel.show(
            "zip_import", "data_zip_job", result=import_outcome, failed="Nothing was imported"
        )
    with empty_tab:
        name = st.text_input("Name of the new dataset", key="data_new_name", max_chars=64)
        if st.button("Create", key="data_create", disabled=not name.strip()):
            try:
                session.make_room(0, "a new dataset")
                datasets.create(name, session.data_owner())
            except UserError as exc:
                errors.show(exc)
            else:
                st.session_state["data_pick"] = catalog.dataset_ref(
                    name.strip(), session.data_owner()
                )
                notice(f"Created dataset {name.strip()}: now add classes and images.")


# ----- editing one's own dataset ------------------------------------------------------------------
def call(action, *args, done: str) -> None:
    """Run one core change as this workspace; its error becomes a message, success a notice."""
    try:
        action(*args, session.data_owner())
    except (UserError, OSError) as exc:
        errors.show(exc)
    else:
        notice(done)


def add_images(name: str, class_name: str, files, widget: str) -> None:
    try:
        session.check_upload_count(len(files))
        session.make_room(sum(len(data) for _, data in files), "these images")
        report = datasets.add_images(name, class_name, files, session.data_owner())
    except (UserError, OSError) as exc:
        errors.show(exc)
        return
    used(widget)
    for item in report["rejected"]:
        st.session_state.setdefault("data_rejected", []).append(item)
    notice(
        f"Added {len(report['added'])} image(s) to {class_name}"
        + (f"; {len(report['rejected'])} refused (see below)." if report["rejected"] else ".")
    )


def edit_section(name: str, info: datasets.DatasetInfo) -> None:
    st.subheader("Classes and images", anchor=False)
    left, right = st.columns(2)
    new_class = left.text_input("New class", key="data_new_class", max_chars=MAX_CLASS_NAME)
    if left.button("Add class", key="data_add_class", disabled=not new_class.strip()):
        call(datasets.add_class, name, new_class, done=f"Added class {new_class.strip()}.")
    if not info.classes:
        right.info("No classes yet: add at least two.")
        return
    if st.session_state.get("data_class") not in info.classes:
        st.session_state.pop("data_class", None)
    class_name = right.selectbox("Class", list(info.classes), key="data_class")

    upload_tab, camera_tab, files_tab, class_tab = st.tabs(
        ["Upload images", "Camera", "Images of this class", "Rename or delete the class"]
    )
    with upload_tab:
        files = st.file_uploader(
            "Images",
            type=IMAGE_TYPES,
            accept_multiple_files=True,
            key=fresh_key("data_upload"),
            max_upload_size=IMAGE_UPLOAD_MB,
        )
        if st.button("Add images", key="data_add_images", disabled=not files):
            add_images(name, class_name, [(f.name, f.getvalue()) for f in files], "data_upload")
    with camera_tab:
        photo = st.camera_input("Take a photo", key=fresh_key("data_camera"))
        if st.button("Add photo", key="data_add_photo", disabled=photo is None):
            stamp = time.strftime("%Y%m%d-%H%M%S")
            add_images(name, class_name, [(f"camera-{stamp}.jpg", photo.getvalue())], "data_camera")
    with files_tab:
        listed = datasets.list_images(name, class_name)
        st.caption(f"{len(listed)} image(s).")
        doomed = st.multiselect("Images to delete", listed, key="data_doomed")
        if st.button("Delete selected images", key="data_delete_images", disabled=not doomed):
            call(datasets.delete_images, name, doomed, done=f"Deleted {len(doomed)} image(s).")
    with class_tab:
        renamed = st.text_input("New name", key="data_rename_to", max_chars=MAX_CLASS_NAME)
        if st.button("Rename class", key="data_rename", disabled=not renamed.strip()):
            call(
                datasets.rename_class,
                name,
                class_name,
                renamed,
                done=f"Renamed class {class_name} to {renamed.strip()}.",
            )
        with st.popover("Delete class…"):
            st.text(f"Delete class {class_name} and its {info.classes[class_name]} image(s)?")
            if st.button("Yes, delete the class", key="data_delete_class", type="primary"):
                call(datasets.delete_class, name, class_name, done=f"Deleted class {class_name}.")
    for item in st.session_state.pop("data_rejected", []):
        st.warning(f"Refused {plain(item['file'])}: {plain(item['reason'])}")

    with st.popover("Delete this dataset…", icon=":material/delete:"):
        st.text(f"Delete dataset {info.name} and all its images? This cannot be undone.")
        if st.button("Yes, delete it", key="data_delete_dataset", type="primary"):
            call(datasets.delete, name, done=f"Deleted dataset {info.name}.")


# ----- the page -----------------------------------------------------------------------------------
def render() -> None:
    """The Data page: new datasets, then the picked one's classes, editing and health check."""
    st.title(f"{ICONS['data']} Data", anchor=False)
    st.caption(
        "Import a zip or build a dataset here, check it, then pick it on the Train page. "
        "Datasets you make are your workspace's, like your runs: only your workspace sees, "
        "trains on and changes them (see the sidebar for how to reopen it elsewhere). "
        "Datasets added by the server's operator are open to everyone, read-only."
    )
    if "data_notice" in st.session_state:
        st.success(plain(st.session_state.pop("data_notice")))

    st.header("New dataset", anchor=False)
    new_dataset_section()

    st.header("Datasets", anchor=False)
    names = dataset_panel.visible_datasets()
    if not names:
        st.info("No datasets yet: import a zip or start an empty dataset above.")
        return
    if st.session_state.get("data_pick") not in names:
        st.session_state.pop("data_pick", None)
    name = st.selectbox("Dataset", names, key="data_pick", format_func=session.dataset_label)
    try:
        info = datasets.info(name)
    except UserError as exc:  # deleted meanwhile
        errors.show(exc)
        return
    mine = session.is_mine(info.owner)
    st.caption(
        (
            "Yours: you can change it."
            if mine
            else "Read-only: added on the server, not in your workspace; anyone may train on it."
        )
        + (f" Split folders: {', '.join(info.splits)}." if info.splits else "")
    )
    if info.classes:
        st.dataframe(
            [{"class": c, "images": n} for c, n in info.classes.items()],
            hide_index=True,
            key="data_classes",
        )
    if mine:
        edit_section(name, info)

    st.subheader("Health check", anchor=False)
    dataset_panel.check_panel(name, "data_health")


if __name__ == "__main__":  # run by the legacy pages/ router: see pages/__init__.py
    import app

    app.main()
