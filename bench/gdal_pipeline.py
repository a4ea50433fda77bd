"""The issue-7 pipeline done with GDAL's command-line tools (Debian's gdal-bin), stage by stage.

Stages, each one or more GDAL commands run as child processes, timed and with their peak RSS:

1. ``units``     gdal_rasterize the boundary units onto the land-cover grid (unit number 1..4)
2. ``reclass``   gdal_calc.py: WorldCover code -> zone code (crosswalk ``worldcover``), 0 outside
3. ``density``   gdal_calc.py built-up mask, then a VRT with a separable 51 x 51 normalised
                 kernel (510 m moving window) written by gdal_translate: built-up share 0..1
4. ``urban_rural`` gdal_calc.py: built-up pixels with density < 0.25 become rural (3)
5. ``mmu``       gdal_sieve.py -st 100 -4: patches under 1 ha (100 px) merged into a neighbour
6. ``buffers``   gdal_proximity.py around forest (max 500 m) and water (max 30 m), then
                 gdal_calc.py for the buffer bands (outside the source, inside the region) and
                 the conflicts (urban/industrial inside a band)
7. ``areas``     gdal_calc.py unit*16+zone, gdalinfo -hist: pixel count per unit and zone
8. ``vectorise`` gdal_polygonize.py (4-connected) of the unit/zone, buffer and conflict rasters
                 into one GeoPackage
9. ``cog``       gdal_translate -of COG (DEFLATE, mode overviews) of the zone raster

Intermediates are tiled, uncompressed GeoTIFFs (the fastest choice for GDAL); GDAL's defaults
otherwise (GDAL_CACHEMAX 5 % of RAM). Unlike ecoplan, the polygons are one per connected patch
(gdal_polygonize does not dissolve per zone).

Usage: python bench/gdal_pipeline.py bench/data/2k [--work DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

__all__ = [
    "StageResult",
    "run_command",
    "run_gdal_pipeline",
    "count_features",
    "DENSITY_WINDOW_PX",
    "WORLDCOVER_TO_ZONE",
]

DENSITY_WINDOW_PX = 51  # 510 m at 10 m
URBAN_DENSITY = 0.25  # built-up share in the window at or above which built-up is urban
MMU_PX = 100  # 1 ha at 10 m
FOREST_BUFFER_M = 500
WATER_BUFFER_M = 30

# WorldCover code -> zone, as zoning_rules/crosswalks/worldcover.yaml (the peers share it)
WORLDCOVER_TO_ZONE = {10: 1, 20: 1, 30: 7, 40: 2, 50: 4, 60: 7, 70: 7, 80: 6, 90: 6, 95: 1, 100: 7}
# the gdal_calc idiom: a sum of k*(A==code) terms, 0 outside the units (B)
RECLASS = "(B>0)*(" + "+".join(f"{z}*(A=={c})" for c, z in WORLDCOVER_TO_ZONE.items()) + ")"
TILED = ["--co", "TILED=YES", "--co", "BIGTIFF=IF_SAFER"]
TILED_CO = ["-co", "TILED=YES", "-co", "BIGTIFF=IF_SAFER"]


@dataclass
class StageResult:
    name: str
    seconds: float = 0.0
    max_rss_mb: float = 0.0  # the largest peak RSS of the stage's commands
    cpu_seconds: float = 0.0  # user + system time of the stage's commands
    commands: list[str] = field(default_factory=list)


def run_command(argv: list[str], *, cwd: Path) -> tuple[float, float, float]:
    """Run one command; return (wall seconds, peak RSS in MB, CPU seconds user + system).

    Peak RSS is polled every 20 ms (wait4's ru_maxrss would count the parent's pages at fork
    time); CPU time is the change in RUSAGE_CHILDREN (commands run one at a time).
    """
    import resource
    import tempfile

    import psutil

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(argv, cwd=cwd, stdout=out, stderr=err)
        peak = 0
        ps = psutil.Process(proc.pid)
        while proc.poll() is None:
            with contextlib.suppress(psutil.Error):
                peak = max(peak, ps.memory_info().rss)
            time.sleep(0.02)
        seconds = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}):\n{stderr}{stdout}")
    run_command.last_stdout = stdout
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return seconds, peak / 2**20, cpu


def _density_vrt(path: Path, *, source: str, width: int, height: int, n: int) -> None:
    coefs = " ".join(["1"] * n)  # n coefficients: a separable kernel (GDAL >= 2.3)
    path.write_text(
        f"""<VRTDataset rasterXSize="{width}" rasterYSize="{height}">
  <VRTRasterBand dataType="Float32" band="1">
    <KernelFilteredSource>
      <SourceFilename relativeToVRT="1">{source}</SourceFilename>
      <SourceBand>1</SourceBand>
      <Kernel normalized="1"><Size>{n}</Size><Coefs>{coefs}</Coefs></Kernel>
    </KernelFilteredSource>
  </VRTRasterBand>
