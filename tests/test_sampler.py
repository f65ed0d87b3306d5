"""The one sampling loop: equal to diffusers' pipelines, to reuse, and to Dash under an oracle Dot."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import DDIMPipeline, DDIMScheduler, DDPMPipeline, DDPMScheduler, DPMSolverMultistepScheduler
from diffusers.utils.torch_utils import randn_tensor

from morse_exp.dot import Dot, OracleDot, ReuseDot
from morse_exp.sampler import sample
from morse_exp.schedule import DashSchedule
from morse_exp.schedulers import SCHEDULERS, make_scheduler
from morse_exp.seeding import sample_generators

STEPS = 8


def _as_pipeline_images(x: torch.Tensor) -> np.ndarray:
    return (x / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).numpy()


@pytest.mark.parametrize(
    ("pipeline_class", "scheduler_class", "name"),
    [(DDPMPipeline, DDPMScheduler, "ddpm"), (DDIMPipeline, DDIMScheduler, "ddim")],
)
def test_every_step_dash_equals_diffusers_pipeline(dash, training_config, pipeline_class, scheduler_class, name):
    pipeline = pipeline_class(unet=dash.unet, scheduler=scheduler_class.from_config(training_config))
    pipeline.set_progress_bar_config(disable=True)
    expected = pipeline(
        batch_size=4, generator=sample_generators(3, range(4)), num_inference_steps=STEPS, output_type="np"
    ).images
    ours, stats = sample(
        dash, make_scheduler(name, training_config), DashSchedule.every_step(STEPS), sample_generators(3, range(4))
    )
    assert np.abs(_as_pipeline_images(ours) - expected).max() <= 1e-6
    assert (stats.dash_calls, stats.dot_calls) == (STEPS, 0)


def test_ddim_consistent_clipping_is_a_config_option_equal_to_diffusers_step_argument(dash, training_config):
    """scheduler.use_clipped_model_output=true: eps re-derived from the clipped x0, as diffusers'
    DDIMPipeline(use_clipped_model_output=True); it changes the samples when clip_sample bites."""
    pipeline = DDIMPipeline(unet=dash.unet, scheduler=DDIMScheduler.from_config(training_config))
    pipeline.set_progress_bar_config(disable=True)
    expected = pipeline(batch_size=4, generator=sample_generators(3, range(4)), num_inference_steps=STEPS,
                        output_type="np", use_clipped_model_output=True).images
    consistent, _ = sample(dash, make_scheduler("ddim", training_config, use_clipped_model_output=True),
                           DashSchedule.every_step(STEPS), sample_generators(3, range(4)))
    plain, _ = sample(dash, make_scheduler("ddim", training_config), DashSchedule.every_step(STEPS),
                      sample_generators(3, range(4)))
    assert training_config["clip_sample"]
    assert np.abs(_as_pipeline_images(consistent) - expected).max() <= 1e-6
    assert np.abs(_as_pipeline_images(plain) - expected).max() > 1e-3


def test_every_step_dash_equals_plain_dpm_solver_loop(dash, training_config):
    scheduler = DPMSolverMultistepScheduler.from_config(training_config)
    scheduler.set_timesteps(STEPS)
    x = randn_tensor((3, 1, 8, 8), generator=sample_generators(5, range(3)))
    with torch.no_grad():
        for t in scheduler.timesteps:
            x = scheduler.step(dash.unet(x, t).sample, t, x).prev_sample
    ours, _ = sample(
        dash, make_scheduler("dpm_solver", training_config), DashSchedule.every_step(STEPS),
        sample_generators(5, range(3)),
    )
    assert (ours - x).abs().max() <= 1e-6


def _reuse_loop(dash, scheduler, num_steps, stride, generators):
    """Independent 'reuse the last Dash estimate' loop (the paper's eta = 0)."""
    scheduler.set_timesteps(num_steps)
    x = randn_tensor((len(generators), 1, 8, 8), generator=generators) * scheduler.init_noise_sigma
    last = None
    with torch.no_grad():
        for i, t in enumerate(scheduler.timesteps):
            if i % stride == 0:
                last = dash(scheduler.scale_model_input(x, t), t)
            x = scheduler.step(last, t, x, generator=generators).prev_sample
    return x


@pytest.mark.parametrize("name", ["ddpm", "ddim", "euler"])
def test_untrained_dot_equals_reuse_loop(dash, training_config, name):
    dot = Dot(dash, num_down=1, width=8, lora_rank=2, norm_groups=4)
    ours, stats = sample(
        dash, make_scheduler(name, training_config), DashSchedule.from_stride(STEPS, 3),
        sample_generators(1, range(3)), dot=dot,
    )
    expected = _reuse_loop(dash, make_scheduler(name, training_config), STEPS, 3, sample_generators(1, range(3)))
    assert torch.equal(ours, expected)
    assert (stats.dash_calls, stats.dot_calls) == (3, 5)


def test_an_untrained_x0_base_dot_is_reuse_under_unclipped_ddim_but_not_under_ddpm(dash, training_config):
    """The x0 base keeps Dash's data estimate: on a first-order deterministic step (DDIM without
    clipping) that is reuse itself; where each step adds fresh noise (DDPM) it is not."""
    dot = Dot(dash, num_down=1, width=8, lora_rank=2, norm_groups=4, base="x0")

    def run(name, dot=None):
        return sample(dash, make_scheduler(name, training_config, clip_sample=False), DashSchedule.from_stride(STEPS, 3),
                      sample_generators(1, range(3)), dot=dot)[0]

    assert (run("ddim", dot) - run("ddim")).abs().max() <= 1e-4
    assert (run("ddpm", dot) - run("ddpm")).abs().max() > 1e-2



@pytest.mark.parametrize("base", ["eps", "x0"])
def test_reuse_on_a_base_is_an_untrained_dot_of_that_base(dash, training_config, base):
    """evaluate's reuse (ReuseDot) samples exactly what an untrained Dot of the same base
    does; on "eps" that is the sampler's plain reuse (no Dot)."""
    def run(dot=None):
        return sample(dash, make_scheduler("ddpm", training_config), DashSchedule.from_stride(STEPS, 3),
                      sample_generators(1, range(3)), dot=dot)[0]

    reuse = run(ReuseDot(base))
    assert torch.equal(reuse, run(Dot(dash, num_down=1, width=8, lora_rank=2, norm_groups=4, base=base)))
    assert torch.equal(reuse, run()) == (base == "eps")

@pytest.mark.parametrize("name", list(SCHEDULERS))
@pytest.mark.parametrize("stride", [2, 3])
def test_oracle_dot_reproduces_every_step_dash(dash, training_config, name, stride):
    def run(schedule, dot=None):
        return sample(
            dash, make_scheduler(name, training_config), schedule, sample_generators(2, range(3)), dot=dot
        )[0]

    baseline = run(DashSchedule.every_step(STEPS))
    morse = run(DashSchedule.from_stride(STEPS, stride), OracleDot(dash))
    reuse = run(DashSchedule.from_stride(STEPS, stride))
    scale = baseline.abs().max().clamp(min=1)
    # equal up to float32 rounding: z_ts + (Dash(x_ti) - z_ts) is Dash(x_ti) within a few ulps
    # per step (1.2e-5 after 8 steps with AVX2 kernels), far below reuse's difference
    assert (morse - baseline).abs().max() / scale <= 1e-4
    assert (reuse - baseline).abs().max() / scale > 1e-2  # the oracle really does the work


def test_sample_is_independent_of_batch_size(dash, training_config):
    schedule = DashSchedule.from_stride(STEPS, 2)
    dot = Dot(dash, num_down=1, width=8, lora_rank=2, norm_groups=4)
    torch.nn.init.normal_(dot.head.out.weight, std=0.1)  # a non-zero Dot
    batch, _ = sample(dash, make_scheduler("ddpm", training_config), schedule, sample_generators(7, range(8)), dot=dot)
    for i in (0, 5):
        single, _ = sample(
            dash, make_scheduler("ddpm", training_config), schedule, sample_generators(7, [i]), dot=dot
        )
        assert torch.allclose(single[0], batch[i], atol=1e-5, rtol=0)
    other_seed, _ = sample(dash, make_scheduler("ddpm", training_config), schedule, sample_generators(8, [0]), dot=dot)
    assert not torch.allclose(other_seed[0], batch[0], atol=1e-2)


def test_callback_reports_every_step_with_its_source(dash, training_config):
    seen = []
    sample(
        dash, make_scheduler("ddim", training_config), DashSchedule.from_pattern(6, [0, 1, 4]),
        sample_generators(0, range(2)), callback=seen.append,
    )
    assert [s["i"] for s in seen] == list(range(6))
    assert [s["source"] for s in seen] == ["dash", "dash", "dot", "dot", "dash", "dot"]
    assert all(s["eps"].shape == (2, 1, 8, 8) for s in seen)


def test_guidance_keeps_one_anchor_per_branch(dash, training_config):
    """Unconditional and conditional halves each reuse their own Dash estimate."""
    anchors = []

    class RecordingDot(torch.nn.Module):
        def forward(self, x_ts, x_ti, z_ts, t_s, t_i, cond=None):
            anchors.append(z_ts.clone())
            return torch.zeros_like(z_ts)

    _, stats = sample(
        dash, make_scheduler("ddim", training_config), DashSchedule.from_stride(4, 2),
        sample_generators(0, range(2)), dot=RecordingDot(), cond=None, guidance_scale=3.0,
    )
    assert stats.dot_calls == 2 and len(anchors) == 2
    assert anchors[0].shape[0] == 4  # both branches of both samples


def test_unknown_scheduler_name_is_one_clear_line(training_config):
    with pytest.raises(ValueError, match=r"unknown scheduler 'heun'.*ddim"):
        make_scheduler("heun", training_config)


def test_stop_before_returns_the_state_the_full_loop_passes_through(dash, training_config):
    schedule = DashSchedule(8, [0, 2, 4, 6])
    states = []
    sample(dash, make_scheduler("dpm_solver", training_config), schedule, sample_generators(0, range(3)),
           callback=lambda step: states.append(step["x"]))
    scheduler = make_scheduler("dpm_solver", training_config)
    x, stats = sample(dash, scheduler, schedule, sample_generators(0, range(3)), stop_before=5)
    assert torch.equal(x, states[4]) and stats.dash_calls + stats.dot_calls == 5
    assert scheduler.step_index == 5  # ready to take step 5, multistep history included


@pytest.mark.parametrize("name", ["ddim", "dpm_solver", "euler"])
def test_trailing_spacing_gives_exactly_n_timesteps_where_diffusers_miscounts(training_config, name):
    """diffusers' trailing grid has n + 1 timesteps at n = 61 (the last one -1); ours has n,
    the same first n, and a normal n is untouched."""
    from morse_exp.schedulers import set_timesteps

    for steps in (60, 61, 103):
        raw = make_scheduler(name, training_config, timestep_spacing="trailing")
        raw.set_timesteps(steps)
        mended = make_scheduler(name, training_config, timestep_spacing="trailing")
        set_timesteps(mended, steps)
        assert len(mended.timesteps) == steps
        assert mended.timesteps.tolist() == raw.timesteps[:steps].tolist()
        assert len(raw.timesteps) == steps + (steps != 60)
