"""What each candidate segmentation model costs on this machine: time per image, file size, memory.

The weights do not change the time a network takes, so each candidate is built from its
published PyTorch architecture with random weights, exported to ONNX at the input size rembg
feeds it, and then run exactly as regionedit runs it: through ``RembgSegmenter`` (rembg's own
session class for that model name, finding the file in ``U2NET_HOME``; rembg's resize,
normalisation, sigmoid/min-max and resize back) on a 1-megapixel photo, warm session.

Candidates (name: architecture source, input size):

* ``u2net``, ``u2netp``: ``U2NET`` / ``U2NETP`` from github.com/xuebinqin/U-2-Net, 320x320
* ``isnet-general-use``: ``ISNetDIS`` from github.com/xuebinqin/DIS (``IS-Net/models``), 1024x1024
* ``birefnet-general``: ``BiRefNet`` from github.com/ZhengPeng7/BiRefNet with its Swin-L
  backbone (``swin_v1_l``), 1024x1024
* ``birefnet-general-lite``: the same with the Swin-T backbone (``swin_v1_t``), 1024x1024

BiRefNet is exported as that repository's ONNX tutorial does (legacy exporter, opset 17,
``deform_conv2d`` written out in standard ONNX operators by ``deform-conv2d-onnx-exporter``),
with the repository's default model configuration.

How to run (two steps; the export needs PyTorch and the architectures' code, the timing only
the project's environment)::

    git clone https://github.com/xuebinqin/U-2-Net SRC/U-2-Net
    git clone https://github.com/xuebinqin/DIS SRC/DIS
    git clone https://github.com/ZhengPeng7/BiRefNet SRC/BiRefNet
    pip install torch torchvision timm einops kornia opencv-python-headless tqdm \\
        huggingface_hub onnx onnxscript deform-conv2d-onnx-exporter       # export env
    python -m bench.segmentation_models export --sources SRC --models DIR
    PYTHONPATH=src python -m bench.segmentation_models time --sources SRC --models DIR \\
        --runs 5 --output bench/results/segmentation-models.json

``time`` runs each model in its own process (memory figures are per model) with the session
options regionedit uses, and writes the machine description (CPU model, cores, onnxruntime and
rembg versions) with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

#: name -> (architecture source, rembg input side)
CANDIDATES: dict[str, tuple[str, int]] = {
    "u2net": ("U-2-Net", 320),
    "u2netp": ("U-2-Net", 320),
    "isnet-general-use": ("DIS", 1024),
    "birefnet-general": ("BiRefNet", 1024),
    "birefnet-general-lite": ("BiRefNet", 1024),
}

_REPOSITORY_ROOT = Path(__file__).resolve().parent.parent

#: the 1-megapixel photo every model segments (3:2, like most camera photos)
PHOTO_SIZE = (1224, 816)


# -- export -----------------------------------------------------------------------------------


def _torchvision() -> None:
    """Import torchvision, also where its compiled extension does not load.

    PyPI's Linux torchvision wheel links against the CUDA build of PyTorch; beside a CPU-only
    PyTorch its operators are missing and the import fails. Only ``deform_conv2d`` is used
    here, and only while tracing: the ONNX graph is written by deform-conv2d-onnx-exporter's
    symbolic function, so the operator needs its schema and a kernel giving the output shape
    (zeros), not the real values.
    """
    import torch

    try:
        import torchvision  # noqa: F401

        return
    except RuntimeError:
        for module in [m for m in sys.modules if m.split(".")[0] == "torchvision"]:
            del sys.modules[module]
    library = torch.library.Library("torchvision", "DEF")
    # the two operators torchvision's import registers fake kernels for, whatever it loaded
    library.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    library.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    library.define(
        "deform_conv2d(Tensor input, Tensor weight, Tensor offset, Tensor mask, Tensor bias, "
        "SymInt stride_h, SymInt stride_w, SymInt pad_h, SymInt pad_w, SymInt dilation_h, "
        "SymInt dilation_w, SymInt groups, SymInt offset_groups, bool use_mask) -> Tensor"
    )

    def deform_conv2d_shape(x, weight, offset, mask, bias, sh, sw, ph, pw, dh, dw, *_):
        kh, kw = weight.shape[-2:]
        height = (x.shape[2] + 2 * ph - dh * (kh - 1) - 1) // sh + 1
        width = (x.shape[3] + 2 * pw - dw * (kw - 1) - 1) // sw + 1
        return x.new_zeros(x.shape[0], weight.shape[0], height, width)

    library.impl("deform_conv2d", deform_conv2d_shape, "CPU")
    _torchvision.library = library  # type: ignore[attr-defined]  (kept alive)
    import torchvision.extension

    torchvision.extension._has_ops = lambda: True


def _export_u2net(src: Path, name: str, out: Path) -> None:
    import torch

    sys.path.insert(0, str(src / "U-2-Net"))
    from model import U2NET, U2NETP  # type: ignore[import-not-found]

    net = (U2NETP if name == "u2netp" else U2NET)(3, 1).eval()
    _export(net, 320, out, torch)


def _export_isnet(src: Path, name: str, out: Path) -> None:
    import torch

    _torchvision()  # imported by isnet.py, unused by ISNetDIS
    sys.path.insert(0, str(src / "DIS" / "IS-Net"))
    from models.isnet import ISNetDIS  # type: ignore[import-not-found]

    _export(ISNetDIS(in_ch=3, out_ch=1).eval(), 1024, out, torch)


def _export_birefnet(src: Path, name: str, out: Path) -> None:
    import torch

    _torchvision()
    root = src / "BiRefNet"
    os.chdir(root)  # its Config looks for train.sh in the working folder
    sys.path.insert(0, str(root))
    import config  # type: ignore[import-not-found]

    backbone = "swin_v1_t" if name == "birefnet-general-lite" else "swin_v1_l"
    # Config picks the backbone from a list inside __init__ and derives channel counts from
    # it; a property whose setter ignores that pick selects ours without editing the file.
    config.Config.bb = property(lambda self: backbone, lambda self, value: None)
    from models.birefnet import BiRefNet  # type: ignore[import-not-found]

    import deform_conv2d_onnx_exporter

    if deform_conv2d_onnx_exporter.JitScalarType is None:  # moved in recent PyTorch
        from torch.onnx._internal.torchscript_exporter._type_utils import JitScalarType

        deform_conv2d_onnx_exporter.JitScalarType = JitScalarType
    deform_conv2d_onnx_exporter.get_tensor_dim_size = _dim_size_from_strides
    deform_conv2d_onnx_exporter.register_deform_conv2d_onnx_op()
    net = BiRefNet(bb_pretrained=False).eval()
    assert net.config.bb == backbone
    _export(net, 1024, out, torch, input_name="input_image")


def _dim_size_from_strides(tensor: Any, dim: int) -> int:
    """deform-conv2d-onnx-exporter's dimension lookup, with BiRefNet's ONNX tutorial's fallback:
    where the traced graph lost a size, read it off the (contiguous NCHW) strides."""
    from torch.onnx import symbolic_helper

    size = symbolic_helper._get_tensor_dim_size(tensor, dim)
    if size is None and dim in (0, 2, 3):
        strides = tensor.type().strides()
        size = {0: strides[3], 2: strides[1] // strides[2], 3: strides[2]}[dim]
    return size


def _export(net: Any, side: int, out: Path, torch: Any, input_name: str = "input.1") -> None:
    params = sum(p.numel() for p in net.parameters())
    with torch.no_grad():
        torch.onnx.export(
            net,
            (torch.randn(1, 3, side, side),),
            str(out),
            input_names=[input_name],
            opset_version=17,
            dynamo=False,
        )
    out.with_suffix(".params").write_text(str(params))


def export(sources: Path, models: Path, names: list[str]) -> None:
    """Export each model in its own process (BiRefNet's modules read a global Config)."""
    models.mkdir(parents=True, exist_ok=True)
    for name in names:
        out = models / f"{name}.onnx"
        if out.exists():
            print(f"{name}: {out} exists, kept")
            continue
        started = time.monotonic()
        subprocess.run(
            [sys.executable, "-m", "bench.segmentation_models", "_export_one", name,
             str(sources.resolve()), str(out.resolve())],
            check=True, cwd=_REPOSITORY_ROOT,
        )
        print(f"{name}: exported in {time.monotonic() - started:.0f} s, "
              f"{out.stat().st_size / 1e6:.1f} MB")


def _export_one(name: str, sources: str, out: str) -> None:
    family = CANDIDATES[name][0]
    exporter = {"U-2-Net": _export_u2net, "DIS": _export_isnet, "BiRefNet": _export_birefnet}
    exporter[family](Path(sources), name, Path(out))


# -- timing -----------------------------------------------------------------------------------


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3  # kB on Linux


def _time_one(name: str, models: str, runs: int, profile: bool = False) -> None:
    """Runs in its own process with U2NET_HOME=models; prints one JSON line."""
    import numpy as np
    from PIL import Image

    import rembg  # noqa: F401  (imported before the baseline: its import is not the model's)
    from regionedit.segment import RembgSegmenter

    rng = np.random.default_rng(0)
    # a smooth photo-like image: gradients plus a bright blob (the values do not change time)
    y, x = np.mgrid[0 : PHOTO_SIZE[1], 0 : PHOTO_SIZE[0]].astype(np.float32)
    blob = np.exp(-(((x - 600) / 250) ** 2 + ((y - 420) / 200) ** 2))
    pixels = np.stack([x / PHOTO_SIZE[0] * 200, y / PHOTO_SIZE[1] * 200, blob * 255], axis=-1)
    pixels += rng.normal(0, 4, pixels.shape)
    photo = Image.fromarray(pixels.clip(0, 255).astype(np.uint8))

    baseline = _rss_mb()
    segmenter = RembgSegmenter(name, providers=["CPUExecutionProvider"])
    started = time.perf_counter()
    session = segmenter.load()
    load_s = time.perf_counter() - started
    assert type(session).__name__ != "U2netCustomSession"
    after_load = _rss_mb()

    # time the ONNX run inside each call too: the rest is rembg's resizing and normalising
    inner = session.inner_session
    onnx_runs: list[float] = []

    def timed_run(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return run(*args, **kwargs)
        finally:
            onnx_runs.append(time.perf_counter() - started)

    run, inner.run = inner.run, timed_run
    segmenter.subject_alpha(photo)  # warm-up: first-run allocations and kernel choices
    totals, cpu = [], []
    for _ in range(runs):
        started, started_cpu = time.perf_counter(), time.process_time()
        alpha = segmenter.subject_alpha(photo)
        totals.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
    assert alpha.shape == (PHOTO_SIZE[1], PHOTO_SIZE[0])

    model_file = Path(models) / f"{name}.onnx"
    params_file = model_file.with_suffix(".params")
    peak_added = _peak_rss_mb() - baseline
    op_share = _operator_share(model_file) if profile else None
    print(json.dumps({
        "model": name,
        "session": type(session).__name__,
        "input": f"{CANDIDATES[name][1]}x{CANDIDATES[name][1]}",
        "parameters": int(params_file.read_text()) if params_file.exists() else None,
        "file_mb": round(model_file.stat().st_size / 1e6, 1),
        "load_s": round(load_s, 2),
        "median_s": round(statistics.median(totals), 3),
        "min_s": round(min(totals), 3),
        "runs_s": [round(t, 3) for t in totals],
        "onnx_run_median_s": round(statistics.median(onnx_runs[1:]), 3),
        # CPU time of the process per call (all threads): less sensitive than wall time to
        # other work on the machine
        "cpu_median_s": round(statistics.median(cpu), 3),
        "rss_after_load_mb": round(after_load - baseline),
        "peak_rss_added_mb": round(peak_added),
        "threads": session.inner_session.get_session_options().intra_op_num_threads,
        **({"operator_time_share": op_share} if op_share else {}),
    }))


def _operator_share(model_file: Path) -> dict[str, dict[str, float]]:
    """Share of operator time in one run, per ONNX operator type and per top-level module of
    the exported network (the first part of the node names the exporter writes, e.g. "bb" for
    BiRefNet's backbone); onnxruntime's profiler, in a session of its own, after the figures
    above are taken."""
    import numpy as np
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.enable_profiling = True
    session = onnxruntime.InferenceSession(str(model_file), options,
                                           providers=["CPUExecutionProvider"])
    feed = {i.name: np.random.default_rng(0).standard_normal(i.shape).astype(np.float32)
            for i in session.get_inputs()}
    session.run(None, feed)
    trace = Path(session.end_profiling())
    events = json.loads(trace.read_text())
    trace.unlink()
    by_op: dict[str, float] = {}
    by_module: dict[str, float] = {}
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            op = event.get("args", {}).get("op_name", "?")
            by_op[op] = by_op.get(op, 0.0) + event["dur"]
            parts = event["name"].lstrip("/").split("/")
            module = parts[0] if len(parts) > 1 else "(top level)"
            by_module[module] = by_module.get(module, 0.0) + event["dur"]

    def shares(durations: dict[str, float]) -> dict[str, float]:
        total = sum(durations.values()) or 1.0
        top = sorted(durations.items(), key=lambda item: -item[1])[:6]
        return {name: round(duration / total, 3) for name, duration in top}

    return {"operator_type": shares(by_op), "module": shares(by_module)}


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _source_commit(path: Path) -> str | None:
    try:
        return subprocess.run(
            ["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def time_models(
    sources: Path, models: Path, names: list[str], runs: int, profile: bool = False
) -> dict[str, Any]:
    import onnxruntime
    from importlib import metadata

    env = {**os.environ, "U2NET_HOME": str(models.resolve())}
    results = []
    for name in names:
        load_before = os.getloadavg()[0]
        done = subprocess.run(
            [sys.executable, "-m", "bench.segmentation_models", "_time_one", name,
             str(models.resolve()), str(runs), *(["profile"] if profile else [])],
            env=env, capture_output=True, text=True, cwd=_REPOSITORY_ROOT,
        )
        if done.returncode != 0:
            sys.exit(f"{name} failed:\n{done.stderr}")
        row = json.loads(done.stdout.strip().splitlines()[-1])
        row["date"] = time.strftime("%Y-%m-%d %H:%M")
        # the machine may be shared: a busy one stretches wall times more than CPU times
        row["load_average_1min"] = [round(load_before, 1), round(os.getloadavg()[0], 1)]
        row["architecture"] = {
            "repository": f"github.com/{_REPOSITORIES[CANDIDATES[name][0]]}",
            "commit": _source_commit(sources / CANDIDATES[name][0]),
        }
        results.append(row)
        print(f"{name:24} {row['median_s']:7.2f} s  (ONNX run {row['onnx_run_median_s']:.2f} s,"
              f" CPU {row['cpu_median_s']:.2f} s)"
              f"  {row['file_mb']:7.1f} MB file  +{row['peak_rss_added_mb']} MB peak RSS")
    return {
        "what": "RembgSegmenter(NAME, providers=['CPUExecutionProvider']).subject_alpha(photo) "
                f"on a {PHOTO_SIZE[0]}x{PHOTO_SIZE[1]} RGB photo, warm session (after one "
                "call), median of the runs in runs_s; cpu_median_s: process CPU time per call "
                "(all threads); peak_rss_added_mb: peak RSS above the process before loading; "
                "random-weight ONNX exports of each model's published architecture (see the "
                "module docstring)",
        "machine": {
            "cpu": _cpu_model(),
            "cores": len(os.sched_getaffinity(0)),
            "memory_gb": round(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30),
            "python": platform.python_version(),
            "onnxruntime": onnxruntime.__version__,
            "onnxruntime_providers": onnxruntime.get_available_providers(),
            "rembg": metadata.version("rembg"),
        },
        "models": results,
    }


_REPOSITORIES = {"U-2-Net": "xuebinqin/U-2-Net", "DIS": "xuebinqin/DIS",
                 "BiRefNet": "ZhengPeng7/BiRefNet"}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_export_one":
        return _export_one(*argv[1:])
    if argv and argv[0] == "_time_one":
        return _time_one(argv[1], argv[2], int(argv[3]), profile=argv[4:] == ["profile"])
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("step", choices=["export", "time"])
    parser.add_argument("--sources", type=Path, required=True,
                        help="folder holding the U-2-Net, DIS and BiRefNet clones")
    parser.add_argument("--models", type=Path, required=True, help="folder of the ONNX exports")
    parser.add_argument("--only", help="comma-separated model names (default: all); with "
                        "time, their rows are added to an existing --output")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--profile", action="store_true",
                        help="also record each model's share of time per ONNX operator type")
    parser.add_argument("--output", type=Path,
                        default=Path(__file__).parent / "results" / "segmentation-models.json")
    args = parser.parse_args(argv)
    names = args.only.split(",") if args.only else list(CANDIDATES)
    if args.step == "export":
        export(args.sources, args.models, names)
        return
    report = time_models(args.sources, args.models, names, args.runs, args.profile)
    if args.output.exists() and args.only:
        # --only adds to (or replaces rows of) an earlier report of the same script
        earlier = json.loads(args.output.read_text())
        rows = {row["model"]: row for row in earlier["models"] + report["models"]}
        report["models"] = [rows[name] for name in CANDIDATES if name in rows]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written: {args.output}")


if __name__ == "__main__":
    main()
