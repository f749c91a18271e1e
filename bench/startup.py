"""Section 4: start-up, timed as whole processes, each command repeated.

* ``python -c pass``: the interpreter alone, the floor under every other figure;
* ``import regionedit``: the import timed inside the process (``perf_counter`` around it), and
  the whole process;
* ``regionedit --help``: the console script, whole process (it builds every sub-command's
  parser, ``batch`` included);
* first result: ``regionedit edit`` on a 512 px photo with the tiny models, whole process:
  imports, model loading and one edit (2 steps), with the process's peak RSS.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from .measure import Finished, Spread, run_process
from .overhead import photo_path
from .workspace import SOURCE, TARGET, Workspace

_TIMED_IMPORT = (
    "import time; start = time.perf_counter(); import regionedit; "
    "print(time.perf_counter() - start)"
)


def console_script() -> str:
    """The ``regionedit`` command of the interpreter running the bench."""
    script = Path(sys.executable).parent / "regionedit"
    if not script.exists():
        raise RuntimeError(f"{script} not found: install the package (pip install -e .)")
    return str(script)


def run(ws: Workspace, *, runs: int, first_result_runs: int) -> dict:
    """The short commands ``runs`` times each, after one unmeasured run that warms the file
    cache; the first-result edit ``first_result_runs`` times."""
    scratch = ws.folder / "startup"
    env = ws.env()

    def repeat(command: list[str], times: int, name: str) -> list[Finished]:
        run_process(command, env=env, scratch=scratch / name).check(name)  # warm-up
        return [run_process(command, env=env, scratch=scratch / name).check(name)
                for _ in range(times)]

    interpreter = repeat([sys.executable, "-c", "pass"], runs, "python")
    imports = repeat([sys.executable, "-c", _TIMED_IMPORT], runs, "import")
    helps = repeat([console_script(), "--help"], runs, "help")

    def wall(finished: list[Finished]) -> dict[str, Any]:
        return Spread.of(f.wall_s for f in finished).as_dict()

    return {
        "what": "whole-process wall seconds, median of repeated runs",
        "runs": runs,
        "python_pass_s": wall(interpreter),
        "import_in_process_s": Spread.of(float(f.stdout.strip()) for f in imports).as_dict(),
        "import_process_s": wall(imports),
        "help_process_s": wall(helps),
        "first_result": _first_result(ws, first_result_runs),
    }


def _first_result(ws: Workspace, runs: int) -> dict[str, Any]:
    """``regionedit edit`` with the tiny models, ``runs`` times (0: skipped)."""
    if runs == 0:
        return {"skipped": "not run in this mode"}
    scratch = ws.folder / "startup" / "edit"
    output = scratch / "first-result.png"
    command = [
        console_script(), "edit", str(photo_path(ws, 512)),
        "--source", SOURCE, "--target", TARGET, "-o", str(output),
        "--classifier", "offline", "--model", str(ws.sd_model),
        "--segment-model-path", str(ws.u2net_model),
        "--steps", "2", "--seed", "1", "--device", "cpu",
    ]
    finished = [
        run_process(command, env=ws.env(), scratch=scratch).check("regionedit edit")
        for _ in range(runs)
    ]
    if not output.exists():
        raise RuntimeError(f"regionedit edit exited 0 but wrote no {output}")
    # the edit's own total, from the JSON line the command prints
    edit_seconds = [json.loads(f.stdout.strip().splitlines()[-1])["seconds"] for f in finished]
    return {
        "process_s": Spread.of(f.wall_s for f in finished).as_dict(),
        "edit_reported_s": Spread.of(edit_seconds).as_dict(),
        "peak_rss_mb": max(f.peak_rss_mb for f in finished),
        "steps": 2,
        "input": "512x512 JPEG",
    }
