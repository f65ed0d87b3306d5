"""The LightningModule that trains Dot against a frozen Dash.

One training example is a short stretch of a sampling trajectory: a fine step count n (drawn
log-uniformly from ``fine_steps = [lo, hi]``), a jump point s (uniform over 0..n-2), x_ts
(``jump_states="forward"``: from data by the scheduler's forward process; ``"sampled"``: by
Morse's own sampler from pure noise, the current Dot at its steps, i.e. the states Dot meets
at inference), z_ts = Dash(x_ts, t_s), then the scheduler's own steps to the following Dot steps
i = s+1, ..., s+K-1 (K = ``max_gap``, the largest Dash-to-Dash gap evaluation will use, so
every gap 1..K-1 is trained). At each, Dot is regressed onto Dash without jumps:

    loss = mean_i || b_i + Dot(x_ts, x_ti, b_i, t_s, t_i) - Dash(x_ti, t_i) ||^2

where b_i is the Dot's base estimate at t_i (``dot.base``: z_ts = Dash(x_ts, t_s) itself, or
the noise consistent with Dash's data estimate at t_s; :func:`morse_exp.dot.base_estimate`).
Throughout, "reuse" is an untrained Dot, i.e. its base (z_ts itself for the eps base; the
``val/reuse_mse`` it logs is the base's error).
With ``loss="relative"`` each Dot step's squared error is divided by the base's at that step
(no gradient through it): 1 means "no better than reuse", and every stretch
of the trajectory weighs the same, instead of the late steps whose absolute errors are
10-20x larger. The state after a Dot step is reached with Dot's own (detached) estimate, as at
inference.
A batch is split into ``draws_per_batch`` groups, each with its own (n, s) and, for a Dot
trained for several samplers, its own sampler. Validation runs one fixed n (``val_steps``)
and spreads every jump point s = 0..n-2 (and every sampler) over the batch, so its MSEs
average over all jump positions.
A conditional Dash gets the batch's context (its second element: class labels, or captions
for a text-conditioned Dash, dropped to "" at ``prompt_dropout`` so that Dot also learns the
unconditional branch that classifier-free guidance runs).
Randomness of a step is a function of (seed, global step, rank) only, so a resumed run
replays the same steps as an uninterrupted one.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn

from morse_exp.checkpoints import check_compatible, dash_fingerprint
from morse_exp.dash import Dash
from morse_exp.dot import Dot, base_estimate
from morse_exp.sampler import sample
from morse_exp.schedule import DashSchedule
from morse_exp.schedulers import set_timesteps, step_kwargs
from morse_exp.seeding import sample_seed

SchedulerFactory = Callable[[dict[str, Any]], Any]
JUMP_STATES = ("forward", "sampled")
LOSSES = ("absolute", "relative")
# What the sampler steps on with between the Dot steps of a stretch: the Dot's own estimate
# (training, inference), its base's (reuse: an untrained Dot's) or Dash's own at the step
# (teacher forcing).
STEPPINGS = ("own", "reuse", "teacher")


@dataclass(frozen=True)
class StretchStep:
    """One Dot step of a trajectory stretch, as Dot sees it and Dash answers it.

    x_ts, z_ts: (B, C, H, W) Dash's input and noise estimate at the jump point t_s;
    x_ti: (B, C, H, W) the model input at the Dot step t_i; target: (B, C, H, W) Dash's own
    noise estimate there; t_s, t_i: training-scale timesteps, scalars (rollouts) or (B,)
    (cached batches); cond: Dash's conditioning keyword arguments (None for an unconditional Dash);
    base: (B, C, H, W) the Dot's base estimate at t_i (z_ts for ``dot.base=eps``), what an
    untrained Dot returns.
    """

    x_ts: Tensor
    z_ts: Tensor
    t_s: Tensor
    x_ti: Tensor
    t_i: Tensor
    target: Tensor
    cond: dict[str, Any] | None
    base: Tensor

    def stepped_with(self, stepping: str, own: Tensor | None = None) -> Tensor:
        """The noise estimate the sampler steps on with after this step, by ``stepping`` (one of
        ``STEPPINGS``): ``own`` (the Dot's estimate, detached), the base (reuse) or Dash's
        target (teacher)."""
        if stepping == "own":
            return own.detach()
        return self.base if stepping == "reuse" else self.target


class MorseModule(L.LightningModule):
    """Frozen Dash + trainable weight-shared Dot.

    Args:
        dash: the frozen Dash.
        dot: the Dot built on ``dash`` (only its new blocks and LoRA adapters train).
        scheduler: builds the sampling scheduler from Dash's training scheduler config; a list
            of them trains one Dot for several samplers (one drawn per group of a batch).
        max_gap: K, the largest gap (a Dash step and its K - 1 Dot steps) to train; >= 2.
        fine_steps: [lo, hi], the range of fine step counts n (log-uniform draws).
        draws_per_batch: groups of a training batch with their own (n, s).
        val_steps: the n of validation (every jump point of it is validated).
        lr, weight_decay, warmup_steps: AdamW with linear warm-up then cosine decay.
        prompt_dropout: share of captions replaced by "" (text-conditioned Dash only).
        jump_states: where x_ts comes from: "forward" (the data's forward process) or
            "sampled" (Morse's sampler run from noise up to s, no gradients; costs about s/2
            extra Dash calls per step).
        loss: "absolute" (the mean squared error) or "relative" (each step's squared error
            over reuse's); validation logs the absolute MSEs either way.
        seed: base seed of the per-step random streams.
        run_config: the resolved config, stored in every checkpoint.
    """

    def __init__(
        self,
        dash: Dash,
        dot: Dot,
        scheduler: SchedulerFactory | Sequence[SchedulerFactory],
        max_gap: int,
        fine_steps: Sequence[int] = (4, 64),
        draws_per_batch: int = 4,
        val_steps: int = 12,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        warmup_steps: int = 100,
        prompt_dropout: float = 0.1,
        jump_states: str = "forward",
        loss: str = "absolute",
        seed: int = 0,
        run_config: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if dot.dash is not dash:
            raise ValueError("dot must be built on the same Dash instance it is trained against")
        if isinstance(max_gap, bool) or not isinstance(max_gap, int) or max_gap < 2:
            raise ValueError(
                f"max_gap={max_gap!r} is invalid: a gap of K trains K - 1 Dot steps after each Dash step, so use "
                "K >= 2 (a jump_stride of 1 runs Dash at every step: there are no Dot steps to train)"
            )
        if jump_states not in JUMP_STATES:
            raise ValueError(f"jump_states={jump_states!r} is invalid: use one of {', '.join(JUMP_STATES)}")
        if loss not in LOSSES:
            raise ValueError(f"module.loss={loss!r} is invalid: use one of {', '.join(LOSSES)}")
        if not 0 <= prompt_dropout < 1:
            raise ValueError(f"prompt_dropout={prompt_dropout} is invalid: use a value in [0, 1)")
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not 0 < lr < math.inf:
            raise ValueError(f"module.lr={lr!r} is invalid: use a learning rate > 0, e.g. module.lr=1e-3")
        steps = [int(n) for n in fine_steps] if isinstance(fine_steps, Sequence) else []
        if len(steps) != 2 or not 2 <= steps[0] <= steps[1]:
            raise ValueError(f"fine_steps={fine_steps} is invalid: give a range [lo, hi] of step counts, 2 <= lo <= hi")
        _check_count("draws_per_batch", draws_per_batch, least=1)
        _check_count("val_steps", val_steps, least=2)
        self.dash = dash
        self.dot = dot
        self.max_gap = max_gap
        self.fine_steps = tuple(steps)
        self.draws_per_batch = draws_per_batch
        self.val_steps = val_steps
        self.lr, self.weight_decay, self.warmup_steps = lr, weight_decay, warmup_steps
        self.prompt_dropout = prompt_dropout
        self.jump_states = jump_states
        self.loss = loss
        self.seed = seed
        self.run_config = run_config or {}
        self.dash_fingerprint = dash_fingerprint(dash)
        self._make_schedulers = list(scheduler) if isinstance(scheduler, Sequence) else [scheduler]
        self._schedulers: dict[tuple[int, int], Any] = {}  # (sampler, n) -> one set to n steps (copied per use)
        self.strict_loading = False  # checkpoints hold Dot's weights only, not Dash's

    # ----------------------------------------------------------------- steps
    def training_step(self, batch: tuple[Tensor, ...] | dict[str, Tensor], batch_idx: int) -> Tensor:
        relative = self.loss == "relative"
        if isinstance(batch, dict):  # cached Dot steps (stretches=cached)
            loss = self.cached_loss(batch, relative)
        else:
            generator = self._generator(self.global_step * self.trainer.world_size + self.global_rank)
            draws = [self.draw(generator) for _ in range(min(self.draws_per_batch, len(batch[0])))]
            loss, _ = self.rollout(batch[0], generator, batch[1], draws, relative=relative)
        name = "train/dot_relative_error" if relative else "train/dot_mse"
        if not torch.isfinite(loss):
            raise ValueError(
                f"{name} is {float(loss)} at step {self.global_step}: training diverged; lower "
                f"module.lr (now {self.lr:g}); the Dot was not saved"
            )
        self.log(name, loss, prog_bar=True)
        return loss

    def validation_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> None:
        n, samplers = self.val_steps, len(self._make_schedulers)
        draws = [(n, s, k) for s in range(n - 1) for k in range(samplers)][: len(batch[0])]
        dot_mse, reuse_mse = self.rollout(batch[0], self._generator(10**9 + batch_idx), batch[1], draws)
        self.log("val/dot_mse", dot_mse, prog_bar=True, sync_dist=True)
        self.log("val/reuse_mse", reuse_mse, prog_bar=True, sync_dist=True)

    def on_validation_epoch_end(self) -> None:
        metrics = self.trainer.callback_metrics
        if "val/dot_mse" in metrics and "val/reuse_mse" in metrics:
            self.log("val/gain_over_reuse", metrics["val/reuse_mse"] / metrics["val/dot_mse"], sync_dist=True)

    def cached_loss(self, batch: dict[str, Tensor], relative: bool = False) -> Tensor:
        """Dot's loss on cached Dot steps (:mod:`morse_exp.stretches`): per example, the mean
        squared error against Dash's target, or (``relative``) that over reuse's; the batch mean.

        Args:
            batch: (B, C, H, W) ``x_ts``, ``z_ts``, ``x_ti``, ``target``; (B,) ``t_s``, ``t_i``;
                (B,) ``context`` class labels for a class-conditional Dash.
        """
        step = self.stretch_step(batch["x_ts"], batch["z_ts"], batch["t_s"], batch["x_ti"], batch["t_i"],
                                 batch["target"], self.dash.condition(batch.get("context")))
        target = step.target.float()
        errors = self.dot_estimate(step).float().sub(target).pow(2).flatten(1).mean(1)
        if relative:
            reuse = step.base.float().sub(target).pow(2).flatten(1).mean(1)
            errors = errors / reuse.clamp_min(torch.finfo(reuse.dtype).tiny)
        return errors.mean()

    def rollout(
        self,
        images: Tensor,
        generator: torch.Generator,
        context: Sequence[str] | Tensor | None = None,
        draws: Sequence[tuple[int, ...]] | None = None,
        relative: bool = False,
    ) -> tuple[Tensor, Tensor]:
        """Mean squared error of Dot and of plain reuse against Dash on trajectory stretches.

        Args:
            images: (B, C, H, W) data in [-1, 1] (encoded to latents for latent Dash).
            generator: drives the draws, the noise and the caption dropout.
            context: B captions or (B,) class labels; used only by a conditional Dash.
            draws: (n, s) or (n, s, sampler index) per group; the batch is split into
                len(draws) near-equal groups. None: one group drawn from ``generator``.
            relative: return Dot's relative error (per Dot step, its MSE over reuse's; 1 =
                reuse) in place of its MSE.

        Returns:
            (dot_mse, reuse_mse): scalars, means over every Dot step of every sample; only
            dot_mse (or the relative error) carries gradients.
        """
        draws = draws or [self.draw(generator)]
        context = self._dropped(context, generator)
        dot_sums, reuse_sums, counts = [], [], 0
        for (n, s, *sampler), rows in zip(draws, torch.tensor_split(torch.arange(len(images)), len(draws)), strict=True):
            rows = rows.tolist()
            chunk_context = (
                context[rows] if isinstance(context, Tensor) else None if context is None else [context[i] for i in rows]
            )
            dot_losses, reuse_losses = self.stretch_errors(images[rows], chunk_context, n, s, generator, *sampler)
            if relative:
                dot_losses = dot_losses / reuse_losses.clamp_min(torch.finfo(reuse_losses.dtype).tiny)
            dot_sums.append(dot_losses.sum() * len(rows))
            reuse_sums.append(reuse_losses.sum() * len(rows))
            counts += len(rows) * len(dot_losses)
        return torch.stack(dot_sums).sum() / counts, torch.stack(reuse_sums).sum() / counts

    def stretch_errors(
        self, images: Tensor, context: Any, n: int, s: int, generator: torch.Generator, sampler: int = 0,
        stepping: str = "own",
    ) -> tuple[Tensor, Tensor]:
        """Per Dot step (k,), Dot's and reuse's MSE against Dash in one group: Dash at step s
        of n, then the k <= K - 1 Dot steps after it, with sampler number ``sampler``; between
        them the sampler steps on as ``stepping`` says (one of ``STEPPINGS``; training: own)."""
        dot_losses, reuse_losses = [], []

        def dot_step(step: StretchStep) -> Tensor:
            estimate = self.dot_estimate(step)
            dot_losses.append(nn.functional.mse_loss(estimate.float(), step.target.float()))
            reuse_losses.append(nn.functional.mse_loss(step.base.float(), step.target.float()).detach())
            return step.stepped_with(stepping, own=estimate)

        self.walk_stretch(images, context, n, s, generator, dot_step, sampler)
        return torch.stack(dot_losses), torch.stack(reuse_losses)

    def dot_estimate(self, step: StretchStep) -> Tensor:
        """(B, C, H, W) Morse's noise estimate at a Dot step: the base plus Dot's residual."""
        return step.base + self.dot(step.x_ts, step.x_ti, step.base, step.t_s, step.t_i, step.cond)

    def stretch_step(self, x_ts: Tensor, z_ts: Tensor, t_s: Tensor, x_ti: Tensor, t_i: Tensor, target: Tensor,
                     cond: dict[str, Any] | None) -> StretchStep:
        """The :class:`StretchStep` of these tensors, with the Dot's base estimate at t_i."""
        base = base_estimate(self.dot.base, x_ts, z_ts, t_s, x_ti, t_i, self.alphas_cumprod)
        return StretchStep(x_ts, z_ts, t_s, x_ti, t_i, target, cond, base)

    def walk_stretch(
        self,
        images: Tensor,
        context: Any,
        n: int,
        s: int,
        generator: torch.Generator,
        visit: Callable[[StretchStep], Tensor],
        sampler: int = 0,
    ) -> None:
        """One group's trajectory stretch: Dash at step s of n, then the Dot steps after it.

        Args:
            images: (B, C, H, W) data in [-1, 1]; context: their conditioning (as ``rollout``).
            n, s: the fine step count and the jump point; sampler: the sampler's number.
            generator: drives the noise (and a stochastic sampler's steps).
            visit: called at each Dot step i = s+1, ..., s+K-1 (K = ``max_gap``, at most
                n - 1) with its :class:`StretchStep`; returns the (B, C, H, W) noise estimate
                the sampler steps on with (:meth:`StretchStep.stepped_with`).
        """
        x0 = self.dash.encode(images)
        cond = self.dash.condition(context)
        scheduler = copy.deepcopy(self._scheduler(n, sampler))
        timesteps = scheduler.timesteps.to(x0.device)
        t_s = timesteps[s]
        if self.jump_states == "sampled":
            # Morse's own sampler from noise up to s, Dash every K steps counted back from s
            schedule = DashSchedule(n, tuple(sorted({0, *range(s, -1, -self.max_gap)})))
            device_generator = torch.Generator(x0.device).manual_seed(_randint(2**62, generator))
            x, _ = sample(self.dash, scheduler, schedule, [device_generator] * len(x0), dot=self.dot,
                          cond=cond, stop_before=s)
            x = x.to(x0)
        else:
            if hasattr(scheduler, "set_begin_index"):
                scheduler.set_begin_index(s)
            noise = torch.randn(x0.shape, generator=generator, device="cpu").to(x0)
            x = scheduler.add_noise(x0, noise, t_s.expand(len(x0)))
        x_ts = scheduler.scale_model_input(x, t_s)
        with torch.no_grad():
            z_ts = self.dash(x_ts, t_s, cond)
        step_options = step_kwargs(scheduler, generator)
        x = scheduler.step(z_ts, t_s, x, **step_options).prev_sample
        last = min(n - 1, s + self.max_gap - 1)
        for i in range(s + 1, last + 1):
            t_i = timesteps[i]
            x_ti = scheduler.scale_model_input(x, t_i)
            with torch.no_grad():
                target = self.dash(x_ti, t_i, cond)
            estimate = visit(self.stretch_step(x_ts, z_ts, t_s, x_ti, t_i, target, cond))
            if i < last:
                x = scheduler.step(estimate, t_i, x, **step_options).prev_sample

    def draw(self, generator: torch.Generator) -> tuple[int, ...]:
        """(n, s): n log-uniform over ``fine_steps`` = [lo, hi] (budgets are spread
        geometrically), the jump point s uniform over 0..n-2; with several samplers, (n, s, k)
        with sampler k uniform (drawn last, so a one-sampler run's draws do not change)."""
        lo, hi = self.fine_steps
        u = float(torch.rand((), generator=generator))
        n = min(hi, max(lo, round(math.exp(math.log(lo) + u * (math.log(hi) - math.log(lo))))))
        draw = (n, _randint(n - 1, generator))
        samplers = len(self._make_schedulers)
        return (*draw, _randint(samplers, generator)) if samplers > 1 else draw

    def _scheduler(self, n: int, sampler: int = 0) -> Any:
        if (sampler, n) not in self._schedulers:
            make = self._make_schedulers[sampler]
            self._schedulers[sampler, n] = _prepared(make(base_config=self.dash.scheduler_config), n)
        return self._schedulers[sampler, n]

    def _dropped(self, context: Sequence[str] | Tensor | None, generator: torch.Generator) -> Any:
        """Captions with each replaced by "" at ``prompt_dropout``; other contexts unchanged."""
        if self.dash.conditioning != "text" or context is None:
            return context
        drop = torch.rand(len(context), generator=generator) < self.prompt_dropout
        return ["" if dropped else caption for caption, dropped in zip(context, drop.tolist(), strict=True)]

    def _generator(self, stream: int) -> torch.Generator:
        return torch.Generator("cpu").manual_seed(sample_seed(self.seed, stream))

    @property
    def alphas_cumprod(self) -> Tensor:
        """(T,) the Dash's training schedule, every sampler's (the x0 base reads it)."""
        return self._scheduler(2).alphas_cumprod

    @property
    def coverage(self) -> dict[str, Any]:
        """What this Dot is trained for: gaps up to ``max_gap`` at step counts in ``fine_steps``."""
        return {"max_gap": self.max_gap, "fine_steps": list(self.fine_steps)}

    # ------------------------------------------------------------ optimiser
    def configure_optimizers(self) -> dict[str, Any]:
        params = [p for _, p in self.dot.trainable_parameters()]
        optimizer = torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, self._lr_factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def _lr_factor(self, step: int) -> float:
        """Linear warm-up, then cosine decay to 5% over the trainer's (current) max_steps.

        The horizon is read at every step, so a run resumed with a larger max_steps decays
        over the new horizon instead of restarting the cosine.
        """
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        total = self.trainer.max_steps if self.trainer.max_steps > 0 else 10**6
        progress = min(1.0, (step - self.warmup_steps) / max(1, total - self.warmup_steps))
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress))

    # ----------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["state_dict"] = {
            f"dot.{name}": value for name, value in self.dot.trainable_state_dict().items()
        }
        checkpoint["morse"] = {
            "dash_fingerprint": self.dash_fingerprint,
            "dash_source": self.dash.source,
            "dot_config": self.dot.config,
            "dot_base": self.dot.base,
            "coverage": self.coverage,
            "run_config": self.run_config,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        check_compatible(checkpoint.get("morse", {}), self.dash_fingerprint, self.dot.config, "checkpoint", self.dot.base)
        expected = {f"dot.{name}" for name, _ in self.dot.trainable_parameters()}
        missing = expected - set(checkpoint["state_dict"])
        if missing:
            raise ValueError(f"checkpoint lacks {len(missing)} Dot weights, e.g. {min(missing)}")


def _prepared(scheduler: Any, n: int) -> Any:
    set_timesteps(scheduler, n)
    return scheduler


def _check_count(key: str, value: Any, least: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ValueError(f"module.{key}={value!r} is invalid: use an integer >= {least}")


def _randint(high: int, generator: torch.Generator) -> int:
    return int(torch.randint(high, (), generator=generator))
