"""The issue-7 pipeline done with GRASS GIS 8.2's modules (Debian's grass-core), stage by stage.

A peer of ``gdal_pipeline.py`` for the hand-run benchmark: the same steps, the same stage names
(plus ``import``) and the same result keys. Each GRASS module runs as its own child process
through ``run_command`` (wall time, CPU time, peak RSS). The GRASS session is set up once: a
location made from landcover.tif's CRS and grid, then ``GISBASE``, ``GISRC``, ``PATH`` and
``LD_LIBRARY_PATH`` in the environment, so modules run directly, with no ``grass --exec``
start-up per command.

Stages and commands:

0. ``import``      ``grass -c landcover.tif -e`` (the location: landcover.tif's CRS and grid);
                   r.external -r (landcover.tif linked through GDAL, not copied);
                   g.region raster=landcover; v.in.ogr layer=units
1. ``units``       v.to.rast use=attr attribute_column=unit_num (memory=300, its default)
2. ``reclass``     r.reclass WorldCover -> zone (gdal_pipeline's WORLDCOVER_TO_ZONE), then
                   r.mapcalc: null outside the units
3. ``density``     r.mapcalc built-up mask (0 outside the units, as GDAL's), then
                   r.resamp.filter filter=box radius=255 m: the 51 x 51 moving average
4. ``urban_rural`` r.mapcalc: built-up with density < 0.25 -> 3 rural
5. ``mmu``         r.clump (4-connected), r.univar -t zones=clump (size and zone of each
                   clump); then gdal_sieve's rule: r.reclass clump -> size rank, r.mapcalc
                   each small-clump cell's largest 4-neighbour (by rank), r.univar -t (the
                   largest per clump), chains followed in Python (numpy), r.reclass
                   clump -> zone
6. ``buffers``     r.reclass forest and water sources, r.grow.distance (Euclidean, metres)
                   for each, r.mapcalc bands, r.mapcalc conflicts
7. ``areas``       r.mapcalc unit*16+zone, r.stats -cN key,conflicts (one pass for both)
8. ``vectorise``   r.to.vect -v -t type=area and v.out.ogr (GPKG) of the key, buffer and
                   conflict rasters, into one GeoPackage
9. ``cog``         r.out.gdal format=COG (DEFLATE, mode overviews)

Choices, measured at 2k (2 000 x 2 000 px):

- ``density``: r.resamp.filter's box filter runs as two 1-D passes (102 additions a cell);
  r.neighbors size=51 method=average sums all 2 601 window cells (about 14 s a Mpx, with
  nprocs=1 or 2 alike here: over 20 min at 10k). Their outputs agree to 4e-16 (two 4 km
  windows, one on a town); against GDAL's float32 density, to 4e-8 away from the raster's
  edges (which lie outside the units).
- ``mmu``: no GRASS module merges small patches into a neighbour on a raster (r.reclass.area
  method=rmarea goes through vector areas and v.clean, far too slow for millions of specks).
  ``mmu_fill="largest"`` (the default) applies gdal_sieve's rule with GRASS modules: each
  small patch takes the zone of its largest 4-neighbour patch, following that patch's own
  largest neighbour while it is small too. At 2k its zones are identical to
  gdal_sieve.py's, cell for cell; at 10k 19 cells of 100 M differ, all in small patches
  whose largest neighbours tie in size (gdal_sieve keeps the first it meets in raster
  order, this the lower clump number). ``mmu_fill="nearest"`` is the usual GRASS recipe
  (r.reclass.area's clumps and sizes, small clumps null, r.grow.distance value= fills each
  cell from the nearest kept cell): no faster (2.5 s for the stage at 2k, as the default),
  and it splits a small patch between its neighbours, so 9 391 cells (0.2 %) differ from
  gdal_sieve's at 2k.
- One r.mapcalc call per output: a call with several expressions evaluates each on its own
  and was slower (bands and conflicts: 2.4 s against 1.9 s for two calls).

Differences from the GDAL pipeline:

- The ``import`` stage has no GDAL counterpart (GDAL reads landcover.tif and boundary.gpkg
  directly); r.external links landcover.tif, so it is read once, by the reclass stage.
- Intermediates are GRASS rasters, compressed with ZSTD (GRASS 8.2 refuses
  GRASS_COMPRESSOR=NONE; LZ4 timed the same). Outside the units is null, not 0.
- Distances: r.grow.distance and gdal_proximity both propagate the nearest source and both
  err on a few cells (against an exact transform at 2k, GRASS is off by up to 16 m on 2 894
  cells within 500 m of forest, GDAL on 777), so a band edge can differ by a few cells
  (4 at 2k).
- Polygons: r.to.vect areas are the raster's 4-connected patches, as gdal_polygonize's; the
  value is in the ``cat`` field (GDAL's ``key``/``band``), and the buffer layer is named
  ``buffer_zones`` as GDAL's.
- No module used here takes nprocs in GRASS 8.2 (r.neighbors, r.mfilter, r.series and
  r.patch do, but none of them is the fastest choice for these steps), so the pipeline runs
  on one core, as GDAL's. The only memory= option is v.to.rast's (kept at its 300 MB: the
  four polygons are cheap to read again per band of rows). GDAL_CACHEMAX stays at GDAL's
  default for r.external and r.out.gdal, as in the GDAL pipeline.
- Per-clump figures come from r.univar's zonal table (15 s a pass at 10k), not r.stats,
  which slows down with the number of category pairs: 71 and 91 s for the same two passes
  over a million clumps at 10k, against 0.4 s for 49 000 clumps at 2k.
- CPU time includes the in-process Python steps (parsing tables, writing reclass rules);
  peak RSS is the children's only.

Usage: python bench/grass_pipeline.py bench/data/2k [--work DIR] [--keep] [--mmu-fill nearest]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path

import numpy as np
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

__all__ = ["run_grass_pipeline", "MMU_FILLS"]

MMU_FILLS = ("largest", "nearest")
LOCATION = "bench"
VECTOR_LAYERS = (("key", "zones"), ("buffers", "buffer_zones"), ("conflicts", "conflicts"))
COG_OPTIONS = "COMPRESS=DEFLATE,OVERVIEW_RESAMPLING=MODE,BIGTIFF=IF_SAFER"
NEIGHBOURS_4 = ((-1, 0), (1, 0), (0, -1), (0, 1))  # r.mapcalc [row,col] offsets


class GrassRunner:
    """Runs GRASS modules in ``work`` stage by stage, recording each stage's figures."""

    def __init__(self, work: Path):
        self.work = work
        self.stages: list[StageResult] = []
        self._stage: StageResult | None = None

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time one stage: its wall time, and the commands' CPU time and peak RSS."""
        self._stage = StageResult(name)
        t0 = time.perf_counter()
        yield
        self._stage.seconds = time.perf_counter() - t0
        self.stages.append(self._stage)
        self._stage = None

    def command(self, argv: list[str]) -> str:
        """Run one command as a child process; return its standard output."""
        _, rss, cpu = run_command(argv, cwd=self.work)
        self._stage.max_rss_mb = max(self._stage.max_rss_mb, rss)
        self._stage.cpu_seconds += cpu
        self._stage.commands.append(" ".join(argv))
        return run_command.last_stdout

    def module(self, name: str, *flags: str, **options: object) -> str:
        """Run a GRASS module (``flags`` like ``"-cn"``, ``options`` as key=value)."""
        argv = [name, *flags, *(f"{key}={value}" for key, value in options.items())]
        return self.command([*argv, "--overwrite", "--quiet"])

    def python(self, fn: Callable, *args: object, **kwargs: object):
        """Run an in-process step, adding its CPU time to the stage."""
        cpu0 = time.process_time()
        result = fn(*args, **kwargs)
        self._stage.cpu_seconds += time.process_time() - cpu0
        self._stage.commands.append(f"python: {fn.__name__}")
        return result


