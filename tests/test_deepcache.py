"""DeepCache as a Dot: cached steps run only the shallow levels on the stored deep feature."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DConditionModel, UNet2DModel
from torch import nn

from morse_exp.dash import Dash
from morse_exp.deepcache import DeepCache
from morse_exp.sampler import sample
from morse_exp.schedule import DashSchedule


def three_level_dash() -> Dash:
    torch.manual_seed(0)
    unet = UNet2DModel(
        sample_size=16, in_channels=3, out_channels=3, block_out_channels=(8, 16, 16), layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"), norm_num_groups=4, attention_head_dim=8,
    ).eval()
    return Dash(unet, dict(DDPMScheduler(num_train_timesteps=1000).config))


def text_dash() -> tuple[Dash, dict[str, torch.Tensor]]:
    torch.manual_seed(1)
    unet = UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, block_out_channels=(8, 16), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=12, norm_num_groups=4, attention_head_dim=4,
    ).eval()
    return Dash(unet, dict(DDPMScheduler(num_train_timesteps=1000).config)), {
        "encoder_hidden_states": torch.randn(2, 7, 12)}


def cases() -> list[tuple[Dash, dict | None, int]]:
    dash, text_dash_and_cond = three_level_dash(), text_dash()
    return [(dash, None, depth) for depth in (1, 2, 3)] + [(*text_dash_and_cond, depth) for depth in (1, 2)]


@pytest.mark.parametrize(("dash", "cond", "depth"), cases(), ids=["2d-d1", "2d-d2", "2d-d3", "cond-d1", "cond-d2"])
def test_cached_step_at_the_dash_input_reproduces_dash_exactly(dash: Dash, cond: dict | None, depth: int) -> None:
    """With the deep feature stored from the same input, the shallow recompute is Dash's own
    computation: the residual is exactly 0 (a misaligned skip connection would break it)."""
    cache = DeepCache(dash, depth)
    x = torch.randn(2, *dash.sample_shape)
    with cache.watching_dash():
        z = dash(x, 500, cond)
    assert torch.equal(cache(x, x, z, 500, 500, cond), torch.zeros_like(z))
    assert not any("forward" in vars(module) for module in dash.unet.modules())  # forwards restored


@pytest.mark.parametrize(("dash", "cond", "depth"), cases(), ids=["2d-d1", "2d-d2", "2d-d3", "cond-d1", "cond-d2"])
def test_cached_step_runs_only_the_shallow_levels(dash: Dash, cond: dict | None, depth: int) -> None:
    unet = dash.unet
    levels = len(unet.down_blocks)
    deep = [*unet.down_blocks[depth:], unet.mid_block, *unet.up_blocks[: levels - depth]]
    shallow = [*unet.down_blocks[:depth], *unet.up_blocks[levels - depth:]]
    calls: list[nn.Module] = []
    for block in deep + shallow:
        for resnet in block.resnets:
            resnet.register_forward_hook(lambda module, args, out, block=block: calls.append(block))
    cache = DeepCache(dash, depth)
    x, x_new = torch.randn(2, 2, *dash.sample_shape)
    with cache.watching_dash():
        z = dash(x, 500, cond)
    calls.clear()
    residual = cache(x, x_new, z, 500, 400, cond)
    assert calls and not any(block in deep for block in calls)
    assert {id(b) for b in calls} == {id(b) for b in shallow}
    estimate = z + residual
    assert not torch.allclose(estimate, z)  # the shallow levels see the new input and time
    assert not torch.allclose(estimate, dash(x_new, 400, cond), atol=1e-4)  # the deep part is stale


def test_interval_one_is_the_baseline_and_a_stride_uses_the_cache() -> None:
    dash = three_level_dash()
    cache = DeepCache(dash, 1)

    def run(stride: int, dot: nn.Module | None) -> torch.Tensor:
        generators = [torch.Generator().manual_seed(i) for i in range(3)]
        scheduler = DDIMScheduler.from_config(dash.scheduler_config)
        return sample(dash, scheduler, DashSchedule.from_stride(6, stride), generators, dot=dot)[0]

    assert torch.equal(run(1, cache), run(1, None))
    cached, reused, full = run(3, cache), run(3, None), run(1, None)
    assert not torch.allclose(cached, reused) and not torch.allclose(cached, full)


@pytest.mark.parametrize("depth", [0, 4, "1", True])
def test_branch_depth_outside_the_unet_is_refused(depth: object) -> None:
    with pytest.raises(ValueError, match=rf"^deepcache.depth={depth!r} is invalid: this UNet has 3 levels, use a "
                                         r"branch depth in 1\.\.3$"):
        DeepCache(three_level_dash(), depth)  # type: ignore[arg-type]


def test_cache_interval_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match=r"^deepcache.interval=0 is invalid: use an integer >= 1"):
        DeepCache(three_level_dash(), 1, interval=0)


def test_cached_step_without_a_stored_feature_is_an_error() -> None:
    dash = three_level_dash()
    x = torch.randn(2, *dash.sample_shape)
    with pytest.raises(RuntimeError, match="no stored deep feature"):
        DeepCache(dash, 1)(x, x, x, 500, 400)
