"""The classify-stage kernels against their plain reference implementations."""

import dask.array as da
import numpy as np
import pytest
import rasterio
from affine import Affine
from hypothesis import given, settings
from hypothesis import strategies as st
from rasterio.crs import CRS
from scipy import ndimage
from test_components import reference as scipy_labels

from ecoplan.classify import block_histogram
from ecoplan.grid import Grid
from ecoplan.io import NO_CODE, codes_on_grid, open_raster, source_pixels
from ecoplan.kernels import (
    dense_share,
    kernel_runs,
    label_equal,
    lookup,
    pair_lookup,
    small_patch_pixels,
    touch_rows,
    window_sum,
)
from ecoplan.settlement import window_kernel
from ecoplan.spill import hold


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    shape=st.tuples(st.integers(1, 40), st.integers(1, 40)),
    n_values=st.integers(1, 5),
    connectivity=st.sampled_from([4, 8]),
)
def test_label_equal_gives_scipy_partition_numbered_by_first_pixel(
    seed, shape, n_values, connectivity
):
    a = np.random.default_rng(seed).integers(0, n_values + 1, shape).astype(np.uint8)
    check_label_equal(a, connectivity)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    shape=st.tuples(st.integers(1, 12), st.integers(1, 12)),
    run=st.integers(2, 9),
    n_values=st.integers(1, 3),
    connectivity=st.sampled_from([4, 8]),
)
def test_label_equal_on_long_runs_gives_scipy_partition(seed, shape, run, n_values, connectivity):
    # rows of long runs, shifted row to row: runs that overlap, touch at a corner or not
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, n_values + 1, shape).astype(np.uint8)
    a = np.repeat(coarse, run, axis=1)
    shift = rng.integers(0, run, shape[0])
    a = np.stack([np.roll(row, int(k)) for row, k in zip(a, shift, strict=True)])
    check_label_equal(a, connectivity)


def check_label_equal(a, connectivity):
    lab, counts, first = label_equal(a, connectivity=connectivity)
    ref = scipy_labels(a, connectivity)
    assert ((lab > 0) == (ref > 0)).all()
    pairs = set(zip(lab.ravel().tolist(), ref.ravel().tolist(), strict=True))
    assert len(pairs) == len(np.unique(lab)) == len(np.unique(ref))
    n = len(counts)
    assert lab.max(initial=0) == n
    assert np.array_equal(np.bincount(lab.ravel(), minlength=n + 1)[1:], counts)
    # numbered in the order of each patch's first pixel, which ``first`` gives
    assert np.array_equal(lab.ravel()[first], np.arange(1, n + 1))
    assert np.all(np.diff(first) > 0)


def reference_window(mask, kernel):
    return ndimage.correlate(mask.astype(float), kernel, mode="constant")


@pytest.mark.parametrize("shape", [(1, 1), (3, 50), (61, 7), (90, 83)])
@pytest.mark.parametrize("radius", [0.4, 1, 2.5, 7, 30])
@pytest.mark.parametrize("window", ["circle", "square"])
def test_window_sum_is_exact(shape, radius, window):
    m = np.random.default_rng(shape[0] + int(radius)).random(shape) < 0.4
    k = window_kernel(radius * 10, 10, shape=window)
    runs = kernel_runs(k)
    assert runs is not None
    assert np.array_equal(window_sum(m, *runs), reference_window(m, k))


def test_kernel_runs_refuses_a_row_with_a_gap():
    assert kernel_runs(np.array([[1, 0, 1], [1, 1, 1], [0, 1, 0]])) is None


@pytest.mark.parametrize("radius", [1, 4, 12])
def test_dense_share_equals_the_float_share_threshold(radius):
    rng = np.random.default_rng(radius)
    z = rng.choice(
        np.array([0, 2, 3, 254, 5], np.uint8), size=(70, 64), p=[0.1, 0.4, 0.1, 0.3, 0.1]
    )
    built = np.zeros(256, np.uint8)
    built[[254, 3]] = 1
    k = window_kernel(radius * 10.0, 10.0)
    valid = z != 0
    nv = reference_window(valid, k)
    nb = reference_window(np.isin(z, (254, 3)) & valid, k)
    for thr in (0.25, 0.5, 0.5 * (1 - 1e-9)):
        with np.errstate(invalid="ignore", divide="ignore"):
            expected = (nb / nv >= thr) & valid
        assert np.array_equal(dense_share(z, built, *kernel_runs(k), thr), expected)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32])