def grass_base() -> Path:
    """GISBASE of the installed GRASS (``grass --config path``)."""
    if shutil.which("grass") is None:
        raise RuntimeError("GRASS GIS not found: apt-get install -y grass-core")
    out = subprocess.run(["grass", "--config", "path"], capture_output=True, text=True)
    return Path(out.stdout.strip().splitlines()[-1])


def grass_version(gisbase: Path) -> str:
    """``GRASS GIS 8.2.1`` from GISBASE/etc/VERSIONNUMBER."""
    text = (gisbase / "etc" / "VERSIONNUMBER").read_text(encoding="utf-8")
    return f"GRASS GIS {text.split()[0]}"


@contextlib.contextmanager
def grass_environment(gisbase: Path, gisdbase: Path) -> Iterator[None]:
    """Set the session variables for modules run directly; restore the environment after."""
    gisrc = gisdbase.parent / "gisrc"
    gisrc.write_text(
        f"GISDBASE: {gisdbase}\nLOCATION_NAME: {LOCATION}\nMAPSET: PERMANENT\nGUI: text\n",
        encoding="utf-8",
    )
    saved = dict(os.environ)
    path_dirs = [str(gisbase / "bin"), str(gisbase / "scripts"), saved.get("PATH", "")]
    os.environ.update(
        {
            "GISBASE": str(gisbase),
            "GISRC": str(gisrc),
            "PATH": os.pathsep.join(path_dirs),
            "LD_LIBRARY_PATH": os.pathsep.join(
                [str(gisbase / "lib"), saved.get("LD_LIBRARY_PATH", "")]
            ),
            "GRASS_MESSAGE_FORMAT": "plain",
        }
    )
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def write_rules(path: Path, keys: object, values: object) -> Path:
    """An r.reclass rules file: one ``key = value`` line a pair."""
    keys, values = np.ravel(keys).tolist(), np.ravel(values).tolist()
    lines = [f"{k} = {v}\n" for k, v in zip(keys, values, strict=True)]
    path.write_text("".join(lines), encoding="utf-8")
    return path


