"""MorseModule's training examples: where the jump-point states come from."""

from __future__ import annotations

import pytest
import torch

from morse_exp.dot import Dot
from morse_exp.module import MorseModule
from morse_exp.schedule import JumpPattern
from morse_exp.schedulers import make_scheduler


def module_for(dash, jump_states: str) -> MorseModule:
    dot = Dot(dash, num_down=1, width=8, lora_rank=2, norm_groups=4)
    return MorseModule(dash, dot, lambda base_config: make_scheduler("ddim", base_config), JumpPattern(stride=2),
                       fine_steps=[6, 8], jump_states=jump_states)


def test_sampled_jump_states_come_from_noise_not_from_the_data(dash):
    images = torch.rand(2, 4, 1, 8, 8) * 2 - 1
    rollouts = {}
    for states in ("forward", "sampled"):
        module = module_for(dash, states)
        rollouts[states] = [module.rollout(batch, torch.Generator().manual_seed(3))[1] for batch in images]
    forward_a, forward_b = rollouts["forward"]
    sampled_a, sampled_b = rollouts["sampled"]
    assert not torch.equal(forward_a, forward_b)  # data + noise: the data matters
    assert torch.equal(sampled_a, sampled_b)  # Morse's sampler from noise: the data does not


def test_unknown_jump_states_are_refused_in_one_line(dash):
    with pytest.raises(ValueError, match="jump_states='trajectory' is invalid: use one of forward, sampled"):
        module_for(dash, "trajectory")
