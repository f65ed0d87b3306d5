"""Conditioning of a Dash: prompts through its text encoder(s), or class labels.

:class:`PromptEncoder` turns prompts into the keyword arguments a ``UNet2DConditionModel``
takes, the way diffusers' pipelines do it:

- one CLIP text encoder (Stable Diffusion v1.x): ``encoder_hidden_states`` = the encoder's
  last hidden state, (B, 77, D);
- two (SDXL): the penultimate hidden states of both encoders side by side, (B, 77, D1 + D2),
  plus ``added_cond_kwargs`` = the second encoder's pooled projection (B, P) and the size /
  crop ``time_ids`` (B, 6) of a full-resolution, uncropped image.

Every prompt is encoded on its own row, so a sample's conditioning never depends on the batch
it is in. With ``zeros_for_empty_prompt`` (SDXL's ``force_zeros_for_empty_prompt``) the
empty prompt, the unconditional branch of classifier-free guidance, is all zeros.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn


class PromptEncoder(nn.Module):
    """Prompts -> denoiser keyword arguments (frozen CLIP text encoder(s)).

    Args:
        text_encoders: one ``CLIPTextModel`` (SD) or ``[CLIPTextModel,
            CLIPTextModelWithProjection]`` (SDXL).
        tokenizers: the matching CLIP tokenizers.
        image_size: (height, width) in pixels of the decoded samples (SDXL's ``time_ids``).
        zeros_for_empty_prompt: encode "" as zeros (SDXL) instead of through the encoders.
    """

    def __init__(
        self,
        text_encoders: Sequence[nn.Module],
        tokenizers: Sequence[Any],
        image_size: tuple[int, int] | None = None,
        zeros_for_empty_prompt: bool = False,
    ) -> None:
        super().__init__()
        if len(text_encoders) not in (1, 2) or len(tokenizers) != len(text_encoders):
            raise ValueError(
                f"got {len(text_encoders)} text encoders and {len(tokenizers)} tokenizers: "
                "expected 1 + 1 (Stable Diffusion) or 2 + 2 (SDXL)"
            )
        self.text_encoders = nn.ModuleList(text_encoders).requires_grad_(False).eval()
        self.tokenizers = list(tokenizers)
        self.image_size = image_size
        self.zeros_for_empty_prompt = zeros_for_empty_prompt

    @property
    def is_sdxl(self) -> bool:
        return len(self.text_encoders) == 2

    @torch.no_grad()
    def forward(self, prompts: Sequence[str]) -> dict[str, Any]:
        """Conditioning of ``prompts`` (B strings), on the text encoders' device."""
        prompts = list(prompts)
        if not all(isinstance(p, str) for p in prompts):
            raise TypeError(f"prompts must be strings, got {sorted({type(p).__name__ for p in prompts})}")
        if not self.is_sdxl:
            return {"encoder_hidden_states": self._encode(0, prompts).last_hidden_state}
        first = self._encode(0, prompts, output_hidden_states=True)
        second = self._encode(1, prompts, output_hidden_states=True)
        hidden = torch.cat([first.hidden_states[-2], second.hidden_states[-2]], dim=-1)
        pooled = second.text_embeds
        if self.zeros_for_empty_prompt:
            keep = torch.tensor([p != "" for p in prompts], device=hidden.device)
            hidden = hidden * keep.view(-1, 1, 1).to(hidden.dtype)
            pooled = pooled * keep.view(-1, 1).to(pooled.dtype)
        height, width = self.image_size or (0, 0)
        time_ids = torch.tensor([[height, width, 0, 0, height, width]], device=hidden.device,
                                dtype=hidden.dtype).expand(len(prompts), -1)
        return {"encoder_hidden_states": hidden,
                "added_cond_kwargs": {"text_embeds": pooled, "time_ids": time_ids}}

    def _encode(self, index: int, prompts: list[str], **kwargs: Any) -> Any:
        tokenizer, encoder = self.tokenizers[index], self.text_encoders[index]
        ids = tokenizer(
            prompts, padding="max_length", max_length=tokenizer.model_max_length,
            truncation=True, return_tensors="pt",
        ).input_ids
        return encoder(ids.to(next(encoder.parameters()).device), **kwargs)

