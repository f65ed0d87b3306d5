"""Fidelity to the unaccelerated run: PSNR and SSIM of each sample against Dash's own sample.

For a deterministic sampler, sample i of any schedule starts from the same initial noise as
sample i of the reference (Dash at every step, ``reference_steps`` steps), so the two can be
compared pixel by pixel. PSNR uses the peak-to-peak range of images in [-1, 1] (2.0) and is
averaged over samples in dB; a sample identical to its reference scores ``PSNR_CAP`` (100 dB)
instead of infinity, so that every value is a finite number. SSIM is torchmetrics' (Gaussian
window of 11 pixels, or the largest odd size that fits smaller images; data range 2.0),
averaged over samples. LPIPS is left out: its network weights cannot be fetched offline.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics.functional.image import structural_similarity_index_measure

from morse_exp.schedulers import STOCHASTIC_SCHEDULERS

PSNR_CAP = 100.0


def check_deterministic(scheduler_name: str) -> None:
    """Refuse a stochastic sampler: its samples have no deterministic reference."""
    if scheduler_name in STOCHASTIC_SCHEDULERS:
        raise ValueError(
            f"fidelity needs a deterministic sampler, but scheduler={scheduler_name} draws fresh "
            f"noise at every step: use ddim, dpm_solver, unipc or euler, or set fidelity.enabled=false"
        )


def psnr(samples: Tensor, reference: Tensor) -> float:
    """Mean PSNR in dB of (N, C, H, W) samples against references, both in [-1, 1]."""
    if samples.shape != reference.shape:
        raise ValueError(f"samples {tuple(samples.shape)} and reference {tuple(reference.shape)} differ in shape")
    mse = (samples.float() - reference.float()).pow(2).flatten(1).mean(dim=1)
    per_sample = 10 * torch.log10(4.0 / mse.clamp(min=1e-30))
    return float(per_sample.clamp(max=PSNR_CAP).mean())


def ssim(samples: Tensor, reference: Tensor) -> float:
    """Mean SSIM of (N, C, H, W) samples against references, both in [-1, 1] (1 = identical)."""
    size = min(11, *samples.shape[-2:])
    size -= 1 - size % 2  # odd window
    return float(structural_similarity_index_measure(
        samples.float(), reference.float(), data_range=2.0, kernel_size=size, reduction="elementwise_mean"
    ))
