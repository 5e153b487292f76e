"""The report's verdict in words, written from an :class:`~agents.evaluate.Evaluation`'s numbers alone.

:func:`verdict_text` answers the product owner's question in a few plain sentences: which evaluated policy does
best, how many more arrangements it completes and how many more euros it brings in net of contact cost and
concessions, per 10,000 arrangements, with the 95 % paired intervals, and where the baseline is better (the
KPIs and segments in which the interval excludes zero against the policy). When no difference on the headline
figures is significant it says so.

Rules (stated here because the words depend on them):

* **Candidates** are the evaluated policies other than the baseline and the reference policies
  (:data:`REFERENCE_POLICIES`, which see what no deployed policy can: the hindsight oracle, the one-step oracle),
  and other than the evaluation's ``oracle``.
* **The best** candidate is the one with the largest difference in net recovery per arrangement
  (:data:`EURO_KPI`), the objective of the run-off evaluation; in an evaluation without that KPI (made before it
  existed) the euros collected per arrangement stand in, and the text says that they are gross.
* A difference is **significant** when its 95 % interval excludes zero; whether it is better or worse follows
  the KPI's direction (:data:`experiments.plot_style.LOWER_IS_BETTER`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from agents.evaluate import Evaluation
from experiments.plot_style import KPI_LABELS, format_diff, format_value, verdict

__all__ = [
    "COMPLETION_KPI",
    "euro_kpi",
    "EURO_KPI",
    "GROSS_EURO_KPI",
    "PER_ARRANGEMENTS",
    "REFERENCE_POLICIES",
    "VERDICT_KPIS",
    "Headline",
    "headline",
    "verdict_text",
]

#: The portfolio size the verdict's numbers are scaled to.
PER_ARRANGEMENTS = 10_000

#: The completion KPI (a share of arrangements).
COMPLETION_KPI = "completion_rate"

#: The euro KPI the best policy is chosen by: collected minus contact cost (net of concessions), per arrangement.
EURO_KPI = "net_recovery_eur_per_arrangement"

#: The stand-in for :data:`EURO_KPI` in an evaluation made before net recovery was measured.
GROSS_EURO_KPI = "collected_eur_per_arrangement"

#: Policies that are references, never a recommendation: they use what no deployed policy can know.
REFERENCE_POLICIES: frozenset[str] = frozenset({"hindsight-oracle", "one-step-oracle", "oracle"})

#: KPIs on which the verdict looks for places where the baseline is better.
VERDICT_KPIS: tuple[str, ...] = (
    "completion_rate",
    "net_recovery_eur_per_arrangement",
    "recovered_share",
    "collected_eur_per_arrangement",
    "on_time_installment_rate",
    "breakdown_rate",
    "contacts_per_arrangement",
    "cost_per_eur_collected",
)


@dataclass(frozen=True)
class Headline:
    """A policy's two headline differences to the baseline, per :data:`PER_ARRANGEMENTS` arrangements.

    Attributes:
        policy: The policy.
        completions: More completed arrangements (negative: fewer).
        completions_low: Lower end of its 95 % interval.
        completions_high: Upper end.
        euros: More euros net (or gross, see ``euro_kpi``); negative: fewer.
        euros_low: Lower end of its 95 % interval.
        euros_high: Upper end.
        euro_kpi: The KPI the euros come from (:data:`EURO_KPI`, or :data:`GROSS_EURO_KPI` for an old evaluation).
    """

    policy: str
    completions: float
    completions_low: float
    completions_high: float
    euros: float
    euros_low: float
    euros_high: float
    euro_kpi: str

    @property
    def completions_significant(self) -> bool:
        """Whether the completions' interval excludes zero."""
        return _excludes_zero(self.completions_low, self.completions_high)

    @property
    def euros_significant(self) -> bool:
        """Whether the euros' interval excludes zero."""
        return _excludes_zero(self.euros_low, self.euros_high)


def _excludes_zero(lo: float, hi: float) -> bool:
    return math.isfinite(lo) and math.isfinite(hi) and (lo > 0 or hi < 0)


def euro_kpi(evaluation: Evaluation) -> str:
    """:data:`EURO_KPI` if the evaluation has it, else :data:`GROSS_EURO_KPI`."""
    return EURO_KPI if EURO_KPI in set(evaluation.frame["kpi"]) else GROSS_EURO_KPI


def candidates(evaluation: Evaluation) -> list[str]:
    """The policies a verdict may recommend (see the module docstring), in evaluation order."""
    skip = {evaluation.baseline, evaluation.oracle, *REFERENCE_POLICIES}
    return [p for p in evaluation.policies if p not in skip]


def headline(evaluation: Evaluation, policy: str) -> Headline:
    """The policy's headline differences to the baseline, scaled to :data:`PER_ARRANGEMENTS` arrangements."""
    ek = euro_kpi(evaluation)
    c = evaluation.row(policy, COMPLETION_KPI)
    e = evaluation.row(policy, ek)
    k = float(PER_ARRANGEMENTS)
    return Headline(
        policy,
        float(c["diff"]) * k,
        float(c["ci_low"]) * k,
        float(c["ci_high"]) * k,
        float(e["diff"]) * k,
        float(e["ci_low"]) * k,
        float(e["ci_high"]) * k,
        ek,
    )


def _count(v: float) -> str:
    return f"{v:+,.0f}" if math.isfinite(v) else "n/a"


def _more(v: float, what: str) -> str:
    """``"15 fewer arrangements"`` / ``"EUR 3,000 more"``-style words for a signed difference."""
    if not math.isfinite(v):
        return f"an unknown number of {what}"
    n = f"{abs(v):,.0f}"
    if what == "EUR":
        return f"EUR {n} {'more' if v >= 0 else 'less'}"
    return f"{n} {'more' if v >= 0 else 'fewer'} {what}"


