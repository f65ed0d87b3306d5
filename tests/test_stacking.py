"""Morse stacked with DeepCache: which steps are cached, what Dot anchors on, and its N."""

from __future__ import annotations

import pytest
import torch
from test_deepcache import three_level_dash

from morse_exp.dot import Dot
from morse_exp.sampler import sample
from morse_exp.schedule import JumpPattern
from morse_exp.schedulers import make_scheduler
from morse_exp.seeding import sample_generators
from morse_exp.stacking import MorseDeepCache


def dash_and_dot():
    dash = three_level_dash()
    dot = Dot(dash, num_down=1, width=8, lora_rank=2, norm_groups=4).eval()
    torch.nn.init.normal_(dot.head.out.weight, std=0.05)  # a Dot whose residual is not zero
    return dash, dot


def run(dash, dot, schedule, callback=None):
    scheduler = make_scheduler("ddim", dash.scheduler_config)
    return sample(dash, scheduler, schedule, sample_generators(0, range(2)), dot=dot, callback=callback)


def test_interval_one_is_morse_bit_for_bit():
    dash, dot = dash_and_dot()
    stack = MorseDeepCache(dash, dot, stride=3, interval=1)
    assert stack.pattern == JumpPattern(stride=3)
    schedule = JumpPattern(stride=3).schedule(10)
    assert torch.equal(run(dash, stack, schedule)[0], run(dash, dot, schedule)[0])


def test_cached_steps_fall_on_morse_anchors_and_dot_builds_on_the_last_anchor():
    """Stride 2, interval 3: full Dash at 0 and 6, DeepCache at 2, 4 and 8, Dot at the odd
    steps, each anchored on the input of the step before it (full or cached)."""
    dash, dot = dash_and_dot()
    stack = MorseDeepCache(dash, dot, stride=2, interval=3)
    calls: list[tuple[str, torch.Tensor]] = []
    stack.deepcache.register_forward_hook(lambda module, args, out: calls.append(("cache", args[1])))
    dot.register_forward_hook(lambda module, args, out: calls.append(("dot", args[0])))
    inputs: list[torch.Tensor] = []  # inputs[i]: the sample entering step i (DDIM does not rescale it)
    first = dash.unet.register_forward_pre_hook(lambda module, args: inputs.append(args[0]) if not inputs else None)
    sources: list[str] = []

    def after_step(info):
        sources.append(info["source"])
        inputs.append(info["x"])

    run(dash, stack, stack.pattern.schedule(10), after_step)
    first.remove()
    assert sources == ["dash", "dot", "dot", "dot", "dot", "dot", "dash", "dot", "dot", "dot"]
    assert [kind for kind, _ in calls] == ["dot", "cache", "dot", "cache", "dot", "dot", "cache", "dot"]
    at_step = [1, 2, 3, 4, 5, 7, 8, 9]
    for (kind, x), step in zip(calls, at_step, strict=True):
        assert torch.equal(x, inputs[step if kind == "cache" else step - 1]), (kind, step)


def test_its_n_is_the_period_average_of_its_parts():
    dash, dot = dash_and_dot()
    stack = MorseDeepCache(dash, dot, stride=4, interval=2)
    n_dot, n_cache = 8.0, 2.0
    period = stack.pattern.schedule(8)  # 1 full Dash step, 1 cached, 6 Dot
    assert period.dash_calls == 1 and period.dot_calls == 7
    assert period.lsd(stack.speed_ratio(n_dot, n_cache)) == pytest.approx(1 + 1 / n_cache + 6 / n_dot)
    assert MorseDeepCache(dash, dot, stride=4, interval=1).speed_ratio(n_dot, n_cache) == pytest.approx(n_dot)


@pytest.mark.parametrize(("kwargs", "key"), [({"interval": 0}, "morse_deepcache.interval=0"),
                                             ({"stride": 2.5}, "jump_stride.stride=2.5"),
                                             ({"depth": 9}, "deepcache.depth=9")])
def test_bad_settings_are_one_line(kwargs, key):
    dash, dot = dash_and_dot()
    with pytest.raises(ValueError, match=f"^{key} is invalid") as error:
        MorseDeepCache(dash, dot, **{"stride": 2, **kwargs})
    assert "\n" not in str(error.value)


def test_a_dot_with_the_x0_base_is_refused_in_one_line():
    dash = three_level_dash()
    dot = Dot(dash, num_down=1, width=8, lora_rank=2, norm_groups=4, base="x0")
    with pytest.raises(ValueError, match=r"^morse_deepcache stacks a Dot with dot.base=eps, not dot.base=x0: "):
        MorseDeepCache(dash, dot, stride=2)
