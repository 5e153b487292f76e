"""Statistical tests of the nine debtor mechanisms of docs/mechanisms.md.

Each test runs two (or more) policies or worlds on the same debtors under common random numbers (same seed,
same arrangement ids: the same debtors, incomes and shocks whatever the policy) and compares them *paired*,
arrangement by arrangement. Every test names its test statistic and its confidence level; unless a test says
otherwise the level is ``ALPHA = 0.01`` one-sided, in the direction docs/mechanisms.md predicts:

* binary outcomes (completed, broken, paid within k days): exact sign test on the discordant pairs
  (McNemar's exact test, :func:`scipy.stats.binomtest`);
* per-arrangement shares and delays: Wilcoxon signed-rank test on the paired differences;
* an effect that should differ between two groups of debtors: Mann-Whitney U test of the paired differences of
  one group against those of the other.

Some arms read ground truth (the debtor's payday, type, shocks, own channel notice) to build or to split the
comparison. That is a device of the test, never something a policy sees.

All tests here are marked ``statistical`` except the determinism test, which is fast.
"""

from __future__ import annotations

import itertools
from typing import cast

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from scipy import stats

from agents.base import BasePolicy
from agents.rules_based import Silent, StaticDunning
from regsim import DecisionKind, Policy, SimulationResult, World, WorldConfig, simulate
from regsim.metrics import arrangement_outcomes
from tests.regsim.policies_for_tests import COLLECTOR, EMAIL, LETTER, ROBOCALL, SMS, ScriptedPolicy

ALPHA = 0.01
"""Significance level of every test in this module (one-sided unless stated)."""

K = DecisionKind
_CHANNEL_NAMES = ("none", "email", "sms", "letter", "robocall", "collector")
DEFAULT = WorldConfig()

statistical = pytest.mark.statistical


# ----------------------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------------------
def _run(policy: BasePolicy, config: WorldConfig = DEFAULT, *, n: int, months: int, seed: int) -> SimulationResult:
    # cast: Policy declares name/version as instance attributes, BasePolicy as ClassVars (same at run time).
    return simulate(config, cast(Policy, policy), arrangements=n, months=months, seed=seed)


def _outcomes(result: SimulationResult) -> pd.DataFrame:
    """Per-arrangement outcomes joined with ground truth, plus the on-time share of due installments."""
    out = arrangement_outcomes(result.events).join(result.ground_truth.set_index("arrangement_id"))
    out["on_time_share"] = out["installments_on_time"] / out["installments_due"].clip(lower=1)
    out["survived"] = 1 - out["broken"] - out["referred"]
    return out


def _truth(n: int, seed: int, config: WorldConfig = DEFAULT) -> pd.DataFrame:
    """Ground truth of the debtors of a run, drawn without simulating (it depends on the seed only)."""
    world = World(config, cast(Policy, Silent()), arrangements=n, seed=seed)
    return world.ground_truth().set_index("arrangement_id")


def _sign_test(a: pd.Series | np.ndarray, b: pd.Series | np.ndarray) -> tuple[int, int, float]:
    """Exact one-sided sign test on paired binary outcomes: P-value of "a is 1 more often than b"."""
    a, b = np.asarray(a, dtype=int), np.asarray(b, dtype=int)
    n10, n01 = int(((a == 1) & (b == 0)).sum()), int(((a == 0) & (b == 1)).sum())
    if n10 + n01 == 0:
        return n10, n01, 1.0
    return n10, n01, float(stats.binomtest(n10, n10 + n01, 0.5, alternative="greater").pvalue)


def _wilcoxon_greater(diff: pd.Series | np.ndarray) -> float:
    """One-sided Wilcoxon signed-rank P-value of "the paired differences are shifted above 0"."""
    d = np.asarray(diff, dtype=float)
    if not np.any(d != 0):
        return 1.0
    return float(stats.wilcoxon(d, alternative="greater").pvalue)


def _t_margin(x: pd.Series) -> float:
    """Half-width of the one-sided (1 - ALPHA) t confidence bound of the mean of ``x``."""
    return float(stats.t.ppf(1 - ALPHA, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x)))