def test_pair_lookup_equals_numpy_indexing_and_gives_0_outside_the_table(dtype):
    rng = np.random.default_rng(3)
    a = rng.integers(0, 6, (37, 41)).astype(np.uint8)  # 4 and 5 are beyond the table
    b = rng.integers(0, 256, (37, 41)).astype(np.uint8)
    table = rng.integers(1, 200, (4, 250)).astype(dtype)  # 250..255 are beyond it too
    inside = (a < 4) & (b < 250)
    expected = np.where(inside, table[np.minimum(a, 3), np.minimum(b, 249)], 0)
    got = pair_lookup(a, b, table)
    assert got.dtype == dtype
    assert np.array_equal(got, expected)
    with pytest.raises(ValueError, match="differ in shape"):
        pair_lookup(a, b[:-1], table)


def town_map(seed):
    """Mostly farmland with a few dense towns, scattered built-up specks and unmapped margins."""
    rng = np.random.default_rng(seed)
    z = np.full((240, 260), 2, np.uint8)
    yy, xx = np.mgrid[:240, :260]
    for cy, cx, r in [(60, 70, 25), (170, 200, 14), (200, 40, 6)]:
        town = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        z[town & (rng.random(z.shape) < 0.8)] = 254
    z[rng.random(z.shape) < 0.01] = 254
    z[:, :9] = 0  # outside the region
    z[100:130, 120:150] = 0
    return z


@pytest.mark.parametrize("window", ["circle", "square"])
@pytest.mark.parametrize("radius", [3, 9, 20])
def test_dense_share_skips_no_dense_pixel_far_from_towns(window, radius):
    # the bounding-box bound prunes most rows here; the result must stay exact
    z = town_map(radius)
    built = np.zeros(256, np.uint8)
    built[254] = 1
    k = window_kernel(radius * 10.0, 10.0, shape=window)
    valid = z != 0
    nv = reference_window(valid, k)
    nb = reference_window((z == 254) & valid, k)
    n_dense = {}
    for thr in (0.0, 0.05, 0.25, 0.5, 0.5 * (1 - 1e-9), 0.8, 1.0):
        with np.errstate(invalid="ignore", divide="ignore"):
            expected = (nb / nv >= thr) & valid
        got = dense_share(z, built, *kernel_runs(k), thr)
        assert np.array_equal(got, expected), (thr, int((got != expected).sum()))
        n_dense[thr] = int(expected.sum())
    # the towns are dense at one half, the farmland is not
    assert 0 < n_dense[0.5] < valid.sum() // 4
    assert n_dense[0.0] == valid.sum()


def reference_touch(small, zones, connectivity):
    h, w = zones.shape[0] - 2, zones.shape[1] - 2
    offs = [(-1, 0), (1, 0), (0, -1), (0, 1)]
    if connectivity == 8:
        offs += [(-1, -1), (-1, 1), (1, -1), (1, 1)]
    rows = set()
    for i in range(1, h + 1):
        for j in range(1, w + 1):
            if zones[i, j] == 0 or small[i, j]:
                continue
            for dy, dx in offs:
                s = small[i + dy, j + dx]
                if s:
                    rows.add((int(s), int(zones[i, j]), i, j))
    return sorted((s, z) for s, z, _, _ in rows)


@pytest.mark.parametrize("connectivity", [4, 8])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_touch_rows_one_row_per_pixel_and_touching_small_patch(seed, connectivity):
    rng = np.random.default_rng(seed)
    zones = rng.integers(0, 4, (23, 31)).astype(np.uint8)
    small = np.where(rng.random(zones.shape) < 0.2, rng.integers(1, 5, zones.shape), 0)
    small[zones == 0] = 0
    lab, zone = touch_rows(small, zones, connectivity=connectivity)
    got = sorted(zip(lab.tolist(), zone.tolist(), strict=True))
    assert got == reference_touch(small, zones, connectivity)