</VRTDataset>
""",
        encoding="utf-8",
    )


def _grid(landcover: Path) -> dict:
    out = subprocess.run(
        ["gdalinfo", "-json", str(landcover)], check=True, capture_output=True, text=True
    ).stdout
    info = json.loads(out)
    gt = info["geoTransform"]
    w, h = info["size"]
    return {
        "width": w,
        "height": h,
        "bounds": (gt[0], gt[3] + gt[5] * h, gt[0] + gt[1] * w, gt[3]),
        "res": (gt[1], -gt[5]),
    }


def _histogram(text: str) -> dict[int, int]:
    """Pixel count per integer value from ``gdalinfo -hist -json`` of a Byte raster."""
    band = json.loads(text)["bands"][0]
    hist = band["histogram"]
    lo, hi, buckets = hist["min"], hist["max"], hist["buckets"]
    width = (hi - lo) / len(buckets)
    return {round(lo + (k + 0.5) * width): n for k, n in enumerate(buckets) if n}


def gdal_steps(region_dir: Path, work: Path) -> list[tuple[str, list[list[str] | tuple]]]:
    """The stages as lists of commands (a tuple is a Python step run inside the stage)."""
    lc = str((region_dir / "landcover.tif").resolve())
    boundary = str((region_dir / "boundary.gpkg").resolve())
    g = _grid(Path(lc))
    xmin, ymin, xmax, ymax = g["bounds"]
    rx, ry = g["res"]
    calc = ["gdal_calc.py", "--quiet", "--overwrite", *TILED]
    forest_band = f"(B>0)*(B<={FOREST_BUFFER_M})*(A!=1)*(A!=0)"
    water_band = f"(C>0)*(C<={WATER_BUFFER_M})*(A!=6)*(A!=0)"
    restricted = "((A==4)+(A==5))"
    bands = f"1*{forest_band}+2*{water_band}"  # 1 forest band, 2 water band, 3 both
    return [
        (
            "units",
            [
                ["gdal_rasterize", "-q", "-l", "units", "-a", "unit_num", "-ot", "Byte"]
                + ["-init", "0", "-te", *map(str, (xmin, ymin, xmax, ymax))]
                + ["-tr", str(rx), str(ry), *TILED_CO, boundary, "units.tif"]
            ],
        ),
        (
            "reclass",
            [
                calc
                + ["-A", lc, "-B", "units.tif", "--calc", RECLASS, "--type", "Byte"]
                + ["--NoDataValue", "0", "--outfile", "zones0.tif"]
            ],
        ),
        (
            "density",
            [
                calc
                + ["-A", "zones0.tif", "--calc", "A==4", "--type", "Byte", "--hideNoData"]
                + ["--outfile", "built.tif"],
                (
                    _density_vrt,
                    work / "density.vrt",
                    {
                        "source": "built.tif",
                        "width": g["width"],
                        "height": g["height"],
                        "n": DENSITY_WINDOW_PX,
                    },
                ),
                ["gdal_translate", "-q", *TILED_CO, "density.vrt", "density.tif"],
            ],
        ),
        (
            "urban_rural",
            [
                calc
                + ["-A", "zones0.tif", "-B", "density.tif", "--type", "Byte"]
                + ["--calc", f"where((A==4)*(B<{URBAN_DENSITY}),3,A)"]
                + ["--NoDataValue", "0", "--outfile", "zones1.tif"]
            ],
        ),
        (
            "mmu",
            [
                ["gdal_sieve.py", "-q", "-st", str(MMU_PX), "-4", "-of", "GTiff"]
                + ["zones1.tif", "zones.tif"]
            ],
        ),
        (
            "buffers",
            [
                ["gdal_proximity.py", "-q", "zones.tif", "forest_dist.tif", "-values", "1"]
                + ["-distunits", "GEO", "-maxdist", str(FOREST_BUFFER_M), "-ot", "Float32"]
                + ["-nodata", "-1", *TILED_CO],
                ["gdal_proximity.py", "-q", "zones.tif", "water_dist.tif", "-values", "6"]
                + ["-distunits", "GEO", "-maxdist", str(WATER_BUFFER_M), "-ot", "Float32"]
                + ["-nodata", "-1", *TILED_CO],
                calc
                + ["-A", "zones.tif", "-B", "forest_dist.tif", "-C", "water_dist.tif"]
                + ["--calc", bands, "--type", "Byte"]
                + ["--NoDataValue", "0", "--outfile", "buffers.tif"],
                calc
                + ["-A", "zones.tif", "-B", "forest_dist.tif", "-C", "water_dist.tif"]
                + ["--calc", f"{restricted}*(({bands})>0)*(16*({bands})+A)"]
                + ["--type", "Byte", "--NoDataValue", "0", "--outfile", "conflicts.tif"],
            ],
        ),
        (
            "areas",
            [
                calc
                + ["-A", "zones.tif", "-B", "units.tif", "--calc", "(A>0)*(B*16+A)"]
                + ["--type", "Byte", "--NoDataValue", "0", "--outfile", "key.tif"],
                ["gdalinfo", "-hist", "-json", "key.tif"],
                ["gdalinfo", "-hist", "-json", "conflicts.tif"],
            ],
        ),
        (
            "vectorise",
            [
                ["gdal_polygonize.py", "-q", "key.tif", "-f", "GPKG", "out.gpkg", "zones", "key"],
                ["gdal_polygonize.py", "-q", "buffers.tif", "-f", "GPKG", "out.gpkg"]
                + ["buffer_zones", "band"],
                ["gdal_polygonize.py", "-q", "conflicts.tif", "-f", "GPKG", "out.gpkg"]
                + ["conflicts", "key"],
            ],
        ),
        (
            "cog",
            [
                ["gdal_translate", "-q", "-of", "COG", "-co", "COMPRESS=DEFLATE"]
                + ["-co", "OVERVIEW_RESAMPLING=MODE", "-co", "BIGTIFF=IF_SAFER"]
                + ["zones.tif", "zones_cog.tif"]
            ],
        ),
    ]


def run_gdal_pipeline(region_dir: str | Path, work: str | Path, *, keep: bool = False) -> dict:
    """Run every stage in ``work`` (emptied first); return per-stage times, peak RSS and areas."""
    region_dir, work = Path(region_dir), Path(work)
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    stages: list[StageResult] = []
    histograms: dict[str, dict[int, int]] = {}
    t_all = time.perf_counter()
    for name, commands in gdal_steps(region_dir, work):
        stage = StageResult(name)
        t0 = time.perf_counter()
        for cmd in commands:
            if isinstance(cmd, tuple):
                fn, path, kwargs = cmd
                fn(path, **kwargs)
                continue
            _, rss, cpu = run_command(cmd, cwd=work)
            stage.max_rss_mb = max(stage.max_rss_mb, rss)
            stage.cpu_seconds += cpu
            stage.commands.append(" ".join(cmd))
            if cmd[:2] == ["gdalinfo", "-hist"]:
                histograms[cmd[-1]] = _histogram(run_command.last_stdout)
        stage.seconds = time.perf_counter() - t0
        stages.append(stage)
    total = time.perf_counter() - t_all
    key = histograms.get("key.tif", {})
    zone_px: dict[int, int] = {}
    for k, n in key.items():
        zone_px[k % 16] = zone_px.get(k % 16, 0) + n
    n_polygons = count_features(work / "out.gpkg")
    result = {
        "tool": "gdal",
        "gdal_version": subprocess.run(
            ["gdalinfo", "--version"], capture_output=True, text=True
        ).stdout.strip(),
        "seconds": total,
        "max_rss_mb": max(s.max_rss_mb for s in stages),
        "cpu_seconds": sum(s.cpu_seconds for s in stages),
        "stages": [asdict(s) for s in stages],
        "zone_pixels": {str(z): n for z, n in sorted(zone_px.items())},
        "conflict_pixels": sum(histograms.get("conflicts.tif", {}).values()),
        "polygons": n_polygons,
        "output_bytes": sum(
            (work / f).stat().st_size for f in ("out.gpkg", "zones_cog.tif") if (work / f).exists()
        ),
    }
    if not keep:
        for f in work.glob("*.tif"):
            if f.name != "zones_cog.tif":
                f.unlink()
    return result


def count_features(gpkg: Path) -> dict[str, int]:
    import sqlite3

    if not gpkg.exists():
        return {}
    con = sqlite3.connect(gpkg)
    try:
        layers = [r[0] for r in con.execute("SELECT table_name FROM gpkg_contents")]
        return {t: con.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0] for t in layers}
    finally:
        con.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="GDAL command-line pipeline of issue 7")
    parser.add_argument("region_dir", type=Path, help="a folder written by bench/generate.py")
    parser.add_argument("--work", type=Path, default=None, help="work folder (emptied first)")
    parser.add_argument("--keep", action="store_true", help="keep the intermediate rasters")
    args = parser.parse_args(argv)
    work = args.work or Path(__file__).parent / "results" / f"gdal_{args.region_dir.name}"
    result = run_gdal_pipeline(args.region_dir, work, keep=args.keep)
    for s in result["stages"]:
        print(f"{s['name']:<12} {s['seconds']:8.1f} s {s['max_rss_mb']:8.0f} MB")
    print(f"{'total':<12} {result['seconds']:8.1f} s {result['max_rss_mb']:8.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