def _eur(v: float) -> str:
    if not math.isfinite(v):
        return "n/a"
    return f"{'+' if v >= 0 else '-'}EUR {abs(v):,.0f}"


def _horizon(evaluation: Evaluation) -> str:
    meta = evaluation.meta
    months = meta.get("months")
    if months is None and meta.get("runoff") is not None:
        text = "at run-off (each arrangement followed to its end"
        censored = _value_or_nan(evaluation, evaluation.baseline, "censored_rate")
        if math.isfinite(censored):
            text += f"; {format_value('censored_rate', censored)} still open at the cap under the baseline"
        return text + ")"
    if months is not None:
        return f"after a fixed horizon of {months} months (not a run-off: open arrangements are cut off)"
    return "at the evaluation's horizon"


def _value_or_nan(evaluation: Evaluation, policy: str, kpi: str, segment: str = "all") -> float:
    try:
        return float(evaluation.row(policy, kpi, segment)["value"])
    except KeyError:
        return math.nan


def _segment_words(segment: str) -> str:
    name, _, label = segment.partition("=")
    if name == "debt_eur":
        return f"debts {label} EUR"
    if name == "debtor_type":
        return f"{label.replace('_', ' ')} debtors"
    return label.replace("_", " ") or segment


def baseline_better(evaluation: Evaluation, policy: str, kpis: tuple[str, ...] = VERDICT_KPIS) -> list[str]:
    """Where the baseline is significantly better than ``policy``: one phrase per (segment, KPI).

    The whole population on every KPI of ``kpis`` first, then each segment on the two headline KPIs
    (completions and the euro KPI), in the evaluation's order; a KPI the evaluation lacks is skipped.
    """
    present = set(evaluation.frame["kpi"])
    headline_kpis = (COMPLETION_KPI, euro_kpi(evaluation))
    out = []
    for segment in evaluation.segments:
        for kpi in kpis if segment == "all" else headline_kpis:
            if kpi not in present:
                continue
            try:
                r = evaluation.row(policy, kpi, segment)
            except KeyError:
                continue
            lo, hi = float(r["ci_low"]), float(r["ci_high"])
            if verdict(kpi, lo, hi) != "worse":
                continue
            where = "" if segment == "all" else f" for {_segment_words(segment)}"
            out.append(
                f"{KPI_LABELS.get(kpi, kpi)}{where} ({format_diff(kpi, float(r['diff']))}, "
                f"95 % interval {format_diff(kpi, lo)} to {format_diff(kpi, hi)})"
            )
    return out


def _headline_sentence(h: Headline, baseline: str) -> str:
    money = (
        "net of contact cost and concessions"
        if h.euro_kpi == EURO_KPI
        else "collected (gross: this evaluation has no net recovery)"
    )
    return (
        f"Per {PER_ARRANGEMENTS:,} arrangements, {h.policy} completes {_more(h.completions, 'arrangements')} "
        f"(95 % interval {_count(h.completions_low)} to {_count(h.completions_high)}) and brings in "
        f"{_more(h.euros, 'EUR')} {money} (95 % interval {_eur(h.euros_low)} to {_eur(h.euros_high)}) than "
        f"{baseline}."
    )


def verdict_text(evaluation: Evaluation) -> str:
    """The verdict in plain words (see the module docstring for the rules); plain text, no markup.

    Raises:
        KeyError: The evaluation lacks the completion rate or both euro KPIs.
    """
    base = evaluation.baseline
    pool = candidates(evaluation)
    horizon = _horizon(evaluation)
    if not pool:
        return f"Only the baseline {base} (and reference policies) were evaluated: there is no policy to recommend."
    heads = [headline(evaluation, p) for p in pool]
    best = max(heads, key=lambda h: h.euros if math.isfinite(h.euros) else -math.inf)
    sentences = []
    if best.euros_significant and best.euros > 0:
        sentences.append(f"Verdict {horizon}: {best.policy} does best of the evaluated policies.")
    elif any(h.completions_significant or h.euros_significant for h in heads):
        sentences.append(
            f"Verdict {horizon}: no evaluated policy brings in significantly more euros than {base}; "
            f"{best.policy} comes closest."
        )
    else:
        sentences.append(
            f"Verdict {horizon}: no difference to {base} is significant: no evaluated policy completes more "
            f"arrangements or brings in more euros than {base} by more than chance would explain."
        )
    sentences.append(_headline_sentence(best, base))
    worse = baseline_better(evaluation, best.policy)
    if worse:
        sentences.append(f"{base} is better than {best.policy} on " + "; ".join(worse) + ".")
    else:
        sentences.append(f"{base} is not significantly better than {best.policy} on any key figure or segment.")
    close = [
        h.policy
        for h in heads
        if h.policy != best.policy and math.isfinite(h.euros_high) and h.euros_high >= best.euros_low
    ]
    if close and best.euros_significant:
        sentences.append(
            f"{', '.join(close)} {'is' if len(close) == 1 else 'are'} not clearly behind {best.policy}: the "
            "intervals overlap."
        )
    for h in heads:
        if h.policy == best.policy:
            continue
        sentences.append(
            f"{h.policy}: {_count(h.completions)} completions ({_count(h.completions_low)} to "
            f"{_count(h.completions_high)}) and {_eur(h.euros)} ({_eur(h.euros_low)} to {_eur(h.euros_high)})."
        )
    return " ".join(sentences)
