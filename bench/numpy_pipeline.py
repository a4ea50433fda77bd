"""The issue-7 pipeline as a straightforward numpy/scipy/rasterio script, stage by stage.

Issue 7's third peer: "a straightforward numpy/scipy/rasterio script", whole rasters in memory,
no dask, numba or hand-written kernels. The steps and parameters are those of
``gdal_pipeline.py``; the whole script runs in one child process (``--child``), so its peak RSS
and CPU time, imports and interpreter start included, are its own.

Stages, each timed in the child (wall, CPU, and the process's peak RSS so far):

1. ``units``       rasterio.features.rasterize of boundary.gpkg's layer ``units`` (read with
                   geopandas/pyogrio) by ``unit_num`` onto the land-cover grid (pixel centres)
2. ``reclass``     rasterio read of the land cover; WorldCover code -> zone by a 256-entry
                   lookup table (``gdal_pipeline.WORLDCOVER_TO_ZONE``), 0 outside the units
3. ``density``     built-up mask (zone 4) as float32, scipy.ndimage.uniform_filter 51 x 51
                   (510 m moving window) with ``mode="nearest"``: GDAL's KernelFilteredSource
                   repeats the edge pixels outward, and so does this (checked: identical to
                   GDAL's density raster, also at the raster's edges)
4. ``urban_rural`` built-up pixels with density < 0.25 become rural (3)
5. ``mmu``         rasterio.features.sieve (GDAL's sieve filter), 4-connected, 100 px (1 ha),
                   the outside of the units masked out: gdal_sieve.py's result exactly
6. ``buffers``     ndimage.distance_transform_edt (sampling = pixel size) to forest (1) and
                   water (6); bands and conflicts exactly as gdal_pipeline.py's calc expressions
7. ``areas``       key = unit*16+zone, np.bincount of the key and of the conflicts
8. ``vectorise``   rasterio.features.shapes (4-connected, one polygon per patch) of the key,
                   buffer bands and conflicts -> shapely -> geopandas/pyogrio, one GeoPackage
9. ``cog``         rasterio write of the zone raster with driver="COG" (DEFLATE, mode overviews)

Differences from the GDAL pipeline:

- nothing is written between stages (the arrays stay in memory); the only files are
  ``out.gpkg`` and ``zones_cog.tif`` (with ``--keep`` also the intermediate rasters, under the
  GDAL pipeline's names, written outside the stages' timers but inside the total);
- the minimum mapping unit was first written with the usual scipy idiom (ndimage.label per
  zone, then each small-patch pixel takes the zone of the nearest large-patch pixel through
  distance_transform_edt's indices): 37 s at 10k² on a shared machine, and not gdal_sieve's
  result (a patch can be split between neighbours, 9 332 cells differed at 2k²).
  rasterio.features.sieve is just as straightforward and is GDAL's own sieve filter, so the
  two pipelines' zones agree cell for cell (checked at 2k²);
- distances are exact Euclidean distances; ``gdal_proximity.py`` propagates the nearest source
  in two passes and can miss a pixel at the limit (at 2k², on the same zones, one pixel at
  exactly 500 m); the thresholds are the same (<= 500 m, <= 30 m, between pixel centres);
- memory: distance_transform_edt makes an int32 feature transform (8 bytes a pixel), and for
  distances goes through float64 offsets on both axes (up to ~32 bytes a pixel more): the
  buffers stage sets the peak, ~3.7 GB at 10k²;
- per-stage peak RSS is the process's peak so far (VmHWM of /proc/self/status: the child's
  ru_maxrss would also count the parent's peak, as subprocess starts it with vfork), not a
  stage's own peak as for the GDAL commands.

Usage: python bench/numpy_pipeline.py bench/data/2k [--work DIR] [--keep]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path

from gdal_pipeline import (
    DENSITY_WINDOW_PX,
    FOREST_BUFFER_M,
    MMU_PX,
    URBAN_DENSITY,
    WATER_BUFFER_M,
    WORLDCOVER_TO_ZONE,
    StageResult,
    count_features,
    run_command,
)

__all__ = ["run_numpy_pipeline"]

FOREST, BUILT, RURAL, WATER = 1, 4, 3, 6
RESTRICTED = (4, 5)  # urban and industrial: a conflict inside a buffer band
RESULT_JSON = "numpy_result.json"


# ---------------------------------------------------------------------------------------------
# The parent: one child process, measured as a whole


def run_numpy_pipeline(region_dir: str | Path, work: str | Path, *, keep: bool = False) -> dict:
    """Run the script as one child process in ``work`` (emptied first); return its figures.

    The keys are those of ``run_gdal_pipeline``'s result, with ``versions`` (numpy, scipy,
    rasterio, GDAL, shapely, geopandas, pyogrio) in place of ``gdal_version``. ``seconds`` and
    ``cpu_seconds`` are the child's, interpreter start and imports included; ``max_rss_mb`` is
    the child's peak RSS.
    """
    region_dir, work = Path(region_dir).resolve(), Path(work).resolve()
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    argv = [sys.executable, str(Path(__file__).resolve()), str(region_dir)]
    argv += ["--work", str(work), "--child"] + (["--keep"] if keep else [])
    seconds, polled_rss_mb, cpu = run_command(argv, cwd=work)
    child = json.loads((work / RESULT_JSON).read_text(encoding="utf-8"))
    outputs = [work / "out.gpkg", work / "zones_cog.tif"]
    return {
        "tool": "numpy",
        "versions": child["versions"],
        "seconds": seconds,
        "max_rss_mb": max(polled_rss_mb, child["max_rss_mb"]),
        "cpu_seconds": cpu,
        "import_seconds": child["import_seconds"],
        "stages": child["stages"],
        "zone_pixels": child["zone_pixels"],
        "conflict_pixels": child["conflict_pixels"],
        "polygons": count_features(work / "out.gpkg"),
        "output_bytes": sum(f.stat().st_size for f in outputs if f.exists()),
    }


# ---------------------------------------------------------------------------------------------
# The child: the script itself


def peak_rss_mb() -> float:
    """This process's peak RSS in MB (VmHWM; ru_maxrss where /proc is missing)."""
    with contextlib.suppress(OSError), open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@contextlib.contextmanager