def univar_table(text: str) -> np.ndarray:
    """Zone, non-null cells and maximum (0 if none) per zone from ``r.univar -t``."""
    rows = np.loadtxt(io.StringIO(text), delimiter="|", skiprows=1, usecols=(0, 2, 5), ndmin=2)
    return np.nan_to_num(rows).astype(np.int64)


def stats_table(text: str, columns: int) -> np.ndarray:
    """r.stats' space-separated integer output as rows (null ``*`` as -1)."""
    values = np.fromstring(text.replace("*", "-1"), dtype=np.int64, sep=" ")
    return values.reshape(-1, columns)


def mapcalc(g: GrassRunner, expression: str) -> None:
    """One r.mapcalc expression."""
    g.module("r.mapcalc", expression=expression)


# ---------------------------------------------------------------------------------------------
# The stages


def import_stage(g: GrassRunner, *, landcover: Path, boundary: Path, gisdbase: Path) -> float:
    """Make the location from landcover.tif, link it, import the units; return the cell size."""
    g.command(["grass", "-c", str(landcover), "-e", str(gisdbase / LOCATION)])
    g.module("r.external", "-r", input=landcover, output="landcover")
    region = g.module("g.region", "-g", raster="landcover")
    g.module("v.in.ogr", input=boundary, layer="units", output="units")
    return float(dict(line.split("=") for line in region.split())["nsres"])


def units_stage(g: GrassRunner) -> None:
    """The units rasterised by unit_num (cell centres inside a polygon), null elsewhere."""
    g.module(
        "v.to.rast",
        input="units",
        output="units",
        type="area",
        use="attr",
        attribute_column="unit_num",
        memory=300,
    )


