"""core.models.scaling: exact parameter counts against Keras, FLOPs against the paper, rounding, errors."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from core.models import layer_cost, scaling

PHI_GRID = [i / 20 for i in range(141)]


@pytest.fixture(scope="module")
def keras_efficientnet():
    """Keras's own EfficientNet builder (the reference), clearing Keras's state after the module
    (once: each ``clear_session`` runs a full garbage collection, ~0.4 s with TensorFlow loaded)."""
    import keras

    from core.platform import _keras_private

    yield _keras_private.efficientnet_builder()
    keras.backend.clear_session()


# ----- parameters equal Keras's count_params() ----------------------------------------------------
@pytest.mark.parametrize("variant", list(scaling.OFFICIAL))
@pytest.mark.slow  # 1 s (B0) to 12 s (B7) a build; the networks below B0 stay in the quick loop
def test_params_equal_keras_for_official_variants(variant, keras_efficientnet):
    v = scaling.OFFICIAL[variant]
    model = keras_efficientnet(v.width, v.depth, v.resolution, weights=None)
    assert scaling.official_network(variant).params == model.count_params()


@pytest.mark.parametrize(
    "phi, bases",
    [
        (0.5, {}),
        (2.75, {}),
        (1.5, {"alpha": 1.3, "beta": 1.25, "gamma": 1.05}),
    ],
)
@pytest.mark.slow  # networks larger than B0: over a second each
def test_params_equal_keras_for_formula_networks(phi, bases, keras_efficientnet):
    m = scaling.multipliers(phi, **bases)
    model = keras_efficientnet(m.width, m.depth, m.resolution, weights=None)
    assert scaling.formula_network(phi, **bases).params == model.count_params()


@pytest.mark.parametrize(
    "phi, bases",
    [
        (-1.0, {}),
        (-2.5, {}),
        (-3.0, {}),
        (
            -3.0,
            {"alpha": 2.0, "beta": 2.0, "gamma": 1.0},
        ),  # width and depth 0.125: minimum channels
        pytest.param(  # nearly B0's size: over a second
            -1.5, {"alpha": 1.3, "beta": 1.45, "gamma": 1.2}, marks=pytest.mark.slow
        ),
    ],
)
def test_params_equal_keras_for_networks_smaller_than_b0(phi, bases, keras_efficientnet):
    """Negative φ: widths and depths below 1, rounded by Keras's own builder."""
    m = scaling.multipliers(phi, **bases)
    assert m.width < 1 and m.depth <= 1
    # Parameters do not depend on the input size; Keras builds from 32 px up.
    model = keras_efficientnet(m.width, m.depth, max(32, m.resolution), weights=None)
    assert scaling.formula_network(phi, **bases).params == model.count_params()


@pytest.mark.slow
def test_build_efficientnet_builds_networks_smaller_than_b0():
    """core.models.efficientnet builds width/depth below 1, with the layers core.models.scaling predicts."""
    import keras

    from core.models.efficientnet import build_efficientnet

    m = scaling.multipliers(-3)
    model = build_efficientnet(
        "b0", width=m.width, depth=m.depth, input_shape=(m.resolution, m.resolution, 3)
    )
    net = scaling.formula_network(-3)
    assert model.count_params() == net.params
    blocks = {layer.name.split("_")[0] for layer in model.layers if layer.name.startswith("block")}
    assert [r.layers for r in net.stages[1:-1]] == [1, 2, 2, 2, 2, 3, 1]  # B0: 1, 2, 2, 3, 3, 4, 1
    assert len(blocks) == 13
    assert model.get_layer("stem_conv").filters == net.stages[0].channels == 24
    keras.backend.clear_session()


# ----- FLOPs --------------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", list(scaling.OFFICIAL))
def test_flops_within_ten_percent_of_paper(variant):
    flops = scaling.official_network(variant).flops
    assert flops == pytest.approx(scaling.PAPER_FLOPS[variant], rel=0.10)


def test_flops_and_params_grow_with_phi():
    nets = [scaling.formula_network(phi) for phi in [i / 20 for i in range(-60, 0)] + PHI_GRID]
    assert all(a.flops <= b.flops for a, b in zip(nets, nets[1:]))
    assert all(a.params <= b.params for a, b in zip(nets, nets[1:]))
    integer = [scaling.formula_network(phi).flops for phi in range(8)]
    assert all(a < b for a, b in zip(integer, integer[1:]))
    # With the paper's bases each step of phi roughly doubles FLOPs (constraint 1.92).
    assert 1.5 < integer[4] / integer[3] < 2.5


