"""DeepCache as a Dot: training-free reuse of Dash's deep features (after Ma et al., CVPR 2024).

A UNet with L levels has down blocks 0..L-1, a mid block and up blocks 0..L-1, where up block
L-1-l mirrors down block l. With branch depth d (1 <= d <= L), the *shallow* part is levels
0..d-1: ``conv_in``, down blocks 0..d-1, up blocks L-d..L-1 and ``conv_out``; the *deep* part
is everything in between (down blocks d.., the mid block, up blocks ..L-d-1). Its output, the
input of up block L-d, is the feature DeepCache keeps.

- At a Dash step (the sampler runs Dash inside :meth:`DeepCache.watching_dash`) a forward hook
  on the deep part's last module stores that feature.
- At a cached step (:meth:`DeepCache.forward`, called by the sampler where Morse calls Dot)
  Dash runs on the new input with every deep module's ``forward`` swapped, for that call only,
  for a pass-through that returns placeholders of the shapes the UNet's own loop expects; the
  deep part's last module returns the stored feature. So only the shallow part computes, on
  fresh skip connections, and no diffusers code is copied: any ``UNet2DModel`` or
  ``UNet2DConditionModel`` whose blocks return the standard (hidden, residuals) pairs works.

The sampler's stride is DeepCache's cache interval (a full step every K steps); the cost of a
cached step is measured like Dot's (Dash latency / cached-step latency = this method's N).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from torch import Tensor, nn

from morse_exp.dash import Dash
from morse_exp.schedule import JumpPattern


class DeepCache(nn.Module):
    """Cached-step noise estimates from Dash's shallow levels and its last stored deep feature.

    Args:
        dash: the Dash whose UNet is run (no weights are added or changed).
        depth: d, the number of outer UNet levels recomputed at a cached step (1 = the
            shallowest branch, the cheapest; L = everything but the mid block is recomputed).
        interval: the cache interval: a full Dash step every ``interval`` steps (1 = the
            baseline); ``pattern`` is the matching jump pattern.

    Raises:
        ValueError: if ``depth`` is not an integer in 1..L (1..L-1 for a UNet without a mid
            block), ``interval`` is not an integer >= 1, or the UNet's blocks are of a kind that
            carries an extra skip path.
    """

    def __init__(self, dash: Dash, depth: int = 1, interval: int = 3) -> None:
        super().__init__()
        if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
            raise ValueError(f"deepcache.interval={interval!r} is invalid: use an integer >= 1 (a full Dash step "
                             "every `interval` steps; 1 = the baseline)")
        unet = dash.unet
        levels = len(unet.down_blocks)
        deepest = levels if unet.mid_block is not None else levels - 1
        if isinstance(depth, bool) or not isinstance(depth, int) or not 1 <= depth <= deepest:
            raise ValueError(f"deepcache.depth={depth!r} is invalid: this UNet has {levels} levels, use a "
                             f"branch depth in 1..{deepest}")
        blocks = [*unet.down_blocks, *unet.up_blocks]
        if any(hasattr(block, "skip_conv") for block in blocks):
            raise ValueError("deepcache works on UNets whose blocks return (hidden, residuals); this UNet has "
                             "Skip*Block2D blocks with an extra skip path")
        self.dash = dash
        self.config = {"method": "deepcache", "depth": depth, "interval": interval}
        self.pattern = JumpPattern(stride=interval)
        self._deep_down = list(unet.down_blocks[depth:])
        self._deep_up = list(unet.up_blocks[: levels - depth])
        deep_mid = [unet.mid_block] if unet.mid_block is not None else []
        self._last_deep = self._deep_up[-1] if self._deep_up else unet.mid_block
        self._deep_rest = [*deep_mid, *self._deep_up[:-1]] if self._deep_up else []
        self._cache: Tensor | None = None
        self._watching = False
        self._last_deep.register_forward_hook(self._store)

    def _store(self, module: nn.Module, args: Any, output: Tensor) -> None:
        if self._watching:
            self._cache = output

    @contextmanager
    def watching_dash(self) -> Iterator[None]:
        """Inside the block, Dash calls store the deep feature that cached steps reuse."""
        self._watching = True
        try:
            yield
        finally:
            self._watching = False

    def forward(
        self, x_ts: Tensor, x_ti: Tensor, z_ts: Tensor, t_s: Tensor | float, t_i: Tensor | float,
        cond: dict[str, Any] | None = None,
    ) -> Tensor:
        """Residual to add to the last Dash estimate ``z_ts``: Dash's shallow levels at
        ``(x_ti, t_i)`` on the stored deep feature, minus ``z_ts``; shapes (B, C, H, W).

        Raises:
            RuntimeError: if no Dash step has run inside :meth:`watching_dash` yet, or the
                stored feature's batch differs from ``x_ti``'s.
        """
        if self._cache is None or self._cache.shape[0] != x_ti.shape[0]:
            raise RuntimeError("deepcache: no stored deep feature for this batch; a Dash step must run inside "
                               "watching_dash() first")
        with self._deep_part_skipped():
            estimate = self.dash(x_ti, t_i, cond)
        return estimate - z_ts

    @contextmanager
    def _deep_part_skipped(self) -> Iterator[None]:
        cache = self._cache
        swapped: list[tuple[nn.Module, Callable[..., Any]]] = [
            *((block, _down_placeholder(block)) for block in self._deep_down),
            *((module, _hidden_placeholder) for module in self._deep_rest),
            (self._last_deep, lambda *args, **kwargs: cache),
        ]
        for module, forward in swapped:
            module.forward = forward
        try:
            yield
        finally:
            for module, _ in swapped:
                del module.forward  # back to the class's forward


def _hidden(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Tensor:
    return kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]


def _hidden_placeholder(*args: Any, **kwargs: Any) -> Tensor:
    """A skipped mid or up block: its input stands in for its (unused) output."""
    return _hidden(args, kwargs)


def _down_placeholder(block: nn.Module) -> Callable[..., tuple[Tensor, tuple[Tensor, ...]]]:
    """A skipped down block: (hidden, one placeholder per residual it would add), so the
    UNet's skip bookkeeping pairs the shallow up blocks with the shallow down blocks' residuals."""
    residuals = len(block.resnets) + len(getattr(block, "downsamplers", None) or [])

    def forward(*args: Any, **kwargs: Any) -> tuple[Tensor, tuple[Tensor, ...]]:
        hidden = _hidden(args, kwargs)
        return hidden, (hidden,) * residuals

    return forward
