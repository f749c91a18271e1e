"""Start-up: how long ``import regionedit`` and ``regionedit --help`` take.

Each command runs as a process of its own, several times after one unmeasured run that warms
the file cache. ``python -c pass`` is the floor under the others. The import is also timed
inside its process, without the interpreter's own start, and the heavy libraries the import
pulled in are listed (none: the models' libraries load with the models). ``--help`` builds
every sub-command's parser.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from .measure import spread, timed
from .workspace import Workspace

FULL = dict(runs=10)
QUICK = dict(runs=2)
HEAVY = ("torch", "diffusers", "transformers", "rembg", "onnxruntime", "openai", "cv2")
_TIMED_IMPORT = (
    "import json, sys, time; start = time.perf_counter(); import regionedit; "
    "seconds = time.perf_counter() - start; "
    f"print(json.dumps([seconds, [m for m in {HEAVY!r} if m in sys.modules]]))"
)


def run(ws: Workspace, *, quick: bool) -> dict[str, Any]:
    params = QUICK if quick else FULL
    script = Path(sys.executable).parent / "regionedit"
    if not script.exists():
        raise RuntimeError(f"{script} not found: install the package (pip install -e .)")
    commands = {
        "python_pass_s": [sys.executable, "-c", "pass"],
        "import_process_s": [sys.executable, "-c", _TIMED_IMPORT],
        "help_process_s": [str(script), "--help"],
    }
    found: dict[str, Any] = {"parameters": params}
    for name, command in commands.items():
        runs = [_run(command, ws.env()) for _ in range(params["runs"] + 1)][1:]
        found[name] = spread(wall for wall, _ in runs)
        if name == "import_process_s":
            measured = [json.loads(out) for _, out in runs]
            found["import_in_process_s"] = spread(seconds for seconds, _ in measured)
            found["heavy_modules_imported"] = sorted({m for _, heavy in measured for m in heavy})
    return found


def _run(command: list[str], env: dict[str, str]) -> tuple[float, str]:
    """(wall seconds, stdout) of ``command``, which must succeed."""
    wall, done = timed(lambda: subprocess.run(command, env=env, capture_output=True, text=True))
    if done.returncode != 0:
        raise RuntimeError(f"{command} exited with {done.returncode}: {done.stderr[-2000:]}")
    return wall, done.stdout


def rows(result: dict[str, Any]) -> list[tuple[str, str]]:
    from .report import number

    return [
        ("python -c pass, whole process s", number(result["python_pass_s"])),
        ("import regionedit, in-process s", number(result["import_in_process_s"])),
        ("import regionedit, whole process s", number(result["import_process_s"])),
        ("libraries `import regionedit` loads of " + ", ".join(HEAVY),
         ", ".join(result["heavy_modules_imported"]) or "none"),
        ("regionedit --help, whole process s", number(result["help_process_s"])),
    ]
