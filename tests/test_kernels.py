"""Fast kernels agree with their plain numpy/scipy references."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import ndimage

from ecoplan.kernels import distance_to_source, lookup, pair_column_counts


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
