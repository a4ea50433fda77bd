"""Seeded generator of realistic ESA WorldCover-coded rasters for the benchmark.

A scene is a square raster of 10 m pixels in EPSG:32647 holding WorldCover codes
(10 tree, 20 shrub, 30 grass, 40 crop, 50 built-up, 60 bare, 80 water, 90 wetland):

- land cover from two multi-scale value-noise fields ("terrain" and "moisture", octaves from
  8 km down to 40 m) thresholded into clustered patches, with a little per-pixel noise so patch
  edges are ragged and isolated specks exist (as in the real product);
- meandering rivers (random walks with a smoothly turning heading, 20-80 m wide) and ponds;
- towns (dense built-up clusters a few km across, in the lowlands) and villages (small scattered
  clusters, about one per 7 km2 as in Thailand).

Every pixel is a pure function of (seed, row, column): noise comes from a counter-based hash of
the global lattice or pixel coordinates, and the rivers and settlements are small global vector
lists drawn from the seed. So any block can be generated alone, in any order, with the same
result, and a 30 000 x 30 000 raster is written block by block with bounded memory.

Usage (from the repository root)::

    python bench/generate.py 2k            # bench/data/2k/{landcover.tif,boundary.gpkg,region.yaml}
    python bench/generate.py 10k --seed 7 --workers 2
    python bench/generate.py 30k
"""

from __future__ import annotations

import argparse
import concurrent.futures
import math
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "CODES",
    "SIZES",
    "Scene",
    "make_scene",
    "render_block",
    "write_landcover",
    "write_boundary",
    "write_region",
    "generate",
    "parse_size",
]

CODES = {
    10: "tree",
    20: "shrub",
    30: "grass",
    40: "crop",
    50: "built-up",
    60: "bare",
    80: "water",
    90: "wetland",
}
SIZES = {"2k": 2_000, "10k": 10_000, "30k": 30_000}
PIXEL_M = 10.0
CRS = "EPSG:32647"
ORIGIN = (400_000.0, 2_100_000.0)  # upper-left corner (x, y) in UTM 47N, northern Thailand

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLD = np.uint64(0x9E3779B97F4A7C15)
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)