def _events(result: SimulationResult) -> pd.DataFrame:
    return result.events.to_pandas()


def _first_decision(events: pd.DataFrame, kind: str, channel: int | None = None) -> pd.DataFrame:
    """Each arrangement's first decision of a kind (optionally with a given channel option)."""
    m = (events["event"] == "decision") & (events["decision_kind"] == kind)
    if channel is not None:
        m &= events["a_channel"] == channel
    d = events.loc[m, ["arrangement_id", "time", "decision_id", "send_time"]]
    return d.sort_values(["arrangement_id", "time"]).groupby("arrangement_id").first()


def _days_to_next_payment(events: pd.DataFrame, start: pd.Series) -> pd.Series:
    """Days from ``start`` (per arrangement) to the arrangement's next payment; NaN if none follows."""
    pay = events.loc[events["event"] == "payment", ["arrangement_id", "time"]]
    pay = pay.merge(start.rename("t0"), left_on="arrangement_id", right_index=True)
    pay = pay[pay["time"] >= pay["t0"]]
    first = pay.groupby("arrangement_id")["time"].min()
    return (first - start).reindex(start.index)


def _report(mechanism: str, **numbers: object) -> None:
    shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in numbers.items())
    print(f"[{mechanism}] {shown}")


# ----------------------------------------------------------------------------------------------------------
# Determinism (fast, not statistical)
# ----------------------------------------------------------------------------------------------------------
def _nan_to_null(table: pa.Table) -> pa.Table:
    """The table with NaN floats as nulls: the log fills unset float columns with NaN, and Arrow's
    ``Table.equals`` counts NaN as unequal to itself (``t.equals(t)`` is False for such a table)."""
    columns = []
    for column in table.columns:
        if pa.types.is_floating(column.type):
            column = pc.if_else(pc.is_nan(column), pa.scalar(None, column.type), column)
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=table.schema)


def _ipc_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def test_same_seed_same_events_other_seed_other_events() -> None:
    a = _run(StaticDunning(), n=300, months=3, seed=5).events
    b = _run(StaticDunning(), n=300, months=3, seed=5).events
    c = _run(StaticDunning(), n=300, months=3, seed=6).events
    assert a.num_rows > 0
    assert _nan_to_null(a).equals(_nan_to_null(b))
    assert _ipc_bytes(a) == _ipc_bytes(b)  # bit for bit, NaNs included
    assert not _nan_to_null(a).equals(_nan_to_null(c))


# ----------------------------------------------------------------------------------------------------------
# 1. Income timing and liquidity
# ----------------------------------------------------------------------------------------------------------
@statistical
def test_1_due_day_just_after_payday_raises_on_time_payment() -> None:
    """Due day just after payday vs just before it (monthly and benefit earners), silent otherwise.

    Paired over arrangements: Wilcoxon signed-rank on the on-time share of due installments, and an exact sign
    test on completion; both one-sided at ALPHA.
    """
    n, seed = 3000, 101
    truth = _truth(n, seed)
    options = np.array(DEFAULT.decisions.due_day_options)
    monthly = truth["income_schedule"].isin(["monthly", "benefits"])
    after, before = {}, {}
    paydays = truth.loc[monthly, "pay_day"]
    for aid, payday in zip(paydays.index.to_numpy(), paydays.to_numpy(), strict=True):
        ahead = (options - int(payday)) % 28  # days from payday to each option
        behind = (int(payday) - options) % 28  # days from each option to payday
        after[int(aid)] = 1 + int(np.argmin(np.where(ahead >= 1, ahead, 99)))  # first option after payday
        before[int(aid)] = 1 + int(np.argmin(np.where(behind >= 1, behind, 99)))  # last option before it
    aligned = _outcomes(_run(ScriptedPolicy("aligned", due_day_option=after), n=n, months=12, seed=seed))
    misaligned = _outcomes(_run(ScriptedPolicy("misaligned", due_day_option=before), n=n, months=12, seed=seed))
    m = monthly.reindex(aligned.index).to_numpy()
    diff = (aligned["on_time_share"] - misaligned["on_time_share"])[m]
    p_on_time = _wilcoxon_greater(diff)
    n10, n01, p_done = _sign_test(aligned["completed"][m], misaligned["completed"][m])
    _report(
        "1 income timing",
        arrangements=int(m.sum()),
        on_time_aligned=float(aligned["on_time_share"][m].mean()),
        on_time_misaligned=float(misaligned["on_time_share"][m].mean()),
        diff=float(diff.mean()),
        p_on_time=p_on_time,
        completed_diff=float((aligned["completed"] - misaligned["completed"])[m].mean()),
        discordant=f"{n10}/{n01}",
        p_completed=p_done,
    )
    assert diff.mean() > 0 and p_on_time < ALPHA
    assert n10 > n01 and p_done < ALPHA