def test_official_flops_grow_with_variant():
    flops = [scaling.official_network(v).flops for v in scaling.OFFICIAL]
    assert flops == sorted(flops) and len(set(flops)) == len(flops)


# ----- the stage table ----------------------------------------------------------------------------
def test_b0_stage_table_matches_paper_table_1():
    net = scaling.official_network("b0")
    assert [r.resolution for r in net.stages] == [224, 112, 112, 56, 28, 14, 14, 7, 7]
    assert [r.channels for r in net.stages] == [32, 16, 24, 40, 80, 112, 192, 320, 1280]
    assert [r.layers for r in net.stages] == [1, 1, 2, 2, 3, 3, 4, 1, 1]
    assert net.stages[0].operator == "Conv3x3"
    assert net.stages[3].operator.startswith("MBConv6, k5x5")
    # Keras's own count for EfficientNetB0 (weights=None, 1000 classes) is 5,330,571.
    assert net.params == 5_330_571


def test_odd_resolutions_halve_upwards():
    net = scaling.network(1.0, 1.0, 225)
    assert [r.resolution for r in net.stages] == [225, 113, 113, 57, 29, 15, 15, 8, 8]


def test_stage_table_follows_width_and_depth():
    b7 = scaling.official_network("b7")
    assert [r.layers for r in b7.stages] == [1, 4, 7, 7, 10, 10, 13, 4, 1]
    assert [r.channels for r in b7.stages] == [64, 32, 48, 80, 160, 224, 384, 640, 2560]


def test_to_dict_is_json_ready():
    data = json.loads(json.dumps(scaling.official_network("b2").to_dict()))
    assert set(data) == {"width", "depth", "resolution", "params", "flops", "stages"}
    assert data["params"] == 9177569 and len(data["stages"]) == 9
    assert {"stage", "operator", "resolution", "channels", "layers"} <= set(data["stages"][0])


# ----- multipliers --------------------------------------------------------------------------------
def test_negative_phi_shrinks_b0():
    m = scaling.multipliers(-2)
    assert m.depth == pytest.approx(1.2**-2) and m.width == pytest.approx(1.1**-2)
    assert m.resolution == 169  # 224 / 1.15**2 = 169.4
    net, b0 = scaling.formula_network(-2), scaling.official_network("b0")
    assert net.params < b0.params and net.flops < b0.flops
    # Rounding up (channels, layers) keeps more than the formula's 1.92^-2 = 0.27 of B0's FLOPs.
    assert b0.flops * m.flops_factor < net.flops < 0.5 * b0.flops
    assert min(r.channels for r in scaling.network(0.1, 0.1, 32).stages) == 8  # never below 8
    assert {r.layers for r in scaling.network(0.1, 0.1, 32).stages} == {1}  # never below 1


def test_multipliers_at_phi_zero_and_one():
    zero = scaling.multipliers(0)
    assert (zero.depth, zero.width, zero.resolution, zero.flops_factor) == (1, 1, 224, 1)
    one = scaling.multipliers(1)
    assert one.depth == pytest.approx(1.2) and one.width == pytest.approx(1.1)
    assert one.resolution == 258  # 224 * 1.15 = 257.6
    assert one.constraint == pytest.approx(1.2 * 1.1**2 * 1.15**2)
    assert one.ideal_flops_factor == 2.0


def test_flops_factor_is_constraint_to_the_phi():
    m = scaling.multipliers(2.5, alpha=1.3, beta=1.1, gamma=1.2)
    assert m.flops_factor == pytest.approx((1.3 * 1.1**2 * 1.2**2) ** 2.5)
    assert m.ideal_flops_factor == pytest.approx(2**2.5)


def test_resolution_rounds_halves_up():
    # 34 * 1.25 = 42.5: halves round up to 43 (Python's round() would give 42).
    assert scaling.multipliers(1, 1.0, 1.0, 1.25, base_resolution=34).resolution == 43
    assert scaling.multipliers(1, 1.0, 1.0, 1.125, base_resolution=36).resolution == 41  # 40.5
    assert scaling.multipliers(1, 1.0, 1.0, 1.1, base_resolution=100).resolution == 110


