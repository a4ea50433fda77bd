"""Benchmark: ecoplan's whole pipeline against its peers in one run: the GDAL command-line
pipeline, and on request GRASS GIS's modules and a straightforward numpy/scipy/rasterio script.

    python bench/run.py 2k                 # generates bench/data/2k first if it is missing
    python bench/run.py 10k --peers gdal,grass,numpy
    python bench/run.py 10k --chunk-size 2048
    python bench/run.py 30k --max-rss-gb 12 --timeout-min 15
    python bench/run.py 2k --profile       # plus a cProfile run of ecoplan (synchronous)

Prints a table and writes ``bench/results/<size>-<UTC time>.json``. Wall time, CPU time
(user + system, of the process and its children), peak RSS (exact for each process from
wait4; for ecoplan's steps from polling the process tree every 0.1 s), Mpx/s over the input
raster's pixels, and the ratios of ecoplan to each peer. The machine may be shared: the load
average before and after each tool is recorded, and CPU time is less sensitive to it than wall
time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import pstats
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import psutil

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

from gdal_pipeline import run_command, run_gdal_pipeline  # noqa: E402
from generate import parse_size  # noqa: E402

THAILAND_PX = 5.13e9  # 513,000 km2 at 10 m
PEERS = ("gdal", "grass", "numpy")
PEER_NAMES = {"gdal": "GDAL", "grass": "GRASS", "numpy": "numpy script"}


def run_peer(peer: str, data: Path, work: Path) -> dict:
    """One peer's pipeline on ``data`` in ``work`` (the peers' modules are imported on use)."""
    if peer == "gdal":
        return run_gdal_pipeline(data, work)
    if peer == "grass":
        from grass_pipeline import run_grass_pipeline

        return run_grass_pipeline(data, work)
    from numpy_pipeline import run_numpy_pipeline

    return run_numpy_pipeline(data, work)


def parse_peers(text: str) -> list[str]:
    """``gdal,grass``, ``all`` or ``none`` as a list of peers, in the order given."""
    if text.strip() in ("all", "none"):
        return list(PEERS) if text.strip() == "all" else []
    peers = [p.strip() for p in text.split(",") if p.strip()]
    unknown = sorted(set(peers) - set(PEERS))
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown peer {', '.join(unknown)}; peers are {', '.join(PEERS)}, all or none"
        )
    return list(dict.fromkeys(peers))


def machine() -> dict:
    model = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpu_model": model,
        "nproc": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)),
        "mem_total_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        return ""


class Monitor:
    """Poll the RSS of a process and its descendants; kill the tree past a limit."""

    def __init__(self, pid: int, *, max_rss_bytes: float, timeout_s: float, interval=0.1):
        self.pid = pid
        self.max_rss_bytes = max_rss_bytes
        self.timeout_s = timeout_s
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self.killed: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.t0 = time.time()

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join()

    def _tree(self):
        try:
            p = psutil.Process(self.pid)
            return [p, *p.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def _run(self):
        while not self._stop.is_set():
            rss = 0
            procs = self._tree()
            for p in procs:
                with contextlib.suppress(psutil.NoSuchProcess):
                    rss += p.memory_info().rss
            now = time.time()
            if procs:
                self.samples.append((now, rss))
            reason = None
            if rss > self.max_rss_bytes:
                reason = f"peak RSS {rss / 2**30:.1f} GB > {self.max_rss_bytes / 2**30:.1f} GB"
            elif now - self.t0 > self.timeout_s:
                reason = f"time {now - self.t0:.0f} s > {self.timeout_s:.0f} s"
            if reason and self.killed is None:
                self.killed = reason
                for p in reversed(procs):  # children first, then the process we started
                    with contextlib.suppress(psutil.NoSuchProcess):
                        p.send_signal(signal.SIGKILL)
            self._stop.wait(self.interval)

    def peak_between(self, t0: float, t1: float) -> float:
        vals = [r for t, r in self.samples if t0 <= t <= t1]
        return max(vals) / 2**20 if vals else 0.0


def run_ecoplan(
    region_yaml: Path,
    out_dir: Path,
    *,
    chunk_size: int,
    scheduler: str,
    max_rss_gb: float,
    timeout_min: float,
    profile: Path | None = None,
    memory_budget_mb: float | None = None,
) -> dict:
    result_json = out_dir / "child.json"
    for f in (result_json, result_json.with_suffix(".marks")):
        if f.exists():
            f.unlink()
    argv = [
        sys.executable,
        str(BENCH / "ecoplan_child.py"),
        str(region_yaml),
        str(out_dir),
        str(result_json),
        "--chunk-size",
        str(chunk_size),
        "--scheduler",
        scheduler,
    ]
    if profile:
        argv += ["--profile", str(profile)]
    if memory_budget_mb is not None:
        argv += ["--memory-budget-mb", str(memory_budget_mb)]
    out_dir.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    mon = Monitor(proc.pid, max_rss_bytes=max_rss_gb * 2**30, timeout_s=timeout_min * 60).start()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    mon.stop()
    stderr = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    proc.stdout.close()
    rc = os.waitstatus_to_exitcode(status)
    res: dict = {
        "tool": "ecoplan",
        "scheduler": scheduler,
        "chunk_size": chunk_size,
        "memory_budget_mb": memory_budget_mb,
        "seconds": seconds,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "max_rss_mb": max(usage.ru_maxrss / 1024.0, mon.peak_between(0, float("inf"))),
        "returncode": rc,
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
    }
    if mon.killed:
        res["killed"] = mon.killed
    # RSS timeline, one sample per second at most, in (seconds from start, MB)
    step = max(1, int(1 / mon.interval))
    res["rss_timeline"] = [(round(t - mon.t0, 1), round(r / 2**20)) for t, r in mon.samples[::step]]
    marks_file = result_json.with_suffix(".marks")
    if rc != 0:
        res["error"] = stderr[-3000:]
        if marks_file.exists():  # the steps reached before the run stopped
            marks = [json.loads(line) for line in marks_file.read_text().splitlines()]
            marks.append(("stopped", time.time()))
            res["stages"] = _stages(marks, mon)
        return res
    child = json.loads(result_json.read_text())
    child.pop("marks")
    marks = [json.loads(line) for line in marks_file.read_text().splitlines()]
    marks.append(("end", time.time()))
    res["stages"] = _stages(marks, mon)
    res.update(child)
    return res


def _stages(marks: list, mon: Monitor) -> list[dict]:
    stages = []
    for (name, start), (_, end) in zip(marks, marks[1:], strict=False):
        stages.append(
            {
                "name": name,
                "seconds": end - start,
                "max_rss_mb": mon.peak_between(start, end),
            }
        )
    return stages


def top_functions(pstats_path: Path, n: int = 25) -> list[dict]:
    stats = pstats.Stats(str(pstats_path))
    rows = []
    for (file, line, func), (_cc, nc, tt, ct, _callers) in stats.stats.items():
        rows.append(
            {
                "function": f"{Path(file).name}:{line}({func})",
                "calls": nc,
                "tottime": tt,
                "cumtime": ct,
            }
        )
    rows.sort(key=lambda r: r["tottime"], reverse=True)
    return rows[:n]


def _fmt_row(name, secs, cpu, rss, mpx) -> str:
    cpu_s = f"{cpu:8.1f}" if cpu is not None else " " * 8
    mpx_s = f"{mpx:8.2f}" if mpx is not None else " " * 8
    return f"  {name:<14} {secs:8.1f} {cpu_s} {rss:9.0f} {mpx_s}"


def print_report(report: dict) -> None:
    px = report["pixels"]
    print(f"\n{report['label']}: {report['size']} x {report['size']} px ({px / 1e6:.0f} Mpx)")
    print(f"  {'stage':<14} {'wall s':>8} {'cpu s':>8} {'peak MB':>9} {'Mpx/s':>8}")
    for key in ("generate", *PEERS, "ecoplan"):
        r = report.get(key)
        if not r:
            continue
        if "error" in r or "killed" in r:
            print(f"{key}: FAILED {r.get('killed', '')} {r.get('error', '')[-500:]}")
            for s in r.get("stages", []):
                print(_fmt_row(s["name"], s["seconds"], None, s["max_rss_mb"], None))
            if "seconds" in r:
                print(
                    _fmt_row(
                        "(until stop)", r["seconds"], r.get("cpu_seconds"), r["max_rss_mb"], None
                    )
                )
            continue
        work = f" ({report['ecoplan_work']})" if key == "ecoplan" else ""
        print(f"{key}{work}:")
        for s in r.get("stages", []):
            print(_fmt_row(s["name"], s["seconds"], s.get("cpu_seconds"), s["max_rss_mb"], None))
        print(
            _fmt_row(
                "TOTAL",
                r["seconds"],
                r.get("cpu_seconds"),
                r["max_rss_mb"],
                px / 1e6 / r["seconds"],
            )
        )
    for peer, ratio in report.get("ratios", {}).items():
        name = PEER_NAMES[peer]
        print(
            f"ratio ecoplan/{name}: wall {ratio['wall']:.2f} (ecoplan {1 / ratio['wall']:.2f}x "
            f"{name}'s speed), cpu {ratio['cpu']:.2f}, peak RSS {ratio['rss']:.2f}"
        )
    proj = report.get("projection")
    if proj:
        for tool, p in proj.items():
            print(
                f"Thailand 10 m ({THAILAND_PX / 1e9:.2f} Gpx) by {tool} at this throughput: "
                f"{p['hours_this_machine']:.2f} h here; per worker core "
                f"{p['mpx_per_s_per_core']:.2f} Mpx/s"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="ecoplan against its peers (issue 7)")
    parser.add_argument("size", type=parse_size, help="2k, 10k, 30k or a number of pixels")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--chunk-size", type=int, default=1024)
    parser.add_argument("--scheduler", default="threads")
    parser.add_argument(
        "--memory-budget-mb", type=float, default=None, help="ecoplan's (default: its own)"
    )
    parser.add_argument(
        "--peers",
        type=parse_peers,
        default=["gdal"],
        help="peers run before ecoplan, in this order: gdal, grass (GRASS GIS modules), numpy "
        "(a straightforward numpy/scipy/rasterio script), comma-separated, or all or none "
        "(default: gdal)",
    )
    parser.add_argument("--skip-gdal", action="store_true", help="leave gdal out of --peers")
    parser.add_argument("--skip-ecoplan", action="store_true")
    parser.add_argument("--regenerate", action="store_true", help="regenerate the data")
    parser.add_argument("--max-rss-gb", type=float, default=12.0, help="kill ecoplan above")
    parser.add_argument("--timeout-min", type=float, default=15.0, help="kill ecoplan after")
    parser.add_argument(
        "--profile", action="store_true", help="also profile ecoplan (cProfile, synchronous)"
    )
    parser.add_argument(
        "--full",
        action="store_true",
        help="ecoplan runs the whole eco-plan (region_full.yaml: constraints, suitability, "
        "allocation, plans) instead of the issue's steps (region.yaml, as GDAL does)",
    )
    args = parser.parse_args(argv)
    label, size = args.size
    data = BENCH / "data" / label
    results = BENCH / "results"
    results.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    report: dict = {
        "label": label,
        "size": size,
        "pixels": size * size,
        "seed": args.seed,
        "date_utc": stamp,
        "git_commit": git_commit(),
        "machine": machine(),
    }

    if args.regenerate or not (data / "region.yaml").exists():
        # in a child process: its own peak RSS, and this process stays small (a forked child's
        # ru_maxrss would include this process's pages)
        load0 = os.getloadavg()[0]
        argv = [sys.executable, str(BENCH / "generate.py"), label, "--seed", str(args.seed)]
        argv += ["--out", str(data.parent)]
        seconds, rss, cpu = run_command(argv, cwd=ROOT)
        report["generate"] = {
            "seconds": seconds,
            "cpu_seconds": cpu,
            "max_rss_mb": rss,
            "load_before": load0,
            "output": run_command.last_stdout.strip(),
        }

    peers = [p for p in args.peers if not (args.skip_gdal and p == "gdal")]
    for peer in peers:
        load0 = os.getloadavg()[0]
        g = run_peer(peer, data, results / f"{peer}_{label}")
        g["load_before"], g["load_after"] = load0, os.getloadavg()[0]
        report[peer] = g
        print(f"{PEER_NAMES[peer]} pipeline: {g['seconds']:.1f} s", flush=True)

    region_yaml = data / ("region_full.yaml" if args.full else "region.yaml")
    report["ecoplan_work"] = "full plan" if args.full else "the issue's steps"
    if not (data / "region_full.yaml").exists():  # data generated before region_full.yaml
        sys.path.insert(0, str(BENCH))
        from generate import write_region

        write_region(data, label=label)
    if not args.skip_ecoplan:
        report["ecoplan"] = run_ecoplan(
            region_yaml,
            results / f"ecoplan_{label}",
            chunk_size=args.chunk_size,
            scheduler=args.scheduler,
            max_rss_gb=args.max_rss_gb,
            timeout_min=args.timeout_min,
            memory_budget_mb=args.memory_budget_mb,
        )
        if args.profile:
            prof = results / f"ecoplan_{label}.pstats"
            p = run_ecoplan(
                region_yaml,
                results / f"ecoplan_{label}_profile",
                chunk_size=args.chunk_size,
                scheduler="synchronous",
                max_rss_gb=args.max_rss_gb,
                timeout_min=args.timeout_min,
                profile=prof,
            )
            if p["returncode"] == 0:
                p["top_tottime"] = top_functions(prof)
            report["ecoplan_profile"] = p

    e = report.get("ecoplan")
    runs = [e, *(report.get(p) for p in peers)]
    ok = [r for r in runs if r and r.get("returncode", 0) == 0 and "killed" not in r]
    if e in ok:
        report["ratios"] = {
            p: {
                "wall": e["seconds"] / report[p]["seconds"],
                "cpu": e["cpu_seconds"] / report[p]["cpu_seconds"],
                "rss": e["max_rss_mb"] / report[p]["max_rss_mb"],
            }
            for p in peers
            if report[p] in ok
        }
        if "gdal" in report["ratios"]:
            report["ratio"] = report["ratios"]["gdal"]  # the key of earlier results
    cores = report["machine"]["affinity"]
    report["projection"] = {
        r["tool"]: {
            "mpx_per_s": size * size / 1e6 / r["seconds"],
            "mpx_per_s_per_core": size * size / 1e6 / r["seconds"] / cores,
            "hours_this_machine": THAILAND_PX / (size * size / r["seconds"]) / 3600,
        }
        for r in ok
    }
    out = results / f"{label}-{stamp}.json"
    out.write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")
    print_report(report)
    if "ecoplan_profile" in report and report["ecoplan_profile"].get("top_tottime"):
        print("\necoplan, cProfile (synchronous scheduler), top functions by own time:")
        for r in report["ecoplan_profile"]["top_tottime"][:20]:
            print(f"  {r['tottime']:8.2f} s own {r['cumtime']:8.2f} s cum  {r['function']}")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
