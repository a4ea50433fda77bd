"""Overviews built through GDAL without the GIL (ecoplan.overviews) are rasterio's overviews."""

import hashlib
import threading

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.enums import Resampling

from ecoplan.overviews import _gdal, build_overviews


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
