"""Every inpainting family at its real size: time to build, time of one edit, peak GPU memory.

    .venv/bin/python -m bench.gpu_families --output results/gpu-families.json   # a CUDA GPU
    .venv/bin/python -m bench.gpu_families --families sdxl,flux --steps 8 --output f.json
    .venv/bin/python -m bench.gpu_families --tiny --output tiny.json              # CPU, seconds

No hub is needed: each family's pipeline is built with random weights from the real model's
component configs (:data:`REAL`, written from the published ``config.json`` files of the
preset's repository; the parameter counts they give are printed and recorded, so a config that
drifted from the real model shows up as a count that does not match the model card). Time and
memory do not depend on the weights' values. The tokenizers are the tests' byte-level ones
(``tests/support/tiny_families.py``); the embedding tables have the real vocabulary sizes.

Per family: the pipeline is built directly on the device in the family's dtype (``build_s``:
random initialisation, which says nothing about reading real weights from disk), handed to
``DiffusersInpainter.from_pipeline``, and one edit of a real photo at the family's native size
runs through ``DiffusersInpainter.inpaint`` (``edit_s``), after a 1-step warm-up edit at a
quarter of that size. Peak memory is ``torch.cuda.max_memory_allocated`` over the build and the edit, and
``weights_gb`` the parameters' own bytes. ``--through-disk`` instead saves each pipeline
with ``save_pretrained`` and loads it through ``DiffusersInpainter(folder)``, the path a hub id
takes (``load_s``); it needs the weights' size in free disk space. ``--tiny`` builds the test
suite's tiny configs on CPU and always goes through disk: a smoke test of this script.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .workspace import REPO_ROOT, TARGET, photo

# -- the real models' component configs -------------------------------------------------------
_CLIP_L = dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_attention_heads=12,
               num_hidden_layers=12, hidden_act="quick_gelu", projection_dim=768)
_CLIP_G = dict(vocab_size=49408, hidden_size=1280, intermediate_size=5120,
               num_attention_heads=20, num_hidden_layers=32, hidden_act="gelu",
               projection_dim=1280)
_T5_XXL = dict(vocab_size=32128, d_model=4096, d_ff=10240, d_kv=64, num_heads=64, num_layers=24,
               relative_attention_num_buckets=32, relative_attention_max_distance=128,
               feed_forward_proj="gated-gelu")
_SD_VAE = dict(block_out_channels=(128, 256, 512, 512),
               down_block_types=("DownEncoderBlock2D",) * 4,
               up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=2)
_FLUX_VAE = dict(_SD_VAE, latent_channels=16, sample_size=1024, scaling_factor=0.3611,
                 shift_factor=0.1159, use_quant_conv=False, use_post_quant_conv=False)
_QWEN3_4B = dict(vocab_size=151936, hidden_size=2560, intermediate_size=9728,
                 num_hidden_layers=36, num_attention_heads=32, num_key_value_heads=8,
                 head_dim=128, max_position_embeddings=40960, tie_word_embeddings=True,
                 rope_parameters={"rope_type": "default", "rope_theta": 1000000.0})
_FLOW_DYNAMIC = dict(shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                     base_image_seq_len=256, max_image_seq_len=4096)

#: family -> component -> constructor arguments of the preset's real model (see the presets)
REAL: dict[str, dict[str, dict[str, Any]]] = {
    "sd15": {  # stable-diffusion-v1-5/stable-diffusion-inpainting, safety checker left out
        "unet": dict(sample_size=64, in_channels=9, out_channels=4, cross_attention_dim=768),
        "vae": dict(_SD_VAE, latent_channels=4, sample_size=512),
        "text_encoder": _CLIP_L,
        "scheduler": dict(skip_prk_steps=True, steps_offset=1, beta_schedule="scaled_linear",
                          beta_start=0.00085, beta_end=0.012),
    },
    "sdxl": {  # diffusers/stable-diffusion-xl-1.0-inpainting-0.1
        "unet": dict(sample_size=128, in_channels=9, out_channels=4,
                     block_out_channels=(320, 640, 1280),
                     down_block_types=("DownBlock2D", "CrossAttnDownBlock2D",
                                       "CrossAttnDownBlock2D"),
                     up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                     transformer_layers_per_block=(1, 2, 10), attention_head_dim=(5, 10, 20),
                     cross_attention_dim=2048, use_linear_projection=True,
                     addition_embed_type="text_time", addition_time_embed_dim=256,
                     projection_class_embeddings_input_dim=2816),
        "vae": dict(_SD_VAE, latent_channels=4, sample_size=1024, scaling_factor=0.13025,
                    force_upcast=True),
        "text_encoder": _CLIP_L,
        "text_encoder_2": _CLIP_G,
        "scheduler": dict(steps_offset=1, timestep_spacing="leading",
                          beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012),
    },
    "sd3": {  # stabilityai/stable-diffusion-3.5-large
        "transformer": dict(sample_size=128, patch_size=2, in_channels=16, out_channels=16,
                            num_layers=38, attention_head_dim=64, num_attention_heads=38,
                            joint_attention_dim=4096, caption_projection_dim=2432,
                            pooled_projection_dim=2048, pos_embed_max_size=192,
                            qk_norm="rms_norm"),
        "vae": dict(_FLUX_VAE, scaling_factor=1.5305, shift_factor=0.0609),
        "text_encoder": _CLIP_L,
        "text_encoder_2": _CLIP_G,
        "text_encoder_3": _T5_XXL,
        "scheduler": dict(shift=3.0),
    },
    "flux": {  # black-forest-labs/FLUX.1-dev
        "transformer": dict(patch_size=1, in_channels=64, num_layers=19, num_single_layers=38,
                            attention_head_dim=128, num_attention_heads=24,
                            joint_attention_dim=4096, pooled_projection_dim=768,
                            guidance_embeds=True, axes_dims_rope=(16, 56, 56)),
        "vae": _FLUX_VAE,
        "text_encoder": _CLIP_L,
        "text_encoder_2": _T5_XXL,
        "scheduler": _FLOW_DYNAMIC,
    },
    "qwen-image": {  # Qwen/Qwen-Image
        "transformer": dict(patch_size=2, in_channels=64, out_channels=16, num_layers=60,
                            attention_head_dim=128, num_attention_heads=24,
                            joint_attention_dim=3584, axes_dims_rope=(16, 56, 56)),
        "vae": dict(base_dim=96, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2,
                    temperal_downsample=[False, True, True]),
        "text_encoder": {  # Qwen2.5-VL-7B-Instruct
            "text_config": dict(vocab_size=152064, hidden_size=3584, intermediate_size=18944,
                                num_hidden_layers=28, num_attention_heads=28,
                                num_key_value_heads=4, max_position_embeddings=128000,
                                rope_parameters={"rope_type": "default", "rope_theta": 1e6,
                                                 "mrope_section": [16, 24, 24]}),
            "vision_config": dict(depth=32, hidden_size=1280, intermediate_size=3420,
                                  num_heads=16, out_hidden_size=3584, patch_size=14,
                                  window_size=112, fullatt_block_indexes=[7, 15, 23, 31]),
        },
        "scheduler": dict(shift=1.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=0.9,
                          base_image_seq_len=256, max_image_seq_len=8192, shift_terminal=0.02),
    },
    "z-image": {  # Tongyi-MAI/Z-Image-Turbo
        "transformer": dict(all_patch_size=(2,), all_f_patch_size=(1,), in_channels=16,
                            dim=3840, n_layers=30, n_refiner_layers=2, n_heads=30, n_kv_heads=30,
                            cap_feat_dim=2560, axes_dims=[32, 48, 48],
                            axes_lens=[1536, 512, 512]),
        "vae": _FLUX_VAE,
        "text_encoder": _QWEN3_4B,
        "scheduler": dict(shift=3.0),
    },
    "flux2-klein": {  # black-forest-labs/FLUX.2-klein-base-9B: text encoder Qwen3-8B
        "transformer": dict(patch_size=1, in_channels=128, num_layers=8, num_single_layers=24,
                            attention_head_dim=128, num_attention_heads=32,
                            joint_attention_dim=12288, axes_dims_rope=(32, 32, 32, 32),
                            guidance_embeds=False),
        "vae": dict(block_out_channels=(128, 256, 512, 512), layers_per_block=2,
                    latent_channels=32),
        "text_encoder": dict(vocab_size=151936, hidden_size=4096, intermediate_size=12288,
                             num_hidden_layers=36, num_attention_heads=32,
                             num_key_value_heads=8, head_dim=128,
                             max_position_embeddings=40960,
                             rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}),
        "scheduler": _FLOW_DYNAMIC,
    },
    "chroma": {  # lodestones/Chroma1-HD
        "transformer": dict(patch_size=1, in_channels=64, num_layers=19, num_single_layers=38,
                            attention_head_dim=128, num_attention_heads=24,
                            joint_attention_dim=4096, axes_dims_rope=(16, 56, 56),
                            approximator_num_channels=64, approximator_hidden_dim=5120,
                            approximator_layers=5),
        "vae": _FLUX_VAE,
        "text_encoder": _T5_XXL,
        "scheduler": _FLOW_DYNAMIC,
    },
}


def _tests_on_path() -> None:
    tests = str(REPO_ROOT / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)


def parameter_counts(family: str, configs: dict[str, Any] | None = None) -> dict[str, int]:
    """Parameters per component of the family built from ``configs`` (:data:`REAL`'s when
    None), counted on torch's meta device: no memory is allocated, so any size is quick."""
    import torch

    _tests_on_path()
    from support.tiny_families import build_pipeline

    with torch.device("meta"):
        pipe = build_pipeline(family, configs if configs is not None else REAL[family])
    return {
        name: sum(p.numel() for p in component.parameters())
        for name, component in pipe.components.items()
        if isinstance(component, torch.nn.Module)
    }