def reclass_stage(g: GrassRunner) -> None:
    """WorldCover code -> zone (a reclass table, no pass), null outside the units."""
    table = WORLDCOVER_TO_ZONE
    rules = g.python(write_rules, g.work / "reclass.rules", list(table), list(table.values()))
    g.module("r.reclass", input="landcover", output="lc_zone", rules=rules)
    mapcalc(g, "zones0 = if(units > 0, lc_zone, null())")


def density_stage(g: GrassRunner, *, cell_m: float) -> None:
    """Built-up share in the 51 x 51 window: a box filter reaching 25 cells each way."""
    mapcalc(g, "built = if(isnull(zones0), 0, zones0 == 4)")
    radius = (DENSITY_WINDOW_PX // 2 + 0.5) * cell_m  # 255 m: 250 m in, 260 m out
    g.module("r.resamp.filter", input="built", output="density", filter="box", radius=radius)


def urban_rural_stage(g: GrassRunner) -> None:
    """Built-up cells in a sparse window become rural."""
    mapcalc(g, f"zones1 = if(zones0 == 4 && density < {URBAN_DENSITY}, 3, zones0)")


def mmu_stage(g: GrassRunner, *, fill: str) -> None:
    """Patches under 1 ha (4-connected) merged into a neighbour: ``zones``."""
    g.module("r.clump", input="zones1", output="clumps")
    table = g.python(univar_table, g.module("r.univar", "-t", zones="clumps", map="zones1"))
    ids, sizes, zones = table[table[:, 1] > 0].T
    clumps = np.column_stack([ids, zones, sizes])  # clump, zone, cells
    if fill == "nearest":
        fill_nearest(g, clumps)
    else:
        fill_largest(g, clumps)


def fill_nearest(g: GrassRunner, clumps: np.ndarray) -> None:
    """Small clumps null, then each of their cells takes the nearest kept cell's zone."""
    big = clumps[clumps[:, 2] >= MMU_PX]
    rules = g.python(write_rules, g.work / "big.rules", big[:, 0], big[:, 1])
    g.module("r.reclass", input="clumps", output="big", rules=rules)
    g.module("r.grow.distance", input="big", value="filled")
    mapcalc(g, "zones = if(isnull(zones1), null(), int(filled))")


def fill_largest(g: GrassRunner, clumps: np.ndarray) -> None:
    """gdal_sieve's rule: a small clump takes its largest neighbour's zone (chains followed).

    Clumps are ranked by size (ties: the lower clump number ranks higher), so small clumps
    hold ranks 1..n_small. For each small-clump cell r.mapcalc keeps the highest rank among
    its 4 neighbours in another clump; r.univar gives each clump's highest.
    """
    ranks = g.python(rank_rules, clumps, g.work / "rank.rules")
    g.module("r.reclass", input="clumps", output="rank", rules=ranks)
    n_small = int(np.count_nonzero(clumps[:, 2] < MMU_PX))
    other = [f"if(rank[{r},{c}] != rank, rank[{r},{c}])" for r, c in NEIGHBOURS_4]
    mapcalc(g, f"nbrank = if(rank <= {n_small}, nmax({', '.join(other)}), null())")
    highest = g.python(univar_table, g.module("r.univar", "-t", zones="clumps", map="nbrank"))
    rules = g.python(sieve_rules, clumps, highest[:, [0, 2]], g.work / "sieve.rules")
    g.module("r.reclass", input="clumps", output="zones", rules=rules)


def by_size(clumps: np.ndarray) -> np.ndarray:
    """Clump numbers from the smallest clump up (equal sizes: the higher number first)."""
    return clumps[np.lexsort((-clumps[:, 0], clumps[:, 2])), 0]


def rank_rules(clumps: np.ndarray, path: Path) -> Path:
    """Rules clump -> rank in ``by_size`` order, from 1."""
    order = by_size(clumps)
    return write_rules(path, order, np.arange(1, len(order) + 1))


def sieve_rules(clumps: np.ndarray, highest: np.ndarray, path: Path) -> Path:
    """Rules clump -> zone after the sieve.

    ``highest`` holds rows (clump, rank of its largest neighbour, 0 if none or not small).
    """
    ids, zones, sizes = clumps.T
    n = int(ids.max()) + 1
    zone = np.zeros(n, np.int64)
    size = np.zeros(n, np.int64)
    zone[ids], size[ids] = zones, sizes
    by_rank = np.concatenate([[0], by_size(clumps)])
    best = np.zeros(n, np.int64)
    best[highest[:, 0]] = highest[:, 1]
    target = np.arange(n)
    has = best > 0
    target[has] = by_rank[best[has]]
    for _ in range(64):  # pointer jumping: every chain of small clumps up to 2**64 long
        target = target[target]
    merged = np.where(size[target] >= MMU_PX, zone[target], zone)
    return write_rules(path, ids, merged[ids])


def buffers_stage(g: GrassRunner) -> None:
    """Bands outside forest (500 m) and water (30 m) inside the region, and conflicts."""
    for name, zone in (("forest", 1), ("water", 6)):
        rules = g.python(write_rules, g.work / f"{name}.rules", [zone], [1])
        g.module("r.reclass", input="zones", output=f"{name}_src", rules=rules)
        g.module("r.grow.distance", input=f"{name}_src", distance=f"{name}_dist")
    forest = f"if(forest_dist > 0 && forest_dist <= {FOREST_BUFFER_M} && zones != 1, 1, 0)"
    water = f"if(water_dist > 0 && water_dist <= {WATER_BUFFER_M} && zones != 6, 2, 0)"
    mapcalc(g, f"buffers = eval(band = {forest} + {water}, if(band > 0, band, null()))")
    mapcalc(g, "conflicts = if(zones == 4 || zones == 5, 16 * buffers + zones, null())")


def areas_stage(g: GrassRunner) -> np.ndarray:
    """Unit*16+zone, and cell counts per (key, conflict) pair (-1 for null)."""
    mapcalc(g, "key = units * 16 + zones")
    return g.python(stats_table, g.module("r.stats", "-cN", input="key,conflicts"), 3)


def vectorise_stage(g: GrassRunner) -> None:
    """One polygon per 4-connected patch of each raster, each raster a GeoPackage layer."""
    for k, (raster, layer) in enumerate(VECTOR_LAYERS):
        g.module("r.to.vect", "-v", "-t", input=raster, output=f"{raster}_v", type="area")
        flags = ("-u",) if k else ()
        g.module(
            "v.out.ogr",
            *flags,
            input=f"{raster}_v",
            output="out.gpkg",
            format="GPKG",
            output_layer=layer,
            type="area",
        )


def cog_stage(g: GrassRunner) -> None:
    """The zones as a Cloud-Optimised GeoTIFF with GDAL's COG driver."""
    g.module(
        "r.out.gdal",
        "-cm",  # no colour table, no GRASS metadata (as GDAL's COG)
        input="zones",
        output="zones_cog.tif",
        format="COG",
        type="Byte",
        nodata=0,
        createopt=COG_OPTIONS,
    )


# ---------------------------------------------------------------------------------------------


def run_grass_pipeline(
    region_dir: str | Path, work: str | Path, *, keep: bool = False, mmu_fill: str = "largest"
) -> dict:
    """Run every stage in ``work`` (emptied first); return per-stage times, peak RSS and areas.

    ``mmu_fill`` is ``"largest"`` (gdal_sieve's rule) or ``"nearest"`` (r.grow.distance).
    ``keep`` keeps the GRASS database (``work/grassdb``) and the rules files.
    """
    if mmu_fill not in MMU_FILLS:
        raise ValueError(f"mmu_fill must be one of {MMU_FILLS}, not {mmu_fill!r}")
    region_dir, work = Path(region_dir).resolve(), Path(work).resolve()
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    gisbase = grass_base()
    gisdbase = work / "grassdb"
    gisdbase.mkdir()
    g = GrassRunner(work)
    t_all = time.perf_counter()
    with grass_environment(gisbase, gisdbase):
        counts = _run_stages(g, region_dir=region_dir, gisdbase=gisdbase, mmu_fill=mmu_fill)
    total = time.perf_counter() - t_all
    result = _result(g, counts, seconds=total, version=grass_version(gisbase))
    if not keep:
        shutil.rmtree(gisdbase)
        for f in [*work.glob("*.rules"), work / "gisrc"]:
            f.unlink()
    return result


def _run_stages(g: GrassRunner, *, region_dir: Path, gisdbase: Path, mmu_fill: str):
    with g.stage("import"):
        cell_m = import_stage(
            g,
            landcover=region_dir / "landcover.tif",
            boundary=region_dir / "boundary.gpkg",
            gisdbase=gisdbase,
        )
    with g.stage("units"):
        units_stage(g)
    with g.stage("reclass"):
        reclass_stage(g)
    with g.stage("density"):
        density_stage(g, cell_m=cell_m)
    with g.stage("urban_rural"):
        urban_rural_stage(g)
    with g.stage("mmu"):
        mmu_stage(g, fill=mmu_fill)
    with g.stage("buffers"):
        buffers_stage(g)
    with g.stage("areas"):
        counts = areas_stage(g)
    with g.stage("vectorise"):
        vectorise_stage(g)
    with g.stage("cog"):
        cog_stage(g)
    return counts


def _result(g: GrassRunner, counts: np.ndarray, *, seconds: float, version: str) -> dict:
    key, conflict, cells = counts.T
    zone_px: dict[int, int] = {}
    for k, n in zip(key[key >= 0].tolist(), cells[key >= 0].tolist(), strict=True):
        zone_px[k % 16] = zone_px.get(k % 16, 0) + n
    return {
        "tool": "grass",
        "grass_version": version,
        "seconds": seconds,
        "max_rss_mb": max(s.max_rss_mb for s in g.stages),
        "cpu_seconds": sum(s.cpu_seconds for s in g.stages),
        "stages": [asdict(s) for s in g.stages],
        "zone_pixels": {str(z): n for z, n in sorted(zone_px.items())},
        "conflict_pixels": int(cells[conflict >= 0].sum()),
        "polygons": count_features(g.work / "out.gpkg"),
        "output_bytes": sum(
            (g.work / f).stat().st_size
            for f in ("out.gpkg", "zones_cog.tif")
            if (g.work / f).exists()
        ),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="GRASS GIS module pipeline of issue 7")
    parser.add_argument("region_dir", type=Path, help="a folder written by bench/generate.py")
    parser.add_argument("--work", type=Path, default=None, help="work folder (emptied first)")
    parser.add_argument("--keep", action="store_true", help="keep the GRASS database")
    parser.add_argument(
        "--mmu-fill", choices=MMU_FILLS, default="largest", help="how small patches are filled"
    )
    args = parser.parse_args(argv)
    work = args.work or Path(__file__).parent / "results" / f"grass_{args.region_dir.name}"
    result = run_grass_pipeline(args.region_dir, work, keep=args.keep, mmu_fill=args.mmu_fill)
    for s in result["stages"]:
        print(
            f"{s['name']:<12} {s['seconds']:8.1f} s {s['cpu_seconds']:8.1f} CPU-s"
            f" {s['max_rss_mb']:8.0f} MB"
        )
    print(
        f"{'total':<12} {result['seconds']:8.1f} s {result['cpu_seconds']:8.1f} CPU-s"
        f" {result['max_rss_mb']:8.0f} MB"
    )
    print(f"zones {result['zone_pixels']}, conflicts {result['conflict_pixels']}")
    print(f"polygons {result['polygons']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