# ----------------------------------------------------------------------------------------------------------
# 2. Attention and memory
# ----------------------------------------------------------------------------------------------------------
@statistical
def test_2_reminders_help_forgetful_debtors_and_barely_move_unwilling_ones() -> None:
    """Pre-due SMS vs silence, per hidden type.

    * forgetful: on-time share rises (Wilcoxon signed-rank, one-sided, ALPHA);
    * the rise is larger for forgetful than for unwilling debtors (Mann-Whitney U on the paired differences,
      one-sided, ALPHA);
    * unwilling: the one-sided 99% upper confidence bound of the mean rise (t interval) is below a quarter of
      the forgetful debtors' 99% lower bound.
    """
    n, seed = 4000, 102
    silent = _outcomes(_run(ScriptedPolicy("silent"), n=n, months=12, seed=seed))
    sms = _outcomes(_run(ScriptedPolicy("pre-due-sms", {K.PRE_DUE: SMS}), n=n, months=12, seed=seed))
    diff = sms["on_time_share"] - silent["on_time_share"]
    forgetful = diff[silent["debtor_type"] == "forgetful"]
    unwilling = diff[silent["debtor_type"] == "unwilling"]
    p_forgetful = _wilcoxon_greater(forgetful)
    p_more = float(stats.mannwhitneyu(forgetful, unwilling, alternative="greater").pvalue)
    forgetful_low = forgetful.mean() - _t_margin(forgetful)
    unwilling_high = unwilling.mean() + _t_margin(unwilling)
    _report(
        "2 attention",
        forgetful_rise=float(forgetful.mean()),
        p_forgetful=p_forgetful,
        unwilling_rise=float(unwilling.mean()),
        unwilling_upper99=float(unwilling_high),
        forgetful_lower99=float(forgetful_low),
        p_forgetful_gt_unwilling=p_more,
    )
    assert forgetful.mean() > 0 and p_forgetful < ALPHA
    assert p_more < ALPHA
    assert unwilling_high < 0.25 * forgetful_low


# ----------------------------------------------------------------------------------------------------------
# 3. Channel heterogeneity
# ----------------------------------------------------------------------------------------------------------
# The default world gives one type (shock_prone: prepaid phones, changing numbers) a letter preference, so
# the best reminder channel differs by type; this test guards that crossover.


