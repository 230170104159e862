"""A dataset health check's report (:mod:`core.data.health`), typed.

The report crosses process boundaries (the check runs as a job; the Data and Train pages and
``python -m core data check --json`` read it) and is cached on disk, so :class:`HealthReport` has
``to_dict()`` and ``from_dict()`` for its JSON form. That form is the one the check has always
written: each list beside its full count (``leaks`` and ``leaks_count``, ...), file pairs as
two-item lists, sizes as ``[width, height]``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace


@dataclass(frozen=True)
class Unreadable:
    """An image file that cannot be read, and why."""

    file: str
    reason: str


@dataclass(frozen=True)
class Leak:
    """Two duplicate images (exact or near) that sit in different splits.

    Attributes:
        a, b: The files, relative to the dataset folder.
        splits: Their splits, in the same order.
        kind: "exact" (same bytes) or "near" (perceptual hash and thumbnails).
    """

    a: str
    b: str
    splits: tuple[str, str]
    kind: str


@dataclass(frozen=True)
class OddSize:
    """An image whose size stands out (tiny, or an extreme aspect ratio), as stored."""

    file: str
    width: int
    height: int


@dataclass(frozen=True)
class CheckSettings:
    """The thresholds a report was made with.

    Attributes:
        near_bits: dHash bits two near duplicates may differ in (of 64).
        near_correlation: The least correlation of their 16×16 grey thumbnails.
        tiny_side: A shorter side below this is tiny.
        extreme_aspect: A longer over shorter side above this is extreme.
    """

    near_bits: int
    near_correlation: float
    tiny_side: int
    extreme_aspect: float


@dataclass(frozen=True)
class HealthReport:
    """What to fix in a dataset before training. Lists are cut to the check's ``LIST_LIMIT``
    entries; each ``*_count`` is the full number.

    Attributes:
        version: The check's version (a cached report of another version is not reused).
        layout: The folder layout, in words ("train/ and test/ folders", ...).
        splits: Images per class in each split ("all (split per run)" when drawn per run).
        classes: Images per class.
        images: Image files found (checked: at most the check's ``MAX_IMAGES``).
        readable: Those that could be read.
        unreadable, unreadable_count: Files that cannot be read.
        duplicates, duplicates_count: Pairs of files with the same bytes.
        near_duplicates, near_duplicates_count: Pairs that look the same.
        leaks, leaks_count: Duplicate pairs in different splits.
        imbalance: The largest class over the smallest (None when a class is empty).
        tiny, tiny_count: Images with a shorter side under ``settings.tiny_side``.
        extreme_aspect, extreme_aspect_count: Images longer than ``settings.extreme_aspect``:1.
        samples: A few files per class, spread over it, for a grid.
        problems: What stops training (an empty class, fewer than two classes).
        notes: What to know (a partial check, where splits come from).
        settings: The thresholds used.
        dataset: The data spec checked.
        cached: The report was reused (the dataset is unchanged since).
        seconds: How long the check (or the cache lookup) took.
    """

    version: int
    layout: str
    splits: dict[str, dict[str, int]]
    classes: dict[str, int]
    images: int
    readable: int
    unreadable: tuple[Unreadable, ...]
    unreadable_count: int
    duplicates: tuple[tuple[str, str], ...]
    duplicates_count: int
    near_duplicates: tuple[tuple[str, str], ...]
    near_duplicates_count: int
    leaks: tuple[Leak, ...]
    leaks_count: int
    imbalance: float | None
    tiny: tuple[OddSize, ...]
    tiny_count: int
    extreme_aspect: tuple[OddSize, ...]
    extreme_aspect_count: int
    samples: dict[str, tuple[str, ...]]
    problems: tuple[str, ...]
    notes: tuple[str, ...]
    settings: CheckSettings
    dataset: str = ""
    cached: bool = False
    seconds: float = 0.0

    def checked(self, dataset: str, *, cached: bool, seconds: float) -> HealthReport:
        """This report as the answer to checking ``dataset`` now."""
        return replace(self, dataset=dataset, cached=cached, seconds=seconds)

    def to_dict(self) -> dict:
        """The JSON form (a job's result, the cache file, ``--json``)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out.update(
            unreadable=[{"file": u.file, "reason": u.reason} for u in self.unreadable],
            duplicates=[list(pair) for pair in self.duplicates],
            near_duplicates=[list(pair) for pair in self.near_duplicates],
            leaks=[
                {"a": x.a, "b": x.b, "splits": list(x.splits), "kind": x.kind} for x in self.leaks
            ],
            tiny=[_size_dict(x) for x in self.tiny],
            extreme_aspect=[_size_dict(x) for x in self.extreme_aspect],
            samples={c: list(files) for c, files in self.samples.items()},
            problems=list(self.problems),
            notes=list(self.notes),
            settings={f.name: getattr(self.settings, f.name) for f in fields(CheckSettings)},
        )
        return out

    @classmethod
    def from_dict(cls, values: dict) -> HealthReport:
        """From the JSON form.

        Raises:
            KeyError, TypeError, ValueError: Not a report (e.g. a damaged cache file).
        """
        return cls(
            **{
                name: values[name]
                for name in (
                    "version",
                    "layout",
                    "splits",
                    "classes",
                    "images",
                    "readable",
                    "unreadable_count",
                    "duplicates_count",
                    "near_duplicates_count",
                    "leaks_count",
                    "imbalance",
                    "tiny_count",
                    "extreme_aspect_count",
                )
            },
            unreadable=tuple(Unreadable(u["file"], u["reason"]) for u in values["unreadable"]),
            duplicates=tuple((a, b) for a, b in values["duplicates"]),
            near_duplicates=tuple((a, b) for a, b in values["near_duplicates"]),
            leaks=tuple(
                Leak(x["a"], x["b"], tuple(x["splits"]), x["kind"]) for x in values["leaks"]
            ),
            tiny=tuple(_odd_size(x) for x in values["tiny"]),
            extreme_aspect=tuple(_odd_size(x) for x in values["extreme_aspect"]),
            samples={c: tuple(files) for c, files in values["samples"].items()},
            problems=tuple(values["problems"]),
            notes=tuple(values["notes"]),
            settings=CheckSettings(**values["settings"]),
            dataset=values.get("dataset", ""),
            cached=bool(values.get("cached", False)),
            seconds=values.get("seconds", 0.0),
        )


def _size_dict(x: OddSize) -> dict:
    return {"file": x.file, "size": [x.width, x.height]}


def _odd_size(values: dict) -> OddSize:
    width, height = values["size"]
    return OddSize(values["file"], width, height)
