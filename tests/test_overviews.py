"""Overviews built without the GIL (ecoplan.overviews): through GDAL, rasterio's overviews; mode
overviews computed here, GDAL's mode."""

import hashlib
import threading

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.enums import Resampling

import ecoplan.overviews as overviews
from ecoplan.overviews import _gdal, build_mode_overviews, build_overviews, mode_level, windows


def _tiff(path, data):
    profile = {
        "driver": "GTiff",
        "dtype": "uint8",
        "count": 1,
        "height": data.shape[0],
        "width": data.shape[1],
        "crs": "EPSG:32647",
        "transform": Affine(10.0, 0, 400000.0, 0, -10.0, 2100000.0),
        "nodata": 0,
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)
    return path


def _levels(path) -> list[str]:
    with rasterio.open(path) as src:
        n = len(src.overviews(1))
    digests = []
    for k in range(n):
        with rasterio.open(path, overview_level=k) as ovr:
            digests.append(hashlib.sha256(ovr.read(1).tobytes()).hexdigest())
    return digests


@pytest.fixture
def categories():
    rng = np.random.default_rng(7)
    data = rng.integers(0, 8, size=(1000, 1300)).astype(np.uint8)
    data[200:700, 100:900] = 3  # a large patch, and speckle around it
    return data


def test_the_gil_free_call_is_available_where_rasterio_links_gdal_by_a_shared_library():
    assert _gdal() is not None  # on Linux and macOS the fast path must be taken, not the fallback


@pytest.mark.parametrize("resampling", [Resampling.mode, Resampling.nearest, Resampling.average])
@pytest.mark.parametrize("threads", ["1", "ALL_CPUS"])
def test_overviews_are_rasterios_level_by_level(tmp_path, categories, resampling, threads):
    ours = _tiff(tmp_path / "ours.tif", categories)
    theirs = _tiff(tmp_path / "theirs.tif", categories)
    with rasterio.Env(GDAL_NUM_THREADS=threads):
        build_overviews(ours, [2, 4, 8], resampling)
        build_overviews(theirs, [2, 4, 8], resampling, release_gil=False)
    with rasterio.open(ours) as a, rasterio.open(theirs) as b:
        assert a.overviews(1) == b.overviews(1) == [2, 4, 8]
        np.testing.assert_array_equal(a.read(1), categories)  # the full resolution untouched
    assert _levels(ours) == _levels(theirs)


def test_overviews_can_be_built_from_a_worker_thread(tmp_path, categories):
    path = _tiff(tmp_path / "z.tif", categories)
    expected = _tiff(tmp_path / "e.tif", categories)
    build_overviews(expected, [2, 4], Resampling.mode, release_gil=False)
    errors = []

    def work():
        try:
            with rasterio.Env(GDAL_NUM_THREADS="ALL_CPUS"):
                build_overviews(path, [2, 4], Resampling.mode)
        except Exception as err:  # pragma: no cover - reported below
            errors.append(err)

    t = threading.Thread(target=work)
    t.start()
    t.join()
    assert not errors
    assert _levels(path) == _levels(expected)


def test_no_factors_leaves_the_file_as_it_was(tmp_path, categories):
    path = _tiff(tmp_path / "z.tif", categories)
    before = path.read_bytes()
    build_overviews(path, [], Resampling.mode)
    assert path.read_bytes() == before


def test_a_file_gdal_cannot_open_is_named_in_the_error(tmp_path):
    missing = tmp_path / "missing.tif"
    with pytest.raises(OSError, match="missing.tif"):
        build_overviews(missing, [2], Resampling.mode)
    not_a_raster = tmp_path / "notes.tif"
    not_a_raster.write_text("not a GeoTIFF", encoding="utf-8")
    with pytest.raises(OSError, match="notes.tif"):
        build_overviews(not_a_raster, [2], Resampling.mode)


def test_an_unknown_resampling_is_an_error_naming_the_file(tmp_path, categories):
    path = _tiff(tmp_path / "z.tif", categories)
    with pytest.raises(OSError, match="z.tif"):
        build_overviews(path, [2], Resampling.q1)  # not a GDAL overview method


def reference_mode(src, shape, nodata):
    """Plain Python: GDAL's mode for byte bands over GDAL's windows (see ecoplan.overviews)."""
    ys, ye = windows(src.shape[0], shape[0])
    xs, xe = windows(src.shape[1], shape[1])
    out = np.empty(shape, np.uint8)
    for i in range(shape[0]):
        for j in range(shape[1]):
            counts, best, top = {}, nodata, 0
            for v in src[ys[i] : ye[i], xs[j] : xe[j]].ravel().tolist():
                if v == nodata:
                    continue
                counts[v] = counts.get(v, 0) + 1
                if counts[v] > top:  # the first value to reach the top count wins a tie
                    best, top = v, counts[v]
            out[i, j] = best
    return out


