"""Minimum mapping unit: small patches merged into the majority zone around them."""

import dask.array as da
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from ecoplan.mmu import apply_mmu, majority_targets
from ecoplan.rules import MinMappingUnit

PIXEL_M = 100.0  # 1 pixel = 1 ha


def run(a, *, area_ha, connectivity=8, chunks=None, exempt=(), max_iterations=None):
    z = da.from_array(np.asarray(a, dtype=np.uint8), chunks=chunks or np.shape(a))
    more = {} if max_iterations is None else {"max_iterations": max_iterations}
    s = MinMappingUnit(area_ha=area_ha, connectivity=connectivity, exempt=list(exempt), **more)
    return apply_mmu(z, s, pixel_size_m=PIXEL_M)


def reference(a: np.ndarray, *, min_pixels: float, connectivity: int) -> np.ndarray:
    """The documented algorithm written plainly on the whole array (one patch at a time)."""
    return reference_run(a, min_pixels=min_pixels, connectivity=connectivity)[0]


def reference_run(a, *, min_pixels, connectivity, exempt=(), max_iterations=10):
    """:func:`reference` with its counts: (zones, merged, changed, left, passes)."""
    st = ndimage.generate_binary_structure(2, 1 if connectivity == 4 else 2)
    a = a.copy()
    merged = changed = passes = left = 0
    for _ in range(max_iterations):
        patches = []
        for v in np.unique(a):
            if v == 0:
                continue
            lab, n = ndimage.label(a == v, structure=st)
            patches += [(lab == k, v) for k in range(1, n + 1)]
        small = [p for p, v in patches if p.sum() < min_pixels and v not in exempt]
        left = len(small)
        if not small:
            break
        stable = np.zeros(a.shape, bool)
        for p, v in patches:
            if p.sum() >= min_pixels or v in exempt:
                stable |= p
        stable &= a != 0
        changes = []
        for p in small:
            ring = ndimage.binary_dilation(p, structure=st) & ~p & stable
            if not ring.any():
                continue
            zones, counts = np.unique(a[ring], return_counts=True)
            best = zones[counts == counts.max()].min()
            changes.append((p, best))
        if not changes:
            break
        for p, z in changes:
            a[p] = z
        passes += 1
        merged += len(changes)
        changed += sum(int(p.sum()) for p, _ in changes)
        left -= len(changes)
    return a, merged, changed, left, passes


def test_single_pixel_takes_the_surrounding_zone():
    a = np.ones((5, 5), np.uint8)
    a[2, 2] = 2
    r = run(a, area_ha=2)
    assert (r.zones.compute() == 1).all()
    assert (r.patches_merged, r.pixels_changed, r.patches_left) == (1, 1, 0)


def test_majority_of_touching_stable_pixels_wins():
    # the 2-pixel patch of 3 touches six pixels of zone 1 and four of zone 2 (8-connectivity)
    a = np.array(
        [
            [1, 1, 1, 1],
            [1, 3, 3, 2],
            [1, 2, 2, 2],
        ],
        np.uint8,
    )
    a = np.vstack([np.ones((3, 4), np.uint8), a, np.full((3, 4), 2, np.uint8)])
    out = run(a, area_ha=3).zones.compute()
    assert (out[4, 1:3] == 1).all()


def test_tie_goes_to_the_lowest_zone_code():
    # pixel 5 at the centre touches four pixels of 2 and four of 4 (8-connectivity)
    a = np.array([[4, 4, 4], [2, 5, 4], [2, 2, 2]], np.uint8)
    a = np.kron(np.ones((1, 1), np.uint8), a)
    big = np.pad(a, 3, mode="edge")
    out = run(big, area_ha=2).zones.compute()
    assert out[4, 4] == 2


def test_patch_surrounded_by_small_patches_merges_in_a_later_pass():
    # zone 2 (1 px) is enclosed by a 3x3 ring of zone 3 (8 px, small) in a sea of zone 1
    a = np.ones((9, 9), np.uint8)
    a[3:6, 3:6] = 3
    a[4, 4] = 2
    r = run(a, area_ha=9)
    assert (r.zones.compute() == 1).all()
    assert r.passes == 2


def test_island_with_no_stable_neighbour_is_left_and_reported():
    a = np.zeros((4, 4), np.uint8)
    a[1, 1] = 2
    r = run(a, area_ha=2)
    assert r.zones.compute()[1, 1] == 2
    assert r.patches_left == 1


def test_exempt_zone_is_never_merged_away():
    a = np.ones((5, 5), np.uint8)
    a[2, 2] = 6
    assert run(a, area_ha=2, exempt=["water"]).zones.compute()[2, 2] == 6


