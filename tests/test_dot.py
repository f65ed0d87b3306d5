"""Dot shares Dash's tensors, trains only its own blocks and LoRA, and leaves Dash untouched."""

from __future__ import annotations

import pytest
import torch

from morse_exp.checkpoints import load_dot_weights, save_dot
from morse_exp.dash import Dash
from morse_exp.dot import Dot, base_estimate
from morse_exp.schedulers import make_scheduler


def _inputs(batch=3, size=8):
    torch.manual_seed(1)
    x_ts, x_ti, z_ts = (torch.randn(batch, 1, size, size) for _ in range(3))
    return x_ts, x_ti, z_ts, torch.tensor(600), torch.tensor(500)


def test_dash_attached_to_a_dot_is_bit_identical_to_the_bare_model(training_config, make_unet):
    bare = Dash(make_unet(seed=4), training_config)
    shared = Dash(make_unet(seed=4), training_config)
    dot = Dot(shared, num_down=1, width=8, lora_rank=4, norm_groups=4)
    for layer in dot.lora_layers:  # non-zero adapters, so "off" really has to mean off
        torch.nn.init.normal_(layer.lora_B["default"].weight)
    x, t = torch.randn(4, 1, 8, 8), torch.tensor([10, 200, 500, 999])
    with torch.no_grad():
        dot(*_inputs())
        assert torch.equal(shared(x, t), bare(x, t))


def test_shared_parameters_are_the_same_tensors(dash):
    before = {name: p.data_ptr() for name, p in dash.unet.named_parameters()}
    dot = Dot(dash, num_down=1, width=8, lora_rank=2, norm_groups=4)
    body = dict(dot.dash.unet.named_parameters())
    for name, pointer in before.items():
        shared_name = name if name in body else name.replace(".weight", ".base_layer.weight").replace(
            ".bias", ".base_layer.bias"
        )
        assert body[shared_name].data_ptr() == pointer, name
    assert dot.dash is dash


def test_trainable_parameters_are_exactly_lora_and_new_blocks(dash):
    dot = Dot(dash, num_down=2, width=8, lora_rank=2, norm_groups=4)
    names = [name for name, _ in dot.trainable_parameters()]
    lora = [n for n in names if ".lora_" in n]
    new = [n for n in names if not n.startswith("dash.")]
    assert lora and new and sorted(lora + new) == sorted(names)
    assert all(n.split(".")[0] in {"time_proj", "time_embed", "stem", "down", "up", "head"} for n in new)
    frozen = [n for n, p in dot.named_parameters() if n.startswith("dash.") and ".lora_" not in n]
    assert frozen and not any(dict(dot.named_parameters())[n].requires_grad for n in frozen)


def test_an_optimiser_step_changes_dot_but_not_dash(dash):
    dot = Dot(dash, num_down=1, width=8, lora_rank=2, norm_groups=4)
    dash_before = {n: p.detach().clone() for n, p in dash.unet.named_parameters() if ".lora_" not in n}
    dot_before = {n: p.detach().clone() for n, p in dot.trainable_parameters()}
    optimizer = torch.optim.AdamW([p for _, p in dot.trainable_parameters()], lr=1e-2)
    x_ts, x_ti, z_ts, t_s, t_i = _inputs()
    for _ in range(2):  # the zero head opens after step 1, then LoRA gets gradients too
        optimizer.zero_grad()
        (dot(x_ts, x_ti, z_ts, t_s, t_i) - 1).pow(2).mean().backward()
        optimizer.step()
    for name, value in dash_before.items():
        assert torch.equal(dict(dash.unet.named_parameters())[name], value), name
    changed = [n for n, p in dot.trainable_parameters() if not torch.equal(p, dot_before[n])]
    assert any(".lora_" in n for n in changed) and any(n.startswith("head.") for n in changed)


def test_untrained_dot_returns_zero_residual(dash):
    dot = Dot(dash, num_down=2, width=8, lora_rank=2, norm_groups=4)
    with torch.no_grad():
        residual = dot(*_inputs())
    assert residual.shape == (3, 1, 8, 8) and torch.count_nonzero(residual) == 0


def test_dot_body_runs_at_reduced_resolution(dash):
    dot = Dot(dash, num_down=2, width=8, lora_rank=2, norm_groups=4)
    shapes = []
    hook = dash.unet.mid_block.register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape[-2:])))
    with torch.no_grad():
        dot(*_inputs())
        dash(torch.randn(3, 1, 8, 8), 500)
    hook.remove()
    assert shapes == [(1, 1), (4, 4)]  # Dot's body at 8/4/2, Dash's at 8/2