def timed(stages: list[StageResult], name: str):
    """Time the block (wall and CPU) and append it to ``stages`` with the peak RSS so far."""
    t0, c0 = time.perf_counter(), time.process_time()
    yield
    stages.append(
        StageResult(
            name,
            seconds=time.perf_counter() - t0,
            max_rss_mb=peak_rss_mb(),
            cpu_seconds=time.process_time() - c0,
        )
    )


def burn_units(boundary: Path, profile: dict):
    """The units' ``unit_num`` burnt onto the grid (uint8, 0 outside), pixel centres inside."""
    import geopandas as gpd
    import numpy as np
    from rasterio.features import rasterize

    units = gpd.read_file(boundary, layer="units")
    return rasterize(
        zip(units.geometry, units["unit_num"].astype(int), strict=True),
        out_shape=(profile["height"], profile["width"]),
        transform=profile["transform"],
        fill=0,
        dtype=np.uint8,
    )


def reclass(landcover: Path, units):
    """WorldCover codes -> zones by a lookup table; 0 outside the units and for unknown codes."""
    import numpy as np
    import rasterio

    with rasterio.open(landcover) as src:
        codes = src.read(1)
    table = np.zeros(256, dtype=np.uint8)
    for code, zone in WORLDCOVER_TO_ZONE.items():
        table[code] = zone
    zones = table[codes]
    zones[units == 0] = 0
    return zones


def builtup_density(zones, *, window: int):
    """Share of built-up pixels in a ``window`` x ``window`` square around each pixel (float32).

    ``mode="nearest"`` repeats the edge pixels outward, as GDAL's KernelFilteredSource does.
    """
    from scipy import ndimage

    built = (zones == BUILT).astype("float32")
    return ndimage.uniform_filter(built, size=window, mode="nearest")


def split_urban_rural(zones, density, *, threshold: float):
    """Built-up pixels whose density is under ``threshold`` become rural."""
    out = zones.copy()
    out[(zones == BUILT) & (density < threshold)] = RURAL
    return out


