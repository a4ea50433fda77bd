"""Micro-benchmark of ``ecoplan.polygons.vectorize`` (not a test; run by hand).

Times vectorize on the synthetic land-cover of ``bench/generate.py`` (rendered in memory, so
nothing is written), as a numpy array and as a dask array in 1024² chunks, block_size 4096::

    python bench/vectorize_bench.py 2000 6000
    python bench/vectorize_bench.py 2000 --repeat 3 --profile
    git show <commit>:ecoplan/polygons.py > /tmp/old_polygons.py
    python bench/vectorize_bench.py 2000 6000 --before /tmp/old_polygons.py   # before/after

The raw land cover (with its specks) gives many more polygons than the pipeline's zone rasters,
so this is a pessimistic figure for one vectorize call.
"""

from __future__ import annotations

import argparse
import cProfile
import importlib.util
import pstats
import sys
import time
from pathlib import Path

import dask
import dask.array as da
import numpy as np
from affine import Affine
from rasterio.crs import CRS

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from generate import make_scene, render_block  # noqa: E402

from ecoplan.grid import Grid  # noqa: E402
from ecoplan.polygons import vectorize  # noqa: E402


def landcover(size: int, seed: int = 1) -> np.ndarray:
    scene = make_scene(size, seed=seed)
    out = np.empty((size, size), np.uint8)
    step = 1024
    for r in range(0, size, step):
        for c in range(0, size, step):
            out[r : r + step, c : c + step] = render_block(
                scene, r, min(r + step, size), c, min(c + step, size)
            )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sizes", type=int, nargs="+", help="raster sides in pixels")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--chunks", type=int, default=1024)
    parser.add_argument("--block-size", type=int, default=4096)
    parser.add_argument("--scheduler", default="threads")
    parser.add_argument("--profile", action="store_true", help="cProfile one dask run")
    parser.add_argument(
        "--before", type=Path, help="also time the vectorize of this copy of polygons.py"
    )
    args = parser.parse_args(argv)
    versions = {"": vectorize}
    if args.before:
        spec = importlib.util.spec_from_file_location("polygons_before", args.before)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        versions = {"before ": module.vectorize, "after ": vectorize}
    for size in args.sizes:
        values = landcover(size)
        grid = Grid(CRS.from_epsg(32647), Affine(10, 0, 400_000, 0, -10, 2_100_000), size, size)
        runs = {}
        for label, fn in versions.items():
            runs[f"{label}numpy"] = lambda v=values, g=grid, fn=fn: fn(
                v, g, block_size=args.block_size
            )
            runs[f"{label}dask {args.chunks}"] = lambda v=values, g=grid, fn=fn: fn(
                da.from_array(v, chunks=args.chunks), g, block_size=args.block_size
            )
        for name, run in runs.items():
            best = float("inf")
            with dask.config.set(scheduler=args.scheduler):
                for _ in range(args.repeat):
                    t0 = time.perf_counter()
                    gdf = run()
                    best = min(best, time.perf_counter() - t0)
            parts = sum(len(g.geoms) for g in gdf.geometry)
            print(
                f"{size}² {name:>17}: {best:7.2f} s  {size * size / best / 1e6:6.1f} Mpx/s"
                f"  ({len(gdf)} values, {parts} polygons)",
                flush=True,
            )
        if args.profile:
            prof = cProfile.Profile()
            with dask.config.set(scheduler="synchronous"):
                prof.enable()
                vectorize(
                    da.from_array(values, chunks=args.chunks), grid, block_size=args.block_size
                )
                prof.disable()
            pstats.Stats(prof).sort_stats("cumulative").print_stats(20)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