@statistical
@pytest.mark.xfail(
    strict=True,
    reason="measured 2026-12-03 (n=5000, seed 103): SMS beats email and letter for every type (on-time share, "
    "SMS minus letter: reliable +0.001, forgetful +0.114, liquidity-constrained +0.010, shock-prone +0.009, "
    "unwilling +0.005), so no type prefers another channel. Calibrating SMS reads to F6 (95-98% for every type) "
    "removed the crossover; channel heterogeneity remains per debtor "
    "(test_3_channel_effect_follows_the_debtors_own_notice_probabilities) and by hour (test_3_best_call_hour_...)",
)
def test_3_best_channel_differs_by_type() -> None:
    """Pre-due reminders by email only, SMS only or letter only; on-time share per hidden type.

    Passes when two types A and B and two channels X and Y exist such that X beats Y for A and Y beats X for
    B, each by at least 1 percentage point and each significant by a one-sided Wilcoxon signed-rank test at
    ALPHA Bonferroni-corrected over all (type, channel pair, direction) comparisons.
    """
    n, seed = 5000, 103
    arms = {
        ch: _outcomes(_run(ScriptedPolicy(f"pre-due-{ch}", {K.PRE_DUE: ch}), n=n, months=12, seed=seed))
        for ch in (EMAIL, SMS, LETTER)
    }
    types = arms[SMS]["debtor_type"]
    pairs = list(itertools.combinations(arms, 2))
    level = ALPHA / (len(pairs) * 2 * types.cat.categories.size)
    wins: dict[tuple[int, int], set[str]] = {}
    for x, y in pairs:
        diff = arms[x]["on_time_share"] - arms[y]["on_time_share"]
        for t, d in diff.groupby(types, observed=True):
            if d.mean() >= 0.01 and _wilcoxon_greater(d) < level:
                wins.setdefault((x, y), set()).add(str(t))
            if d.mean() <= -0.01 and _wilcoxon_greater(-d) < level:
                wins.setdefault((y, x), set()).add(str(t))
        _report(
            "3 channel by type",
            pair=f"{_CHANNEL_NAMES[x]}-{_CHANNEL_NAMES[y]}",
            **{str(t): float(d.mean()) for t, d in diff.groupby(types, observed=True)},
        )
    crossover = [(x, y) for (x, y) in wins if (y, x) in wins]
    assert crossover, f"no type prefers another channel than the others do; winners: {wins}"


@statistical
def test_3_channel_effect_follows_the_debtors_own_notice_probabilities() -> None:
    """Letter-only vs SMS-only pre-due reminders; the letter's paired advantage in on-time share is larger for
    debtors whose own notice probabilities favour letters (top quartile of 1.3*notice_letter - notice_sms,
    the letter's impact factor included) than for those whose favour SMS (bottom quartile): Mann-Whitney U,
    one-sided, ALPHA.
    """
    n, seed = 5000, 104
    sms = _outcomes(_run(ScriptedPolicy("pre-due-sms", {K.PRE_DUE: SMS}), n=n, months=12, seed=seed))
    letter = _outcomes(_run(ScriptedPolicy("pre-due-letter", {K.PRE_DUE: LETTER}), n=n, months=12, seed=seed))
    lean = DEFAULT.channels.letter.impact * sms["notice_letter"] - sms["notice_sms"]
    quartile = pd.qcut(lean, 4, labels=False)
    diff = letter["on_time_share"] - sms["on_time_share"]
    letter_leaning, sms_leaning = diff[quartile == 3], diff[quartile == 0]
    p = float(stats.mannwhitneyu(letter_leaning, sms_leaning, alternative="greater").pvalue)
    _report(
        "3 own notice",
        letter_minus_sms_letter_leaning=float(letter_leaning.mean()),
        letter_minus_sms_sms_leaning=float(sms_leaning.mean()),
        p=p,
    )
    assert letter_leaning.mean() > sms_leaning.mean() and p < ALPHA


@statistical
def test_3_best_call_hour_differs_by_daily_rhythm() -> None:
    """Pre-due robocall at 09:00 vs 19:00 (robocall lines ample, so the hour is the only difference).

    Early risers pay on time more after 09:00 calls, evening people after 19:00 calls: two Wilcoxon
    signed-rank tests on the paired on-time shares, one-sided, each at ALPHA.
    """
    n, seed = 5000, 105
    config = DEFAULT.with_overrides(capacity={"robocall_lines": 1000})
    morning = _outcomes(
        _run(ScriptedPolicy("call-9", {K.PRE_DUE: ROBOCALL}, hour=9), config, n=n, months=12, seed=seed)
    )
    evening = _outcomes(
        _run(ScriptedPolicy("call-19", {K.PRE_DUE: ROBOCALL}, hour=19), config, n=n, months=12, seed=seed)
    )
    diff = evening["on_time_share"] - morning["on_time_share"]
    early_people = diff[morning["hour_profile"] == "early"]
    evening_people = diff[morning["hour_profile"] == "evening"]
    p_early = _wilcoxon_greater(-early_people)
    p_evening = _wilcoxon_greater(evening_people)
    _report(
        "3 call hour",
        early_19h_minus_9h=float(early_people.mean()),
        p_early=p_early,
        evening_19h_minus_9h=float(evening_people.mean()),
        p_evening=p_evening,
    )
    assert early_people.mean() < 0 and p_early < ALPHA
    assert evening_people.mean() > 0 and p_evening < ALPHA


