"""Pretraining step time in fp32 vs bf16 autocast on this machine's CPU, measured in one run.

    OMP_NUM_THREADS=1 python benchmarks/pretrain_precision.py [architecture] [batch] [repeats]

One DDPM training step (forward, MSE to the noise, backward, AdamW) of ``conf/architecture/
<architecture>.yaml`` (default unet_emoji32) on random 32x32 inputs at ``batch`` (default 64);
the two precisions alternate, and the report is the ratio of their fastest steps, so a
machine's background load affects both alike. bf16 pays off on CPUs with bf16 units
(avx512_bf16 / AMX); ``trainer.precision=bf16-mixed`` is the Lightning setting that uses it.
"""

from __future__ import annotations

import sys
import time
from contextlib import nullcontext
from pathlib import Path

import hydra
import torch
from omegaconf import OmegaConf

CONF = Path(__file__).resolve().parents[1] / "conf" / "architecture"


def main(architecture: str = "unet_emoji32", batch: int = 64, repeats: int = 3) -> dict[str, float]:
    unet = hydra.utils.instantiate(OmegaConf.load(CONF / f"{architecture}.yaml"))
    optimizer = torch.optim.AdamW(unet.parameters(), lr=1e-4)
    size, channels = unet.config.sample_size, unet.config.in_channels
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(batch, channels, size, size, generator=generator)
    t = torch.randint(0, 1000, (batch,), generator=generator)
    contexts = {"fp32": nullcontext, "bf16": lambda: torch.autocast("cpu", dtype=torch.bfloat16)}

    def step(precision: str) -> float:
        start = time.perf_counter()
        with contexts[precision]():
            loss = torch.nn.functional.mse_loss(unet(x, t).sample.float(), x)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        return time.perf_counter() - start

    for precision in contexts:  # warm-up
        step(precision)
    times = {precision: [] for precision in contexts}
    for _ in range(repeats):
        for precision in contexts:
            times[precision].append(step(precision))
    best = {precision: min(values) for precision, values in times.items()}
    print(f"{architecture}, batch {batch}, {torch.get_num_threads()} thread(s): fp32 {best['fp32']:.2f} s/step, "
          f"bf16 {best['bf16']:.2f} s/step, fp32 / bf16 = {best['fp32'] / best['bf16']:.2f}")
    return best


if __name__ == "__main__":
    args = sys.argv[1:]
    main(*(args[:1]), *(int(a) for a in args[1:3]))
