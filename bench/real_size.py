"""Generation at batch sizes with a real-size model: memory, and time per image.

    .venv/bin/python -m bench.real_size                          # 512 px, batch sizes 1 2 4 8
    .venv/bin/python -m bench.real_size --batch-sizes 1,4 --side 256 --device cuda

The tiny test model says nothing about memory: its activations are a few megabytes. This
builds, once, a random-weight inpainting pipeline with Stable Diffusion 1.5's dimensions from
config (UNet 320-640-1280-1280, VAE 128-256-512-512, a 12-layer CLIP text encoder with the
tests' byte-level vocabulary: 1.03 B parameters, 4.1 GB of float32 safetensors), saves it,
and loads it through ``DiffusersInpainter`` like any model folder. Each batch size then runs in a process of its
own: one ``inpaint_many`` call of that many images, ``--steps`` denoising steps.

Reported per batch size: seconds per image, and the memory the call added on top of the loaded
model: the peak RSS of the call (the high-water mark is reset after a small warm-up call that
pages the weights in) minus the RSS before it, on CPU; ``torch.cuda.max_memory_allocated`` minus the allocation before it, on CUDA.
Pixels do not matter for this (the weights are random), so the photo is any real one.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from .workspace import REPO_ROOT, photo

_MODEL_FOLDER = "sd15-size-random"


def build_sd15_size_pipeline(folder: Path) -> Path:
    """Save a random-weight SD 1.5-size inpainting pipeline to ``folder`` (once)."""
    if (folder / "model_index.json").exists():
        return folder
    sys.path.insert(0, str(REPO_ROOT / "tests"))
    import torch
    from diffusers import (
        AutoencoderKL,
        PNDMScheduler,
        StableDiffusionInpaintPipeline,
        UNet2DConditionModel,
    )
    from support.tiny_sd import byte_level_vocab
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)
    unet = UNet2DConditionModel(  # SD 1.5 inpainting's config; the rest are the defaults
        sample_size=64, in_channels=9, out_channels=4, cross_attention_dim=768
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(128, 256, 512, 512),
        layers_per_block=2,
        latent_channels=4,
        sample_size=512,
    )
    tokenizer = CLIPTokenizer(vocab=byte_level_vocab(), merges=[], model_max_length=77)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=768, intermediate_size=3072,
        num_attention_heads=12, num_hidden_layers=12, max_position_embeddings=77,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    ))
    pipe = StableDiffusionInpaintPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
        scheduler=PNDMScheduler(skip_prk_steps=True, steps_offset=1),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.save_pretrained(folder)
    return folder


def _rss_mb(field: str) -> float:
    """``VmRSS`` or ``VmHWM`` (the peak) of this process, from /proc, in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def one_call(
    model: Path, count: int, side: int, steps: int, device: str, vae_slicing: bool = True
) -> dict:
    """In this process: load ``model``, then time one call generating ``count`` images."""
    import numpy as np
    import torch

    from regionedit.inpaint_diffusers import DiffusersInpainter, InpaintRequest

    inpainter = DiffusersInpainter(
        model, device=device, local_files_only=True, vae_slicing=vae_slicing
    )
    inpainter.load()
    image = photo("astronaut").convert("RGB").resize((side, side))
    mask = np.zeros((side, side), np.float32)
    mask[side // 4 : 3 * side // 4, side // 4 : 3 * side // 4] = 1.0
    requests = [
        InpaintRequest(image, mask, f"a photo number {i}", seed=i, steps=steps, max_side=side)
        for i in range(count)
    ]
    # one small call first, so that the weights are paged in (safetensors are memory-mapped)
    # and one-time allocations are made before the measured call
    inpainter.inpaint_many([InpaintRequest(image, mask, "warm-up", seed=0, steps=1, max_side=64)])
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated() / 2**20
    else:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        before = _rss_mb("VmRSS")
    start = time.perf_counter()
    outputs = inpainter.inpaint_many(requests, batch_size=count)
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else _rss_mb("VmHWM")
    failed = [str(out) for out in outputs if isinstance(out, Exception)]
    return {
        "batch_size": count,
        "seconds_per_image": seconds / count,
        "memory_before_mb": before,
        "call_peak_mb": peak,
        "added_by_call_mb": peak - before,
        "failed": failed,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.real_size", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspace", type=Path, default=Path("/tmp/regionedit-bench-real"),
                        help="where the model is saved (4.1 GB; reused)")
    parser.add_argument("--batch-sizes", default="1,2,4,8")
    parser.add_argument("--side", type=int, default=512, help="generation size (default 512)")
    parser.add_argument("--steps", type=int, default=1, help="denoising steps (default 1)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-vae-slicing", dest="vae_slicing", action="store_false",
                        help="DiffusersInpainter(vae_slicing=False): the VAE takes the whole batch")
    parser.add_argument("--output", type=Path, help="also write the results here as JSON")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    model = args.workspace / _MODEL_FOLDER
    if args.child is not None:
        print(json.dumps(one_call(model, args.child, args.side, args.steps, args.device,
                                       args.vae_slicing)))
        return 0

    build_sd15_size_pipeline(model)
    results = []
    for count in (int(n) for n in args.batch_sizes.split(",")):
        command = [sys.executable, "-m", "bench.real_size", "--child", str(count),
                   "--workspace", str(args.workspace), "--side", str(args.side),
                   "--steps", str(args.steps), "--device", args.device]
        if not args.vae_slicing:
            command.append("--no-vae-slicing")
        done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True)
        if done.returncode != 0:
            # a process killed for memory ends here: that is a result too
            results.append({"batch_size": count, "returncode": done.returncode,
                            "stderr_tail": done.stderr[-2000:]})
        else:
            results.append(json.loads(done.stdout.strip().splitlines()[-1]))
        row = results[-1]
        if "seconds_per_image" in row:
            print(f"batch {count:>2}: {row['seconds_per_image']:7.2f} s/image, call added "
                  f"{row['added_by_call_mb']:8.0f} MB (before {row['memory_before_mb']:.0f} MB)",
                  flush=True)
        else:
            print(f"batch {count:>2}: process ended with {row['returncode']}", flush=True)
    report = {"side": args.side, "steps": args.steps, "device": args.device,
              "vae_slicing": args.vae_slicing, "runs": results}
    if args.output:
        args.output.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