# ----- rounding, exactly as keras/src/applications/efficientnet.py --------------------------------
@pytest.mark.parametrize(
    "filters, width, divisor, expected",
    [
        (32, 1.0, 8, 32),  # already a multiple
        (4, 1.0, 8, 8),  # never below one divisor
        (1, 1.0, 8, 8),
        (12, 1.0, 8, 16),  # exactly half way rounds up
        (17, 1.0, 8, 16),  # below half way rounds down (16 >= 0.9 * 17)
        (19, 1.0, 8, 24),  # rounding down to 16 would lose > 10 % (16 < 17.1): one divisor back
        (11, 1.0, 8, 16),  # the same rule near the minimum: 8 < 9.9
        (16, 1.1, 8, 16),  # 17.6 -> 16, within 10 %
        (32, 1.8, 8, 56),  # 57.6 -> 56
        (1280, 2.0, 8, 2560),
        (22, 1.0, 16, 32),  # 22 -> 16 loses > 10 % with divisor 16
        (32, 0.7513, 8, 24),  # width below 1 (φ = -3): 24.04 -> 24
        (1280, 0.7513, 8, 960),  # 961.7 -> 960
        (40, 0.25, 8, 16),  # 10 -> 8 loses > 10 %: one divisor back
        (16, 0.125, 8, 8),  # never below one divisor
    ],
)
def test_round_filters_edge_cases(filters, width, divisor, expected):
    assert layer_cost.round_filters(filters, width, divisor) == expected


@pytest.mark.parametrize(
    "repeats, depth, expected",
    [
        (1, 1.0, 1),
        (4, 0.5787, 3),  # depth below 1 (φ = -3): 2.31 rounds up
        (1, 0.125, 1),  # never below one layer
        (2, 1.1, 3),  # 2.2 rounds up
        (3, 1.4, 5),  # 4.2 rounds up
        (2, 1.5, 3),  # exact stays
        (1, 3.1, 4),
        (4, 1.25, 5),  # exact stays
        (3, 1.1, 4),  # 3.3 rounds up
        (10, 1.1, 11),
    ],
)
def test_round_repeats_edge_cases(repeats, depth, expected):
    assert layer_cost.round_repeats(repeats, depth) == expected


def test_rounding_agrees_with_keras_layer_by_layer(keras_efficientnet):
    """Build a Keras EfficientNet whose stages hit the edge cases and read the real layer sizes."""
    filters = [11, 12, 17, 19, 4, 44]
    repeats = [1, 2, 3, 10, 1, 2]
    width, depth = 1.0, 1.1  # width 1 so the filters hit the edge cases as listed
    blocks = [
        {
            "kernel_size": 3,
            "repeats": r,
            "filters_in": f_in,
            "filters_out": f,
            "expand_ratio": 1,
            "id_skip": True,
            "strides": 1,
            "se_ratio": 0.25,
        }
        for f_in, f, r in zip([layer_cost.STEM_FILTERS, *filters], filters, repeats)
    ]
    model = keras_efficientnet(
        width,
        depth,
        32,
        weights=None,
        include_top=False,
        blocks_args=blocks,
        input_shape=(32, 32, 3),
    )
    names = [layer.name for layer in model.layers]
    for i, (f, r) in enumerate(zip(filters, repeats), start=1):
        assert model.get_layer(f"block{i}a_project_conv").filters == layer_cost.round_filters(
            f, width
        )
        blocks_built = {n.split("_")[0] for n in names if n.startswith(f"block{i}")}
        assert len(blocks_built) == layer_cost.round_repeats(r, depth)


# ----- invalid inputs -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"phi": -3.1}, "phi must be from -3 to 10"),
        ({"phi": float("nan")}, "phi must be a finite number"),
        ({"phi": "1"}, "phi must be a finite number"),
        ({"phi": 1, "alpha": 0.99}, "alpha must be from 1 to 2"),
        ({"phi": 1, "beta": 0.5}, "beta must be from 1 to 2"),
        ({"phi": 1, "gamma": 0.9}, "gamma must be from 1 to 2"),
        ({"phi": 1, "base_resolution": 0}, "from 32 to 1024"),
        ({"phi": 1, "base_resolution": 224.0}, "whole number of pixels"),
        ({"phi": 100}, "phi must be from -3 to 10, got 100"),  # would ask for 10^8 layers
        ({"phi": 1e6}, "phi must be from -3 to 10"),
        ({"phi": -1e6}, "phi must be from -3 to 10"),
        ({"phi": 1, "alpha": 1e6}, "alpha must be from 1 to 2"),
    ],
)
def test_multipliers_reject_invalid_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        scaling.multipliers(**kwargs)