@statistical
def test_3_letter_effect_arrives_later_than_sms() -> None:
    """At the first MISSED decision: SMS vs letter vs nothing (13:00 slot), silent otherwise.

    The arms are identical up to that decision (checked). Then, per arrangement, the days to the next payment:

    * within 1 day: SMS arm pays more than the letter arm (exact sign test, ALPHA), and the letter arm is
      exactly the silent arm (the letter cannot have arrived yet);
    * within 5 days: the letter arm pays more than the silent arm (exact sign test, ALPHA): its effect comes;
    * among arrangements that pay within 14 days in both arms, the letter arm's delay is longer (Wilcoxon
      signed-rank, one-sided, ALPHA).
    """
    n, seed = 4000, 106
    delay, start = {}, {}
    for label, channels in (("none", {}), ("sms", {K.MISSED: SMS}), ("letter", {K.MISSED: LETTER})):
        ev = _events(_run(ScriptedPolicy(f"missed-{label}", channels), n=n, months=12, seed=seed))
        first = _first_decision(ev, "missed")["time"]
        start[label] = first
        delay[label] = _days_to_next_payment(ev, first)
    assert start["sms"].equals(start["none"]) and start["letter"].equals(start["none"])
    within = {f"{arm}{days}": (delay[arm] <= days).astype(int) for arm in delay for days in (1, 5)}
    n10, n01, p_fast = _sign_test(within["sms1"], within["letter1"])
    l10, l01, p_later = _sign_test(within["letter5"], within["none5"])
    both = (delay["sms"] <= 14) & (delay["letter"] <= 14)
    lag = (delay["letter"] - delay["sms"])[both]
    p_lag = _wilcoxon_greater(lag)
    _report(
        "3 letter delay",
        missed=len(start["none"]),
        paid_1d_sms=float(within["sms1"].mean()),
        paid_1d_letter=float(within["letter1"].mean()),
        paid_1d_none=float(within["none1"].mean()),
        p_sms_faster=p_fast,
        paid_5d_letter=float(within["letter5"].mean()),
        paid_5d_none=float(within["none5"].mean()),
        p_letter_later=p_later,
        mean_extra_days_letter=float(lag.mean()),
        p_lag=p_lag,
    )
    assert n10 > n01 and p_fast < ALPHA
    assert within["letter1"].equals(within["none1"])
    assert l10 > l01 and p_later < ALPHA
    assert lag.mean() > 0 and p_lag < ALPHA


# ----------------------------------------------------------------------------------------------------------
# 4. Fatigue
# ----------------------------------------------------------------------------------------------------------
@statistical
def test_4_beyond_some_contact_frequency_completion_falls() -> None:
    """Silent vs moderate (SMS before due and at a miss) vs heavy (moderate plus an SMS every day from day 2
    to day 30 after a miss); contact cap off, follow-up decision points daily in every arm.

    Exact sign tests on completion, one-sided, ALPHA: moderate beats silent (contact helps at first), heavy
    falls below moderate (too much contact hurts). Heavy contact also disengages more debtors (sign test).
    """
    n, seed = 4000, 107
    config = DEFAULT.with_overrides(
        rules={"contact_cap_enabled": False}, decisions={"follow_up_days": tuple(range(2, 31))}
    )
    moderate_channels = {K.PRE_DUE: SMS, K.MISSED: SMS}
    arms = {
        "silent": ScriptedPolicy("silent"),
        "moderate": ScriptedPolicy("moderate", moderate_channels),
        "heavy": ScriptedPolicy("heavy", {**moderate_channels, K.FOLLOW_UP: SMS}),
    }
    out = {k: _outcomes(_run(p, config, n=n, months=12, seed=seed)) for k, p in arms.items()}
    m10, m01, p_helps = _sign_test(out["moderate"]["completed"], out["silent"]["completed"])
    h10, h01, p_hurts = _sign_test(out["moderate"]["completed"], out["heavy"]["completed"])
    d10, d01, p_disengage = _sign_test(out["heavy"]["disengaged"], out["moderate"]["disengaged"])
    _report(
        "4 fatigue",
        **{f"completed_{k}": float(v["completed"].mean()) for k, v in out.items()},
        **{f"contacts_{k}": float(v["contacts"].mean()) for k, v in out.items()},
        p_moderate_gt_silent=p_helps,
        p_moderate_gt_heavy=p_hurts,
        disengaged_heavy=float(out["heavy"]["disengaged"].mean()),
        p_disengage=p_disengage,
    )
    assert out["heavy"]["contacts"].mean() > 2 * out["moderate"]["contacts"].mean()
    assert m10 > m01 and p_helps < ALPHA
    assert h10 > h01 and p_hurts < ALPHA
    assert d10 > d01 and p_disengage < ALPHA


