"""Linear contextual bandits over the shared features: ``epsilon-greedy``, ``linucb`` and ``linear-ts``.

* :mod:`agents.bandits.design`: the design matrix (bias + a named subset of :mod:`regsim.features`).
* :mod:`agents.bandits.heads`: the three heads (contact, due day, relief) a decision is split into, their
  arms and which arms a row's mask allows.
* :mod:`agents.bandits.linear`: per-arm ridge statistics, updated in batches.
* :mod:`agents.bandits.base`: deciding, learning from delayed feedback, state, saving and loading.
* :mod:`agents.bandits.epsilon_greedy`, :mod:`agents.bandits.linucb`, :mod:`agents.bandits.thompson`: the
  three exploration rules.

Why not a library. Open Bandit Pipeline (``obp``) 0.5.x requires Python < 3.11 (pip falls back to 0.4.1, from
2021, which pulls matplotlib, seaborn and scikit-learn), and ``contextualbandits`` builds Cython extensions
and pulls scikit-learn. Neither supports per-row action masks, a factored (multi-head) action, or
vectorised batch decisions with propensities (OBP's ``LinUCB``/``LinTS`` select and update one context at a
time, in Python), and both persist models by pickle. The algorithms themselves are a few lines of linear
algebra each, written here against the decision contract and tested against a problem with a known optimum.

Importing this package registers the three policies (see :mod:`agents.registry`).
"""

from agents.bandits.base import BanditConfig, LinearBandit, load_bandit, register_artifact_loaders
from agents.bandits.epsilon_greedy import EpsilonGreedy, EpsilonGreedyConfig
from agents.bandits.heads import Head, build_heads
from agents.bandits.linear import RidgeArms
from agents.bandits.linucb import LinUCB, LinUCBConfig
from agents.bandits.thompson import LinearTS, LinearTSConfig

__all__ = [
    "BanditConfig",
    "EpsilonGreedy",
    "EpsilonGreedyConfig",
    "Head",
    "LinUCB",
    "LinUCBConfig",
    "LinearBandit",
    "LinearTS",
    "LinearTSConfig",
    "RidgeArms",
    "build_heads",
    "load_bandit",
]

register_artifact_loaders()
