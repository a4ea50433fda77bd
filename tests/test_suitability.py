"""Suitability: normalisation, AHP weights and consistency, factors on the grid."""

from __future__ import annotations

import math

import dask.array as da
import geopandas as gpd
import numpy as np
import pytest
import shapely
from affine import Affine
from pydantic import ValidationError
from rasterio.crs import CRS

from ecoplan.grid import Grid
from ecoplan.rules import AHP, Factor, Normalise, SuitabilitySettings, ahp_weights, load_rules
from ecoplan.suitability import factor_raster, normalise, zone_suitability

UTM47 = CRS.from_epsg(32647)
P = 100.0


def grid_of(shape) -> Grid:
    return Grid(UTM47, Affine(P, 0, 600_000.0, 0, -P, 1_600_000.0), shape[0], shape[1])


def factor(**kw) -> Factor:
    return Factor.model_validate({"id": "f", **kw})


def test_linear_ramps_are_clipped_to_0_1():
    v = np.array([-10.0, 0.0, 250.0, 1000.0, 5000.0, np.nan])
    up = normalise(v, Normalise(kind="increasing", low=0, high=1000))
    assert up[:5].tolist() == [0.0, 0.0, 0.25, 1.0, 1.0] and np.isnan(up[5])
    down = normalise(v, Normalise(kind="decreasing", low=0, high=1000))
    assert down[:5].tolist() == [1.0, 1.0, 0.75, 0.0, 0.0]
    with pytest.raises(ValidationError, match="must be above low"):
        Normalise(kind="increasing", low=5, high=5)


def test_ahp_weights_of_a_consistent_matrix_are_its_ratios():
    w = np.array([0.5, 0.3, 0.2])
    weights, cr = ahp_weights(w[:, None] / w[None, :])
    np.testing.assert_allclose(weights, w)
    assert cr == pytest.approx(0.0, abs=1e-12)


def test_ahp_textbook_3x3_example():
    # Saaty's scale: A moderately (3) over B, strongly (5) over C; B moderately (3) over C.
    # For n = 3 the eigenvector is the normalised row geometric mean:
    #   (15^(1/3), 1, 15^(-1/3)) / 3.8717 = (0.6370, 0.2583, 0.1047)
    # λmax = 1 + (9/5)^(1/3) + (5/9)^(1/3) = 3.0385; CI = 0.0193; CR = CI / 0.58 = 0.0332
    ahp = AHP(factors=["a", "b", "c"], matrix=[[1, 3, 5], ["1/3", 1, 3], ["1/5", "1/3", 1]])
    w = ahp.weights()
    g = np.array([15 ** (1 / 3), 1.0, 15 ** (-1 / 3)])
    for k, want in zip("abc", g / g.sum(), strict=True):
        assert w[k] == pytest.approx(want, abs=1e-9)
    lam = 1 + (9 / 5) ** (1 / 3) + (5 / 9) ** (1 / 3)
    assert ahp.consistency_ratio == pytest.approx((lam - 3) / 2 / 0.58, rel=1e-9)
    assert ahp.consistency_ratio == pytest.approx(0.0332, abs=1e-4)


def test_an_inconsistent_ahp_matrix_is_refused_with_its_ratio():
    # A > B (9), B > C (9) but C > A (9): circular, CR far above 0.1
    with pytest.raises(ValidationError, match=r"consistency ratio \d+\.\d+ > 0\.1"):
        AHP(factors=["a", "b", "c"], matrix=[[1, 9, "1/9"], ["1/9", 1, 9], [9, "1/9", 1]])


def test_ahp_matrix_must_be_reciprocal_and_square():
    with pytest.raises(ValidationError, match="reciprocal"):
        AHP(factors=["a", "b"], matrix=[[1, 3], [3, 1]])
    with pytest.raises(ValidationError, match="2 x 2"):
        AHP(factors=["a", "b"], matrix=[[1, 3]])


def test_suitability_rules_check_factor_references_and_weights():
    with pytest.raises(ValidationError, match="unknown factor 'roads'"):
        SuitabilitySettings.model_validate(
            {"factors": [], "zones": {"urban": {"weights": {"roads": 1}}}}
        )
    with pytest.raises(ValidationError, match="exactly one of 'weights' or 'ahp'"):
        SuitabilitySettings.model_validate({"zones": {"urban": {}}})
    with pytest.raises(ValidationError, match="needs 'normalise'"):
        factor(source={"slope_of": "dem"})


def test_distance_factor_is_the_ramp_of_the_ground_distance():
    zones = np.full((5, 9), 2, np.uint8)
    zones[2, 0] = 4  # one urban cell
    f = factor(
        source={"distance_to": {"zones": ["urban"]}},
        normalise={"kind": "decreasing", "low": 0, "high": 300},
    )
    got = factor_raster(
        f, zones=da.from_array(zones, chunks=3), grid=grid_of(zones.shape), vectors={}, rasters={}
    ).compute()
    # along the row: 0, 100, 200, 300 m → 1, 2/3, 1/3, 0; diagonal (1, 1): 141.4 m → 0.5286
    np.testing.assert_allclose(got[2, :5], [1, 2 / 3, 1 / 3, 0, 0])
    assert got[1, 1] == pytest.approx(1 - math.sqrt(2) * 100 / 300)


