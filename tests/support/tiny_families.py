"""Random-weight inpainting pipelines of every family regionedit has a preset for, built from
config and saved to disk like a real checkpoint.

One builder per family turns a dictionary of component configs into the family's real
diffusers pipeline class, with tokenizers made here (no vocabulary files): :data:`TINY` holds
configs small enough that a 64 px edit takes a fraction of a second on CPU; the GPU benchmark
(``bench/gpu_families.py``) passes the real models' configs to the same builders. Weights are
random, so the pictures are noise, but every component, tokenizer and pipeline is the real one,
and the tests load the saved folder through ``DiffusersInpainter`` exactly as a hub id is
loaded.

Tokenizers: CLIP and Qwen use byte-level BPE vocabularies with no merges (every byte is a
token, so any prompt tokenizes); T5 a Unigram vocabulary of single characters.
"""

from __future__ import annotations

import copy
import string
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from .tiny_sd import byte_level_vocab

__all__ = [
    "FAMILY_NAMES",
    "TINY",
    "build_family",
    "build_pipeline",
    "clip_tokenizer",
    "qwen_tokenizer",
    "t5_tokenizer",
]

_CLIP_TOKENS = 77
#: the chat markers Qwen's tokenizers treat as single tokens
_QWEN_SPECIAL = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
#: enough of Qwen's chat template for the pipelines' ``apply_chat_template`` calls
_QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


# ---------------------------------------------------------------------------------- tokenizers
def clip_tokenizer() -> Any:
    """CLIP's tokenizer over a byte-level vocabulary (see ``tiny_sd.byte_level_vocab``)."""
    from transformers import CLIPTokenizer

    return CLIPTokenizer(vocab=byte_level_vocab(), merges=[], model_max_length=_CLIP_TOKENS)


def t5_tokenizer() -> Any:
    """T5's tokenizer over a Unigram vocabulary of single characters, word-initial or not."""
    from transformers import T5Tokenizer

    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -1.0)]
    for char in string.printable.strip():
        vocab += [(char, -2.0), ("\u2581" + char, -2.0)]
    return T5Tokenizer(vocab=vocab, extra_ids=0)


