"""Urban/rural split of built-up land by built-up density and cluster size."""

import dask.array as da
import numpy as np
import pytest
from scipy import ndimage

from ecoplan.classify import BUILT_UP
from ecoplan.rules import UrbanRuralSettings
from ecoplan.settlement import built_share_block, split_built_up, window_kernel

B, AG, RURAL, URBAN, IND = BUILT_UP, 2, 3, 4, 5
PIXEL_M = 100.0  # 1 pixel = 1 ha


def split(a, *, chunks=None, **kw):
    s = UrbanRuralSettings(**kw)
    z = da.from_array(np.asarray(a, np.uint8), chunks=chunks or np.shape(a))
    return split_built_up(z, s, pixel_size_m=PIXEL_M).compute()


def test_window_kernel_shapes():
    assert window_kernel(100, 100).astype(int).tolist() == [[0, 1, 0], [1, 1, 1], [0, 1, 0]]
    assert window_kernel(100, 100, shape="square").sum() == 9
    assert window_kernel(141.5, 100).sum() == 9  # diagonal centres at 141.4 m
    assert window_kernel(40, 100).tolist() == [[1.0]]  # radius below one pixel
    assert window_kernel(250, 100).sum() == 21  # offsets with dy²+dx² <= 6.25
    with pytest.raises(ValueError, match="circle"):
        window_kernel(100, 100, shape="hexagon")


def test_built_share_counts_only_mapped_pixels():
    z = np.array([[B, B, AG], [B, AG, AG], [0, AG, AG]], np.uint8)
    s = built_share_block(z, kernel=window_kernel(100, 100), built_codes=())
    assert s[1, 1] == pytest.approx(2 / 5)
    assert s[0, 0] == pytest.approx(3 / 3)  # pixels beyond the edge are not in the window
    assert s[2, 1] == pytest.approx(0 / 3)  # the nodata pixel (2, 0) is not counted
    assert np.isnan(s[2, 0])


def town_and_villages() -> np.ndarray:
    z = np.full((20, 20), AG, np.uint8)
    z[2:6, 2:6] = B  # a 16 ha town: every pixel's cross window is >= 3/5 built
    z[12:14, 12:14] = B  # a 4 ha village: dense (3/5) but the cluster is small
    z[17, 3] = B  # a lone building: 1/5, not dense
    return z


def test_town_is_urban_village_and_lone_building_rural():
    out = split(town_and_villages(), radius_m=100, min_built_share=0.5, min_cluster_area_ha=10)
    assert (out[2:6, 2:6] == URBAN).all()
    assert (out[12:14, 12:14] == RURAL).all()
    assert out[17, 3] == RURAL
    assert (out[(out != URBAN) & (out != RURAL)] == AG).all()  # nothing else changed


def test_smaller_cluster_threshold_makes_the_village_urban():
    out = split(town_and_villages(), radius_m=100, min_built_share=0.5, min_cluster_area_ha=4)
    assert (out[12:14, 12:14] == URBAN).all()
    assert out[17, 3] == RURAL


def test_industrial_land_counts_towards_density_when_listed():
    z = np.full((12, 12), AG, np.uint8)
    z[4:6, 2:4] = B
    z[2:8, 4:8] = IND  # 24 ha of industry beside a 4 ha village
    kw = dict(radius_m=100, min_built_share=0.5, min_cluster_area_ha=10)
    assert (split(z, **kw)[4:6, 2:4] == URBAN).all()
    assert (split(z, counts_as_built_up=[], **kw)[4:6, 2:4] == RURAL).all()
    assert (split(z, **kw)[2:8, 4:8] == IND).all()


def test_all_urban_and_all_rural_methods():
    z = town_and_villages()
    assert set(np.unique(split(z, method="all_urban"))) == {AG, URBAN}
    assert set(np.unique(split(z, method="all_rural"))) == {AG, RURAL}


def reference(z, *, radius_m, share, area_ha, connectivity):
    """The documented method on the whole array with scipy."""
    k = window_kernel(radius_m, PIXEL_M)
    valid = z != 0
    built = np.isin(z, (B, URBAN, RURAL, IND)) & valid
    nv = ndimage.correlate(valid.astype(float), k, mode="constant")
    nb = ndimage.correlate(built.astype(float), k, mode="constant")
    dense = valid & (nb >= share * nv - 1e-9)
    st = ndimage.generate_binary_structure(2, 1 if connectivity == 4 else 2)
    lab, _ = ndimage.label(dense, structure=st)
    sizes = np.bincount(lab.ravel())
    urban = (lab > 0) & (sizes[lab] >= area_ha)
    out = z.copy()
    out[(z == B) & urban] = URBAN
    out[(z == B) & ~urban] = RURAL
    return out