def test_four_connectivity_keeps_diagonal_pixels_apart():
    # two diagonal pixels of 2: one 2-px patch with 8-connectivity, two 1-px patches with 4
    a = np.ones((6, 6), np.uint8)
    a[2, 2] = a[3, 3] = 2
    assert (run(a, area_ha=2, connectivity=4).zones.compute() == 1).all()
    assert (run(a, area_ha=2, connectivity=8).zones.compute()[[2, 3], [2, 3]] == 2).all()


def test_zero_area_changes_nothing():
    a = np.array([[1, 2], [3, 4]], np.uint8)
    r = run(a, area_ha=0)
    assert (r.zones.compute() == a).all() and r.patches_merged == 0


def test_majority_targets_sums_rows_from_several_blocks():
    ids, zones = majority_targets(
        np.array([7, 7, 7, 9]), np.array([2, 3, 2, 5]), np.array([1, 2, 2, 1])
    )
    assert ids.tolist() == [7, 9] and zones.tolist() == [2, 5]


@pytest.mark.parametrize("connectivity", [4, 8])
@pytest.mark.parametrize("seed", [0, 1])
def test_same_result_as_unchunked_reference_for_any_chunking(seed, connectivity):
    rng = np.random.default_rng(seed)
    # blocky land cover with salt-and-pepper noise and a nodata corner
    base = np.kron(rng.integers(1, 5, (6, 6)), np.ones((5, 5), np.int64))
    noise = rng.random(base.shape) < 0.15
    a = np.where(noise, rng.integers(1, 8, base.shape), base).astype(np.uint8)
    a[:4, :4] = 0
    expected = reference(a, min_pixels=4, connectivity=connectivity)
    assert (expected != a).any()
    for chunks in [(30, 30), (7, 11), (13, 5)]:
        out = run(a, area_ha=4, connectivity=connectivity, chunks=chunks).zones.compute()
        assert (out == expected).all(), chunks


def test_unit_of_at_most_one_pixel_changes_nothing():
    a = np.array([[1, 2], [3, 4]], np.uint8)
    r = run(a, area_ha=1)  # 1 ha = one 100 m pixel: nothing is smaller
    assert (r.zones.compute() == a).all() and r.passes == 0


@settings(max_examples=10, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    shape=st.tuples(st.integers(4, 18), st.integers(4, 18)),
    chunk=st.tuples(st.integers(3, 9), st.integers(3, 9)),
    connectivity=st.sampled_from([4, 8]),
    min_px=st.integers(2, 5),
)
def test_any_chunking_matches_the_reference(seed, shape, chunk, connectivity, min_px):
    a = np.random.default_rng(seed).integers(0, 4, shape).astype(np.uint8)
    expected = reference(a, min_pixels=min_px, connectivity=connectivity)
    out = run(a, area_ha=min_px, connectivity=connectivity, chunks=chunk).zones.compute()
    assert (out == expected).all()
    assert ((out == 0) == (a == 0)).all()  # nodata is never filled or created


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    shape=st.tuples(st.integers(5, 24), st.integers(5, 24)),
    chunk=st.tuples(st.integers(2, 10), st.integers(2, 10)),
    connectivity=st.sampled_from([4, 8]),
    min_px=st.integers(2, 9),
    exempt=st.sampled_from([(), (6,)]),
    max_iterations=st.sampled_from([1, 2, 10]),
)
def test_counts_and_zones_match_the_reference_on_noisy_rasters(
    seed, shape, chunk, connectivity, min_px, exempt, max_iterations
):
    # mostly small patches: patches wait, merge in later passes, join each other, cross seams
    rng = np.random.default_rng(seed)
    a = rng.choice(np.array([0, 1, 2, 3, 6], np.uint8), size=shape, p=[0.1, 0.3, 0.3, 0.2, 0.1])
    want = reference_run(
        a,
        min_pixels=min_px,
        connectivity=connectivity,
        exempt=exempt,
        max_iterations=max_iterations,
    )
    names = {6: "water"}
    r = run(
        a,
        area_ha=min_px,
        connectivity=connectivity,
        chunks=chunk,
        exempt=[names[e] for e in exempt],
        max_iterations=max_iterations,
    )
    assert (r.zones.compute() == want[0]).all()
    assert (r.patches_merged, r.pixels_changed, r.patches_left, r.passes) == want[1:]


def test_islands_of_small_patches_settle_over_several_passes_across_block_seams():
    # concentric rings of 1-pixel-wide small patches: each pass settles the outer ring only
    a = np.ones((21, 21), np.uint8)
    for k, z in enumerate([2, 3, 4, 2, 3, 4, 5]):
        a[3 + k : 18 - k, 3 + k : 18 - k] = z
    want = reference_run(a, min_pixels=60, connectivity=4)
    for chunks in [(21, 21), (5, 4), (7, 7), (3, 10)]:
        r = run(a, area_ha=60, connectivity=4, chunks=chunks)
        assert (r.zones.compute() == want[0]).all(), chunks
        assert (r.patches_merged, r.pixels_changed, r.patches_left, r.passes) == want[1:]
    assert want[4] >= 3
