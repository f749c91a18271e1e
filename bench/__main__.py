"""``python -m bench``: run the sections, print the table, write one result file per section.

    python -m bench                      # every section -> bench/results/<section>.json
    python -m bench --quick --output-dir /tmp/bench   # small sizes, few repeats
    python -m bench memory llm           # some sections only
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
from pathlib import Path
from typing import Any

from . import colormatch_eval, llm_stage, memory, overhead, startup, throughput
from .report import table
from .workspace import REPO_ROOT, build_workspace

#: every section: a module with ``run(workspace, quick=...) -> dict`` and ``rows(result)``
SECTIONS = {
    "overhead": overhead,
    "batch": throughput,
    "llm": llm_stage,
    "startup": startup,
    "memory": memory,
    "colormatch": colormatch_eval,
}
RESULTS = Path(__file__).resolve().parent / "results"


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
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT,
                            capture_output=True, text=True).stdout.strip()
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "git_commit": commit or None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Measure what regionedit costs beyond its models (see bench/README.md).",
    )
    parser.add_argument("sections", nargs="*", metavar="SECTION",
                        help=f"sections to run (default: all of {', '.join(SECTIONS)})")
    parser.add_argument("--quick", action="store_true", help="small sizes, few repeats")
    parser.add_argument(
        "--output-dir", type=Path,
        help="where to write <section>.json (default: bench/results for a full run; a quick "
        "run writes only where told)",
    )
    parser.add_argument("--workspace", type=Path,
                        help="folder for the tiny models and photos (default: a temporary one)")
    parser.add_argument("--torch-threads", type=int,
                        help="torch CPU threads, here and in the worker processes")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.sections) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    output_dir = args.output_dir or (None if args.quick else RESULTS)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    if args.torch_threads:
        import torch

        # for the worker processes; and rembg's matting library sets the OpenMP threads torch
        # shares to NUMBA_NUM_THREADS (default: every core) when it loads
        for name in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS"):
            os.environ[name] = str(args.torch_threads)
        torch.set_num_threads(args.torch_threads)

    rows = []
    with tempfile.TemporaryDirectory(prefix="regionedit-bench-") as temporary:
        ws = build_workspace(args.workspace or Path(temporary))
        for name, section in SECTIONS.items():
            if args.sections and name not in args.sections:
                continue
            print(f"bench: {name}...", file=sys.stderr, flush=True)
            start = time.perf_counter()
            load_before = os.getloadavg()[0]
            result = section.run(ws, quick=args.quick)
            record = {
                "schema": "regionedit.bench/2",
                "section": name,
                "mode": "quick" if args.quick else "full",
                "machine": machine(),
                # the 1-minute load average before and after: how busy the machine was
                "load_average": [load_before, os.getloadavg()[0]],
                "seconds": time.perf_counter() - start,
                "result": result,
            }
            rows += [(name, figure, value) for figure, value in section.rows(result)]
            if output_dir:
                output_dir.mkdir(parents=True, exist_ok=True)
                (output_dir / f"{name}.json").write_text(json.dumps(record, indent=1) + "\n")
    print(table(rows))
    if output_dir:
        print(f"\nresults: {output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
