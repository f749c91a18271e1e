"""A tiny random Stable Diffusion inpainting pipeline, saved to disk like a real checkpoint.

The weights are random, so the pictures are noise, but every piece is the real one:
the fixture writes the folder with ``save_pretrained`` and the tests load it through
``AutoPipelineForInpainting.from_pretrained``, the same call a Hugging Face model id takes.
Nothing is downloaded and no weights are committed; building takes well under a second.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from regionedit.inpaint_diffusers import DiffusersInpainter

#: UNet latent size 32 and a VAE that halves once give a native generation size of 64 px.
TINY_NATIVE_SIZE = 64
_MAX_TOKENS = 77


def byte_level_vocab() -> dict[str, int]:
    """CLIP's two special tokens plus every GPT-2 byte character, alone and word-final.

    With no merges, BPE splits each word into single bytes, so any prompt tokenizes
    without unknown tokens and no vocabulary file is needed.
    """
    from tokenizers.pre_tokenizers import ByteLevel

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for char in sorted(ByteLevel.alphabet()):  # the GPT-2 byte table; sorted for stable ids
        vocab[char] = len(vocab)
        vocab[char + "</w>"] = len(vocab)
    return vocab


def build_tiny_sd_inpainting(folder: Path, *, seed: int = 0) -> Path:
    """Write a random, tiny SD inpainting pipeline to ``folder`` and return the folder."""
    import torch
    from diffusers import (
        AutoencoderKL,
        PNDMScheduler,
        StableDiffusionInpaintPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(seed)  # same random weights every run, so pixel comparisons are stable
    unet = UNet2DConditionModel(
        sample_size=TINY_NATIVE_SIZE // 2,
        in_channels=9,  # 4 noisy latents + 4 masked-image latents + 1 mask: the inpainting layout
        out_channels=4,
        block_out_channels=(8, 16),
        layers_per_block=1,
        norm_num_groups=8,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=(2, 4),
    )
    vae = AutoencoderKL(
        sample_size=TINY_NATIVE_SIZE,
        in_channels=3,
        out_channels=3,
        block_out_channels=(8, 16),
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        norm_num_groups=8,
    )
    tokenizer = CLIPTokenizer(vocab=byte_level_vocab(), merges=[], model_max_length=_MAX_TOKENS)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=2,
            max_position_embeddings=_MAX_TOKENS,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    scheduler = PNDMScheduler(skip_prk_steps=True, steps_offset=1)
    pipe = StableDiffusionInpaintPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_sd_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder holding a tiny random SD inpainting pipeline (native size 64 px)."""
    return build_tiny_sd_inpainting(tmp_path_factory.mktemp("tiny-sd") / "tiny-sd-inpainting")


@pytest.fixture(scope="session")
def tiny_inpainter(tiny_sd_path: Path) -> DiffusersInpainter:
    """A loaded :class:`regionedit.inpaint_diffusers.DiffusersInpainter` on the tiny pipeline, on CPU."""
    inpainter = DiffusersInpainter(tiny_sd_path, device="cpu")
    inpainter.load()
    return inpainter