def sieve(zones, *, min_px: int):
    """Patches under ``min_px`` merged into a neighbour: rasterio.features.sieve (GDAL's sieve
    filter, as gdal_sieve.py), 4-connected, the outside of the units (0) masked out.

    Returns the new zones and the number of pixels that changed.
    """
    from rasterio.features import sieve as rasterio_sieve

    out = rasterio_sieve(zones, min_px, mask=zones > 0, connectivity=4)
    return out, int((out != zones).sum())


def buffer_bands(zones, *, pixel_size: tuple[float, float]):
    """Buffer bands (1 forest, 2 water, 3 both) and conflicts (16*band + zone), both uint8.

    As gdal_pipeline.py's calc expressions: a band is 0 < distance <= the buffer's width,
    outside its source zone and inside the region; a conflict is urban or industrial in a band.
    """
    import numpy as np
    from scipy import ndimage

    inside = zones != 0
    bands = np.zeros(zones.shape, dtype=np.uint8)
    for value, source, width in ((1, FOREST, FOREST_BUFFER_M), (2, WATER, WATER_BUFFER_M)):
        dist = ndimage.distance_transform_edt(zones != source, sampling=pixel_size)
        bands[(dist > 0) & (dist <= width) & (zones != source) & inside] += value
        del dist
    restricted = np.isin(zones, RESTRICTED) & (bands > 0)
    conflicts = np.where(restricted, 16 * bands + zones, 0).astype(np.uint8)
    return bands, conflicts


def zone_areas(zones, units, conflicts):
    """The key raster (unit*16+zone, 0 outside) and the pixel counts per zone and of conflicts."""
    import numpy as np

    key = np.where(zones > 0, units * 16 + zones, 0).astype(np.uint8)
    counts = np.bincount(key.ravel(), minlength=256)
    zone_pixels: dict[int, int] = {}
    for k in np.flatnonzero(counts[1:]) + 1:
        zone_pixels[int(k) % 16] = zone_pixels.get(int(k) % 16, 0) + int(counts[k])
    conflict_pixels = int(np.count_nonzero(conflicts))
    return key, {str(z): n for z, n in sorted(zone_pixels.items())}, conflict_pixels


def polygons(raster, *, transform, crs, field: str):
    """One polygon per 4-connected patch of equal nonzero values, as a GeoDataFrame."""
    import geopandas as gpd
    import numpy as np
    from rasterio.features import shapes
    from shapely.geometry import shape

    geoms, values = [], []
    for geom, value in shapes(raster, mask=raster > 0, connectivity=4, transform=transform):
        geoms.append(shape(geom))
        values.append(int(value))
    return gpd.GeoDataFrame({field: np.asarray(values, dtype=np.int32)}, geometry=geoms, crs=crs)


def write_layers(path: Path, layers: dict, *, profile: dict) -> dict[str, int]:
    """Polygonise each (raster, field) of ``layers`` into a layer of one GeoPackage."""
    counts = {}
    for name, (raster, field) in layers.items():
        gdf = polygons(raster, transform=profile["transform"], crs=profile["crs"], field=field)
        gdf.to_file(path, layer=name, driver="GPKG", geometry_type="Polygon")
        counts[name] = len(gdf)
    return counts


def write_raster(path: Path, array, *, profile: dict, **options) -> None:
    """Write one band on the land-cover grid; ``options`` go to rasterio.open."""
    import rasterio

    meta = {
        "driver": "GTiff",
        "width": profile["width"],
        "height": profile["height"],
        "count": 1,
        "dtype": array.dtype.name,
        "crs": profile["crs"],
        "transform": profile["transform"],
    }
    with rasterio.open(path, "w", **(meta | options)) as dst:
        dst.write(array, 1)


def write_cog(path: Path, zones, *, profile: dict) -> None:
    """The zone raster as a Cloud-Optimised GeoTIFF: DEFLATE, mode overviews, 0 as nodata."""
    write_raster(
        path,
        zones,
        profile=profile,
        driver="COG",
        nodata=0,
        compress="DEFLATE",
        overview_resampling="MODE",
        BIGTIFF="IF_SAFER",
    )