def patches_and_speckle(shape, seed):
    """Categories 0-7 (0 = nodata): blocky patches, speckle, ties and an unmapped corner."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(1, 8, size=(shape[0] // 7 + 1, shape[1] // 7 + 1))
    data = np.kron(coarse, np.ones((7, 7), dtype=np.int64))[: shape[0], : shape[1]]
    speckle = rng.random(shape) < 0.2
    data[speckle] = rng.integers(0, 8, size=int(speckle.sum()))
    data[: shape[0] // 4, : shape[1] // 3] = 0
    return data.astype(np.uint8)


@pytest.mark.parametrize("shape", [(9, 9), (10, 12), (37, 29), (64, 64), (5, 1), (1, 6)])
def test_mode_level_is_the_plain_mode_over_gdals_windows(shape):
    src = patches_and_speckle(shape, seed=sum(shape))
    for out_shape in {((shape[0] + 1) // 2, (shape[1] + 1) // 2), (max(shape[0] // 3, 1), 2)}:
        expected = reference_mode(src, out_shape, nodata=0)
        np.testing.assert_array_equal(mode_level(src, out_shape, nodata=0), expected)


def test_windows_cover_every_source_cell_and_are_3_wide_when_an_odd_size_is_halved():
    start, end = windows(9, 5)
    assert start[0] == 0 and end[-1] == 9
    assert np.all(start[1:] <= end[:-1])  # no source cell left out
    assert set((end - start).tolist()) <= {2, 3}
    start, end = windows(10, 5)
    assert (end - start).tolist() == [2] * 5 and start.tolist() == [0, 2, 4, 6, 8]


@pytest.mark.parametrize("shape", [(500, 640), (333, 517), (257, 255)])
def test_mode_overviews_are_gdals_mode_within_one_gdal_chunk(tmp_path, shape):
    # below 512 overview rows GDAL processes a level in one chunk: every cell must match
    data = patches_and_speckle(shape, seed=shape[1])
    ours = _tiff(tmp_path / "ours.tif", data)
    theirs = _tiff(tmp_path / "theirs.tif", data)
    for path in (ours, theirs):
        with rasterio.open(path, "r+") as dst:
            dst.write_colormap(1, {k: (30 * k, 255 - 30 * k, 100, 255) for k in range(8)})
    build_mode_overviews(ours, [2, 4, 8, 16], nodata=0)
    build_overviews(theirs, [2, 4, 8, 16], Resampling.mode, release_gil=False)
    with rasterio.open(ours) as a, rasterio.open(theirs) as b:
        assert a.overviews(1) == b.overviews(1) == [2, 4, 8, 16]
        np.testing.assert_array_equal(a.read(1), data)  # the full resolution untouched
        assert a.colormap(1) == b.colormap(1)
    assert _levels(ours) == _levels(theirs)


def test_mode_overviews_are_filled_strip_by_strip_as_whole_levels(tmp_path, monkeypatch):
    # strips of 16 overview rows: every seam of the strips must vanish
    monkeypatch.setattr(overviews, "_STRIP_ROWS", 16)
    data = patches_and_speckle((301, 211), seed=5)
    path = _tiff(tmp_path / "z.tif", data)
    build_mode_overviews(path, [2, 4], nodata=0)
    level = data
    for k in range(2):
        with rasterio.open(path, overview_level=k) as ovr:
            got = ovr.read(1)
        level = mode_level(level, got.shape, nodata=0)
        np.testing.assert_array_equal(got, level)


def test_mode_overviews_without_the_ctypes_route_are_gdals(tmp_path, monkeypatch):
    data = patches_and_speckle((300, 260), seed=9)
    fallback = _tiff(tmp_path / "fallback.tif", data)
    expected = _tiff(tmp_path / "expected.tif", data)
    monkeypatch.setattr(overviews, "_gdal", lambda: None)
    build_mode_overviews(fallback, [2, 4], nodata=0)
    build_overviews(expected, [2, 4], Resampling.mode, release_gil=False)
    assert _levels(fallback) == _levels(expected)


def test_mode_overviews_of_a_file_gdal_cannot_open_name_it(tmp_path):
    with pytest.raises(OSError, match="missing.tif"):
        build_mode_overviews(tmp_path / "missing.tif", [2], nodata=0)
    not_a_raster = tmp_path / "notes.tif"
    not_a_raster.write_text("not a GeoTIFF", encoding="utf-8")
    with pytest.raises(OSError, match="notes.tif"):
        build_mode_overviews(not_a_raster, [2], nodata=0)


def test_a_window_wider_than_3_cells_is_counted_not_judged_by_its_corners():
    # the first, second and last cells agree, the mode is another value
    row = np.array([[5, 5, 7, 7, 7, 7, 5]], dtype=np.uint8)
    assert mode_level(row, (1, 1), nodata=0)[0, 0] == 7
    assert mode_level(row.T.copy(), (1, 1), nodata=0)[0, 0] == 7
