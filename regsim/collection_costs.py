"""Statutory extrajudicial collection costs for consumers in the Netherlands (F8, docs/calibration.md).

The Besluit vergoeding voor buitengerechtelijke incassokosten caps what a creditor may charge a consumer for
collection: a sliding percentage of the principal, at least EUR 40 and at most EUR 6,775. They may only be
charged after a free reminder that gives the debtor 14 days to pay (the ledger checks that letter).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

__all__ = ["statutory_collection_costs"]

#: The bands: (upper bound of the principal, rate on the part of the principal within the band).
_WIK_BANDS = ((2_500.0, 0.15), (5_000.0, 0.10), (10_000.0, 0.05), (200_000.0, 0.01), (np.inf, 0.005))
_WIK_MIN, _WIK_MAX = 40.0, 6_775.0


def statutory_collection_costs(principal: NDArray[np.float64]) -> NDArray[np.float64]:
    """Dutch statutory extrajudicial collection costs (Besluit vergoeding buitengerechtelijke incassokosten, F8).

    15% of the first EUR 2,500, 10% of the next 2,500, 5% of the next 5,000, 1% of the next 190,000 and
    0.5% above, at least EUR 40 and at most EUR 6,775.
    """
    p = np.asarray(principal, dtype=np.float64)
    cost = np.zeros_like(p)
    lower = 0.0
    for upper, rate in _WIK_BANDS:
        cost += rate * np.clip(p - lower, 0.0, upper - lower)
        lower = upper
    return np.where(p > 0, np.clip(cost, _WIK_MIN, _WIK_MAX), 0.0).round(2)