# ----------------------------------------------------------------------------------------------------------
# 5. Shocks
# ----------------------------------------------------------------------------------------------------------
@statistical
def test_5_deferral_rescues_shock_hit_debtors_more_than_reminders_do() -> None:
    """At MISSED: the longest deferral the rules allow (no message) vs an SMS reminder; default rules.

    Outcome: the arrangement survives (neither broken nor referred). Shocks are drawn independently of the
    policy, so "hit by a shock" (ground truth) splits both arms the same way.

    * shock-hit debtors survive more often with deferral (exact sign test, one-sided, ALPHA);
    * deferral's paired advantage is larger for shock-hit than for other debtors (Mann-Whitney U on the paired
      differences, one-sided, ALPHA).
    """
    n, seed = 5000, 108
    defer = _outcomes(_run(ScriptedPolicy("defer", defer_at=(K.MISSED,)), n=n, months=12, seed=seed))
    sms = _outcomes(_run(ScriptedPolicy("sms", {K.MISSED: SMS}), n=n, months=12, seed=seed))
    shocked = (defer["shocks"] > 0).to_numpy()
    assert (sms["shocks"] > 0).to_numpy().tolist() == shocked.tolist()
    s10, s01, p_rescue = _sign_test(defer["survived"][shocked], sms["survived"][shocked])
    diff = defer["survived"] - sms["survived"]
    p_more = float(stats.mannwhitneyu(diff[shocked], diff[~shocked], alternative="greater").pvalue)
    _report(
        "5 shocks",
        shocked=int(shocked.sum()),
        broken_defer_shocked=float(defer["broken"][shocked].mean()),
        broken_sms_shocked=float(sms["broken"][shocked].mean()),
        discordant=f"{s10}/{s01}",
        p_rescue=p_rescue,
        gain_shocked=float(diff[shocked].mean()),
        gain_not_shocked=float(diff[~shocked].mean()),
        p_interaction=p_more,
    )
    assert s10 > s01 and p_rescue < ALPHA
    assert diff[shocked].mean() > diff[~shocked].mean() and p_more < ALPHA


# ----------------------------------------------------------------------------------------------------------
# 6. Motivation and habit
# ----------------------------------------------------------------------------------------------------------
@statistical
def test_6_thank_you_after_payment_raises_later_on_time_payment() -> None:
    """Thank-you SMS at PAYMENT_RECEIVED vs nothing, everything else silent.

    Outcome: on-time share of the installments after the first (a thank-you can only follow a payment).
    Wilcoxon signed-rank, one-sided, ALPHA; and completion (exact sign test, one-sided, ALPHA).
    """
    n, seed = 5000, 109

    def later_on_time(result: SimulationResult) -> tuple[pd.Series, pd.DataFrame]:
        ev = _events(result)
        out = _outcomes(result)
        later = ev["installment"] >= 1
        paid = ev[(ev["event"] == "installment_paid") & later & (ev["deferral_days"] <= 0)]
        due = ev[(ev["event"] == "installment_due") & later]
        on_time = paid.groupby("arrangement_id").size().reindex(out.index, fill_value=0)
        n_due = due.groupby("arrangement_id").size().reindex(out.index, fill_value=0)
        return on_time / n_due.clip(lower=1), out

    none_share, none_out = later_on_time(_run(ScriptedPolicy("no-thanks"), n=n, months=12, seed=seed))
    thanks_share, thanks_out = later_on_time(
        _run(ScriptedPolicy("thanks", {K.PAYMENT_RECEIVED: SMS}), n=n, months=12, seed=seed)
    )
    diff = thanks_share - none_share
    p_on_time = _wilcoxon_greater(diff)
    n10, n01, p_done = _sign_test(thanks_out["completed"], none_out["completed"])
    _report(
        "6 habit",
        later_on_time_none=float(none_share.mean()),
        later_on_time_thanks=float(thanks_share.mean()),
        p_on_time=p_on_time,
        discordant=f"{n10}/{n01}",
        p_completed=p_done,
    )
    assert diff.mean() > 0 and p_on_time < ALPHA
    assert n10 > n01 and p_done < ALPHA


