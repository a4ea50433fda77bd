"""Urban versus rural: splitting built-up land by settlement structure.

In the spirit of the UN Degree of Urbanisation (Eurostat/UN-Habitat/FAO/OECD/World Bank 2020,
"A recommendation on the method to delineate cities, urban and rural areas"), which classifies
1 km cells by density and contiguous clusters by size:

1. **Built-up share** ``s`` of each pixel: the share of built-up pixels among the mapped pixels
   (zone != 0) whose centres lie within ``radius_m`` of the pixel's centre (a circle, or the
   square of half-side ``radius_m``). 0 <= s <= 1. Built-up pixels are those awaiting the split
   (:data:`~ecoplan.classify.BUILT_UP`) plus the zones in ``counts_as_built_up``.
2. **Dense** pixels: ``s >= min_built_share``.
3. **Clusters**: contiguous dense pixels (4- or 8-connectivity); a cluster of area
   ``>= min_cluster_area_ha`` (pixel count x pixel area) is an urban cluster.
4. Built-up pixels awaiting the split become **urban** inside an urban cluster and **rural**
   elsewhere. Other pixels are unchanged.

Step 1 is a halo operation (halo = radius in pixels); step 3 uses global connected components
(:mod:`ecoplan.components`), so the result does not depend on the chunk size.
"""

from __future__ import annotations

import math

import dask.array as da
import numpy as np
from scipy import ndimage

from ecoplan.classify import BUILT_UP
from ecoplan.components import label_components
from ecoplan.kernels import dense_share, kernel_runs, window_sum
from ecoplan.rules import UrbanRuralSettings
from ecoplan.spill import hold
from ecoplan.zones import NODATA, zone_code

__all__ = [
    "window_kernel",
    "window_count",
    "built_share_block",
    "dense_block",
    "built_share",
    "split_built_up",
    "population_urban_cells",
    "split_by_population",
]


def window_kernel(radius_m: float, pixel_size_m: float, *, shape: str = "circle") -> np.ndarray:
    """The moving window as a 0/1 kernel: pixels whose centre is within ``radius_m``.

    ``circle``: Euclidean distance between centres <= radius; ``square``: both offsets <= radius.
    A radius below one pixel gives the pixel alone.
    """
    if shape not in ("circle", "square"):
        raise ValueError(f"window must be 'circle' or 'square' (got {shape!r})")
    r = int(math.floor(radius_m / pixel_size_m + 1e-9))
    dy, dx = np.mgrid[-r : r + 1, -r : r + 1]
    if shape == "square":
        return np.ones(dy.shape, dtype=np.float64)
    inside = (dy * dy + dx * dx) * pixel_size_m**2 <= radius_m**2 * (1 + 1e-9)
    return inside.astype(np.float64)


def _built_mask(zones: np.ndarray, built_codes: tuple[int, ...]) -> np.ndarray:
    return np.isin(zones, (BUILT_UP, *built_codes))


