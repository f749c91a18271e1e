"""What running a batch on Ray costs on one machine, against the local batch.

    .venv/bin/python -m bench.ray_overhead                 # -> bench/results/ray.json
    .venv/bin/python -m bench.ray_overhead --rounds 1      # one round of each

The same 24 photos (320 px, 4 steps, the tiny models, the offline classifier, one torch thread
per worker) go through the local batch and through Ray with one worker and with two, in
alternating rounds, two ways:

* *api*: ``run_batch`` in this process against ``run_batch_on_ray`` on a Ray started here once
  (its start is measured apart). The local run loads its models in this process, where torch,
  diffusers and rembg are imported already after the first round; each Ray worker is a process
  of its own, which imports them and loads the models: the start-up a Ray run pays every time.
* *cli*: ``regionedit batch`` against ``regionedit batch --ray`` (``--workers 2``), each a
  process of its own, as a user runs them: every run imports everything, and ``--ray`` starts
  a Ray on this machine and stops it.

Figures: wall time of each run (median [min-max]); the ratios Ray / local, run by run; for the
api runs, the time to the first finished image (start-up: models loaded, first item edited) and
the steady time per image after it (from the output files' modification times). Every run's
images are checked to be byte-identical to the first local run's.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from .measure import Spread, load_average, run_process
from .workspace import REPO_ROOT, SOURCE, TARGET, build_workspace, photo_set

MODES = ("local", "ray_1_worker", "ray_2_workers")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ray_overhead", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspace", type=Path, help="folder for models and photos")
    parser.add_argument("--items", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "bench/results/ray.json")
    args = parser.parse_args(argv)

    import ray
    import torch

    from regionedit.batch import BatchOptions, plan_folder, run_batch, run_batch_on_ray
    from regionedit.editor import Editor

    from .__main__ import machine

    torch.set_num_threads(1)  # Ray gives each one-CPU worker one thread: the same here
    os.environ["OMP_NUM_THREADS"] = "1"
    with tempfile.TemporaryDirectory(prefix="regionedit-ray-bench-") as scratch:
        ws = build_workspace(args.workspace or Path(scratch))
        photos = ws.folder / "photos" / f"ray-{args.items}"
        photo_set(photos, args.items, 320)
        make_editor = functools.partial(
            Editor, classifier="offline", segment_model_path=str(ws.u2net_model),
            inpaint_model=str(ws.sd_model), device="cpu",
        )
        edit = {"steps": 4, "seed": 1}
        load_before = load_average()
        started = time.perf_counter()
        ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False,
                 logging_level=logging.WARNING)
        ray_start_s = time.perf_counter() - started

        def run(mode: str, out: Path) -> dict[str, Any]:
            options = BatchOptions(out_dir=out, edit=edit)
            plan = plan_folder(photos, SOURCE, TARGET, options)
            runs: dict[str, Callable[[], Any]] = {
                "local": lambda: run_batch(make_editor(), plan, options),
                "ray_1_worker": lambda: run_batch_on_ray(make_editor, plan, options, workers=1),
                "ray_2_workers": lambda: run_batch_on_ray(make_editor, plan, options, workers=2),
            }
            begin_wall, begin = time.time(), time.perf_counter()
            summary = runs[mode]()
            seconds = time.perf_counter() - begin
            if summary.ok != args.items:
                raise RuntimeError(f"{mode}: {summary.ok} of {args.items} images edited")
            return {"seconds": seconds, **_output_times(out, begin_wall)}

        results: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
        digests: set[str] = set()
        try:
            for number, order in _rounds(args.rounds):
                for mode in order:
                    out = ws.folder / "out" / mode
                    shutil.rmtree(out, ignore_errors=True)
                    results[mode].append(run(mode, out))
                    digests.add(_images_digest(out))
                    _say(f"api round {number}: {mode}", results[mode][-1]["seconds"])
        finally:
            ray.shutdown()

        # as a user runs it: one process per run (after the Ray above is gone)
        flags = [
            "batch", str(photos), "--source", SOURCE, "--target", TARGET,
            "--classifier", "offline", "--model", str(ws.sd_model),
            "--segment-model-path", str(ws.u2net_model), "--steps", "4", "--seed", "1",
            "--device", "cpu",
        ]
        extra = {
            "local": [], "ray_1_worker": ["--ray"], "ray_2_workers": ["--ray", "--workers", "2"],
        }
        cli: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
        env = {**ws.env(), "OMP_NUM_THREADS": "1"}
        for number, order in _rounds(args.rounds):
            for mode in order:
                out = ws.folder / "out" / f"cli-{mode}"
                shutil.rmtree(out, ignore_errors=True)
                command = [sys.executable, "-m", "regionedit", *flags, "-o", str(out), *extra[mode]]
                finished = run_process(command, env=env, scratch=ws.folder / "log")
                finished.check(f"regionedit batch ({mode})")
                cli[mode].append({"seconds": finished.wall_s})
                digests.add(_images_digest(out))
                _say(f"cli round {number}: {mode}", finished.wall_s)
        report = {
            "machine": machine(),
            "settings": {
                "items": args.items, "rounds": args.rounds, "long_side_px": 320, **edit,
                "models": "tiny test models (tests/support), CPU", "classifier": "offline",
                "torch_threads_per_worker": 1, "ray": ray.__version__,
                "ray_num_cpus": os.cpu_count(),
            },
            "load_average": {"before": load_before, "after": load_average()},
            "api": {"ray_start_s": ray_start_s, "runs": results, **_figures(results)},
            "cli": {"runs": cli, **_figures(cli)},
            "identical_images": len(digests) == 1,
        }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(_table(report))
    print(f"written: {args.output}")
    return 0


def _rounds(count: int) -> list[tuple[int, tuple[str, ...]]]:
    """The modes of each round, the order alternating so that none always runs on a warmer
    machine."""
    return [(n + 1, MODES if n % 2 == 0 else MODES[::-1]) for n in range(count)]


def _say(what: str, seconds: float) -> None:
    print(f"{what:30s} {seconds:6.1f} s", file=sys.stderr)


def _output_times(out: Path, begin_wall: float) -> dict[str, float]:
    """Seconds from the start to the first finished image, and the steady seconds per image
    after it (the images' modification times)."""
    times = sorted(p.stat().st_mtime for p in out.glob("*.edited.png"))
    return {
        "first_image_s": times[0] - begin_wall,
        "per_image_after_first_s": (times[-1] - times[0]) / max(1, len(times) - 1),
    }


def _images_digest(out: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(out.glob("*.edited.*")):
        if path.suffix != ".json":
            digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


def _figures(results: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    def spread(mode: str, key: str, scale: float = 1.0) -> dict[str, float]:
        return Spread.of(r[key] * scale for r in results[mode]).as_dict()

    def ratio(mode: str) -> dict[str, float]:
        pairs = zip(results[mode], results["local"])
        return Spread.of(ray["seconds"] / local["seconds"] for ray, local in pairs).as_dict()

    figures: dict[str, Any] = {
        "seconds": {mode: spread(mode, "seconds") for mode in MODES},
        "ratio_ray_1_worker_to_local": ratio("ray_1_worker"),
        "ratio_ray_2_workers_to_local": ratio("ray_2_workers"),
    }
    if "first_image_s" in results["local"][0]:
        figures["first_image_s"] = {mode: spread(mode, "first_image_s") for mode in MODES}
        figures["ms_per_image_after_first"] = {
            mode: spread(mode, "per_image_after_first_s", 1000) for mode in MODES
        }
    return figures


def _table(report: dict[str, Any]) -> str:
    def text(value: dict[str, float], unit: str = "", digits: int = 1) -> str:
        return (f"{value['median']:.{digits}f}{unit} "
                f"[{value['min']:.{digits}f}-{value['max']:.{digits}f}]")

    api, cli = report["api"], report["cli"]
    lines = [
        f"{report['settings']['items']} images, {report['settings']['rounds']} round(s)",
        f"api (Ray started once, {api['ray_start_s']:.1f} s, not in the runs):",
        f"  {'':14s} {'run':>20s} {'first image':>20s} {'per image after':>22s}",
    ]
    for mode in MODES:
        lines.append(
            f"  {mode:14s} {text(api['seconds'][mode], ' s'):>20s} "
            f"{text(api['first_image_s'][mode], ' s'):>20s} "
            f"{text(api['ms_per_image_after_first'][mode], ' ms', 0):>22s}"
        )
    lines.append("cli (a process per run; --ray starts and stops its own Ray):")
    for mode in MODES:
        lines.append(f"  {mode:14s} {text(cli['seconds'][mode], ' s'):>20s}")
    for name, section in (("api", api), ("cli", cli)):
        for workers in ("1_worker", "2_workers"):
            ratio = text(section[f"ratio_ray_{workers}_to_local"], "", 2)
            lines.append(f"{name} ratio Ray {workers.replace('_', ' ')} / local: {ratio}")
    lines.append(f"images identical in every run: {report['identical_images']}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