# value-noise octaves: (spacing in pixels, amplitude)
TERRAIN_OCTAVES = ((800, 1.0), (200, 0.5), (50, 0.28), (12, 0.14), (4, 0.07))
MOISTURE_OCTAVES = ((300, 1.0), (80, 0.5), (20, 0.25), (5, 0.12))
SPECKLE = 0.05  # amplitude of the per-pixel terrain noise


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a well-mixed uint64 for each uint64 (wrapping arithmetic)."""
    x = x ^ (x >> _S30)
    x = x * _M1
    x = x ^ (x >> _S27)
    x = x * _M2
    return x ^ (x >> _S31)


def _mix_int(x: int) -> int:
    """:func:`_mix` on a Python int (no numpy scalar overflow warnings)."""
    mask = (1 << 64) - 1
    x &= mask
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) & mask
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) & mask
    return x ^ (x >> 31)


def _hash2(seed: int, stream: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Uniform floats in [0, 1) for each (row, col), a pure function of the four integers."""
    base = np.uint64(_mix_int(seed * 0x9E3779B97F4A7C15 + (stream + 1) * 0xBF58476D1CE4E5B9))
    r = _mix(base ^ rows.astype(np.uint64)[:, None] * _M2)
    h = _mix(r + cols.astype(np.uint64)[None, :] * _GOLD)
    return (h >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def _axis(start: int, stop: int, spacing: int) -> tuple[np.ndarray, int, int]:
    """Lattice index and smoothstep weight of pixel centres start..stop-1 at a spacing."""
    u = (np.arange(start, stop, dtype=np.float64) + 0.5) / spacing
    i = np.floor(u).astype(np.int64)
    t = u - i
    w = t * t * (3.0 - 2.0 * t)
    return i, w, int(i[0])


def _value_noise(seed: int, stream: int, r0: int, r1: int, c0: int, c1: int, octaves) -> np.ndarray:
    """Sum of value-noise octaves (each in [-amp, amp]) on the block rows r0:r1, cols c0:c1."""
    out = np.zeros((r1 - r0, c1 - c0), dtype=np.float32)
    for k, (spacing, amp) in enumerate(octaves):
        iy, wy, y0 = _axis(r0, r1, spacing)
        ix, wx, x0 = _axis(c0, c1, spacing)
        lat_r = np.arange(y0, int(iy[-1]) + 2)
        lat_c = np.arange(x0, int(ix[-1]) + 2)
        lat = (_hash2(seed, stream * 16 + k, lat_r, lat_c) * 2.0 - 1.0).astype(np.float32)
        jx = ix - x0
        wx32 = wx.astype(np.float32)
        cols = lat[:, jx] * (1 - wx32) + lat[:, jx + 1] * wx32  # (lattice rows, block cols)
        jy = iy - y0
        wy32 = wy.astype(np.float32)[:, None]
        out += amp * (cols[jy] * (1 - wy32) + cols[jy + 1] * wy32)
    return out


@dataclass(frozen=True)
class Scene:
    """Everything global about a generated raster: size, seed, rivers, towns and villages."""

    size: int
    seed: int
    rivers: tuple  # shapely polygons (river channels), in pixel coordinates (x=col, y=row)
    settlements: np.ndarray  # float64 (n, 4): row, col, radius_px, density
    pixel_m: float = PIXEL_M

    @property
    def transform(self):
        from affine import Affine

        return Affine(self.pixel_m, 0.0, ORIGIN[0], 0.0, -self.pixel_m, ORIGIN[1])


def _terrain_at(seed: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    return np.array(
        [
            _value_noise(seed, 1, int(r), int(r) + 1, int(c), int(c) + 1, TERRAIN_OCTAVES)[0, 0]
            for r, c in zip(rows, cols, strict=True)
        ]
    )


# thresholds on the terrain field (its std is about 0.45)
T_TREE = 0.12  # above: tree cover
T_SHRUB = 0.02  # between T_SHRUB and T_TREE: shrub or grass
T_POND = -0.8  # below: water (ponds, reservoirs)
T_WET = -0.55  # below (and moist): herbaceous wetland
M_WET = 0.35
M_BARE = -0.9  # moisture below this on open land: bare


def _river(rng: np.random.Generator, size: int, *, main: bool):
    """A meandering river channel polygon in pixel coordinates, or None if it is degenerate."""
    import shapely

    step = 10.0  # pixels (100 m)
    if main:
        side = rng.integers(4)
        p = rng.uniform(0.1, 0.9) * size
        x, y, heading = [(p, 0.0, 90), (p, size, 270), (0.0, p, 0), (size, p, 180)][side]
        heading = math.radians(heading + rng.uniform(-30, 30))
        n = int(3 * size / step)
        width_px = rng.uniform(4.0, 8.0)
    else:
        x, y = rng.uniform(0, size, 2)
        heading = rng.uniform(0, 2 * math.pi)
        n = int(rng.uniform(50, 300))  # 5-30 km
        width_px = rng.uniform(2.0, 3.2)
    turn = 0.0
    pts = [(x, y)]
    course = heading  # the general direction; meanders swing around it without looping
    for _ in range(n):
        turn = 0.85 * turn + rng.normal(0, 0.05)
        heading += turn - 0.08 * (heading - course)
        course += rng.normal(0, 0.01)
        x += step * math.cos(heading)
        y += step * math.sin(heading)
        pts.append((x, y))
        if not (-step <= x <= size + step and -step <= y <= size + step):
            break
    if len(pts) < 3:
        return None
    line = shapely.LineString(pts)
    poly = line.buffer(width_px / 2, cap_style="flat", quad_segs=4)
    poly = poly.intersection(shapely.box(0, 0, size, size))
    return None if poly.is_empty else poly


def make_scene(size: int, *, seed: int = 1) -> Scene:
    """The global part of a scene (rivers, towns, villages), drawn from ``seed``."""
    rng = np.random.default_rng([seed, size])
    area_km2 = (size * PIXEL_M / 1000) ** 2
    n_main = max(1, round(size * PIXEL_M / 1000 / 60))
    n_trib = max(2, round(area_km2 / 250))
    rivers = [_river(rng, size, main=True) for _ in range(n_main)]
    rivers += [_river(rng, size, main=False) for _ in range(n_trib)]
    rivers = tuple(r for r in rivers if r is not None)

    # settlements: candidates drawn uniformly, kept in the lowlands (no towns in the hills)
    def centres(n, lo, hi, density):
        rows = rng.uniform(0, size, n)
        cols = rng.uniform(0, size, n)
        radius = rng.uniform(lo, hi, n)
        keep = _terrain_at(seed, rows.astype(int), cols.astype(int)) < T_SHRUB
        return np.column_stack([rows, cols, radius, np.full(n, density)])[keep]

    n_towns = max(2, round(area_km2 / 400))
    n_villages = max(10, round(area_km2 / 7))
    towns = centres(2 * n_towns, 60.0, 200.0, 0.95)  # radius 0.6-2 km
    villages = centres(2 * n_villages, 8.0, 22.0, 0.85)  # radius 80-220 m
    settlements = np.vstack([towns[:n_towns], villages[:n_villages]])
    return Scene(size=size, seed=seed, rivers=rivers, settlements=settlements)


def render_block(scene: Scene, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
    """WorldCover codes (uint8) of rows r0:r1, columns c0:c1 of the scene.

    A pure function of the scene and the pixel coordinates: blocks can be rendered in any
    order and tile the raster exactly.
    """
    from affine import Affine
    from rasterio.errors import NotGeoreferencedWarning
    from rasterio.features import rasterize

    seed = scene.seed
    rows = np.arange(r0, r1)
    cols = np.arange(c0, c1)
    terrain = _value_noise(seed, 1, r0, r1, c0, c1, TERRAIN_OCTAVES)
    terrain += (SPECKLE * (2.0 * _hash2(seed, 3, rows, cols) - 1.0)).astype(np.float32)
    moist = _value_noise(seed, 2, r0, r1, c0, c1, MOISTURE_OCTAVES)

    out = np.full(terrain.shape, 40, dtype=np.uint8)  # cropland
    out[moist < M_BARE] = 60
    out[(terrain < T_WET) & (moist > M_WET)] = 90
    out[terrain < T_POND] = 80
    shrubby = (terrain >= T_SHRUB) & (terrain < T_TREE)
    out[shrubby & (moist >= 0)] = 20
    out[shrubby & (moist < 0)] = 30
    out[terrain >= T_TREE] = 10

    # settlements: built-up where a Gaussian density beats a clumpy noise threshold
    s = scene.settlements
    reach = 2.5 * s[:, 2]
    near = (
        (s[:, 0] + reach > r0)
        & (s[:, 0] - reach < r1)
        & (s[:, 1] + reach > c0)
        & (s[:, 1] - reach < c1)
    )
    if near.any():
        dens = np.zeros(terrain.shape, dtype=np.float32)
        for row, col, radius, density in s[near]:
            a0 = max(r0, int(row - 2.5 * radius))
            a1 = min(r1, int(row + 2.5 * radius) + 1)
            b0 = max(c0, int(col - 2.5 * radius))
            b1 = min(c1, int(col + 2.5 * radius) + 1)
            if a0 >= a1 or b0 >= b1:
                continue
            dy = (np.arange(a0, a1) + 0.5 - row)[:, None]
            dx = (np.arange(b0, b1) + 0.5 - col)[None, :]
            g = (density * np.exp(-(dy * dy + dx * dx) / (radius * radius))).astype(np.float32)
            sub = dens[a0 - r0 : a1 - r0, b0 - c0 : b1 - c0]
            np.maximum(sub, g, out=sub)
        clump = _value_noise(seed, 4, r0, r1, c0, c1, ((6, 0.6), (2, 0.4)))
        out[dens > 0.45 + 0.45 * clump] = 50

    # rivers on top (they run through towns)
    if scene.rivers:
        import shapely

        box = shapely.box(c0, r0, c1, r1)
        hits = [g for g in scene.rivers if g.intersects(box)]
        if hits:
            with warnings.catch_warnings():  # pixel coordinates: identity at block (0, 0)
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                water = rasterize(
                    [(g, 1) for g in hits],
                    out_shape=terrain.shape,
                    transform=Affine.translation(c0, r0),
                    fill=0,
                    dtype=np.uint8,
                )
            out[water == 1] = 80
    return out


def _windows(size: int, block: int):
    for r0 in range(0, size, block):
        yield [
            (r0, min(size, r0 + block), c0, min(size, c0 + block)) for c0 in range(0, size, block)
        ]


def write_landcover(scene: Scene, path: str | Path, *, block: int = 1024, workers: int = 2) -> Path:
    """Write the scene as a tiled, DEFLATE-compressed GeoTIFF, one block row at a time.

    Memory is bounded by one row of blocks (``size x block`` bytes) plus the workers' scratch.
    """
    import rasterio

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    profile = {
        "driver": "GTiff",
        "dtype": "uint8",
        "count": 1,
        "width": scene.size,
        "height": scene.size,
        "crs": CRS,
        "transform": scene.transform,
        "nodata": 0,
        "tiled": True,
        "blockxsize": 512,
        "blockysize": 512,
        "compress": "deflate",
        "BIGTIFF": "IF_SAFER",
        "NUM_THREADS": "ALL_CPUS",
    }
    with (
        rasterio.open(tmp, "w", **profile) as dst,
        concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool,
    ):
        for windows in _windows(scene.size, block):
            blocks = pool.map(lambda w: render_block(scene, *w), windows)
            for (r0, r1, c0, c1), data in zip(windows, blocks, strict=True):
                dst.write(data, 1, window=((r0, r1), (c0, c1)))
        dst.update_tags(GENERATOR="ecoplan bench/generate.py", SEED=str(scene.seed))
    tmp.replace(path)
    return path


def write_boundary(scene: Scene, path: str | Path) -> Path:
    """Four unit polygons (``unit_id``, ``unit_num``) covering most of the raster, wavy edges."""
    import geopandas as gpd
    import shapely

    rng = np.random.default_rng([scene.seed, scene.size, 99])
    size_m = scene.size * scene.pixel_m
    x0, y1 = ORIGIN
    inset = 0.02 * size_m
    # a wavy outline around the inset square
    n = 64
    pts = []
    for side in range(4):
        for k in range(n):
            t = k / n
            wobble = rng.uniform(0, 0.015) * size_m
            d = inset + wobble
            if side == 0:
                p = (x0 + d + t * (size_m - 2 * d), y1 - d)
            elif side == 1:
                p = (x0 + size_m - d, y1 - d - t * (size_m - 2 * d))
            elif side == 2:
                p = (x0 + size_m - d - t * (size_m - 2 * d), y1 - size_m + d)
            else:
                p = (x0 + d, y1 - size_m + d + t * (size_m - 2 * d))
            pts.append(p)
    outline = shapely.make_valid(shapely.Polygon(pts))
    xm, ym = x0 + size_m / 2, y1 - size_m / 2
    quads = [
        shapely.box(x0, ym, xm, y1),
        shapely.box(xm, ym, x0 + size_m, y1),
        shapely.box(x0, y1 - size_m, xm, ym),
        shapely.box(xm, y1 - size_m, x0 + size_m, ym),
    ]
    units = gpd.GeoDataFrame(
        {
            "unit_id": [f"U{k}" for k in range(1, 5)],
            "unit_num": [1, 2, 3, 4],  # for gdal_rasterize -a
            "name": ["north-west", "north-east", "south-west", "south-east"],
            "geometry": [outline.intersection(q) for q in quads],
        },
        crs=CRS,
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.unlink()
    units.to_file(path, layer="units", driver="GPKG")
    return path


RULES_FULL_YAML = """\
# Benchmark rules, full plan: the buffers of issue 7 (500 m around forest, 30 m around water),
# so ecoplan and the GDAL pipeline compute the same distances; every other section takes the
# shipped defaults (constraints, suitability, the allocation, the six plans).
version: 1
name: bench_full
description: issue 7 benchmark, full plan (forest 500 m, water 30 m)
buffers:
  - id: forest_edge
    name_en: Forest-edge buffer
    name_th: แนวกันชนขอบป่า
    source: {zones: [forest]}
    distance_m: 500
    side: outside
    restricts: [urban, industrial]
  - id: water_edge
    name_en: Water buffer
    name_th: แนวกันชนริมน้ำ
    source: {zones: [water]}
    distance_m: 30
    side: outside
    restricts: [urban, industrial]
min_mapping_unit: {area_ha: 1.0, connectivity: 4}
"""


RULES_YAML = (
    RULES_FULL_YAML.replace("name: bench_full", "name: bench")
    .replace("issue 7 benchmark, full plan", "issue 7 benchmark, the issue's steps")
    .replace(
        "# Benchmark rules, full plan:",
        "# Benchmark rules, the issue's steps only (what the GDAL pipeline does):",
    )
    + """\
# the issue's pipeline has no allocation, constraints, suitability or plan layers
allocation: {enabled: false}
constraints: []
suitability: {factors: [], zones: {}}
plans: []
"""
)


def write_region(folder: str | Path, *, label: str) -> Path:
    """``region.yaml`` and ``region_full.yaml`` (with their rules) for ``ecoplan run``.

    ``region.yaml`` runs the issue's steps (as the GDAL pipeline does); ``region_full.yaml``
    the whole eco-plan (constraints, suitability, the allocation, the six plans).
    """
    folder = Path(folder)
    (folder / "rules.yaml").write_text(RULES_YAML, encoding="utf-8")
    (folder / "rules_full.yaml").write_text(RULES_FULL_YAML, encoding="utf-8")
    for name, rules in (("region_full.yaml", "rules_full.yaml"), ("region.yaml", "rules.yaml")):
        path = folder / name
        path.write_text(_region_text(label, rules), encoding="utf-8")
    return path


def _region_text(label: str, rules: str) -> str:
    return f"""\
# Generated by bench/generate.py: a synthetic WorldCover-coded region ({label}).
region:
  id: bench_{label}
  name_en: Benchmark {label}
  name_th: ทดสอบความเร็ว {label}
crs: {CRS}
boundary:
  path: boundary.gpkg
  layer: units
  unit_field: unit_id
landcover:
  path: landcover.tif
  crosswalk: worldcover
pixel_size_m: 10
rules: {rules}
"""


def parse_size(text: str) -> tuple[str, int]:
    """``"10k"`` -> ("10k", 10000); ``"1500"`` -> ("1500", 1500)."""
    if text in SIZES:
        return text, SIZES[text]
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"size must be one of {', '.join(SIZES)} or a number of pixels (got {text!r})"
        ) from None
    if n < 64:
        raise argparse.ArgumentTypeError(f"size must be at least 64 pixels (got {n})")
    return text, n


def generate(
    folder: str | Path, size: int, *, label: str, seed: int = 1, block: int = 1024, workers: int = 2
) -> dict:
    """Write landcover.tif, boundary.gpkg, rules.yaml and region.yaml into ``folder``."""
    folder = Path(folder)
    t0 = time.perf_counter()
    scene = make_scene(size, seed=seed)
    write_landcover(scene, folder / "landcover.tif", block=block, workers=workers)
    write_boundary(scene, folder / "boundary.gpkg")
    region = write_region(folder, label=label)
    return {
        "region": str(region),
        "size": size,
        "seed": seed,
        "rivers": len(scene.rivers),
        "settlements": len(scene.settlements),
        "seconds": round(time.perf_counter() - t0, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("size", type=parse_size, help="2k, 10k, 30k or a number of pixels")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "data")
    parser.add_argument("--block", type=int, default=1024, help="block size in pixels")
    parser.add_argument("--workers", type=int, default=2, help="threads rendering blocks")
    args = parser.parse_args(argv)
    label, size = args.size
    info = generate(
        args.out / label, size, label=label, seed=args.seed, block=args.block, workers=args.workers
    )
    print(
        f"wrote {info['region']} ({size} x {size} px, {info['rivers']} rivers, "
        f"{info['settlements']} settlements) in {info['seconds']} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
