"""Real-architecture diffusion cost: SD 1.5-sized UNet, ControlNet and VAE built from their
configs with random weights (no download), timing one guided denoising step (ControlNet +
UNet on a CFG batch) per tile size and batch of tiles, plus VAE encode/decode of one tile.

    .venv/bin/python bench/diffusion_cost.py                      # CPU: small grid
    .venv/bin/python bench/diffusion_cost.py --compare-dtypes fp32,bf16   # CPU bf16 vs fp32
    python bench/diffusion_cost.py --device cuda --dtype fp16 --tiles 512,768 --batches 1,4,8
"""

from __future__ import annotations

import argparse

import torch
from common import machine, median_time, table

from pipelines.device import pick_device

SD15_UNET = dict(
    sample_size=64,
    in_channels=4,
    out_channels=4,
    layers_per_block=2,
    block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=768,
    attention_head_dim=8,
)
SD15_VAE = dict(
    in_channels=3,
    out_channels=3,
    latent_channels=4,
    block_out_channels=(128, 256, 512, 512),
    layers_per_block=2,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    sample_size=512,
)


def build(device: torch.device, dtype: torch.dtype):
    from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(**SD15_UNET)
    controlnet = ControlNetModel.from_unet(unet)
    vae = AutoencoderKL(**SD15_VAE)
    mods = []
    for m in (unet, controlnet, vae):
        m = m.to(device, dtype).eval()
        if device.type == "cuda":
            m = m.to(memory_format=torch.channels_last)
        mods.append(m)
    return mods


def random_refiner(device: torch.device, dtype: torch.dtype):
    """A Refiner with SD 1.5-sized random parts (UNet, ControlNet, VAE, a 12-layer CLIP text
    encoder) and a random LoRA adapter, built in memory: the engine's real code path, no download."""
    import tempfile
    from pathlib import Path

    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from pipelines.refiner import LORA_ADAPTER, refiner_from_parts
    from testing.tiny import add_random_lora, assemble_pipeline, write_tokenizer

    unet, controlnet, vae = build(torch.device("cpu"), torch.float32)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            hidden_size=768,
            intermediate_size=3072,
            num_attention_heads=12,
            num_hidden_layers=12,
            vocab_size=49408,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        )
    )
    folder = Path(tempfile.mkdtemp())
    write_tokenizer(folder)
    tokenizer = CLIPTokenizer.from_pretrained(str(folder))
    pipe = assemble_pipeline(unet, vae, text_encoder, tokenizer)
    add_random_lora(unet, rank=16, adapter_name=LORA_ADAPTER)
    return refiner_from_parts(pipe, controlnet, device, dtype)


