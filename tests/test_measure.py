"""core.measure: forward-pass timing, its stop and error paths (on a tiny model to stay fast)."""

import pytest

from core import measure
from core.progress import Progress


@pytest.fixture(scope="module")
def tiny_model():
    import keras

    return keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(4, 3),
                             keras.layers.GlobalAveragePooling2D()])


def test_time_forward_reports_each_batch_size(tiny_model):
    progress = Progress()
    timings = measure.time_forward(tiny_model, (1, 4), flops=1000, max_runs=3, progress=progress)
    assert [t.batch for t in timings] == [1, 4]
    for t in timings:
        assert t.seconds > 0 and 1 <= t.runs <= 3
        assert t.images_per_s == pytest.approx(t.batch / t.seconds)
        assert t.gmacs_per_s == pytest.approx(1000 * t.batch / t.seconds / 1e9)
    snap = progress.snapshot()
    assert snap["phase"] == "forward pass, batch 4" and snap["done"] == timings[1].runs + 1


def test_measure_finishes_progress_with_timings(tiny_model):
    progress = Progress()
    measure.measure(tiny_model, progress, flops=10, batch_sizes=(2,))
    snap = progress.snapshot()
    assert snap["status"] == "done" and snap["device"]
    assert [t.batch for t in snap["result"]] == [2]


def test_stop_request_ends_the_measurement_early(tiny_model):
    progress = Progress()
    progress.request_stop()
    measure.measure(tiny_model, progress)
    snap = progress.snapshot()
    assert snap["status"] == "stopped" and snap["result"] == []


def test_failure_is_reported_not_raised():
    class Broken:
        input_shape = (None, 8, 8, 3)

        def predict_on_batch(self, x):
            raise MemoryError("out of memory")

    progress = Progress()
    measure.measure(Broken(), progress)
    snap = progress.snapshot()
    assert snap["status"] == "error" and "out of memory" in snap["error"]


def test_build_model_rejects_tiny_resolutions():
    with pytest.raises(ValueError, match="32"):
        measure.build_model(1.0, 1.0, 16)
