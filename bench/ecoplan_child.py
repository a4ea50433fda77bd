"""Run ecoplan's whole pipeline once in this process and record when each step started.

Started by bench/run.py as a child process (so its peak RSS and CPU time are its own):

    python bench/ecoplan_child.py REGION_YAML OUT_DIR RESULT_JSON
        [--chunk-size N] [--scheduler threads] [--profile PSTATS]
        [--memory-budget-mb MB]

Imports ``ecoplan`` from this checkout (the folder above ``bench/``), not from site-packages.
With ``--profile`` the run is profiled with cProfile; use ``--scheduler synchronous`` then, as
cProfile sees only the main thread.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("region_yaml", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("result_json", type=Path)
    parser.add_argument("--chunk-size", type=int, default=1024)
    parser.add_argument("--scheduler", default="threads")
    parser.add_argument("--profile", type=Path, default=None)
    parser.add_argument("--memory-budget-mb", type=float, default=None)
    args = parser.parse_args(argv)

    t_import = time.time()
    import ecoplan
    from ecoplan.pipeline import run_region

    marks: list[tuple[str, float]] = [("import", t_import)]
    marks_file = args.result_json.with_suffix(".marks")
    marks_file.write_text(json.dumps(marks[0]) + "\n", encoding="utf-8")

    def progress(step: str, /) -> None:
        marks.append((step, time.time()))
        with marks_file.open("a", encoding="utf-8") as f:  # survives a killed run
            f.write(json.dumps(marks[-1]) + "\n")

    kwargs = {
        "chunk_size": args.chunk_size,
        "scheduler": args.scheduler,
        "overwrite": True,
        "progress": progress,
    }
    if args.memory_budget_mb is not None:
        kwargs["memory_budget_mb"] = args.memory_budget_mb
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
        result = profiler.runcall(run_region, args.region_yaml, args.out_dir, **kwargs)
        profiler.dump_stats(args.profile)
    else:
        result = run_region(args.region_yaml, args.out_dir, **kwargs)
    marks.append(("end", time.time()))
    summary = result.summary()
    zones = result.proportions
    region_rows = zones[zones.level == "region"] if "level" in zones else zones
    out = {
        "ecoplan_file": ecoplan.__file__,
        "ecoplan_version": ecoplan.__version__,
        "marks": marks,
        "run_seconds": result.seconds,
        "zone_area_ha": {str(r.zone_en): float(r.area_ha) for r in region_rows.itertuples()},
        "conflict_area_ha": summary["conflict_area_ha"],
        "warnings": summary["warnings"],
        "outputs": [str(result.geopackage), str(result.zone_raster)],
    }
    args.result_json.write_text(json.dumps(out, indent=2), encoding="utf-8")
    # as the ecoplan command does before its process exits (ecoplan.cli.main.main): the
    # interpreter's exit then skips the garbage collector's passes over every object
    import gc

    gc.freeze()
    return 0


if __name__ == "__main__":
    sys.exit(main())