def full_pass(size: str, device: torch.device, dtype: torch.dtype, batch: int) -> None:
    """One diffusion pass (LoRA 1.0, the preset's settings) over a WxH base, tiles batched."""
    import time

    import presets
    from pipelines.refiner import RefineJob, refine, unet_call_counter
    from pipelines.tiling import blend_tiles

    w, h = (int(v) for v in size.split("x"))
    ref = random_refiner(device, dtype)
    calls = unet_call_counter(ref)
    s = presets.DIFFUSION_SETTINGS[1.0]

    def job_for(base: torch.Tensor) -> RefineJob:
        return RefineJob(
            bases={"bicubic": base},
            scales={1.0: ["bicubic"]},
            prompt="a photo",
            negative_prompt="blurry",
            seed=1,
            settings=presets.DIFFUSION_SETTINGS,
            batch_size=batch,
        )

    job, small = job_for(torch.rand(1, 3, h, w)), job_for(torch.rand(1, 3, 512, 512))
    refine(ref, small)  # warm-up (kernels, allocator)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    c0 = calls()
    timings: dict[str, float] = {}
    t = time.perf_counter()
    refine(ref, job, timings=timings)
    if device.type == "cuda":
        torch.cuda.synchronize()
    total = time.perf_counter() - t
    tiles = len(blend_tiles(h // 8, w // 8, s.tile_size // 8, s.tile_overlap // 8))
    steps = max(1, int(s.steps * s.denoise_strength))
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
    print(f"\n# Full diffusion pass, real SD 1.5 architecture (random weights), {w}×{h} output, {machine()}, {dtype}\n")
    print(
        table(
            ["tiles", "steps", "batch", "UNet calls", "total s", "diffusion s", "VAE enc+dec s", "peak GPU GiB"],
            [
                [
                    tiles,
                    steps,
                    batch,
                    calls() - c0,
                    f"{total:.1f}",
                    f"{timings.get('diffusion_1', 0):.1f}",
                    f"{timings.get('vae_encode', 0) + timings.get('vae_decode', 0):.1f}",
                    f"{peak:.1f}",
                ]
            ],
        )
    )


def dtype_ratio(device: torch.device, names: list[str], tile: int, rounds: int) -> None:
    """One guided step (ControlNet + UNet, CFG batch 2) per dtype, interleaved round by round
    (so drift of the machine's speed hits every dtype alike); medians and the speed-up."""
    import statistics
    import time

    from pipelines.device import DTYPES

    lat = tile // 8
    steps = {}
    for name in names:
        dtype = DTYPES[name]
        unet, controlnet, _ = build(device, dtype)
        x = torch.randn(2, 4, lat, lat, device=device, dtype=dtype)
        ctrl = torch.rand(2, 3, tile, tile, device=device, dtype=dtype)
        emb = torch.randn(2, 77, 768, device=device, dtype=dtype)

        def step(unet=unet, controlnet=controlnet, x=x, ctrl=ctrl, emb=emb) -> None:
            with torch.inference_mode():
                down, mid = controlnet(x, 500, encoder_hidden_states=emb, controlnet_cond=ctrl, return_dict=False)
                unet(
                    x,
                    500,
                    encoder_hidden_states=emb,
                    down_block_additional_residuals=down,
                    mid_block_additional_residual=mid,
                    return_dict=False,
                )

        steps[name] = step
    times: dict[str, list[float]] = {n: [] for n in names}
    for rnd in range(rounds + 1):  # round 0 warms up
        for name, step in steps.items():
            t = time.perf_counter()
            step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            if rnd:
                times[name].append(time.perf_counter() - t)
    med = {n: statistics.median(v) for n, v in times.items()}
    print(f"\n# One guided step at {tile} px (CFG batch 2), dtypes interleaved, {rounds} rounds, {machine()}\n")
    rows = [[n, f"{med[n]:.2f}", f"{med[names[0]] / med[n]:.2f}×"] for n in names]
    print(table(["dtype", "median s per step", f"speed vs {names[0]}"], rows))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--compare-dtypes", metavar="A,B", help="only: one step per dtype, interleaved (e.g. fp32,bf16)")
    p.add_argument("--rounds", type=int, default=3, help="rounds for --compare-dtypes")
    p.add_argument("--device")
    p.add_argument("--dtype")
    p.add_argument("--tiles", default="512", help="tile sizes in output pixels")
    p.add_argument("--batches", default="1,2", help="tiles per forward pass")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--full-pass", metavar="WxH", help="also time one whole engine diffusion pass at this output size")
    p.add_argument("--full-batch", type=int, default=8, help="tiles per forward pass in --full-pass")
    args = p.parse_args()
    device, dtype = pick_device(args.device, args.dtype)
    if args.compare_dtypes:
        dtype_ratio(device, args.compare_dtypes.split(","), int(args.tiles.split(",")[0]), args.rounds)
        return
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    unet, controlnet, vae = build(device, dtype)
    n_params = sum(p.numel() for m in (unet, controlnet) for p in m.parameters())
    rows = []
    for tile in (int(t) for t in args.tiles.split(",")):
        lat = tile // 8
        for batch in (int(b) for b in args.batches.split(",")):
            x = torch.randn(2 * batch, 4, lat, lat, device=device, dtype=dtype)
            ctrl = torch.rand(2 * batch, 3, tile, tile, device=device, dtype=dtype)
            emb = torch.randn(2 * batch, 77, 768, device=device, dtype=dtype)
            t = torch.tensor(500, device=device)

            def step() -> None:
                with torch.inference_mode():
                    down, mid = controlnet(x, t, encoder_hidden_states=emb, controlnet_cond=ctrl, return_dict=False)
                    unet(
                        x,
                        t,
                        encoder_hidden_states=emb,
                        down_block_additional_residuals=down,
                        mid_block_additional_residual=mid,
                        return_dict=False,
                    )

            sec = median_time(step, repeats=args.repeats, warmup=1, sync=sync)
            rows.append(
                [tile, batch, f"{sec * 1e3:.0f}", f"{sec * 1e3 / batch:.0f}", f"{batch * tile * tile / 1e6 / sec:.2f}"]
            )
        img = torch.rand(1, 3, tile, tile, device=device, dtype=dtype) * 2 - 1
        with torch.inference_mode():
            enc = median_time(lambda: vae.encode(img), repeats=args.repeats, warmup=1, sync=sync)
            z = torch.randn(1, 4, lat, lat, device=device, dtype=dtype)
            dec = median_time(lambda: vae.decode(z), repeats=args.repeats, warmup=1, sync=sync)
        rows.append([tile, "VAE", f"enc {enc * 1e3:.0f} / dec {dec * 1e3:.0f}", "", ""])
    print(
        f"# SD 1.5-sized diffusion step (UNet + ControlNet, {n_params / 1e6:.0f} M parameters, CFG ×2) on {machine()}, {dtype}\n"
    )
    print(table(["tile px", "tiles/batch", "ms per step", "ms per tile-step", "output MP·steps/s"], rows))
    if args.full_pass:
        del unet, controlnet, vae
        full_pass(args.full_pass, device, dtype, args.full_batch)


if __name__ == "__main__":
    main()
