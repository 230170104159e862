"""core.experiments.sweep: the measured-cost sweep — its plan, timings for each point, budget and Stop."""

from __future__ import annotations

import pytest

from core.experiments import sweep
from core.jobs import runner as jobs
from core.models import scaling
from core.platform.progress import JobStatus, Progress


def test_default_plan_is_b0_to_b3_at_their_resolutions():
    points, batches, budget = sweep.plan({})
    assert [p.label for p in points] == ["B0", "B1", "B2", "B3"]
    assert [p.resolution for p in points] == [224, 240, 260, 300]
    assert [p.flops for p in points] == [
        scaling.official_network(v).flops for v in ("b0", "b1", "b2", "b3")
    ]
    assert batches == (1, 8) and budget == sweep.DEFAULT_BUDGET_S


def test_phi_plan_uses_the_formula_and_the_bases():
    points, batches, _ = sweep.plan(
        {"phis": [-1, 0.5], "alpha": 1.3, "base_resolution": 64, "batch_sizes": [8, 1, 8]}
    )
    expected = scaling.formula_network(-1, alpha=1.3, base_resolution=64)
    assert points[0].label == "φ = -1" and points[0].phi == -1
    assert (points[0].depth, points[0].resolution, points[0].params) == (
        expected.depth,
        expected.resolution,
        expected.params,
    )
    assert batches == (1, 8)  # sorted, without duplicates


@pytest.mark.parametrize(
    "args, message",
    [
        ({"phis": [-3], "base_resolution": 32}, "21 px; Keras builds EfficientNets from 32 px up"),
        ({"phis": [-4]}, "phi must be from -3 to 10"),
        ({"variants": ["b9"]}, "Unknown variant"),
        ({"phis": [i / 4 for i in range(13)]}, "1 to 12 networks"),
        ({"phis": []}, "1 to 12 networks"),
        ({"batch_sizes": [0]}, "batch sizes must be whole numbers from 1 to 64"),
        ({"batch_sizes": [1000]}, "from 1 to 64"),
        ({"batch_sizes": []}, "batch sizes"),
        ({"budget_s": 5}, "budget must be from 10 to 3600 seconds"),
        ({"budget_s": "fast"}, "budget"),
    ],
)
def test_bad_plans_are_refused_with_a_sentence(args, message):
    with pytest.raises(ValueError, match=message):
        sweep.plan(args)


@pytest.mark.slow
def test_sweep_times_each_point_at_each_batch_size():
    points = sweep.phi_points([-2, 0], base_resolution=48)
    progress = Progress()
    result = sweep.sweep(points, (1, 2), progress=progress)
    assert [p["label"] for p in result["points"]] == ["φ = -2", "φ = 0"]
    assert result["skipped"] == [] and not result["stopped"]
    assert result["device"].startswith(("CPU", "GPU"))
    for point, expected in zip(result["points"], points):
        assert point["flops"] == expected.flops and point["resolution"] == expected.resolution
        assert [t["batch"] for t in point["timings"]] == [1, 2]
        assert all(t["seconds"] > 0 and t["flops"] == expected.flops for t in point["timings"])
        assert point["ms_per_image"]["2"] == pytest.approx(point["timings"][1]["seconds"] * 500)
    snap = progress.snapshot()
    assert (snap.phase, snap.done, snap.total, snap.unit) == ("Timing networks", 2, 2, "network")


def test_stop_request_keeps_what_was_timed():
    progress = Progress()
    progress.request_stop()
    result = sweep.sweep(sweep.phi_points([0], base_resolution=32), progress=progress)
    assert result["stopped"] and result["points"] == [] and result["skipped"] == ["φ = 0"]


def test_budget_skips_the_remaining_networks():
    points = sweep.phi_points([0, 0.5, 1], base_resolution=32)
    result = sweep.sweep(points, (1,), budget_s=0.0)  # spent before the first: nothing timed
    assert result["points"] == [] and result["skipped"] == ["φ = 0", "φ = 0.5", "φ = 1"]
    assert not result["stopped"]


@pytest.mark.slow
def test_sweep_job_runs_in_a_worker_and_stops(tmp_path):
    job = jobs.submit(
        "sweep",
        {"phis": [0, 0.5, 1, 1.5], "base_resolution": 160, "batch_sizes": [1, 8]},
        runs_root=tmp_path,
    )
    assert jobs.KINDS["sweep"][2] == "measure"
    for _ in range(600):  # stop once the first network is timed
        snap = job.wait(timeout=0.5)
        if snap.done >= 1 or snap.status.finished:
            break
    job.stop()
    snap = job.wait(timeout=180)
    assert snap.status is JobStatus.STOPPED, snap.error
    result = snap.result
    assert result["stopped"] and 1 <= len(result["points"]) < 4
    assert result["skipped"] and result["points"][0]["label"] == "φ = 0"
    assert [t["batch"] for t in result["points"][0]["timings"]] == [1, 8]