# ----------------------------------------------------------------------------------------------------------
# 7. Hidden types
# ----------------------------------------------------------------------------------------------------------
@statistical
def test_7_hidden_types_differ_under_the_same_policy() -> None:
    """Under today's process (static dunning) the types differ in outcomes.

    Between types (different debtors, so two-sample): reliable payers complete more often than unwilling ones
    (Fisher's exact test, one-sided, ALPHA) by at least 30 points; completion depends on the type (chi-square
    test of independence over the five types, ALPHA).

    Paired: the same debtors, with the unwilling type's parameters replaced by the reliable type's, complete
    more often (exact sign test over the unwilling debtors, one-sided, ALPHA): the hidden parameters, not who
    the debtors are otherwise, make the difference.
    """
    n, seed = 4000, 110
    out = _outcomes(_run(StaticDunning(), n=n, months=12, seed=seed))
    rates = out.groupby("debtor_type", observed=True)["completed"].mean()
    table = pd.crosstab(out["debtor_type"], out["completed"])
    reliable, unwilling = table.loc["reliable"], table.loc["unwilling"]
    p_fisher = float(
        stats.fisher_exact([[reliable[1], reliable[0]], [unwilling[1], unwilling[0]]], alternative="greater").pvalue
    )
    p_chi2 = float(stats.chi2_contingency(table.to_numpy()).pvalue)

    reliable_params = DEFAULT.population.types["reliable"].model_dump(mode="python")
    reliable_params["share"] = DEFAULT.population.types["unwilling"].share  # keep who is drawn as which type
    swapped = DEFAULT.with_overrides(population={"types": {"unwilling": reliable_params}})
    cf = _outcomes(_run(StaticDunning(), swapped, n=n, months=12, seed=seed))
    u = (out["debtor_type"] == "unwilling").to_numpy()
    assert (cf["debtor_type"] == "unwilling").to_numpy().tolist() == u.tolist()
    c10, c01, p_paired = _sign_test(cf["completed"][u], out["completed"][u])
    _report(
        "7 types",
        **{f"completed_{t}": float(r) for t, r in rates.items()},
        p_fisher=p_fisher,
        p_chi2=p_chi2,
        unwilling_as_reliable=float(cf["completed"][u].mean()),
        discordant=f"{c10}/{c01}",
        p_paired=p_paired,
    )
    assert rates["reliable"] - rates["unwilling"] >= 0.3 and p_fisher < ALPHA
    assert p_chi2 < ALPHA
    assert c10 > c01 and p_paired < ALPHA