def test_lookup_equals_masked_fancy_indexing():
    codes = np.array([[-1, 0, 3], [9, 2, 200]], np.int32)
    lut = np.array([0, 1, 2, 3, 4], np.uint8)
    ref = np.zeros(codes.shape, np.uint8)
    ok = (codes >= 0) & (codes < len(lut))
    ref[ok] = lut[codes[ok]]
    assert np.array_equal(lookup(codes, lut), ref)


def test_block_histogram_counts_as_unique_does():
    rng = np.random.default_rng(0)
    codes = rng.integers(-1, 60, (50, 40)).astype(np.int32)
    codes[0, 0] = 2_000_000  # beyond the bincount range: sorted instead
    inside = rng.integers(0, 2, codes.shape)
    sel = codes[(inside > 0) & (codes >= 0)]
    v, n = np.unique(sel, return_counts=True)
    assert block_histogram(codes, inside) == dict(zip(v.tolist(), n.tolist(), strict=True))
    assert block_histogram(codes[:5, :5] * 0 - 1, inside[:5, :5]) == {}


# --- codes_on_grid: the direct read path against the per-pixel reference ----------------------


def reference_codes(info, grid) -> np.ndarray:
    """Every pixel centre transformed and picked one by one (the general path, whole grid)."""
    row, col = source_pixels(grid, info, 0, grid.height, 0, grid.width)
    with rasterio.open(info.path) as src:
        data = src.read(1, masked=True)
    out = np.full(grid.shape, NO_CODE, np.int64)
    ok = (row >= 0) & (row < info.height) & (col >= 0) & (col < info.width)
    vals = np.asarray(data.data, np.int64)[row[ok], col[ok]]
    vals[np.ma.getmaskarray(data)[row[ok], col[ok]]] = NO_CODE
    out[ok] = vals
    return out.astype(np.int32)


@pytest.fixture
def source(tmp_path):
    path = tmp_path / "lc.tif"
    a = np.random.default_rng(5).integers(0, 9, (37, 41)).astype(np.uint16)
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=41,
        height=37,
        count=1,
        dtype="uint16",
        nodata=0,
        crs="EPSG:32647",
        transform=Affine(10, 0, 500_000, 0, -10, 2_000_000),
    ) as dst:
        dst.write(a, 1)
    return open_raster(path)


@pytest.mark.parametrize(
    "origin, pixel, crs",
    [
        ((499_950.0, 2_000_030.0), 10.0, "EPSG:32647"),  # aligned, larger than the source
        ((500_070.0, 1_999_900.0), 10.0, "EPSG:32647"),  # aligned, inside the source
        ((499_973.0, 2_000_011.0), 10.0, "EPSG:32647"),  # same size, fractional offset
        ((499_990.0, 2_000_020.0), 7.0, "EPSG:32647"),  # another pixel size
        ((499_990.0, 2_000_020.0), 25.0, "EPSG:32647"),
        ((499_000.0, 2_001_000.0), 10.0, "EPSG:32648"),  # another CRS: per-pixel path
    ],
)
@pytest.mark.parametrize("chunks", [5, 16, 64])
def test_codes_on_grid_equals_the_per_pixel_reference(source, origin, pixel, crs, chunks):
    if crs == "EPSG:32648":
        from pyproj import Transformer

        t = Transformer.from_crs("EPSG:32647", crs, always_xy=True)
        x, y = t.transform(500_000 - 60, 2_000_060)
        origin = (x, y)
    grid = Grid(CRS.from_string(crs), Affine(pixel, 0, origin[0], 0, -pixel, origin[1]), 43, 47)
    got = codes_on_grid(source, grid, chunks=chunks).compute()
    assert np.array_equal(got, reference_codes(source, grid))


# --- spill.hold -------------------------------------------------------------------------------


