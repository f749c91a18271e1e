"""Run a command and write its wall time and peak RSS to a JSON file (standard library only).

    python bench/launch.py REPORT.json COMMAND [ARG ...]

Why a separate, small process: Linux counts a child's peak RSS from the memory its parent had
when it was started (``vfork``/``fork`` then ``exec`` carries the parent's high-water mark
over), so a command started straight from the benchmark, which holds torch and the models,
would never read below the benchmark's own peak. Started from this launcher, whose own peak
is about 10 MB, the figure is the command's. :func:`bench.measure.run_process` uses it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    report, command = argv[0], argv[1:]
    start = time.perf_counter()
    process = subprocess.Popen(command)  # output streams are the launcher's own
    try:
        _, status, usage = os.wait4(process.pid, 0)
    except KeyboardInterrupt:
        process.kill()
        raise
    wall = time.perf_counter() - start
    returncode = os.waitstatus_to_exitcode(status)
    process.returncode = returncode  # reaped here, not by Popen
    with open(report, "w") as f:
        json.dump({"returncode": returncode, "wall_s": wall, "peak_rss_kb": usage.ru_maxrss}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