def qwen_tokenizer() -> Any:
    """Qwen2's tokenizer over a byte-level vocabulary plus the chat markers."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import Qwen2Tokenizer

    vocab = {char: index for index, char in enumerate(sorted(ByteLevel.alphabet()))}
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=[])
    tokenizer.add_special_tokens({"additional_special_tokens": list(_QWEN_SPECIAL[1:])})
    tokenizer.add_special_tokens({"eos_token": _QWEN_SPECIAL[0], "pad_token": _QWEN_SPECIAL[0]})
    tokenizer.chat_template = _QWEN_CHAT_TEMPLATE
    return tokenizer


# ---------------------------------------------------------------------------------- components
def _clip_text(config: Mapping[str, Any], tokenizer: Any, *, projection: bool = False) -> Any:
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    cls = CLIPTextModelWithProjection if projection else CLIPTextModel
    return cls(CLIPTextConfig(
        **{"vocab_size": len(tokenizer), "max_position_embeddings": _CLIP_TOKENS, **config},
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    ))


def _t5_encoder(config: Mapping[str, Any], tokenizer: Any) -> Any:
    from transformers import T5Config, T5EncoderModel

    return T5EncoderModel(T5Config(
        **{"vocab_size": len(tokenizer), **config},
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    ))


def _scheduler(cls: Any, config: Mapping[str, Any]) -> Any:
    """Schedulers keep their tables on the CPU, whatever default device the models are built on
    (the benchmark builds on the GPU, and counts parameters on the meta device)."""
    import torch

    with torch.device("cpu"):
        return cls(**config)


def _qwen_ids(tokenizer: Any) -> dict[str, int]:
    return {"pad_token_id": tokenizer.pad_token_id, "eos_token_id": tokenizer.eos_token_id,
            "bos_token_id": tokenizer.eos_token_id}


# ---------------------------------------------------------------------------------- families
def _sd15(c: Mapping[str, Any]) -> Any:
    from diffusers import (
        AutoencoderKL,
        PNDMScheduler,
        StableDiffusionInpaintPipeline,
        UNet2DConditionModel,
    )

    tokenizer = clip_tokenizer()
    return StableDiffusionInpaintPipeline(
        vae=AutoencoderKL(**c["vae"]),
        text_encoder=_clip_text(c["text_encoder"], tokenizer),
        tokenizer=tokenizer,
        unet=UNet2DConditionModel(**c["unet"]),
        scheduler=_scheduler(PNDMScheduler, c["scheduler"]),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def _sdxl(c: Mapping[str, Any]) -> Any:
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionXLInpaintPipeline,
        UNet2DConditionModel,
    )

    tokenizer = clip_tokenizer()
    return StableDiffusionXLInpaintPipeline(
        vae=AutoencoderKL(**c["vae"]),
        text_encoder=_clip_text(c["text_encoder"], tokenizer),
        text_encoder_2=_clip_text(c["text_encoder_2"], tokenizer, projection=True),
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
        unet=UNet2DConditionModel(**c["unet"]),
        scheduler=_scheduler(EulerDiscreteScheduler, c["scheduler"]),
        requires_aesthetics_score=False,
    )


def _sd3(c: Mapping[str, Any]) -> Any:
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        SD3Transformer2DModel,
        StableDiffusion3InpaintPipeline,
    )

    clip, t5 = clip_tokenizer(), t5_tokenizer()
    return StableDiffusion3InpaintPipeline(
        transformer=SD3Transformer2DModel(**c["transformer"]),
        scheduler=_scheduler(FlowMatchEulerDiscreteScheduler, c["scheduler"]),
        vae=AutoencoderKL(**c["vae"]),
        text_encoder=_clip_text(c["text_encoder"], clip, projection=True),
        tokenizer=clip,
        text_encoder_2=_clip_text(c["text_encoder_2"], clip, projection=True),
        tokenizer_2=clip,
        text_encoder_3=_t5_encoder(c["text_encoder_3"], t5),
        tokenizer_3=t5,
    )


def _flux(c: Mapping[str, Any]) -> Any:
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        FluxInpaintPipeline,
        FluxTransformer2DModel,
    )

    clip, t5 = clip_tokenizer(), t5_tokenizer()
    return FluxInpaintPipeline(
        scheduler=_scheduler(FlowMatchEulerDiscreteScheduler, c["scheduler"]),
        vae=AutoencoderKL(**c["vae"]),
        text_encoder=_clip_text(c["text_encoder"], clip),
        tokenizer=clip,
        text_encoder_2=_t5_encoder(c["text_encoder_2"], t5),
        tokenizer_2=t5,
        transformer=FluxTransformer2DModel(**c["transformer"]),
    )


def _qwen_image(c: Mapping[str, Any]) -> Any:
    from diffusers import (
        AutoencoderKLQwenImage,
        FlowMatchEulerDiscreteScheduler,
        QwenImageInpaintPipeline,
        QwenImageTransformer2DModel,
    )
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    tokenizer = qwen_tokenizer()
    text = {"vocab_size": len(tokenizer), **c["text_encoder"]["text_config"], **_qwen_ids(tokenizer)}
    config = Qwen2_5_VLConfig(text_config=text, vision_config=c["text_encoder"]["vision_config"])
    return QwenImageInpaintPipeline(
        scheduler=_scheduler(FlowMatchEulerDiscreteScheduler, c["scheduler"]),
        vae=AutoencoderKLQwenImage(**c["vae"]),
        text_encoder=Qwen2_5_VLForConditionalGeneration(config),
        tokenizer=tokenizer,
        transformer=QwenImageTransformer2DModel(**c["transformer"]),
    )


def _z_image(c: Mapping[str, Any]) -> Any:
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        ZImageInpaintPipeline,
        ZImageTransformer2DModel,
    )
    from transformers import Qwen3Config, Qwen3Model

    tokenizer = qwen_tokenizer()
    text = Qwen3Config(**{"vocab_size": len(tokenizer), **c["text_encoder"]}, **_qwen_ids(tokenizer))
    return ZImageInpaintPipeline(
        scheduler=_scheduler(FlowMatchEulerDiscreteScheduler, c["scheduler"]),
        vae=AutoencoderKL(**c["vae"]),
        text_encoder=Qwen3Model(text),
        tokenizer=tokenizer,
        transformer=ZImageTransformer2DModel(**c["transformer"]),
    )


def _flux2_klein(c: Mapping[str, Any]) -> Any:
    from diffusers import (
        AutoencoderKLFlux2,
        FlowMatchEulerDiscreteScheduler,
        Flux2KleinInpaintPipeline,
        Flux2Transformer2DModel,
    )
    from transformers import Qwen3Config, Qwen3ForCausalLM

    tokenizer = qwen_tokenizer()
    text = Qwen3Config(**{"vocab_size": len(tokenizer), **c["text_encoder"]}, **_qwen_ids(tokenizer))
    return Flux2KleinInpaintPipeline(
        scheduler=_scheduler(FlowMatchEulerDiscreteScheduler, c["scheduler"]),
        vae=AutoencoderKLFlux2(**c["vae"]),
        text_encoder=Qwen3ForCausalLM(text),
        tokenizer=tokenizer,
        transformer=Flux2Transformer2DModel(**c["transformer"]),
        **c.get("pipeline", {}),
    )


def _chroma(c: Mapping[str, Any]) -> Any:
    from diffusers import (
        AutoencoderKL,
        ChromaInpaintPipeline,
        ChromaTransformer2DModel,
        FlowMatchEulerDiscreteScheduler,
    )

    t5 = t5_tokenizer()
    return ChromaInpaintPipeline(
        scheduler=_scheduler(FlowMatchEulerDiscreteScheduler, c["scheduler"]),
        vae=AutoencoderKL(**c["vae"]),
        text_encoder=_t5_encoder(c["text_encoder"], t5),
        tokenizer=t5,
        transformer=ChromaTransformer2DModel(**c["transformer"]),
    )


_BUILDERS: dict[str, Callable[[Mapping[str, Any]], Any]] = {
    "sd15": _sd15,
    "sdxl": _sdxl,
    "sd3": _sd3,
    "flux": _flux,
    "qwen-image": _qwen_image,
    "z-image": _z_image,
    "flux2-klein": _flux2_klein,
    "chroma": _chroma,
}

#: the families, in the presets' order
FAMILY_NAMES = tuple(_BUILDERS)


# ---------------------------------------------------------------------------------- tiny sizes
#: A VAE of four tiny blocks: the real 8x downscale, so sizes must be multiples of 8 (16 where
#: latents are packed in 2x2 patches), as with the real models.
def _tiny_vae(latent_channels: int, **extra: Any) -> dict[str, Any]:
    return dict(
        block_out_channels=(8, 8, 8, 8),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1,
        latent_channels=latent_channels,
        norm_num_groups=8,
        sample_size=64,
        **extra,
    )


#: the 16-channel VAEs' latent normalisation (Flux's; SD3's is 1.5305 and 0.0609)
_FLOW_VAE = dict(use_quant_conv=False, use_post_quant_conv=False, scaling_factor=0.3611,
                 shift_factor=0.1159)
_TINY_CLIP = dict(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2)
_TINY_T5 = dict(d_model=32, d_ff=37, d_kv=8, num_heads=4, num_layers=2,
                relative_attention_num_buckets=8, feed_forward_proj="gated-gelu")
_TINY_QWEN_TEXT = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048)
_FLOW = dict(shift=3.0)

#: family name -> component name -> constructor arguments, small enough for CPU tests
TINY: dict[str, dict[str, dict[str, Any]]] = {
    "sd15": {
        "unet": dict(sample_size=8, in_channels=9, out_channels=4, block_out_channels=(8, 16),
                     layers_per_block=1, norm_num_groups=8, cross_attention_dim=32,
                     down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                     up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=(2, 4)),
        "vae": _tiny_vae(4),
        "text_encoder": _TINY_CLIP,
        "scheduler": dict(skip_prk_steps=True, steps_offset=1),
    },
    "sdxl": {
        # SDXL's micro-conditioning: 6 size numbers of 8 channels each plus the pooled 32
        "unet": dict(sample_size=8, in_channels=9, out_channels=4, block_out_channels=(32, 64),
                     layers_per_block=1, norm_num_groups=8, cross_attention_dim=64,
                     down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                     up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=(2, 4),
                     transformer_layers_per_block=(1, 2), use_linear_projection=True,
                     addition_embed_type="text_time", addition_time_embed_dim=8,
                     projection_class_embeddings_input_dim=80),
        "vae": _tiny_vae(4),
        "text_encoder": _TINY_CLIP,
        "text_encoder_2": {**_TINY_CLIP, "projection_dim": 32},
        "scheduler": dict(steps_offset=1, timestep_spacing="leading"),
    },
    "sd3": {
        # CLIP states (32 + 32) are padded up to T5's width, which the transformer reads
        # the pipeline insists on the real model's 16 latent channels
        "transformer": dict(sample_size=8, patch_size=2, in_channels=16, out_channels=16,
                            num_layers=1, attention_head_dim=8, num_attention_heads=4,
                            joint_attention_dim=64, caption_projection_dim=32,
                            pooled_projection_dim=64, pos_embed_max_size=16),
        "vae": _tiny_vae(16, **_FLOW_VAE),
        "text_encoder": {**_TINY_CLIP, "projection_dim": 32},
        "text_encoder_2": {**_TINY_CLIP, "projection_dim": 32},
        "text_encoder_3": {**_TINY_T5, "d_model": 64},
        "scheduler": _FLOW,
    },
    "flux": {
        # packed 2x2 latents: 4 latent channels become 16 transformer channels
        "transformer": dict(patch_size=1, in_channels=16, num_layers=1, num_single_layers=1,
                            attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32,
                            pooled_projection_dim=32, guidance_embeds=True,
                            axes_dims_rope=(4, 6, 6)),
        "vae": _tiny_vae(4, **_FLOW_VAE),
        "text_encoder": _TINY_CLIP,
        "text_encoder_2": _TINY_T5,
        "scheduler": _FLOW,
    },
    "qwen-image": {
        "transformer": dict(patch_size=2, in_channels=16, out_channels=4, num_layers=1,
                            attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32,
                            axes_dims_rope=(4, 6, 6)),
        "vae": dict(base_dim=8, z_dim=4, dim_mult=[1, 2, 4, 4], num_res_blocks=1,
                    temperal_downsample=[False, True, True],
                    latents_mean=[0.0] * 4, latents_std=[1.0] * 4),
        "text_encoder": {
            "text_config": {**_TINY_QWEN_TEXT,
                            "rope_parameters": {"rope_type": "default", "rope_theta": 1e6,
                                                "mrope_section": [2, 1, 1]}},
            "vision_config": dict(depth=1, hidden_size=16, intermediate_size=16, num_heads=2,
                                  out_hidden_size=32, fullatt_block_indexes=[0]),
        },
        "scheduler": _FLOW,
    },
    "z-image": {
        "transformer": dict(all_patch_size=(2,), all_f_patch_size=(1,), in_channels=4, dim=32,
                            n_layers=1, n_refiner_layers=1, n_heads=2, n_kv_heads=2,
                            cap_feat_dim=32, axes_dims=[8, 4, 4], axes_lens=[1024, 64, 64]),
        "vae": _tiny_vae(4, **_FLOW_VAE),
        "text_encoder": {**_TINY_QWEN_TEXT, "head_dim": 8},
        "scheduler": _FLOW,
    },
    "flux2-klein": {
        # the pipeline reads text layers 9, 18 and 27 and stacks them: 3 x 16 channels
        "transformer": dict(patch_size=1, in_channels=16, num_layers=1, num_single_layers=1,
                            attention_head_dim=16, num_attention_heads=2, joint_attention_dim=48,
                            timestep_guidance_channels=32, axes_dims_rope=(4, 4, 4, 4),
                            guidance_embeds=False),
        "vae": dict(block_out_channels=(8, 8, 8, 8), layers_per_block=1, latent_channels=4,
                    norm_num_groups=8, sample_size=64),
        "text_encoder": dict(hidden_size=16, intermediate_size=16, num_hidden_layers=28,
                             num_attention_heads=2, num_key_value_heads=1, head_dim=8,
                             max_position_embeddings=1024),
        "scheduler": _FLOW,
    },
    "chroma": {
        "transformer": dict(patch_size=1, in_channels=16, num_layers=1, num_single_layers=1,
                            attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32,
                            axes_dims_rope=(4, 6, 6), approximator_num_channels=8,
                            approximator_hidden_dim=16, approximator_layers=1),
        "vae": _tiny_vae(4, **_FLOW_VAE),
        "text_encoder": _TINY_T5,
        "scheduler": _FLOW,
    },
}


def build_pipeline(family: str, configs: Mapping[str, Any] | None = None, *, seed: int = 0) -> Any:
    """The family's inpainting pipeline with random weights, built from ``configs`` (component
    name -> constructor arguments; :data:`TINY`'s when None)."""
    import torch

    torch.manual_seed(seed)  # same random weights every run, so pixel comparisons are stable
    return _BUILDERS[family](copy.deepcopy(configs if configs is not None else TINY[family]))


def build_family(family: str, folder: Path, configs: Mapping[str, Any] | None = None) -> Path:
    """Save the family's random pipeline to ``folder`` with ``save_pretrained``; return it."""
    build_pipeline(family, configs).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_family_path(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """``tiny_family_path(name)``: the folder of that family's tiny pipeline, built on first
    request and shared by the whole session."""
    built: dict[str, Path] = {}
    root = tmp_path_factory.mktemp("tiny-families")

    def path(family: str) -> Path:
        if family not in built:
            built[family] = build_family(family, root / family)
        return built[family]

    return path
