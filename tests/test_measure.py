"""core.experiments.measure: forward-pass timing, its stop and error paths (on a tiny model to stay fast)."""

import time

import pytest

from core.experiments import measure
from core.platform.progress import Progress


@pytest.fixture(scope="module")
def tiny_model():
    import keras

    return keras.Sequential(
        [keras.Input((32, 32, 3)), keras.layers.Conv2D(4, 3), keras.layers.GlobalAveragePooling2D()]
    )


def test_time_forward_reports_each_batch_size(tiny_model):
    progress = Progress()
    timings = measure.time_forward(tiny_model, (1, 4), flops=1000, max_runs=3, progress=progress)
    assert [t.batch for t in timings] == [1, 4]
    for t in timings:
        assert t.seconds > 0 and 1 <= t.runs <= 3
    snap = progress.snapshot()
    assert snap.phase == "forward pass, batch 4" and snap.done == timings[1].runs + 1
    assert snap.total == 4  # max_runs timed passes plus the warm-up


class SlowFirstCall:
    """A fake model: the first call per shape takes 0.4 s (tracing), later ones 0.05 s."""

    input_shape = (None, 8, 8, 3)

    def __init__(self):
        self.shapes = set()

    def predict_on_batch(self, x):
        first = x.shape not in self.shapes
        self.shapes.add(x.shape)
        time.sleep(0.4 if first else 0.05)


def test_timing_excludes_the_warm_up_and_gives_rates():
    [t] = measure.time_forward(SlowFirstCall(), (10,), flops=2_000_000, max_runs=3)
    assert t.runs == 3 and t.seconds == pytest.approx(0.05, abs=0.03)  # not the 0.4 s warm-up
    assert t.images_per_s == pytest.approx(200, rel=0.4)  # 10 images per 0.05 s
    assert t.gmacs_per_s == pytest.approx(0.4, rel=0.4)  # 2 M multiply-adds × 200 img/s


@pytest.mark.slow
def test_measure_job_times_each_batch_size_on_this_device():
    progress = Progress()
    result = measure.measure_job(
        {"width": 1.0, "depth": 1.0, "resolution": 32, "flops": 10, "batch_sizes": [2]}, progress
    )
    [timing] = [measure.Timing.from_dict(t) for t in result]
    assert timing.batch == 2 and timing.flops == 10 and timing.seconds > 0
    assert measure.Timing.from_dict(timing.to_dict()) == timing
    assert progress.snapshot().device.startswith(("CPU", "GPU"))


@pytest.mark.slow
def test_stop_request_ends_the_measurement_early():
    progress = Progress()
    progress.request_stop()
    assert measure.measure_job({"width": 1.0, "depth": 1.0, "resolution": 32}, progress) == []


def test_build_model_rejects_tiny_resolutions():
    with pytest.raises(ValueError, match="32"):
        measure.build_model(1.0, 1.0, 16)
