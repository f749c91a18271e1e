"""What a second thread does to generation beside it: why the batch stays below its ceiling.

    .venv/bin/python -m bench.contention

Prepares 8 photos of 320 px (the batch section's size) with the tiny models, then times
``Editor.generate`` (4 images per call, 4 steps, one torch thread) while another thread runs,
in a loop, one of: nothing, a C loop that releases the GIL (SHA-256 of 16 MB), the mask
arithmetic of a background edit, the rembg segmenter, ``Editor.finish`` (colour matching and
compositing), or a pure Python loop. Prints ms per generated image, three repeats each.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from .workspace import SOURCE, TARGET, build_workspace, photo_set


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.contention", description=__doc__)
    parser.add_argument("--workspace", type=Path, help="folder for models and photos")
    args = parser.parse_args(argv)
    import torch
    from PIL import Image

    from regionedit import masks
    from regionedit.editor import Editor

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="regionedit-contention-") as scratch:
        ws = build_workspace(args.workspace or Path(scratch))
        editor = Editor(
            classifier="offline", segment_model_path=str(ws.u2net_model),
            inpaint_model=str(ws.sd_model), device="cpu",
        )
        photos = photo_set(ws.folder / "photos" / "set-320", 8, 320)
        prepared = [editor.prepare(p, SOURCE, TARGET, seed=1, steps=4) for p in photos]
        (generated,) = editor.generate(prepared[:1])
        editor.generate(prepared[:4], batch_size=4)  # warm-up
        picture = Image.open(photos[0]).convert("RGB")
        alpha = prepared[0].mask.work_alpha
        data = bytes(16 << 20)

        def python_loop() -> None:
            total = 0
            for i in range(1000):
                total += i

        beside: dict[str, Callable[[], object] | None] = {
            "nothing": None,
            "C loop releasing the GIL": lambda: hashlib.sha256(data).digest(),
            "masks (background_mask)": lambda: masks.background_mask(alpha, grow_px=6, feather_px=4),
            "rembg segmenter": lambda: editor.segmenter.subject_alpha(picture),
            "Editor.finish": lambda: editor.finish(prepared[0], generated),
            "pure Python loop": python_loop,
        }
        print("ms per generated image, 4 per call, with a second thread running:")
        for name, work in beside.items():
            stop = threading.Event()

            def busy(work: Callable[[], object] | None = work) -> None:
                while work is not None and not stop.is_set():
                    work()

            thread = threading.Thread(target=busy)
            thread.start()
            times = []
            for _ in range(3):
                start = time.perf_counter()
                editor.generate(prepared, batch_size=4)
                times.append(1000 * (time.perf_counter() - start) / len(prepared))
            stop.set()
            thread.join()
            print(f"  {name:28s} " + " ".join(f"{t:6.0f}" for t in times))
    return 0


if __name__ == "__main__":
    sys.exit(main())
