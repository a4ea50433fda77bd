"""Benchmark of the classify stage alone: read -> histogram -> crosswalk -> refine -> materialise.

    python bench/classify_bench.py 2k 10k                # bench/data/<size>/region.yaml
    python bench/classify_bench.py /work/main/bench/data/2k/region.yaml --chunk-size 512
    python bench/classify_bench.py 2k --scheduler synchronous --profile

Each region runs in a child process of its own (so its peak RSS is its own), with the steps of
``ecoplan.pipeline._run_region`` up to the held zones: ``prepare_region`` -> ``code_histogram``
-> ``classify`` (+ 0 outside the units) -> ``refine_zones`` -> materialise (``da.store`` into a
preallocated uint8 memmap in a temporary folder, not counted as resident memory of the
process once flushed). Per step: wall time, CPU time, peak RSS (polled every 20 ms, and
``ru_maxrss`` at the end). The SHA-256 of the materialised zones is printed, so that two
versions of the code can be checked to give identical zones (``--expect``). Results go to
``bench/results/classify-<UTC time>.json`` (git-ignored).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent


def region_path(arg: str) -> Path:
    p = Path(arg)
    if p.suffix in (".yaml", ".yml"):
        return p
    for base in (BENCH / "data", Path("/work/main/bench/data")):
        if (base / arg / "region.yaml").is_file():
            return base / arg / "region.yaml"
    raise SystemExit(f"no region.yaml for {arg!r}: run python bench/generate.py {arg}")


class PeakRss:
    """Poll this process's RSS in a thread; ``mark()`` returns the peak since the last mark."""

    def __init__(self, interval: float = 0.02):
        import psutil

        self._proc = psutil.Process()
        self._interval = interval
        self._peak = self._proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.wait(self._interval):
            self._peak = max(self._peak, self._proc.memory_info().rss)

    def mark(self) -> int:
        peak = max(self._peak, self._proc.memory_info().rss)
        self._peak = self._proc.memory_info().rss
        return peak

    def stop(self):
        self._stop.set()
        self._thread.join()


def child(path: Path, chunk_size: int, scheduler: str, profile: bool) -> dict:
    """Run the stage in this process; return the figures."""
    sys.path.insert(0, str(ROOT))
    t_import = time.perf_counter()
    import dask
    import dask.array as da
    import numpy as np

    from ecoplan.classify import check_codes, classify, code_histogram, lookup_table
    from ecoplan.pipeline import prepare_region
    from ecoplan.refine import refine_zones

    import_s = time.perf_counter() - t_import
    rss = PeakRss()
    steps: list[dict] = []
    out: dict = {"region": str(path), "chunk_size": chunk_size, "scheduler": scheduler}

    @contextlib.contextmanager
    def step(name: str):
        rss.mark()
        w, c = time.perf_counter(), time.process_time()
        yield
        steps.append(
            {
                "step": name,
                "wall_s": round(time.perf_counter() - w, 3),
                "cpu_s": round(time.process_time() - c, 3),
                "peak_rss_mb": round(rss.mark() / 2**20, 1),
            }
        )

    prof = None
    if profile:
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
    t0 = time.perf_counter()
    with dask.config.set(scheduler=scheduler), tempfile.TemporaryDirectory() as tmp:
        with step("prepare_region"):
            region = prepare_region(path, chunk_size=chunk_size)
        with step("code_histogram"):
            hist = code_histogram(region.codes, region.units)
            check_codes(hist, region.crosswalk, source=str(region.landcover.path))
        with step("classify"):
            lut = lookup_table(region.crosswalk, max_code=max(hist))
            zones = classify(region.codes, lut)
            zones = da.where(region.units > 0, zones, 0).astype(np.uint8)
        with step("refine_zones"):
            zones, notes = refine_zones(zones, region)
        with step("materialise"):
            mm = np.lib.format.open_memmap(
                os.path.join(tmp, "zones.npy"), mode="w+", dtype=np.uint8, shape=zones.shape
            )
            da.store(zones, mm, lock=False)
            mm.flush()
            digest = hashlib.sha256()
            for r in range(0, mm.shape[0], 1024):
                digest.update(np.ascontiguousarray(mm[r : r + 1024]).tobytes())
            counts = np.bincount(np.asarray(mm).ravel(), minlength=256)
            del mm
    total = time.perf_counter() - t0
    if prof is not None:
        import io
        import pstats

        prof.disable()
        s = io.StringIO()
        pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(25)
        out["profile"] = s.getvalue()
    rss.stop()
    h, w = region.grid.shape
    out.update(
        {
            "grid": [h, w],
            "mpx": round(h * w / 1e6, 2),
            "import_s": round(import_s, 2),
            "steps": steps,
            "total_s": round(total, 3),
            "mpx_per_s": round(h * w / 1e6 / total, 2),
            "peak_rss_mb": round(max(s["peak_rss_mb"] for s in steps), 1),
            "ru_maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "zones_sha256": digest.hexdigest(),
            "zone_counts": {int(k): int(v) for k, v in enumerate(counts) if v},
            "notes": notes,
        }
    )
    return out


