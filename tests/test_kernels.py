"""Fast kernels agree with their plain numpy/scipy references."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import ndimage

from ecoplan.kernels import (
    code_counts,
    distance_to_source,
    lookup,
    pair_column_counts,
    ring_numbers,
)


def reference(source, p):
    if not source.any():
        return np.full(source.shape, np.inf)
    return ndimage.distance_transform_edt(~source, sampling=p)


@pytest.mark.parametrize("seed", range(5))
def test_distance_transform_equals_scipy_on_random_sources(seed):
    rng = np.random.default_rng(seed)
    source = rng.random((57, 83)) < [0.001, 0.01, 0.1, 0.5, 0.9][seed]
    np.testing.assert_allclose(distance_to_source(source, pixel_size_m=10), reference(source, 10))


@settings(max_examples=60, deadline=None)
@given(arrays(np.bool_, st.tuples(st.integers(1, 30), st.integers(1, 30))))
def test_distance_transform_equals_scipy_on_any_mask(source):
    np.testing.assert_allclose(distance_to_source(source, pixel_size_m=2.5), reference(source, 2.5))


def test_distance_from_one_cell_is_the_ground_distance():
    source = np.zeros((7, 7), bool)
    source[3, 3] = True
    d = distance_to_source(source, pixel_size_m=30)
    assert d[3, 3] == 0
    assert d[3, 5] == 60
    assert d[0, 0] == pytest.approx(30 * np.hypot(3, 3))


def test_no_source_means_infinitely_far():
    assert np.isinf(distance_to_source(np.zeros((4, 5), bool), pixel_size_m=1)).all()


def test_lookup_equals_numpy_indexing_and_zeroes_out_of_range_codes():
    rng = np.random.default_rng(0)
    lut = rng.integers(0, 8, 101).astype(np.uint8)
    codes = rng.integers(-5, 120, (40, 50)).astype(np.int32)
    expected = np.where((codes >= 0) & (codes < 101), lut[np.clip(codes, 0, 100)], 0)
    np.testing.assert_array_equal(lookup(codes, lut), expected)


@pytest.mark.parametrize("dtypes", [(np.uint8, np.uint8), (np.int32, np.int32), (np.int16, bool)])
def test_lookup_inside_and_code_counts_equal_masking_then_indexing_and_bincount(dtypes):
    code_type, inside_type = dtypes
    rng = np.random.default_rng(1)
    lut = rng.integers(0, 8, 101).astype(np.uint8)
    codes = rng.integers(-5 if code_type != np.uint8 else 0, 120, (40, 50)).astype(code_type)
    inside = rng.integers(0, 3, codes.shape).astype(inside_type)
    valid = (codes >= 0) & (codes < 101)
    expected = np.where(valid & (inside > 0), lut[np.clip(codes, 0, 100)], 0)
    np.testing.assert_array_equal(lookup(codes, lut, inside=inside), expected)
    # the same on a view that is not contiguous
    np.testing.assert_array_equal(
        lookup(codes[:, ::2], lut, inside=inside[:, ::2]), expected[:, ::2]
    )
    counted = codes[valid & (inside > 0)].astype(np.int64)
    np.testing.assert_array_equal(
        code_counts(codes, inside, n=101), np.bincount(counted, minlength=101)
    )
    with pytest.raises(ValueError, match="differ in shape"):
        code_counts(codes, inside[:-1], n=101)


@pytest.mark.parametrize(
    "dtypes", [(np.uint8, np.uint8), (np.int32, np.uint8), (np.int64, np.int16)]
)
def test_pair_column_counts_equal_numpy_bincount(dtypes):
    rng = np.random.default_rng(3)
    n_a, n_b = 5, 16
    a = rng.integers(0, n_a, (37, 23)).astype(dtypes[0])
    b = rng.integers(0, n_b, (37, 23)).astype(dtypes[1])
    key = (a.astype(np.int64) * n_b + b) * 23 + np.arange(23)
    expected = np.bincount(key.ravel(), minlength=n_a * n_b * 23).reshape(n_a * n_b, 23)
    got = pair_column_counts(a, b, n_a=n_a, n_b=n_b)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, expected)


def test_pair_column_counts_refuse_values_out_of_range():
    a = np.zeros((2, 2), np.uint8)
    b = np.full((2, 2), 16, np.uint8)
    with pytest.raises(ValueError, match="out of range"):
        pair_column_counts(a, b, n_a=1, n_b=16)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("pixel_size_m", [10.0, 2.5, 30.0, 7.3])
def test_ring_numbers_match_thresholded_distances(seed, pixel_size_m):
    # the rings of the full transform, edges included
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(1, 90)), int(rng.integers(1, 90)))
    source = rng.random(shape) < rng.choice([0.0005, 0.01, 0.2, 0.9])
    targets = rng.random(shape) < 0.8
    p = pixel_size_m
    # edges on exact cell distances (3 cells, 5 cells = 3-4-5), between cells, and beyond
    rings = ((0.0, 3 * p), (3 * p, 5 * p), (5 * p, 5.5 * p), (5.5 * p, 30 * p))
    assert_rings_of_thresholded_distances(source, targets, rings, p)


@pytest.mark.parametrize("seed", range(4))
def test_ring_numbers_match_thresholded_distances_around_patches(seed):
    # land-cover-like sources (patches with long runs), rings that leave gaps, overlap and
    # start beyond the source; the source cells are targets too
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    p = float(rng.choice([10.0, 2.5, 7.3]))
    noise = ndimage.uniform_filter(rng.random((120, 150)), size=15)
    source = noise > np.quantile(noise, rng.choice([0.3, 0.7, 0.97]))
    targets = rng.random(source.shape) < 0.9
    rings = ((0.0, 2 * p), (2 * p, 5 * p), (9 * p, 12.5 * p), (11 * p, 40 * p))
    assert_rings_of_thresholded_distances(source, targets, rings, p)


def assert_rings_of_thresholded_distances(source, targets, rings, p):
    from ecoplan.buffers import ring_block

    expected = ring_block(distance_to_source(source, pixel_size_m=p), rings)
    expected[~targets] = 0
    lower = np.array([a * (1 + 1e-9) for a, _ in rings])
    upper = np.array([b * (1 + 1e-9) for _, b in rings])
    got = ring_numbers(source, targets, lower=lower, upper=upper, pixel_size_m=p)
    np.testing.assert_array_equal(got, expected)
    assert got.dtype == np.uint8


def test_ring_numbers_ring_up_to_zero_holds_the_source_cells():
    source = np.zeros((4, 6), bool)
    source[1, 1:4] = True
    targets = np.ones_like(source)
    got = ring_numbers(
        source, targets, lower=np.array([-1.0, 0.0]), upper=np.array([0.0, 10.0]), pixel_size_m=10
    )
    assert (got[source] == 1).all()
    assert got[0, 2] == 2 and got[0, 0] == 0 and got[3, 2] == 0


def test_ring_numbers_leave_other_cells_of_out_alone():
    source = np.zeros((5, 5), bool)
    source[2, 2] = True
    out = np.full((5, 5), 9, np.uint8)
    targets = np.zeros((5, 5), bool)
    targets[2, 3] = True
    ring_numbers(
        source, targets, lower=np.array([0.0]), upper=np.array([10.0]), pixel_size_m=10, out=out
    )
    assert out[2, 3] == 1 and (out[targets == 0] == 9).all()
