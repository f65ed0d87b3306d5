"""Dash/Dot schedules: positions, costs in LSD, budget fitting and bad input."""

from __future__ import annotations

import pytest

from morse_exp.schedule import DashSchedule, JumpPattern


def test_stride_places_dash_at_every_kth_step_from_zero():
    schedule = DashSchedule.from_stride(7, 3)
    assert schedule.dash_steps == (0, 3, 6)
    assert (schedule.dash_calls, schedule.dot_calls) == (3, 4)
    assert [schedule.jump_point(i) for i in range(7)] == [0, 0, 0, 3, 3, 3, 6]


def test_lsd_counts_dot_steps_at_one_over_the_speed_ratio():
    assert DashSchedule.from_stride(10, 2).lsd(5.0) == pytest.approx(5 + 5 / 5)
    assert DashSchedule.every_step(10).lsd(5.0) == 10


@pytest.mark.parametrize(("budget", "stride", "ratio", "steps"), [(10, 1, 5.0, 10), (10, 2, 5.0, 16), (3, 3, 4.0, 6), (1.2, 2, 5.0, 2), (1, 2, 5.0, 1)])
def test_budget_fit_takes_the_most_steps_that_fit(budget, stride, ratio, steps):
    schedule = JumpPattern(stride=stride).fit_budget(budget, ratio)
    assert schedule.num_steps == steps
    assert schedule.lsd(ratio) <= budget
    assert JumpPattern(stride=stride).schedule(steps + 1).lsd(ratio) > budget


def test_explicit_pattern_budget_fit():
    schedule = JumpPattern(positions=(0, 1, 4)).fit_budget(4, 2.0)
    assert schedule.dash_steps == (0, 1, 4) and schedule.lsd(2.0) <= 4


@pytest.mark.parametrize("stride", [0, -2, 1.5, "2"])
def test_bad_stride_is_refused(stride):
    with pytest.raises(ValueError, match=r"jump.stride .* is invalid: use an integer >= 1"):
        JumpPattern(stride=stride)


def test_pattern_outside_the_step_count_is_refused():
    with pytest.raises(ValueError, match=r"positions \[9\] lie outside the step count: valid positions are 0..5"):
        DashSchedule.from_pattern(6, [0, 2, 9])


def test_pattern_must_start_with_a_dash_step():
    with pytest.raises(ValueError, match="must start with position 0"):
        DashSchedule.from_pattern(6, [1, 3])


@pytest.mark.parametrize("budget", [0.5, 0, float("nan")])
def test_budget_below_one_lsd_is_refused(budget):
    with pytest.raises(ValueError, match=r"LSD budget .* must be >= 1"):
        JumpPattern(stride=2).fit_budget(budget, 5.0)