# -- one family ---------------------------------------------------------------------------------
def _photo() -> Any:
    """A real photo (scikit-image's astronaut, 512 px); a gradient where scikit-image is not
    installed: pixels do not change time or memory."""
    try:
        return photo("astronaut")
    except ImportError:
        import numpy as np
        from PIL import Image

        ramp = np.linspace(0, 255, 512, dtype=np.uint8)
        return Image.fromarray(np.dstack([np.tile(ramp, (512, 1))] * 3), "RGB")


def _timed(inpainter: Any, request: Any, torch: Any, device: str) -> tuple[float, Any]:
    """Seconds one request takes, and its image (or the InpaintError that stopped it)."""
    start = time.perf_counter()
    (out,) = inpainter.inpaint_many([request])
    _synchronize(torch, device)
    return round(time.perf_counter() - start, 2), out


def _synchronize(torch: Any, device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _peak_gb(torch: Any, device: str) -> float | None:
    """Peak GPU memory allocated since the last reset, GB; the process's peak RSS on CPU."""
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 1e9
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9  # kB on Linux


def _build_on(torch: Any, family: str, configs: dict[str, Any], device: str, dtype: str) -> Any:
    """The family's random pipeline, created directly on ``device`` in ``dtype``."""
    from support.tiny_families import build_pipeline

    previous = torch.get_default_dtype()
    torch.set_default_dtype(getattr(torch, dtype))
    try:
        with torch.device(device):
            return build_pipeline(family, configs)
    finally:
        torch.set_default_dtype(previous)


def measure_family(
    family: str, configs: dict[str, Any], *, device: str, steps: int, through_disk: bool,
    folder: Path, side: int | None = None,
) -> dict[str, Any]:
    """Build (or save and load) one family's pipeline, then time a warm-up and one edit."""
    import numpy as np
    import torch

    from regionedit.inpaint import InpaintRequest
    from regionedit.inpaint_diffusers import DiffusersInpainter
    from regionedit.presets import FAMILIES

    preset = FAMILIES[family]
    dtype = "float32" if device == "cpu" else preset.dtype
    row: dict[str, Any] = {"family": family, "model": preset.model, "dtype": dtype,
                           "device": device}
    counts = parameter_counts(family, configs)
    row["parameters"] = counts
    row["parameters_b"] = round(sum(counts.values()) / 1e9, 3)
    row["weights_gb"] = round(sum(counts.values()) * (4 if dtype == "float32" else 2) / 1e9, 2)
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()

    start = time.perf_counter()
    pipe = _build_on(torch, family, configs, device, dtype)
    _synchronize(torch, device)
    row["build_s"] = round(time.perf_counter() - start, 2)
    if through_disk:
        saved = folder / family
        pipe.save_pretrained(saved)
        del pipe
        gc.collect()
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
        start = time.perf_counter()
        inpainter = DiffusersInpainter(saved, device=device, dtype=dtype, local_files_only=True)
        inpainter.load()
        _synchronize(torch, device)
        row["load_s"] = round(time.perf_counter() - start, 2)
    else:
        inpainter = DiffusersInpainter.from_pipeline(pipe, model=preset.model)
        del pipe
    row["pipeline"] = inpainter.describe()["pipeline"]
    if device.startswith("cuda"):
        row["loaded_gb"] = round(torch.cuda.memory_allocated() / 1e9, 2)

    native = inpainter.native_size
    side = side or native
    image = _photo()
    mask = np.zeros((image.height, image.width), np.float32)
    mask[image.height // 4 : 3 * image.height // 4, image.width // 4 : 3 * image.width // 4] = 1
    warm_up = InpaintRequest(image, mask, TARGET, seed=0, steps=1, max_side=max(side // 4, 64))
    row["warmup_s"], _ = _timed(inpainter, warm_up, torch, device)
    request = InpaintRequest(image, mask, TARGET, seed=0, steps=steps, max_side=side)
    row["edit_s"], out = _timed(inpainter, request, torch, device)
    row.update(steps=steps, native_size=native, side=side)
    if isinstance(out, Exception):
        # random half-precision weights can overflow to NaN; the edit then ran twice (the
        # inpainter's retry with the next seed), which edit_s includes
        row["edit_problem"] = str(out).splitlines()[0]
    else:
        row["output_size"] = list(out.size)
    row["peak_gb"] = round(_peak_gb(torch, device) or 0.0, 2)
    info = inpainter.describe()
    row["guidance"] = {"kind": info.get("guidance"), "scale": info.get("default_guidance_scale")}
    del inpainter, out
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return row


def _machine(device: str) -> dict[str, Any]:
    import diffusers
    import torch
    import transformers

    machine: dict[str, Any] = {
        "platform": platform.platform(), "python": platform.python_version(),
        "torch": torch.__version__, "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
    }
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(torch.device(device))
        machine.update(gpu=props.name, gpu_memory_gb=round(props.total_memory / 1e9, 1))
    return machine


def main(argv: list[str] | None = None) -> int:
    from regionedit.presets import FAMILIES

    parser = argparse.ArgumentParser(prog="python -m bench.gpu_families", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, required=True, help="JSON file to write")
    parser.add_argument("--families", default=",".join(REAL),
                        help=f"comma-separated (default: all: {','.join(REAL)})")
    parser.add_argument("--tiny", action="store_true",
                        help="the tests' tiny configs on CPU, through disk: a smoke test")
    parser.add_argument("--device", help="default: cuda (cpu with --tiny)")
    parser.add_argument("--steps", type=int, help="denoising steps of the edit (default 8; "
                        "2 with --tiny); memory does not depend on it, time per step does not "
                        "depend on the count")
    parser.add_argument("--side", type=int, help="long side generated at (default: the "
                        "family's native size; 64 with --tiny)")
    parser.add_argument("--through-disk", action="store_true",
                        help="save each pipeline and load it back through DiffusersInpainter")
    parser.add_argument("--workspace", type=Path,
                        help="folder for saved pipelines (default: a temporary folder)")
    args = parser.parse_args(argv)
    families = [name.strip() for name in args.families.split(",") if name.strip()]
    unknown = [name for name in families if name not in REAL]
    if unknown:
        parser.error(f"unknown families {unknown}; known: {', '.join(REAL)}")
    device = args.device or ("cpu" if args.tiny else "cuda")
    steps = args.steps or (2 if args.tiny else 8)
    _tests_on_path()
    from support.tiny_families import TINY

    from regionedit._diffusers_api import quiet_loading

    report: dict[str, Any] = {
        "what": "one edit per inpainting family, random weights at "
                + ("the tests' tiny sizes" if args.tiny else "the real models' sizes"),
        "machine": _machine(device), "steps": steps, "through_disk": args.through_disk or args.tiny,
        "families": [],
    }
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.workspace or Path(scratch)
        for name in families:
            configs = TINY[name] if args.tiny else REAL[name]
            print(f"{name}: {FAMILIES[name].model} ...", flush=True)
            try:
                with quiet_loading():
                    row = measure_family(name, configs, device=device, steps=steps,
                                         through_disk=args.through_disk or args.tiny,
                                         folder=folder, side=args.side or (64 if args.tiny else None))
            except Exception as exc:  # one family failing (memory, a diffusers bug) is a result
                row = {"family": name, "error": f"{type(exc).__name__}: {exc}"[:2000]}
            report["families"].append(row)
            print("  " + json.dumps({k: v for k, v in row.items() if k != "parameters"}),
                  flush=True)
            args.output.parent.mkdir(parents=True, exist_ok=True)
            args.output.write_text(json.dumps(report, indent=1) + "\n")  # after each family
    failed = [row["family"] for row in report["families"] if "error" in row]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
