"""Every tiny diffusion part has an effect, so the engine's tests can see it: a tokenizer that
maps every prompt alike, a ControlNet with zero outputs or a LoRA that skips the text encoder
would make the oracle test (test_oracle.py) pass whatever the code does."""

from __future__ import annotations

import torch

from pipelines.convert import pil_to_tensor
from pipelines.refiner import RefineJob, refine


def test_different_prompts_give_different_ids_and_embeddings(tiny_engine):
    ref = tiny_engine.refiner()
    a, b = (ref.tokenizer(p).input_ids for p in ("a cat on grass", "a dog on sand"))
    assert a != b
    ref.set_lora_scale(1.0)
    emb, _ = ref.encode_prompt("a cat on grass", "blurry, noise")
    assert (emb[0] - emb[1]).abs().max() > 0.1  # the negative and positive halves differ


def test_the_controlnet_is_live(tiny_engine):
    ref = tiny_engine.refiner()
    g = torch.Generator().manual_seed(0)
    x = torch.randn((1, 4, 16, 16), generator=g)
    emb = torch.randn((1, 77, 32), generator=g)
    control = torch.rand((1, 3, 32, 32), generator=g)
    with torch.inference_mode():
        down, mid = ref.controlnet(x, 500, encoder_hidden_states=emb, controlnet_cond=control, return_dict=False)
        other, _ = ref.controlnet(x, 500, encoder_hidden_states=emb, controlnet_cond=1 - control, return_dict=False)
    assert min(r.abs().max().item() for r in down) > 0 and mid.abs().max() > 0
    assert max((r - o).abs().max().item() for r, o in zip(down, other, strict=True)) > 1e-2


def test_the_lora_adapts_the_text_encoder_at_its_scale(tiny_engine):
    ref = tiny_engine.refiner()
    assert ref.text_encoder_has_lora
    embs = []
    for scale in (0.0, 0.5, 1.0):
        ref.set_lora_scale(scale)
        embs.append(ref.encode_prompt("a cat", "")[0].clone())
    assert (embs[0] - embs[1]).abs().max() > 1e-3 and (embs[1] - embs[2]).abs().max() > 1e-3


def test_guidance_and_controlnet_scale_change_the_result(tiny_engine, photo):
    ref = tiny_engine.refiner()
    base = tiny_engine.config.settings[1.0]

    def run(**change):
        settings = type(base)(**{**vars(base), **change})
        job = RefineJob(
            bases={"b": pil_to_tensor(photo.rgb)},
            scales={1.0: ["b"]},
            prompt="a cat",
            negative_prompt="blurry",
            seed=1,
            settings={1.0: settings},
            color_fix=False,
            keep_latents=True,
        )
        return refine(ref, job).latents[(1.0, "b")]

    plain = run()
    assert (run(guidance_scale=1.0) - plain).abs().max() > 1e-3
    assert (run(controlnet_scale=0.2) - plain).abs().max() > 1e-3