@pytest.mark.parametrize("chunk", [4, 11, 64])
def test_distance_factor_does_not_depend_on_the_chunk_size(chunk):
    rng = np.random.default_rng(0)
    zones = np.where(rng.random((40, 50)) < 0.02, 4, 2).astype(np.uint8)
    f = factor(
        source={"distance_to": {"zones": ["urban"]}},
        normalise={"kind": "decreasing", "low": 0, "high": 1500},
    )
    args = {"grid": grid_of(zones.shape), "vectors": {}, "rasters": {}}
    whole = factor_raster(f, zones=da.from_array(zones, chunks=64), **args).compute()
    got = factor_raster(f, zones=da.from_array(zones, chunks=chunk), **args).compute()
    np.testing.assert_array_equal(got, whole)


def test_distance_to_a_vector_role_is_within_one_pixel_of_the_exact_distance():
    g = grid_of((20, 30))
    t = g.transform
    road = shapely.LineString([(t.c, t.f - 1050), (t.c + 3000, t.f - 1050)])  # row 10, centre line
    f = factor(
        source={"distance_to": {"layer": "roads"}},
        normalise={"kind": "decreasing", "low": 0, "high": 1000},
    )
    got = factor_raster(
        f,
        zones=da.from_array(np.full(g.shape, 2, np.uint8), chunks=8),
        grid=g,
        vectors={"roads": gpd.GeoSeries([road], crs=UTM47)},
        rasters={},
    ).compute()
    rows = np.arange(20)
    exact = 1 - np.clip(np.abs(rows - 10) * P / 1000, 0, 1)
    assert np.abs(got[:, 15] - exact).max() <= P / 1000 + 1e-12
    assert (
        factor_raster(
            f, zones=da.zeros((2, 2), chunks=2, dtype=np.uint8), grid=g, vectors={}, rasters={}
        )
        is None
    )


def test_current_zone_and_raster_factors():
    zones = da.from_array(np.array([[1, 2], [4, 0]], np.uint8), chunks=1)
    f = factor(source={"current_zone": {"forest": 1.0, "agriculture": 0.25}})
    got = factor_raster(f, zones=zones, grid=grid_of((2, 2)), vectors={}, rasters={}).compute()
    assert got.tolist() == [[1.0, 0.25], [0.0, 0.0]]
    elev = da.from_array(np.array([[100.0, 600.0], [1100.0, np.nan]]), chunks=1)
    f = factor(source={"raster": "dem"}, normalise={"kind": "increasing", "low": 100, "high": 1100})
    got = factor_raster(f, zones=zones, grid=grid_of((2, 2)), vectors={}, rasters={"dem": elev})
    np.testing.assert_allclose(got.compute()[0], [0.0, 0.5])


def test_zone_suitability_is_the_weighted_sum_and_reweights_missing_factors():
    zones = da.from_array(np.array([[1, 2, 4, 0]], np.uint8), chunks=2)
    settings = SuitabilitySettings.model_validate(
        {
            "factors": [
                {"id": "now", "source": {"current_zone": {"forest": 1.0, "agriculture": 0.5}}},
                {
                    "id": "flat",
                    "source": {"slope_of": "dem"},
                    "normalise": {"kind": "decreasing", "low": 0, "high": 30},
                },
                {
                    "id": "urb",
                    "source": {"distance_to": {"zones": ["urban"]}},
                    "normalise": {"kind": "decreasing", "low": 0, "high": 200},
                },
            ],
            "zones": {
                "forest": {"weights": {"now": 3, "urb": 1}},
                "urban": {"weights": {"urb": 0.5, "flat": 0.5}},
            },
        }
    )
    suit, notes = zone_suitability(
        settings, zones=zones, grid=grid_of((1, 4)), vectors={}, rasters={}
    )
    assert sorted(suit) == [1, 4]
    # forest = 0.75 × now + 0.25 × urb; urb = 1 − d / 200 with d = 200, 100, 0 m; nodata → 0
    np.testing.assert_allclose(suit[1].compute()[0], [0.75, 0.375 + 0.125, 0.25, 0.0])
    # urban: flat has no DEM, so urb gets all the weight
    np.testing.assert_allclose(suit[4].compute()[0], [0.0, 0.5, 1.0, 0.0])
    assert notes == [
        "suitability factor flat: left out, its input is not given",
        "suitability of urban: weights of urb 0.500 scaled by 2.000 to add up to 1",
    ]


def test_shipped_rules_have_suitability_transitions_and_an_ahp_for_forest():
    rules = load_rules("default")
    forest = rules.suitability.zones["forest"].ahp
    assert forest is not None and forest.consistency_ratio < 0.1
    assert set(rules.suitability.zones) == {"forest", "agriculture", "rural", "urban", "industrial"}
    assert "urban" not in rules.transitions and "water" not in rules.transitions
    assert rules.allocation.enabled and rules.allocation.suitability_step == 0.01


def test_weights_table_reports_weights_and_the_consistency_ratio():
    from ecoplan.suitability import weights_table

    t = weights_table(load_rules("default").suitability)
    forest = t[t.zone_en == "forest"].set_index("factor")
    assert forest.weight.sum() == pytest.approx(1.0)
    assert forest.loc["near_forest", "weight"] == pytest.approx(0.6370, abs=1e-4)
    assert (forest.method == "ahp").all()
    assert forest.consistency_ratio.iloc[0] == pytest.approx(0.0332, abs=1e-4)
    urban = t[t.zone_en == "urban"]
    assert (urban.method == "weights").all() and urban.consistency_ratio.isna().all()
    assert urban.set_index("factor").weight.to_dict() == {
        "near_urban": 0.5,
        "near_roads": 0.3,
        "flat": 0.2,
    }
    # without roads and a DEM, near_urban carries the whole weight
    used = weights_table(load_rules("default").suitability, available={"near_urban"})
    u = used[used.zone_en == "urban"].set_index("factor").weight_used.to_dict()
    assert u == {"near_urban": 1.0, "near_roads": 0.0, "flat": 0.0}