# ----------------------------------------------------------------------------------------------------------
# 8. Shared capacity
# ----------------------------------------------------------------------------------------------------------
@statistical
def test_8_saturated_collectors_make_escalations_wait() -> None:
    """Every MISSED and FOLLOW_UP escalated to a human collector; 1 collector vs 200.

    The arms are identical up to each arrangement's first escalation (checked), so its wait (from the decided
    send time to the ``message_sent`` of the call) is paired: Wilcoxon signed-rank, one-sided, ALPHA, over the
    escalations that were made in both arms. The collector queue is longer (``result.resources``), and fewer
    debtors pay within 3 days of the first escalation (exact sign test, one-sided, ALPHA).
    """
    n, seed, months = 3000, 111, 6
    policy_channels = {K.MISSED: COLLECTOR, K.FOLLOW_UP: COLLECTOR}
    first, queues, paid3 = {}, {}, {}
    for collectors in (1, 200):
        config = DEFAULT.with_overrides(capacity={"collectors": collectors})
        result = _run(ScriptedPolicy(f"escalate-{collectors}", policy_channels), config, n=n, months=months, seed=seed)
        ev = _events(result)
        esc = _first_decision(ev, "missed", channel=COLLECTOR)
        sent = ev.loc[(ev["event"] == "message_sent") & (ev["channel"] == "collector"), ["decision_id", "time"]]
        esc = esc.join(sent.set_index("decision_id")["time"].rename("sent_time"), on="decision_id")
        esc["wait"] = esc["sent_time"] - esc["send_time"]
        first[collectors] = esc
        q = result.resources[result.resources["resource"] == "collectors"]["queued"]
        queues[collectors] = q
        paid3[collectors] = (_days_to_next_payment(ev, esc["time"]) <= 3).astype(int)
    few, many = first[1], first[200]
    assert few.index.equals(many.index) and few["time"].equals(many["time"])
    both = few["wait"].notna() & many["wait"].notna()
    extra_wait = (few["wait"] - many["wait"])[both]
    p_wait = _wilcoxon_greater(extra_wait)
    n10, n01, p_paid = _sign_test(paid3[200], paid3[1])
    _report(
        "8 capacity",
        escalations=int(both.sum()),
        wait_1=float(few["wait"][both].mean()),
        wait_200=float(many["wait"][both].mean()),
        p_wait=p_wait,
        max_queue_1=int(queues[1].max()),
        mean_queue_1=float(queues[1].mean()),
        mean_queue_200=float(queues[200].mean()),
        paid_3d_1=float(paid3[1].mean()),
        paid_3d_200=float(paid3[200].mean()),
        p_paid=p_paid,
    )
    assert extra_wait.mean() > 0 and p_wait < ALPHA
    assert queues[1].max() > 0 and queues[1].mean() > queues[200].mean()
    assert n10 > n01 and p_paid < ALPHA


# ----------------------------------------------------------------------------------------------------------
# 9. Breakdown
# ----------------------------------------------------------------------------------------------------------
@statistical
def test_9_fewer_allowed_overdue_installments_break_more_arrangements() -> None:
    """Static dunning with ``breakdown_after_missed`` 2 vs 3 on the same debtors.

    Exact sign test on "broken", one-sided, ALPHA: the stricter rule breaks more arrangements. And every
    broken arrangement had at least that many missed installments logged before it broke, or at least one and
    then its oldest open installment overdue too long (``breakdown_after_overdue_days``: the last installment
    can break a plan too): then it broke at least that many days, less the grace days, after its first miss.
    """
    n, seed = 4000, 112
    out, events = {}, {}
    for k in (2, 3):
        config = DEFAULT.with_overrides(arrangements={"breakdown_after_missed": k})
        result = _run(StaticDunning(), config, n=n, months=12, seed=seed)
        out[k], events[k] = _outcomes(result), _events(result)
    n10, n01, p = _sign_test(out[2]["broken"], out[3]["broken"])
    _report(
        "9 breakdown",
        broken_2=float(out[2]["broken"].mean()),
        broken_3=float(out[3]["broken"].mean()),
        discordant=f"{n10}/{n01}",
        p=p,
    )
    assert n10 > n01 and p < ALPHA
    for k, ev in events.items():
        broke = ev.loc[ev["event"] == "broken"].groupby("arrangement_id")["time"].min()
        missed = ev.loc[ev["event"] == "installment_missed", ["arrangement_id", "time"]]
        missed = missed.merge(broke.rename("t_broken"), left_on="arrangement_id", right_index=True)
        before = missed[missed["time"] <= missed["t_broken"]]
        counts = before.groupby("arrangement_id").size().reindex(broke.index, fill_value=0)
        assert counts.min() >= 1
        few = counts.index[counts < k]
        arr = DEFAULT.arrangements
        waited = broke[few] - before.groupby("arrangement_id")["time"].min()[few]
        assert (waited >= arr.breakdown_after_overdue_days - arr.grace_days).all(), waited.min()