def report(r: dict) -> None:
    print(
        f"\n{r['region']}  grid {r['grid'][0]} x {r['grid'][1]} ({r['mpx']} Mpx), "
        f"chunks {r['chunk_size']}, scheduler {r['scheduler']}"
    )
    print(f"{'step':<16}{'wall s':>9}{'CPU s':>9}{'peak RSS MB':>13}")
    for s in r["steps"]:
        print(f"{s['step']:<16}{s['wall_s']:>9.2f}{s['cpu_s']:>9.2f}{s['peak_rss_mb']:>13.0f}")
    print(
        f"{'total':<16}{r['total_s']:>9.2f}{'':>9}{r['peak_rss_mb']:>13.0f}   "
        f"{r['mpx_per_s']} Mpx/s; ru_maxrss {r['ru_maxrss_mb']:.0f} MB (incl. import)"
    )
    print(f"zones sha256 {r['zones_sha256']}")
    if "profile" in r:
        print(r["profile"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("regions", nargs="+", help="2k, 10k, … or a region.yaml")
    ap.add_argument("--chunk-size", type=int, default=1024)
    ap.add_argument("--scheduler", default="threads")
    ap.add_argument("--profile", action="store_true", help="cProfile (use --scheduler synchronous)")
    ap.add_argument("--expect", nargs="*", default=[], help="zone SHA-256 per region, in order")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--no-save", action="store_true", help="do not write bench/results/…json")
    a = ap.parse_args(argv)
    if a.child:
        r = child(Path(a.regions[0]), a.chunk_size, a.scheduler, a.profile)
        print("JSON:" + json.dumps(r))
        return 0
    results, bad = [], 0
    for k, name in enumerate(a.regions):
        path = region_path(name)
        cmd = [sys.executable, __file__, str(path), "--child", "--chunk-size", str(a.chunk_size)]
        cmd += ["--scheduler", a.scheduler] + (["--profile"] if a.profile else [])
        proc = subprocess.run(cmd, capture_output=True, text=True)
        lines = [x for x in proc.stdout.splitlines() if x.startswith("JSON:")]
        if proc.returncode or not lines:
            print(proc.stdout, proc.stderr, file=sys.stderr)
            return 1
        r = json.loads(lines[-1][5:])
        report(r)
        if k < len(a.expect) and a.expect[k] and a.expect[k] != r["zones_sha256"]:
            print(f"  !! zones differ from the expected {a.expect[k]}")
            bad += 1
        results.append(r)
    if not a.no_save:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        out = BENCH / "results" / f"classify-{stamp}.json"
        out.parent.mkdir(exist_ok=True)
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        load = os.getloadavg()
        out.write_text(json.dumps({"commit": commit, "load": load, "runs": results}, indent=1))
        print(f"\nwritten {out.relative_to(ROOT)} (load average {load[0]:.1f})")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