@pytest.mark.parametrize("num_down", [0, 3])
def test_num_down_too_large_for_the_sample_size_is_refused(dash, num_down):
    with pytest.raises(ValueError, match=rf"dot.num_down={num_down} is invalid for 8x8 samples.*2\^\(m \+ 1\)"):
        Dot(dash, num_down=num_down, width=8, lora_rank=2, norm_groups=4)


def test_lora_targets_matching_nothing_are_refused(dash):
    with pytest.raises(ValueError, match=r"dot.lora_targets=\[.no_such_layer.\].*not found"):
        Dot(dash, num_down=1, width=8, lora_rank=2, norm_groups=4, lora_targets=["no_such_layer"])


@pytest.mark.parametrize("num_down", [1, 2])
def test_up_path_mirrors_the_down_path_with_a_time_conditioned_block_at_full_resolution(
    training_config, make_unet, num_down
):
    """m up blocks, each a ResNet block that sees the time embedding; the last runs at H x W."""
    dash = Dash(make_unet(seed=0, sample_size=16) if num_down == 2 else make_unet(seed=0), training_config)
    dot = Dot(dash, num_down=num_down, width=8, lora_rank=2, norm_groups=4)
    assert len(dot.up) == len(dot.down) == num_down
    size = dash.sample_shape[-1]
    resolutions = []
    hooks = [block.block.register_forward_hook(lambda _m, _i, out: resolutions.append(out.shape[-1]))
             for block in dot.up]
    x_ts, x_ti, z_ts = (torch.randn(2, 1, size, size) for _ in range(3))
    with torch.no_grad():
        residual = dot(x_ts, x_ti, z_ts, torch.tensor(600), torch.tensor(500))
        assert torch.equal(residual, torch.zeros_like(residual))  # untrained: exactly reuse
        torch.nn.init.normal_(dot.head.out.weight)
        early = dot(x_ts, x_ti, z_ts, torch.tensor(600), torch.tensor(500))
        late = dot(x_ts, x_ti, z_ts, torch.tensor(600), torch.tensor(100))
    for hook in hooks:
        hook.remove()
    assert resolutions[:num_down] == [size // 2 ** (num_down - 1 - j) for j in range(num_down)]
    assert all(block.block.time_emb_proj is not None for block in dot.up)  # time-conditioned
    assert not torch.allclose(early, late)


def test_x0_base_is_the_noise_that_dashs_data_estimate_implies_at_the_current_state(training_config):
    alphas = make_scheduler("ddpm", training_config).alphas_cumprod
    torch.manual_seed(0)
    x0, z, fresh = (torch.randn(2, 1, 8, 8) for _ in range(3))
    for t_s, t_i in ((torch.tensor([700, 400]), torch.tensor([600, 250])), (torch.tensor(500), torch.tensor(420))):
        a_s, a_i = (alphas[t].reshape(-1, 1, 1, 1) for t in (t_s, t_i))
        x_ts = a_s.sqrt() * x0 + (1 - a_s).sqrt() * z
        # reuse's own next state (a first-order deterministic step on z): the x0 base is z itself
        on_reuse = a_i.sqrt() * x0 + (1 - a_i).sqrt() * z
        torch.testing.assert_close(base_estimate("x0", x_ts, z, t_s, on_reuse, t_i, alphas), z, atol=1e-4, rtol=0)
        # a state with fresh noise (a stochastic step): the x0 base is that noise; the eps base stays z
        noisy = a_i.sqrt() * x0 + (1 - a_i).sqrt() * fresh
        torch.testing.assert_close(base_estimate("x0", x_ts, z, t_s, noisy, t_i, alphas), fresh, atol=1e-4, rtol=0)
        assert torch.equal(base_estimate("eps", x_ts, z, t_s, noisy, t_i), z)


def test_an_unknown_base_is_refused_in_one_line(dash):
    with pytest.raises(ValueError, match=r"^dot.base='v' is invalid: use one of eps, x0$"):
        Dot(dash, num_down=1, width=8, lora_rank=2, norm_groups=4, base="v")


def test_a_dot_is_evaluated_only_with_the_base_it_was_trained_with(training_config, make_unet, tmp_path):
    """A saved Dot records its base; loading it into a Dot of another base is refused in one line
    naming the setting, except as a training run's starting point (same_base=False)."""
    trained = Dot(Dash(make_unet(seed=4), training_config), num_down=1, width=8, lora_rank=2, norm_groups=4, base="x0")
    save_dot(trained, tmp_path / "dot", {"scheduler": "ddpm"})
    other = Dot(Dash(make_unet(seed=4), training_config), num_down=1, width=8, lora_rank=2, norm_groups=4)
    with pytest.raises(ValueError, match=r"trained with dot.base=x0, but this run builds dot.base=eps: set dot.base=x0$"):
        load_dot_weights(other, tmp_path / "dot")
    assert load_dot_weights(other, tmp_path / "dot", same_base=False)["dot_base"] == "x0"