@pytest.mark.parametrize("connectivity", [4, 8])
def test_same_result_as_whole_array_reference_for_any_chunking(connectivity):
    rng = np.random.default_rng(3)
    blobs = ndimage.gaussian_filter(rng.random((48, 40)), 2.5)
    z = np.where(blobs > np.quantile(blobs, 0.7), B, AG).astype(np.uint8)
    z[rng.random(z.shape) < 0.05] = B
    z[:3, :] = 0
    kw = dict(radius_m=250, min_built_share=0.4, min_cluster_area_ha=30)
    expected = reference(z, radius_m=250, share=0.4, area_ha=30, connectivity=connectivity)
    assert URBAN in expected and RURAL in expected
    for chunks in [(48, 40), (10, 7), (17, 23)]:
        out = split(z, chunks=chunks, connectivity=connectivity, **kw)
        assert (out == expected).all(), chunks


def test_window_wider_than_the_array_works():
    z = np.array([[B, B, AG]], np.uint8)
    out = split(z, chunks=(1, 2), radius_m=1000, min_built_share=0.5, min_cluster_area_ha=1)
    assert out.tolist() == [[URBAN, URBAN, AG]]  # 2/3 built; 3 dense px = 3 ha


@pytest.mark.parametrize("radius_px", [1, 3, 10, 25])
def test_window_count_is_exact_for_small_and_large_windows(radius_px):
    from ecoplan.settlement import window_count

    m = np.random.default_rng(radius_px).random((120, 97)) < 0.3
    k = window_kernel(radius_px * 10.0, 10.0)
    expected = ndimage.correlate(m.astype(float), k, mode="constant")
    assert np.array_equal(window_count(m, k), expected)


# --- population grid (DoU urban clusters) ------------------------------------------------------


def test_population_clusters_by_density_and_size_with_diagonals():
    from ecoplan.settlement import population_urban_cells

    pop = np.array(
        [
            [1000, 1000, 1000, 0, 0, 0],
            [1000, 1000, 1000, 0, 0, 1000],
            [0, 0, 0, 300, 0, 1000],  # 300/km² touches the big cluster by a corner
            [0, 0, 0, 0, np.nan, 299],  # 299/km² is not dense
        ]
    )
    urban = population_urban_cells(
        pop, cell_area_km2=1.0, min_density_per_km2=300, min_population=5000
    )
    expected = np.zeros(pop.shape, bool)
    expected[:2, :3] = True
    expected[2, 3] = True  # 6,300 inhabitants in 7 cells
    assert (urban == expected).all()  # the 2,000-inhabitant cluster on the right is not urban
    none = population_urban_cells(
        pop, cell_area_km2=1.0, min_density_per_km2=300, min_population=1e6
    )
    assert not none.any()


@pytest.mark.parametrize("chunks", [(10, 10), (3, 4)])
def test_built_up_takes_the_class_of_the_cell_holding_its_centre(chunks):
    from affine import Affine
    from rasterio.crs import CRS

    from ecoplan.grid import Grid
    from ecoplan.settlement import split_by_population

    crs = CRS.from_epsg(32647)
    cells = Grid(crs, Affine(1000, 0, 0, 0, -1000, 4000), 4, 6)
    grid = Grid(crs, Affine(100, 0, 500, 0, -100, 3500), 10, 10)  # straddles four cells
    urban_cells = np.zeros((4, 6), bool)
    urban_cells[0, 0] = urban_cells[1, 1] = True
    z = np.full((10, 10), B, np.uint8)
    z[0, 0] = AG
    out = split_by_population(
        da.from_array(z, chunks=chunks), urban_cells, grid=grid, cell_grid=cells
    ).compute()
    # centres x = 550 … 1450 (cell column 0 below x = 1000), y = 3450 … 2550 (row 0 above 3000)
    assert out[0, 0] == AG
    assert (out[1:5, :5] == URBAN).all() and (out[5:, 5:] == URBAN).all()
    assert (out[:5, 5:] == RURAL).all() and (out[5:, :5] == RURAL).all()