def versions() -> dict[str, str]:
    import geopandas
    import numpy
    import pyogrio
    import rasterio
    import scipy
    import shapely

    return {
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "rasterio": rasterio.__version__,
        "gdal": rasterio.__gdal_version__,
        "shapely": shapely.__version__,
        "geopandas": geopandas.__version__,
        "pyogrio": pyogrio.__version__,
    }


def run_stages(region_dir: Path, work: Path, *, keep: bool = False) -> dict:
    """The script: every stage in this process, timed; returns the figures for the parent.

    With ``keep``, the intermediate rasters are written as tiled GeoTIFFs after each stage,
    outside its timer, under the GDAL pipeline's names.
    """
    import rasterio

    def save(name: str, array) -> None:
        if keep:
            write_raster(work / f"{name}.tif", array, profile=profile, tiled=True)

    landcover, boundary = region_dir / "landcover.tif", region_dir / "boundary.gpkg"
    stages: list[StageResult] = []
    with timed(stages, "units"):
        with rasterio.open(landcover) as src:
            profile = dict(src.profile)
        units = burn_units(boundary, profile)
    save("units", units)
    with timed(stages, "reclass"):
        zones0 = reclass(landcover, units)
    save("zones0", zones0)
    with timed(stages, "density"):
        density = builtup_density(zones0, window=DENSITY_WINDOW_PX)
    save("density", density)
    with timed(stages, "urban_rural"):
        zones1 = split_urban_rural(zones0, density, threshold=URBAN_DENSITY)
    del zones0, density
    save("zones1", zones1)
    with timed(stages, "mmu"):
        zones, _ = sieve(zones1, min_px=MMU_PX)
    del zones1
    save("zones", zones)
    with timed(stages, "buffers"):
        rx, ry = profile["transform"].a, -profile["transform"].e
        bands, conflicts = buffer_bands(zones, pixel_size=(ry, rx))
    save("buffers", bands)
    save("conflicts", conflicts)
    with timed(stages, "areas"):
        key, zone_pixels, conflict_pixels = zone_areas(zones, units, conflicts)
    save("key", key)
    with timed(stages, "vectorise"):
        layers = {"zones": (key, "key"), "buffer_zones": (bands, "band")}
        layers["conflicts"] = (conflicts, "key")
        counts = write_layers(work / "out.gpkg", layers, profile=profile)
    with timed(stages, "cog"):
        write_cog(work / "zones_cog.tif", zones, profile=profile)
    return {
        "stages": [asdict(s) for s in stages],
        "zone_pixels": zone_pixels,
        "conflict_pixels": conflict_pixels,
        "polygons": counts,
        "max_rss_mb": peak_rss_mb(),
    }


def child_main(region_dir: Path, work: Path, *, keep: bool) -> int:
    """Entry point of the child: import, run the stages, write RESULT_JSON in ``work``."""
    t0 = time.perf_counter()
    found = versions()  # imports numpy, scipy, rasterio, shapely, geopandas, pyogrio
    import_seconds = time.perf_counter() - t0
    result = run_stages(region_dir, work, keep=keep)
    result |= {"versions": found, "import_seconds": import_seconds}
    (work / RESULT_JSON).write_text(json.dumps(result, indent=2), encoding="utf-8")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="numpy/scipy/rasterio pipeline of issue 7")
    parser.add_argument("region_dir", type=Path, help="a folder written by bench/generate.py")
    parser.add_argument("--work", type=Path, default=None, help="work folder (emptied first)")
    parser.add_argument("--keep", action="store_true", help="also write the intermediate rasters")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    work = args.work or Path(__file__).parent / "results" / f"numpy_{args.region_dir.name}"
    if args.child:
        return child_main(args.region_dir, work, keep=args.keep)
    result = run_numpy_pipeline(args.region_dir, work, keep=args.keep)
    print(f"{'stage':<12} {'wall':>8} {'CPU':>8} {'peak RSS':>10}")
    for s in result["stages"]:
        print(
            f"{s['name']:<12} {s['seconds']:6.1f} s {s['cpu_seconds']:6.1f} s "
            f"{s['max_rss_mb']:7.0f} MB"
        )
    print(
        f"{'total':<12} {result['seconds']:6.1f} s {result['cpu_seconds']:6.1f} s "
        f"{result['max_rss_mb']:7.0f} MB  (imports {result['import_seconds']:.1f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
