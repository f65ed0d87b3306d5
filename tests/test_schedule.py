"""Dash/Dot schedules: positions, costs in LSD, budget fitting and bad input."""

from __future__ import annotations

import math

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
    with pytest.raises(ValueError, match=r"LSD budget .* must lie in \[1, 10000\]"):
        JumpPattern(stride=2).fit_budget(budget, 5.0)


@pytest.mark.parametrize("budget", [1e9, 10_001])
def test_budget_above_the_bound_is_refused_at_once(budget):
    with pytest.raises(ValueError, match=r"LSD budget .* must lie in \[1, 10000\]"):
        JumpPattern(stride=2).fit_budget(budget, 5.0)
    with pytest.raises(ValueError, match=r"must lie in \[1, 10000\]"):
        JumpPattern(dot_share=0.5).fit_budget(budget, 5.0)


def test_largest_budget_fits_quickly_and_exactly():
    schedule = JumpPattern(stride=3).fit_budget(10_000, 4.0)
    assert schedule.lsd(4.0) <= 10_000 < JumpPattern(stride=3).schedule(schedule.num_steps + 1).lsd(4.0)


@pytest.mark.parametrize(("budget", "share", "ratio"), [(10, 0.5, 10.0), (20, 0.5, 4.0), (6, 0.25, 8.0), (3, 0.5, 4.0), (5, 0.5, 4.0)])
def test_dot_share_spends_its_share_of_the_budget_on_dot_steps(budget, share, ratio):
    """The paper's arithmetic: B LSD = (B - k) Dash steps + N k Dot steps, with k = q B."""
    schedule = JumpPattern(dot_share=share).fit_budget(budget, ratio)
    dash_calls = math.floor((1 - share) * budget + 0.5)
    assert schedule.dash_calls == dash_calls
    assert schedule.dot_calls == int((budget - dash_calls) * ratio)  # the most Dot steps that fit
    assert schedule.lsd(ratio) <= budget < schedule.lsd(ratio) + 1 / ratio
    if share == 0.5 and budget % 2 == 0:  # k = B/2: N Dot steps per Dash step, e.g. 5 Dash + 50 Dot at 10 LSD
        assert schedule.dot_calls == ratio * schedule.dash_calls
        assert schedule.max_gap == ratio + 1


def test_dot_share_spreads_dash_steps_and_places_the_end():
    ends_on_dot = JumpPattern(dot_share=0.5).fit_budget(4, 3.0)  # 2 Dash + 6 Dot steps
    assert ends_on_dot.dash_steps == (0, 4) and ends_on_dot.num_steps == 8
    ends_on_dash = JumpPattern(dot_share=0.5, end="dash").fit_budget(4, 3.0)
    assert ends_on_dash.dash_steps == (0, 7) and ends_on_dash.max_gap == 7


def test_max_gap_counts_the_run_to_the_end():
    assert DashSchedule.from_stride(7, 3).max_gap == 3
    assert DashSchedule.from_pattern(8, [0, 1, 3]).max_gap == 5
    assert DashSchedule.every_step(5).max_gap == 1


@pytest.mark.parametrize("share", [0, 1, -0.5, 1.5, "half"])
def test_bad_dot_share_is_refused(share):
    with pytest.raises(ValueError, match=r"jump_stride.dot_share=.* is invalid: use a share of the budget in \(0, 1\)"):
        JumpPattern(dot_share=share)


def test_budget_too_small_for_a_dash_and_a_dot_step_is_refused():
    with pytest.raises(ValueError, match=r"LSD budget 1.1 is too small .* one Dash and one Dot step need 1.25 LSD"):
        JumpPattern(dot_share=0.5).fit_budget(1.1, 4.0)


def test_dot_share_pattern_needs_a_budget():
    with pytest.raises(ValueError, match="no schedule for a bare step count"):
        JumpPattern(dot_share=0.5).schedule(10)
