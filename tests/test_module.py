"""MorseModule's training examples: where the jump-point states come from."""

from __future__ import annotations

import copy

import pytest
import torch

from morse_exp.dot import Dot
from morse_exp.module import MorseModule
from morse_exp.schedulers import make_scheduler


def module_for(dash, jump_states: str) -> MorseModule:
    dot = Dot(dash, num_down=1, width=8, lora_rank=2, norm_groups=4)
    return MorseModule(dash, dot, lambda base_config: make_scheduler("ddim", base_config), max_gap=2,
                       fine_steps=[6, 8], jump_states=jump_states)


def test_sampled_jump_states_come_from_noise_not_from_the_data(dash):
    images = torch.rand(2, 4, 1, 8, 8) * 2 - 1
    rollouts = {}
    for states in ("forward", "sampled"):
        module = module_for(copy.deepcopy(dash), states)  # one Dot (one LoRA adapter) per Dash
        rollouts[states] = [module.rollout(batch, torch.Generator().manual_seed(3))[1] for batch in images]
    forward_a, forward_b = rollouts["forward"]
    sampled_a, sampled_b = rollouts["sampled"]
    assert not torch.equal(forward_a, forward_b)  # data + noise: the data matters
    assert torch.equal(sampled_a, sampled_b)  # Morse's sampler from noise: the data does not


def test_unknown_jump_states_are_refused_in_one_line(dash):
    with pytest.raises(ValueError, match="jump_states='trajectory' is invalid: use one of forward, sampled"):
        module_for(dash, "trajectory")


def test_each_group_rolls_out_up_to_max_gap_minus_one_dot_steps(dash):
    """(n, s) per group: Dot runs at s+1 .. min(s+K-1, n-1), every gap up to K - 1 trained."""
    dot = Dot(dash, num_down=1, width=8, lora_rank=2, norm_groups=4)
    module = MorseModule(dash, dot, lambda base_config: make_scheduler("ddim", base_config), max_gap=3,
                         fine_steps=[4, 8])
    batch_sizes = []
    dot.register_forward_hook(lambda _m, inputs, _o: batch_sizes.append(len(inputs[0])))
    images = torch.rand(6, 1, 8, 8) * 2 - 1
    dot_mse, reuse_mse = module.rollout(images, torch.Generator().manual_seed(0), draws=[(6, 0), (6, 4), (8, 2)])
    # groups of 2 samples: 2 Dot steps after s=0, 1 after s=4 (n=6 ends), 2 after s=2
    assert batch_sizes == [2, 2, 2, 2, 2]
    assert torch.isfinite(dot_mse) and torch.isfinite(reuse_mse)


def test_step_counts_are_drawn_log_uniformly_within_the_range(dash):
    dot = Dot(dash, num_down=1, width=8, lora_rank=2, norm_groups=4)
    module = MorseModule(dash, dot, lambda base_config: make_scheduler("ddim", base_config), max_gap=2,
                         fine_steps=[4, 64])
    generator = torch.Generator().manual_seed(0)
    draws = [module.draw(generator)[0] for _ in range(2000)]
    assert min(draws) == 4 and max(draws) == 64
    below_16 = sum(n < 16 for n in draws) / len(draws)
    assert 0.4 < below_16 < 0.6  # log-uniform: 4..16 is half of 4..64


@pytest.mark.parametrize(("key", "value", "message"), [
    ("fine_steps", [8], r"fine_steps=\[8\] is invalid: give a range \[lo, hi\]"),
    ("fine_steps", [9, 4], r"fine_steps=\[9, 4\] is invalid"),
    ("max_gap", 1, r"max_gap=1 is invalid: .*jump_stride of 1"),
    ("draws_per_batch", 0, r"module.draws_per_batch=0 is invalid"),
])
def test_bad_training_ranges_are_refused(dash, key, value, message):
    dot = Dot(dash, num_down=1, width=8, lora_rank=2, norm_groups=4)
    kwargs = {"max_gap": 2, "fine_steps": [4, 8], key: value}
    with pytest.raises(ValueError, match=message):
        MorseModule(dash, dot, lambda base_config: make_scheduler("ddim", base_config), **kwargs)


def test_a_dot_for_several_samplers_draws_one_per_group_and_rolls_it_out(dash):
    dot = Dot(dash, num_down=1, width=8, lora_rank=2, norm_groups=4)
    factories = [lambda base_config, name=name: make_scheduler(name, base_config) for name in ("ddim", "dpm_solver")]
    mixed = MorseModule(dash, dot, factories, max_gap=3, fine_steps=[4, 8])
    generator = torch.Generator().manual_seed(0)
    draws = [mixed.draw(generator) for _ in range(200)]
    assert {len(d) for d in draws} == {3} and {d[2] for d in draws} == {0, 1}
    single = MorseModule(dash, dot, factories[:1], max_gap=3, fine_steps=[4, 8])
    generator = torch.Generator().manual_seed(0)
    assert single.draw(generator) == draws[0][:2]  # one sampler: (n, s) only, k is never drawn
    assert {len(single.draw(generator)) for _ in range(20)} == {2}
    images = torch.rand(4, 1, 8, 8) * 2 - 1
    reuse = [mixed.rollout(images, torch.Generator().manual_seed(1), draws=[(8, 0, k)])[1] for k in (0, 1, 0)]
    assert torch.equal(reuse[0], reuse[2]) and not torch.equal(reuse[0], reuse[1])  # the sampler is used


def test_relative_loss_is_one_for_reuse_and_weighs_every_step_alike(dash):
    """loss="relative": each Dot step's MSE over reuse's. An untrained Dot (residual 0) is reuse:
    exactly 1 whatever the steps' error sizes; a Dot off by a constant is scored per step, so its
    relative error is the mean of the per-step ratios, not the ratio of the means."""
    dot = Dot(dash, num_down=1, width=8, lora_rank=2, norm_groups=4)
    module = MorseModule(dash, dot, lambda base_config: make_scheduler("ddim", base_config), max_gap=3,
                         fine_steps=[6, 8], loss="relative")
    images = torch.rand(4, 1, 8, 8) * 2 - 1
    draws = [(6, 0), (8, 5)]
    relative, reuse_mse = module.rollout(images, torch.Generator().manual_seed(0), draws=draws, relative=True)
    assert relative.item() == pytest.approx(1.0, abs=1e-6) and reuse_mse > 0
    with torch.no_grad():
        dot.head.out.bias.fill_(0.5)  # now every step is off by 0.5 more than reuse
    generator = torch.Generator().manual_seed(0)  # the groups' draws, in rollout's order
    ratios = torch.cat([torch.div(*module.stretch_errors(images[rows], None, n, s, generator))
                        for (n, s), rows in zip(draws, (slice(0, 2), slice(2, 4)), strict=True)])
    relative, _ = module.rollout(images, torch.Generator().manual_seed(0), draws=draws, relative=True)
    absolute, _ = module.rollout(images, torch.Generator().manual_seed(0), draws=draws)
    assert relative.item() == pytest.approx(ratios.mean().item(), rel=1e-5) and relative.item() > 1.5
    assert absolute.item() > reuse_mse.item()
    assert relative.requires_grad


def test_unknown_loss_is_refused_in_one_line(dash):
    dot = Dot(dash, num_down=1, width=8, lora_rank=2, norm_groups=4)
    with pytest.raises(ValueError, match="module.loss='l1' is invalid: use one of absolute, relative"):
        MorseModule(dash, dot, lambda base_config: make_scheduler("ddim", base_config), max_gap=2, loss="l1")