@pytest.mark.parametrize(
    "width, depth, resolution, message",
    [
        (0.05, 1.0, 224, "width must be from 0.1 to 10"),
        (1.0, 0.09, 224, "depth must be from 0.1 to 10"),
        (1.0, 0.0, 224, "depth must be from 0.1 to 10"),
        (-1.0, 1.0, 224, "width must be from 0.1 to 10"),
        (1.0, 1.0, 0, "resolution must be a whole number of pixels"),
        (1.0, 1.0, -224, "resolution must be a whole number of pixels"),
        (1.0, 1.0, 224.5, "resolution must be a whole number of pixels"),
        (1.0, 1.0, "224", "resolution must be a whole number of pixels"),
        (1.0, 1.0, True, "resolution must be a whole number of pixels"),
    ],
)
def test_network_rejects_invalid_input(width, depth, resolution, message):
    """(also: width 1e6 or depth 1e6 are refused, not computed for ever)"""
    with pytest.raises(ValueError, match=message):
        scaling.network(width, depth, resolution)


def test_unknown_variant_and_bad_flops_are_rejected():
    with pytest.raises(ValueError, match="Unknown variant 'b9'"):
        scaling.official_network("b9")
    with pytest.raises(ValueError, match="positive"):
        scaling.nearest_variant(0)


# ----- helpers and consistency --------------------------------------------------------------------
def test_nearest_variant_by_flops():
    for v in scaling.OFFICIAL:
        assert scaling.nearest_variant(scaling.official_network(v).flops) == v
    assert scaling.nearest_variant(1e3) == "b0" and scaling.nearest_variant(1e13) == "b7"


def test_importing_scaling_does_not_import_tensorflow_or_keras():
    code = (
        "import sys, core.models.scaling; "
        "assert not {'tensorflow', 'keras', 'jax'} & set(sys.modules), 'heavy import'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(scaling.__file__).parents[2])


# ----- implied φ ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "variant, depth, width, resolution",
    [
        ("b0", 0.0, 0.0, 0.0),
        ("b1", 0.5228, 0.0, 0.4936),  # ln 1.1 / ln 1.2; width 1.0; ln(240/224) / ln 1.15
        ("b2", 1.0, 1.0, 1.0664),  # B2's depth 1.2 and width 1.1 are exactly the paper's φ = 1
        ("b3", 1.8455, 1.9129, 2.0902),
        ("b4", 3.2239, 3.5303, 3.7816),
        ("b5", 4.3245, 4.9313, 5.0861),
        ("b6", 5.2408, 6.1671, 6.1351),
        ("b7", 6.2055, 7.2725, 7.0497),  # ln 3.1 / ln 1.2; ln 2 / ln 1.1; ln(600/224) / ln 1.15
    ],
)
def test_implied_phi_of_official_variants(variant, depth, width, resolution):
    implied = scaling.implied_phi(variant)
    assert implied.formula == int(variant[1])
    assert (implied.depth, implied.width, implied.resolution) == pytest.approx(
        (depth, width, resolution), abs=1e-4
    )
    assert implied.to_dict() == {
        "depth": implied.depth,
        "width": implied.width,
        "resolution": implied.resolution,
    }


def test_implied_phi_inverts_the_formula_and_handles_base_one():
    for phi in (1.7, 2.0, 3.0):  # a coefficient made by the formula implies its own φ back
        implied = scaling.implied_phi("b7", alpha=3.1 ** (1 / phi), beta=2.0 ** (1 / phi))
        assert (implied.depth, implied.width) == pytest.approx((phi, phi))
    assert scaling.implied_phi("b3", gamma=1.0).resolution is None  # γ = 1: no φ gives 300 px
    with pytest.raises(ValueError, match="Unknown variant"):
        scaling.implied_phi("b8")


def test_paper_tables_cover_b0_to_b7():
    assert list(scaling.PAPER_FLOPS) == list(scaling.PAPER_TOP1) == list(scaling.OFFICIAL)
