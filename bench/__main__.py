"""``python -m bench``: run the benchmark sections, print the table, write the JSON.

    .venv/bin/python -m bench                  # full figures -> bench/results/full.json
    .venv/bin/python -m bench --quick          # few items, small sizes -> bench/results/quick.json
    .venv/bin/python -m bench --only llm,startup --name llm-check
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from regionedit.batch import DEFAULT_BATCH_SIZE

from . import llm_stage, memory, overhead, startup, throughput
from .measure import load_average
from .report import evaluate_targets, format_table
from .workspace import REPO_ROOT, Workspace, build_workspace

SECTIONS = ("overhead", "batch", "llm", "startup", "memory")
RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Settings:
    """Sizes and repetitions of every section; :data:`FULL` and :data:`QUICK` are the presets."""

    overhead_sizes: tuple[int, ...] = (512, 1024)
    #: the editor's default step count, so the bare call is the call a user makes
    overhead_steps: int = 30
    overhead_pairs: int = 15
    batch_items: int = 50
    batch_distinct_pairs: int = 10
    batch_side: int = 320
    batch_steps: int = 4
    batch_rounds: int = 3
    #: the library's default (the target's figure), and the default before stop 11
    batch_size: int = DEFAULT_BATCH_SIZE
    other_batch_sizes: tuple[int, ...] = (4,)
    llm_latency: float = 0.3
    llm_pairs: int = 100
    llm_repeats: int = 20
    llm_concurrency: int = 8
    llm_runs: int = 3
    startup_runs: int = 10
    first_result_runs: int = 3
    large_size: tuple[int, int] = (6000, 4000)
    large_runs: int = 5
    memory_batch_sizes: tuple[int, int] = (20, 200)
    memory_batch_side: int = 128
    #: large photos (``large_size``) through ``regionedit batch`` at these batch sizes
    large_batch_items: int = 16
    large_batch_sizes: tuple[int, ...] = (4, DEFAULT_BATCH_SIZE)
    #: run the memory section's processes at the same time (their times are then not usable)
    memory_parallel: bool = False


FULL = Settings()
QUICK = replace(
    FULL,
    overhead_sizes=(128,),
    overhead_steps=1,
    overhead_pairs=2,
    batch_items=3,
    batch_distinct_pairs=2,
    batch_side=64,
    batch_steps=1,
    batch_rounds=1,
    other_batch_sizes=(2,),
    llm_latency=0.05,
    llm_pairs=12,
    llm_repeats=2,
    llm_concurrency=4,
    llm_runs=1,
    startup_runs=2,
    # the memory section's `regionedit batch` runs already start the CLI with the models
    first_result_runs=0,
    large_size=(600, 400),
    large_runs=1,
    memory_batch_sizes=(1, 2),
    memory_batch_side=64,
    large_batch_items=3,
    large_batch_sizes=(2,),
    memory_parallel=True,
)


def _sections(ws: Workspace, s: Settings) -> dict[str, Callable[[], dict]]:
    return {
        "overhead": lambda: overhead.run(
            ws, sizes=s.overhead_sizes, steps=s.overhead_steps, pairs=s.overhead_pairs
        ),
        "batch": lambda: throughput.run(
            ws, items=s.batch_items, distinct_pairs=s.batch_distinct_pairs, side=s.batch_side,
            steps=s.batch_steps, latency=s.llm_latency, concurrency=s.llm_concurrency,
            rounds=s.batch_rounds, batch_size=s.batch_size, other_batch_sizes=s.other_batch_sizes,
        ),
        "llm": lambda: llm_stage.run(
            ws, count=s.llm_pairs, repeats=s.llm_repeats, latency=s.llm_latency,
            concurrency=s.llm_concurrency, runs=s.llm_runs,
        ),
        "startup": lambda: startup.run(
            ws, runs=s.startup_runs, first_result_runs=s.first_result_runs
        ),
        "memory": lambda: memory.run(
            ws, large_size=s.large_size, large_runs=s.large_runs,
            batch_sizes=s.memory_batch_sizes, batch_side=s.memory_batch_side,
            large_batch_items=s.large_batch_items, large_batch_sizes=s.large_batch_sizes,
            parallel=s.memory_parallel,
        ),
    }


def machine() -> dict[str, Any]:
    """Where the figures were taken."""
    import torch

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True,
            text=True, check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "git_commit": commit,
        "gpu": None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Measure what regionedit costs beyond its models: print a table of the "
        "figures and their targets, and write them as JSON (see bench/README.md).",
    )
    parser.add_argument("--quick", action="store_true", help="few items, small sizes (the test)")
    parser.add_argument(
        "--only", default=",".join(SECTIONS),
        help=f"comma-separated sections to run (default: all of {','.join(SECTIONS)})",
    )
    parser.add_argument("--name", help="results file name (default: quick or full)")
    parser.add_argument("--output", type=Path, help="results JSON path (overrides --name)")
    parser.add_argument(
        "--torch-threads", type=int, default=1,
        help="torch CPU threads, here and in the measured subprocesses (default: 1; 0 leaves "
        "torch's own default). On a small shared machine more threads than free cores make "
        "the model calls slower and far noisier",
    )
    parser.add_argument(
        "--workspace", type=Path,
        help="folder for the tiny models and photos (default: a temporary folder)",
    )
    args = parser.parse_args(argv)
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    settings = QUICK if args.quick else FULL
    mode = "quick" if args.quick else "full"
    output = args.output or RESULTS / f"{args.name or mode}.json"
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    if args.torch_threads:
        import torch

        os.environ["OMP_NUM_THREADS"] = str(args.torch_threads)  # for the subprocesses
        torch.set_num_threads(args.torch_threads)

    with tempfile.TemporaryDirectory(prefix="regionedit-bench-") as scratch:
        ws = build_workspace(args.workspace or Path(scratch))
        results: dict[str, Any] = {
            "schema": "regionedit.bench/1",
            "mode": mode,
            "settings": asdict(settings),
            "machine": machine(),
            "load_average": {"start": load_average()},
            "seconds": {},
        }
        for name, run in _sections(ws, settings).items():
            if name not in chosen:
                continue
            print(f"bench: {name}...", file=sys.stderr, flush=True)
            start = time.perf_counter()
            results[name] = run()
            results["seconds"][name] = time.perf_counter() - start
    results["load_average"]["end"] = load_average()
    results["targets"] = evaluate_targets(results)

    print(format_table(results))
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nresults: {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
