"""Connected components whole across chunk borders, against scipy.ndimage.label."""

import dask.array as da
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from ecoplan.components import label_components


def reference(values: np.ndarray, connectivity: int) -> np.ndarray:
    """scipy on the whole array, one value at a time."""
    s = ndimage.generate_binary_structure(2, 1 if connectivity == 4 else 2)
    out = np.zeros(values.shape, np.int64)
    nxt = 0
    for v in np.unique(values):
        if v == 0:
            continue
        lab, n = ndimage.label(values == v, structure=s)
        out[lab > 0] = lab[lab > 0] + nxt
        nxt += n
    return out


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    pairs = set(zip(a.ravel().tolist(), b.ravel().tolist(), strict=True))
    return len(pairs) == len(np.unique(a)) == len(np.unique(b))


def test_u_shape_split_by_a_seam_is_one_component():
    # a U whose arms meet only below the seam between the two row chunks
    a = np.array(
        [
            [1, 0, 1],
            [1, 0, 1],
            [1, 1, 1],
        ]
    )
    c = label_components(da.from_array(a, chunks=(2, 1)), connectivity=4)
    lab = c.labels.compute()
    assert len(np.unique(lab[a > 0])) == 1
    assert c.sizes.tolist() == [7]
    assert c.values.tolist() == [1]


def test_diagonal_across_a_chunk_corner_joins_only_with_8_connectivity():
    a = np.array([[1, 0], [0, 1]])
    four = label_components(da.from_array(a, chunks=1), connectivity=4)
    eight = label_components(da.from_array(a, chunks=1), connectivity=8)
    assert sorted(four.sizes.tolist()) == [1, 1]
    assert eight.sizes.tolist() == [2]


def test_different_values_are_different_patches():
    a = np.array([[1, 2, 2], [1, 2, 0]])
    c = label_components(da.from_array(a, chunks=(1, 2)), connectivity=8)
    assert sorted(zip(c.values.tolist(), c.sizes.tolist(), strict=True)) == [(1, 2), (2, 3)]


def test_all_background_gives_no_patch():
    c = label_components(da.zeros((4, 4), dtype=np.uint8, chunks=2), connectivity=8)
    assert len(c.ids) == 0
    assert (c.labels.compute() == 0).all()


def test_bad_connectivity_is_refused():
    with pytest.raises(ValueError, match="4 or 8"):
        label_components(da.zeros((2, 2), chunks=1), connectivity=6)


@settings(max_examples=20, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    shape=st.tuples(st.integers(1, 30), st.integers(1, 30)),
    chunk=st.tuples(st.integers(3, 12), st.integers(3, 12)),
    connectivity=st.sampled_from([4, 8]),
    n_values=st.integers(1, 4),
)
def test_partition_and_sizes_equal_scipy_for_any_chunking(
    seed, shape, chunk, connectivity, n_values
):
    a = np.random.default_rng(seed).integers(0, n_values + 1, shape)
    ref = reference(a, connectivity)
    c = label_components(da.from_array(a, chunks=chunk), connectivity=connectivity)
    lab = c.labels.compute()
    assert ((lab > 0) == (ref > 0)).all()
    assert same_partition(lab, ref)
    ids, sizes = np.unique(lab[lab > 0], return_counts=True)
    assert ids.tolist() == c.ids.tolist()
    assert sizes.tolist() == c.sizes.tolist()
    first = {int(lab.ravel()[i]): int(a.ravel()[i]) for i in np.flatnonzero(lab.ravel())}
    assert [first[i] for i in c.ids.tolist()] == c.values.tolist()