def test_hold_spills_to_a_block_file_removed_when_unused(tmp_path):
    import gc

    a = da.from_array(np.arange(35 * 23, dtype=np.int32).reshape(35, 23), chunks=(8, 5))
    kept = hold(a * 2, budget_bytes=100, folder=tmp_path)
    files = list(tmp_path.glob(".ecoplan-spill-*"))
    assert len(files) == 1
    assert np.array_equal(kept.compute(), a.compute() * 2)
    assert np.array_equal(kept[3:30, 4:20].compute(), (a * 2)[3:30, 4:20].compute())
    del kept
    gc.collect()
    assert not list(tmp_path.glob(".ecoplan-spill-*"))


def test_hold_within_the_budget_persists(tmp_path):
    a = da.ones((10, 10), chunks=5)
    assert np.array_equal(hold(a, budget_bytes=10**6, folder=tmp_path).compute(), np.ones((10, 10)))
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("chunks", [(64, 64), (17, 29)])
def test_split_and_mmu_spilled_equal_in_memory(tmp_path, chunks):
    from ecoplan.classify import BUILT_UP
    from ecoplan.mmu import apply_mmu
    from ecoplan.rules import MinMappingUnit, UrbanRuralSettings
    from ecoplan.settlement import split_built_up

    rng = np.random.default_rng(11)
    blobs = ndimage.gaussian_filter(rng.random((64, 64)), 2)
    z = np.where(blobs > np.quantile(blobs, 0.6), BUILT_UP, 2).astype(np.uint8)
    z[rng.random(z.shape) < 0.1] = 3
    z[:2] = 0
    zd = da.from_array(z, chunks=chunks)
    ur = UrbanRuralSettings(radius_m=300, min_built_share=0.4, min_cluster_area_ha=20)
    mmu = MinMappingUnit(area_ha=3)
    out = {}
    for budget in (None, 0):
        s = split_built_up(zd, ur, pixel_size_m=100, budget_bytes=budget, folder=tmp_path)
        s = hold(s, budget_bytes=budget, folder=tmp_path)
        r = apply_mmu(s, mmu, pixel_size_m=100, budget_bytes=budget, folder=tmp_path)
        out[budget] = r.zones.compute()
    assert np.array_equal(out[None], out[0])
    assert (out[0] != z).any()


@pytest.mark.parametrize("seed", range(5))
def test_small_patch_pixels_sort_the_pixels_as_numpy_does(seed):
    # ids: 0 stable, base + 1 .. base + n inside patches (some with a zone), above n_local border
    rng = np.random.default_rng(seed)
    base, n, n_local = 40, 6, 60
    shape = (int(rng.integers(1, 30)), int(rng.integers(1, 30)))
    choices = np.concatenate([[0, 0, 0], base + np.arange(1, n + 1), [61, 75]])
    core = rng.choice(choices, size=shape).astype(np.int32)
    target = np.zeros(n + 1, np.uint8)
    target[rng.choice(np.arange(1, n + 1), size=3, replace=False)] = [2, 5, 7]
    origin, width = (100, 7), 500
    sizes, (at, zone), (w_at, w_id), (b_at, b_id) = small_patch_pixels(
        core, n_local=n_local, base=base, target=target, origin=origin, width=width
    )
    inside = (core > 0) & (core <= n_local)
    local = np.where(inside, core - base, 0)
    assert np.array_equal(sizes, np.bincount(local[inside], minlength=n + 1))
    takes = inside & (target[local] > 0)
    assert np.array_equal(at, np.flatnonzero(takes)) and np.array_equal(zone, target[local][takes])
    assert zone.dtype == target.dtype

    def global_flat(mask):
        r, c = np.nonzero(mask)
        return (r + origin[0]) * width + (c + origin[1]), core[mask]

    for (got_at, got_id), mask in (((w_at, w_id), inside & ~takes), ((b_at, b_id), core > n_local)):
        want_at, want_id = global_flat(mask)
        assert np.array_equal(got_at, want_at) and np.array_equal(got_id, want_id)