def window_count(mask: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Number of true pixels of ``mask`` under the 0/1 ``kernel`` centred on each pixel (float64).

    Kernels whose rows are single runs (every :func:`window_kernel`) are summed exactly in
    integers from row-wise prefix sums (:func:`ecoplan.kernels.window_sum`); any other kernel
    directly when small, by FFT (rounded: the counts are integers and the FFT error is far below
    0.5) when large.
    """
    runs = kernel_runs(kernel)
    if runs is not None:
        return window_sum(np.asarray(mask, dtype=bool), *runs).astype(np.float64)
    m = mask.astype(np.float64)
    if kernel.size <= 49:
        return ndimage.correlate(m, kernel, mode="constant", cval=0.0)
    from scipy import signal  # 1.5 s and ~50 MB to import, for non-binary kernels only

    r0, r1 = kernel.shape[0] // 2, kernel.shape[1] // 2
    full = signal.fftconvolve(m, kernel[::-1, ::-1], mode="full")
    return np.rint(full[r0 : r0 + m.shape[0], r1 : r1 + m.shape[1]])


def _counts(zones: np.ndarray, kernel: np.ndarray, built_codes: tuple[int, ...]):
    """Mapped (zone != 0) and built-up pixels in the window around each pixel, and ``valid``."""
    valid = zones != NODATA
    built = _built_mask(zones, built_codes) & valid
    runs = kernel_runs(kernel)
    if runs is not None and np.count_nonzero(kernel) < 2**16:
        # both counts in one pass: mapped in the low 16 bits, built-up in the high 16 bits
        packed = valid.view(np.uint8).astype(np.uint32)
        packed |= built.view(np.uint8).astype(np.uint32) << 16
        s = window_sum(packed, *runs)
        return (s & 0xFFFF).astype(np.float64), (s >> 16).astype(np.float64), valid
    return window_count(valid, kernel), window_count(built, kernel), valid


def built_share_block(
    zones: np.ndarray, *, kernel: np.ndarray, built_codes: tuple[int, ...]
) -> np.ndarray:
    """Built-up share (0–1, float64) in the window around each pixel; NaN on nodata. Halo: r."""
    n_valid, n_built, valid = _counts(zones, kernel, built_codes)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = n_built / n_valid
    share[~valid] = np.nan
    return share


def dense_block(
    zones: np.ndarray, *, kernel: np.ndarray, built_codes: tuple[int, ...], threshold: float
) -> np.ndarray:
    """1 where the built-up share is dense (``>= threshold``), else 0 (uint8). Halo: r.

    The same as :func:`built_share_block` then the threshold, without the float64 share array.
    """
    # a relative tolerance keeps a share exactly at the threshold dense (7/14 >= 0.5)
    limit = threshold * (1 - 1e-9)
    runs = kernel_runs(kernel)
    if runs is not None and np.count_nonzero(kernel) < 2**16 and zones.dtype == np.uint8:
        built = np.zeros(256, np.uint8)
        built[[c for c in (BUILT_UP, *built_codes) if 0 < c < 256]] = 1
        return dense_share(zones, built, *runs, limit)
    n_valid, n_built, valid = _counts(zones, kernel, built_codes)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.divide(n_built, n_valid, out=n_built)
    return ((share >= limit) & valid).view(np.uint8)


def built_share(zones: da.Array, settings: UrbanRuralSettings, *, pixel_size_m: float) -> da.Array:
    """:func:`built_share_block` mapped over a dask array with the halo it needs."""
    kernel = window_kernel(settings.radius_m, pixel_size_m, shape=settings.window)
    halo = kernel.shape[0] // 2
    codes = tuple(zone_code(z) for z in settings.counts_as_built_up)
    if halo == 0:
        return zones.map_blocks(
            built_share_block, kernel=kernel, built_codes=codes, dtype=np.float64
        )
    # dask refuses a halo deeper than the array; the window beyond the array is empty anyway
    depth = {0: min(halo, zones.shape[0]), 1: min(halo, zones.shape[1])}
    return zones.map_overlap(
        built_share_block,
        depth=depth,
        boundary=NODATA,
        trim=True,
        dtype=np.float64,
        kernel=kernel,
        built_codes=codes,
    )


def _dense(zones: da.Array, settings: UrbanRuralSettings, *, pixel_size_m: float) -> da.Array:
    """:func:`dense_block` mapped over a dask array with the halo it needs."""
    kernel = window_kernel(settings.radius_m, pixel_size_m, shape=settings.window)
    halo = kernel.shape[0] // 2
    kw = dict(
        kernel=kernel,
        built_codes=tuple(zone_code(z) for z in settings.counts_as_built_up),
        threshold=settings.min_built_share,
    )
    if halo == 0:
        return zones.map_blocks(dense_block, dtype=np.uint8, **kw)
    depth = {0: min(halo, zones.shape[0]), 1: min(halo, zones.shape[1])}
    return zones.map_overlap(
        dense_block, depth=depth, boundary=NODATA, trim=True, dtype=np.uint8, **kw
    )


def _split_block(zones: np.ndarray, urban: np.ndarray) -> np.ndarray:
    out = zones.copy()
    todo = zones == BUILT_UP
    out[todo & (urban > 0)] = zone_code("urban")
    out[todo & (urban == 0)] = zone_code("rural")
    return out


def split_built_up(
    zones: da.Array,
    settings: UrbanRuralSettings,
    *,
    pixel_size_m: float,
    budget_bytes: int | None = None,
    folder=None,
) -> da.Array:
    """Zones with every :data:`BUILT_UP` pixel made urban or rural (see the module docstring).

    The dense-pixel raster is computed once and kept (:func:`ecoplan.spill.hold`: in memory,
    or in a temporary file in ``folder`` when larger than ``budget_bytes``).
    """
    if settings.method == "all_urban":
        return da.where(zones == BUILT_UP, zone_code("urban"), zones).astype(zones.dtype)
    if settings.method == "all_rural":
        return da.where(zones == BUILT_UP, zone_code("rural"), zones).astype(zones.dtype)
    if settings.method == "population":
        raise ValueError("method 'population' needs the population grid: use split_by_population")
    dense = _dense(zones, settings, pixel_size_m=pixel_size_m)
    dense = hold(dense, budget_bytes=budget_bytes, folder=folder)
    comps = label_components(dense, connectivity=settings.connectivity)
    pixel_ha = pixel_size_m**2 / 1e4
    big = comps.sizes * pixel_ha >= settings.min_cluster_area_ha * (1 - 1e-9)
    urban = comps.lookup(comps.ids[big], np.ones(int(big.sum()), dtype=np.uint8))
    # a halo deeper than a chunk makes dask rechunk; come back to the chunks of the zones
    urban = urban.rechunk(zones.chunks)
    return da.map_blocks(_split_block, zones, urban, dtype=zones.dtype)


# --- population grid (DoU urban clusters) ------------------------------------------------------


def population_urban_cells(
    population: np.ndarray,
    *,
    cell_area_km2: float,
    min_density_per_km2: float,
    min_population: float,
) -> np.ndarray:
    """DoU urban clusters on a population grid: True for cells of a cluster.

    A cell is dense when ``population / cell_area_km2 >= min_density_per_km2``; dense cells
    joined by sides or corners (8-connectivity, as DoU urban clusters) form clusters; a cluster
    whose total population is ``>= min_population`` is an urban cluster (Eurostat/UN 2020:
    300 inhabitants/km² and 5,000 inhabitants on 1 km² cells). ``population`` may hold NaN
    (no data), counted as 0. The grid is small (1 km cells), so this runs on the whole array.
    """
    pop = np.nan_to_num(np.asarray(population, dtype=np.float64), nan=0.0)
    dense = pop / cell_area_km2 >= min_density_per_km2 * (1 - 1e-9)
    lab, n = ndimage.label(dense, structure=np.ones((3, 3), bool))
    if n == 0:
        return np.zeros(pop.shape, bool)
    total = ndimage.sum(pop, lab, index=np.arange(1, n + 1))
    big = np.concatenate([[False], total >= min_population * (1 - 1e-9)])
    return big[lab]


def _population_split_block(zones, *, urban_cells, cell_transform, grid_transform, block_info=None):
    (r0, r1), (c0, c1) = block_info[0]["array-location"]
    t = grid_transform
    xs = t.c + t.a * (np.arange(c0, c1) + 0.5)
    ys = t.f + t.e * (np.arange(r0, r1) + 0.5)
    inv = ~cell_transform
    cc = np.floor(inv.a * xs + inv.c).astype(np.int64)
    rr = np.floor(inv.e * ys + inv.f).astype(np.int64)
    h, w = urban_cells.shape
    ok_r, ok_c = (rr >= 0) & (rr < h), (cc >= 0) & (cc < w)
    urban = np.zeros((r1 - r0, c1 - c0), np.uint8)
    sub = urban_cells[np.clip(rr, 0, h - 1)][:, np.clip(cc, 0, w - 1)]
    urban[np.ix_(ok_r, ok_c)] = sub[np.ix_(ok_r, ok_c)]
    return _split_block(zones, urban)


def split_by_population(zones: da.Array, urban_cells: np.ndarray, *, grid, cell_grid) -> da.Array:
    """Built-up pixels urban where their centre lies in an urban-cluster cell, else rural.

    ``cell_grid`` is the (north-up) grid of ``urban_cells`` in the working CRS. Halo: 0.
    """
    return zones.map_blocks(
        _population_split_block,
        urban_cells=urban_cells,
        cell_transform=cell_grid.transform,
        grid_transform=grid.transform,
        dtype=zones.dtype,
    )
