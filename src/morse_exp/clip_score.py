"""CLIP score of text-to-image samples against their prompts.

CLIP score (Hessel et al. 2021; as torchmetrics' ``CLIPScore`` computes it) is
100 x max(0, cosine similarity of CLIP's image and text embeddings), averaged over the
samples. It is computed here with transformers' ``CLIPModel`` directly: torchmetrics 1.9
expects ``get_image_features`` to return a tensor, which transformers 5 no longer does. The
CLIP model and its processor load from a local directory or the hub cache, never downloaded
here: the paper-grade choice is a local copy of ``openai/clip-vit-large-patch14``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from morse_exp.metrics import to_uint8


class ClipScoreError(RuntimeError):
    """The CLIP model cannot be loaded (message is one line)."""


class ClipScore:
    """Mean CLIP score of images against their prompts.

    Args:
        model: a local CLIP directory (``CLIPModel`` + ``CLIPProcessor`` files) or a hub id
            already in the local cache.
        batch_size: images per CLIP forward pass.
        device: where CLIP runs (default: CPU).
    """

    def __init__(self, model: str, batch_size: int = 64, device: str | None = None) -> None:
        self.model = model
        self.batch_size = batch_size
        self.device = device or "cpu"
        self._model: Any = None
        self._processor: Any = None

    def check(self) -> None:
        """Load CLIP now, so that a missing model fails before any sampling."""
        if self._model is None:
            self._model, self._processor = self._load()
            self._model.to(self.device)

    def _load(self) -> tuple[Any, Any]:
        from transformers import CLIPModel, CLIPProcessor

        try:
            return (CLIPModel.from_pretrained(self.model, local_files_only=True).eval(),
                    CLIPProcessor.from_pretrained(self.model, local_files_only=True))
        except (OSError, ValueError) as error:
            raise ClipScoreError(
                f"clip_score.model={self.model} cannot be loaded ({type(error).__name__}): this machine "
                "cannot download it; point clip_score.model at a local copy of a CLIP model "
                "(e.g. openai/clip-vit-large-patch14), or drop the CLIP score with ~clip_score"
            ) from error

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, prompts: Sequence[str]) -> float:
        """Mean CLIP score of ``images`` (N, 3, H, W) in [-1, 1] against ``prompts`` (N strings)."""
        if len(images) != len(prompts):
            raise ValueError(f"{len(images)} images but {len(prompts)} prompts: give one prompt per image")
        self.check()
        scores = []
        for start in range(0, len(images), self.batch_size):
            batch = to_uint8(images[start : start + self.batch_size]).permute(0, 2, 3, 1).numpy()
            inputs = self._processor(
                text=list(prompts[start : start + self.batch_size]), images=list(batch),
                return_tensors="pt", padding=True, truncation=True,
            ).to(self.device)
            output = self._model(**inputs)  # image_embeds, text_embeds: (B, D), unit norm
            cosine = (output.image_embeds * output.text_embeds).sum(dim=-1)
            scores.append(100 * cosine.clamp(min=0).float().cpu())
        return float(torch.cat(scores).mean())
