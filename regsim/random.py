"""Common random numbers: every draw is a pure function of (run seed, purpose, debtor, day, index).

A policy's actions can change *which* draws the world asks for, but never the *value* of any draw: debtor 17's
income noise on day 40 is the same number whatever was sent to debtor 16 or to debtor 17 itself. Two policies
run with the same seed therefore face the same debtors and the same shocks (common random numbers), and
paired comparisons need far fewer arrangements for the same precision.

The draws use a keyed SplitMix64 finaliser over integer arrays (Steele, Lea & Flood, "Fast splittable
pseudorandom number generators", OOPSLA 2014), which vectorises over debtors at a few NumPy operations per
draw. Streams that do not belong to a debtor (e.g. a policy's exploration) are ordinary NumPy generators,
seeded from the run seed and the purpose through :class:`numpy.random.SeedSequence`.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np
from numpy.typing import NDArray
from scipy.special import ndtri

__all__ = ["Purpose", "Streams"]

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_S30, _S27, _S31, _S11, _S20 = (np.uint64(s) for s in (30, 27, 31, 11, 20))
_TO_UNIT = 2.0**-53
# The same constants as 0-d arrays, for the array operands of the hash: a ufunc converts a NumPy scalar operand
# on every call, a 0-d array it takes as it is (about a third less per operation on small arrays; same words).
_M1_A, _M2_A, _GOLDEN_A = (np.array(c, dtype=np.uint64) for c in (_M1, _M2, _GOLDEN))
_S30_A, _S27_A, _S31_A, _S11_A, _S20_A = (np.array(c, dtype=np.uint64) for c in (_S30, _S27, _S31, _S11, _S20))
_INT64 = np.dtype(np.int64)
# The same constants as Python integers, for the few-word path (:func:`_small_words`).
_M1_INT, _M2_INT, _GOLDEN_INT = int(_M1), int(_M2), int(_GOLDEN)
_MASK = (1 << 64) - 1
_SMALL = 12  # at most this many words (purposes x ids) are hashed in Python integers: cheaper than ~30 ufunc calls


class Purpose(IntEnum):
    """What a draw is for. Values are part of the seeding scheme: never renumber, only append."""

    TYPE = 1
    INCOME_SCHEDULE = 2
    INCOME_DAY = 3
    INCOME_AMOUNT = 4
    DEBT = 5
    NOTICE_SPREAD = 6
    HOUR_PROFILE = 7
    ARRIVAL = 8
    PRIOR_HISTORY = 9
    INCOME_NOISE = 10
    SHOCK_START = 11
    SHOCK_LENGTH = 12
    ATTEND = 13
    PAY_HOUR = 14
    PARTIAL = 15
    NOTICE = 16
    READ_DELAY = 17
    LINK_PAY = 18
    OPEN_SIGNAL = 19
    DELIVERY_DELAY = 20
    DISENGAGE = 21
    OPT_OUT = 22
    REFERRAL = 23
    WILLING = 24
    POLICY = 25
    PRIOR_DAY = 26
    MENU_VISIT = 27
    """Whether a debtor follows a reminder's link to the self-service page."""
    MENU_CHOICE = 28
    """The taste shocks of the debtor's choice on the page (one per option type: the index)."""


def _mix(z: NDArray[np.uint64]) -> NDArray[np.uint64]:
    """The SplitMix64 finaliser, in place (``z`` must be a fresh array the caller owns); returns ``z``."""
    z ^= z >> _S30_A
    z *= _M1_A
    z ^= z >> _S27_A
    z *= _M2_A
    z ^= z >> _S31_A
    return z


def _mix_int(z: int) -> int:
    """One round of :func:`_mix` on a Python integer already reduced modulo 2**64 (the same word)."""
    z ^= z >> 30
    z = (z * _M1_INT) & _MASK
    z ^= z >> 27
    z = (z * _M2_INT) & _MASK
    return z ^ (z >> 31)


def _small_words(
    keys: tuple[int, ...], ids: list[int], days: list[int] | int, index: list[int] | int
) -> list[list[int]]:
    """:func:`_mix`'s three rounds in Python integers (reduced modulo 2**64): the words of the NumPy path exactly.

    ``ids`` (and ``days``, ``index`` when lists) are the elements' integers; a negative one is taken modulo 2**64
    (two's complement, as the NumPy path's cast to uint64 does). One list of words per key.
    """
    mask, m1, m2, golden = _MASK, _M1_INT, _M2_INT, _GOLDEN_INT
    n = len(ids)
    day_list = days if isinstance(days, list) else [days] * n
    index_list = index if isinstance(index, list) else [index] * n
    tails = [
        ((d & mask) * m1 + (((x & mask) << 20) & mask) * m2) & mask for d, x in zip(day_list, index_list, strict=True)
    ]
    return [
        [
            _mix_int((_mix_int((_mix_int((key + (i & mask) * golden) & mask) + tail) & mask) + golden) & mask)
            for i, tail in zip(ids, tails, strict=True)
        ]
        for key in keys
    ]


def _small_args(
    n_keys: int, ids: NDArray[np.integer] | int, day: NDArray[np.integer] | int, index: NDArray[np.integer] | int
) -> tuple[list[int], list[int] | int, list[int] | int] | None:
    """The arguments as Python integers when they are few and need no broadcasting (else ``None``).

    Few: a 1-D integer vector of ids with at most :data:`_SMALL` words in all; ``day`` and ``index`` each an
    integer, or an integer vector of the ids' shape.
    """
    if type(ids) is not np.ndarray or ids.ndim != 1 or n_keys * ids.shape[0] > _SMALL or ids.dtype.kind not in "iu":
        return None
    parts: list[list[int] | int] = []
    for x in (day, index):
        if isinstance(x, int | np.integer):
            parts.append(int(x))
        elif type(x) is np.ndarray and x.shape == ids.shape and x.dtype.kind in "iu":
            parts.append(x.tolist())
        else:
            return None
    return ids.tolist(), parts[0], parts[1]


def _as_u64(x: NDArray[np.integer] | int) -> NDArray[np.uint64]:
    """Integers as uint64 words, wrapping negatives (two's complement, as ``astype`` does)."""
    a = np.asarray(x)
    return a.view(np.uint64) if a.dtype == np.int64 else a.astype(np.uint64)


def _tail(day: NDArray[np.integer] | int, index: NDArray[np.integer] | int) -> NDArray[np.uint64] | np.uint64:
    """The day-and-index term of the second round, ``day * M1 + (index << 20) * M2`` modulo 2**64.

    Scalars are combined in Python integers (exact, then reduced), arrays with wrapping uint64 arithmetic: the
    same words either way. No operation is on two NumPy scalars (those would warn on overflow). An index of 0
    adds nothing, so it costs nothing.
    """
    day_scalar, index_scalar = np.ndim(day) == 0, np.ndim(index) == 0
    day_term = (int(day) * _M1_INT) & _MASK if day_scalar else 0
    index_term = (((int(index) << 20) & _MASK) * _M2_INT) & _MASK if index_scalar else 0
    if day_scalar and index_scalar:
        return np.uint64((day_term + index_term) & _MASK)
    if day_scalar:
        term = (_as_u64(index) << _S20) * _M2
        return term + np.uint64(day_term) if day_term else term
    term = _as_u64(day) * _M1
    if not index_scalar:
        term = term + (_as_u64(index) << _S20) * _M2  # (the two may broadcast to a larger shape)
    elif index_term:
        term += np.uint64(index_term)
    return term


def _fits(x: NDArray[np.integer] | int, ids: NDArray[np.integer]) -> bool:
    """Whether ``ids`` are int64 and ``x`` is one value for them all or one per id: nothing to broadcast."""
    return ids.dtype == np.int64 and (np.ndim(x) == 0 or (isinstance(x, np.ndarray) and x.shape == ids.shape))


def _to_unit(b: NDArray[np.uint64]) -> NDArray[np.float64]:
    """The top 53 bits as a float in the open interval (0, 1)."""
    u = (b >> _S11_A).astype(np.float64)
    u += 0.5
    u *= _TO_UNIT
    return u


def _aligned(x: object, ids: NDArray[np.integer]) -> bool:
    """Whether ``x`` (a day or an index) is a Python integer or an int64 array of the ids' shape."""
    return type(x) is int or (type(x) is np.ndarray and x.shape == ids.shape and x.dtype == _INT64)


def _as_ints(x: NDArray[np.integer] | int) -> list[int] | int:
    """An array's elements as Python integers; an integer as it is."""
    return x.tolist() if type(x) is np.ndarray else int(x)


def _small_units(
    keys: tuple[int, ...], ids: list[int], days: list[int] | int, index: list[int] | int
) -> list[list[float]]:
    """:func:`_small_words` scaled to uniforms as :func:`_to_unit` scales them: ``(float(w >> 11) + 0.5) * 2**-53``.

    The conversion of ``w >> 11`` (below 2**53) to a float is exact, and the addition and the power-of-two
    scaling are the same IEEE operations as the array path's.
    """
    scale = _TO_UNIT
    return [[((w >> 11) + 0.5) * scale for w in row] for row in _small_words(keys, ids, days, index)]


def _hash_aligned(
    keys: NDArray[np.uint64], ids: NDArray[np.int64], day: NDArray[np.int64] | int, index: NDArray[np.int64] | int
) -> NDArray[np.uint64]:
    """:meth:`Streams._bits` of int64 ``ids`` whose ``day`` and ``index`` are each a Python integer or an int64
    array of the ids' shape: nothing to broadcast, so only the hash's own operations are run, on 0-d constants.

    The words are those of the general path: the same wrapping uint64 operations on each element (additions
    modulo 2**64 may be grouped in any order; int64 values are viewed as their two's-complement words).
    """
    z = keys.reshape((len(keys),) + (1,) * ids.ndim) + ids.view(np.uint64) * _GOLDEN_A
    _mix(z)
    if isinstance(day, int):  # (an int or an int64 array here: see Streams._units)
        if day:
            z += np.array((day * _M1_INT) & _MASK, dtype=np.uint64)
    else:
        z += day.view(np.uint64) * _M1_A
    if isinstance(index, int):
        if index:
            z += np.array((((index << 20) & _MASK) * _M2_INT) & _MASK, dtype=np.uint64)
    else:
        z += (index.view(np.uint64) << _S20_A) * _M2_A
    _mix(z)
    z += _GOLDEN_A
    return _mix(z)


class Streams:
    """The run's random streams, all derived from one seed.

    Args:
        seed: The run seed (a non-negative integer below 2**63).
    """

    def __init__(self, seed: int) -> None:
        if not 0 <= int(seed) < 2**63:
            raise ValueError(f"seed must be in [0, 2**63), got {seed}")
        self.seed = int(seed)
        with np.errstate(over="ignore"):
            self._key = _mix(np.array([self.seed], dtype=np.uint64) + _GOLDEN)[0]
            self._purpose_keys = {int(p): self._key ^ (np.uint64(int(p)) * _GOLDEN) for p in Purpose}
        # The keys as the arrays _bits takes, built once (per purpose, and per tuple of purposes when asked), and
        # as Python integers (the few-word path).
        self._key_arrays: dict[object, NDArray[np.uint64]] = {
            p: np.array([k], dtype=np.uint64) for p, k in self._purpose_keys.items()
        }
        self._key_ints: dict[object, tuple[int, ...]] = {p: (int(k),) for p, k in self._purpose_keys.items()}

    def bits(
        self,
        purpose: Purpose,
        ids: NDArray[np.integer] | int,
        day: NDArray[np.integer] | int = 0,
        index: NDArray[np.integer] | int = 0,
    ) -> NDArray[np.uint64]:
        """64 random bits per element: a pure function of (seed, purpose, id, day, index).

        Args:
            purpose: What the draw is for.
            ids: Debtor (arrangement) ids, any integer array shape.
            day: Simulation day, broadcast against ``ids``.
            index: A further counter (e.g. message number), broadcast against ``ids``.
        """
        return self._bits(self._key_arrays[int(purpose)], ids, day, index)[0]

    def _keys(self, purposes: tuple[Purpose, ...]) -> NDArray[np.uint64]:
        """The key array of a tuple of purposes (built once)."""
        keys = self._key_arrays.get(purposes)
        if keys is None:
            keys = np.array([self._purpose_keys[int(p)] for p in purposes], dtype=np.uint64)
            self._key_arrays[purposes] = keys
            self._key_ints[purposes] = tuple(int(k) for k in keys)
        return keys

    def _units(
        self,
        which: object,
        ids: NDArray[np.integer] | int,
        day: NDArray[np.integer] | int,
        index: NDArray[np.integer] | int,
    ) -> NDArray[np.float64]:
        """Uniforms of the purposes ``which`` (an ``int(purpose)`` or a tuple of purposes with its keys built):
        shape ``(len(keys), *broadcast shape)``.

        The common call (an int64 array of ids; the day and the index each a Python integer or an int64 array
        of the ids' shape) is recognised by a few type checks and hashed without broadcasting machinery
        (:func:`_hash_aligned`); a few such draws are hashed and scaled in Python integers and floats
        (:func:`_small_units`: the same words, and the same IEEE operations as :func:`_to_unit`). Anything else
        takes the general path (:meth:`_bits`). Every path gives the same draws bit for bit.
        """
        keys = self._key_arrays[which]
        if type(ids) is np.ndarray and ids.dtype == _INT64 and ids.ndim and _aligned(day, ids) and _aligned(index, ids):
            if len(keys) * ids.size <= _SMALL and ids.ndim == 1:
                words = _small_units(self._key_ints[which], ids.tolist(), _as_ints(day), _as_ints(index))
                return np.array(words, dtype=np.float64).reshape(len(keys), ids.size)
            return _to_unit(_hash_aligned(keys, ids, day, index))  # type: ignore[arg-type]
        small = _small_args(len(keys), ids, day, index)
        if small is None:
            return _to_unit(self._bits(keys, ids, day, index))
        words = _small_units(self._key_ints[which], *small)
        return np.array(words, dtype=np.float64).reshape(len(keys), len(small[0]))

    def _bits(
        self,
        keys: NDArray[np.uint64],
        ids: NDArray[np.integer] | int,
        day: NDArray[np.integer] | int,
        index: NDArray[np.integer] | int,
    ) -> NDArray[np.uint64]:
        """:meth:`bits` for several purpose keys at once: shape ``(len(keys), *broadcast shape)``.

        The hash of each word is the same sequence of wrapping uint64 operations as one purpose at a time
        (additions modulo 2**64 may be grouped in any order), so every draw is the same bit for bit.
        """
        if type(ids) is np.ndarray and ids.ndim == 1 and _fits(day, ids) and _fits(index, ids):
            # The common case (a vector of ids, days and indexes alike or shared): no broadcasting to work out.
            # Every operand is an array here (a scalar tail is added to one), and array arithmetic wraps silently.
            z = keys[:, None] + ids.view(np.uint64) * _GOLDEN
            z = _mix(z)
            z += _tail(day, index)
            z = _mix(z)
            z += _GOLDEN
            return _mix(z)
        # Wrapping on overflow is what the hash wants (0-d operands would otherwise warn).
        with np.errstate(over="ignore"):
            base = _as_u64(ids) * _GOLDEN
            tail = _tail(day, index)
            shape = np.broadcast_shapes(np.shape(base), np.shape(tail))
            z = keys.reshape((len(keys),) + (1,) * len(shape)) + base
            if z.shape[1:] != shape:
                z = np.broadcast_to(z, (len(keys), *shape)).copy()
            z = _mix(z)
            z += tail
            z = _mix(z)
            z += _GOLDEN
            return _mix(z)

    def uniforms(
        self,
        purposes: tuple[Purpose, ...],
        ids: NDArray[np.integer] | int,
        day: NDArray[np.integer] | int = 0,
        index: NDArray[np.integer] | int = 0,
    ) -> NDArray[np.float64]:
        """Uniform draws of several purposes for the same keys, one row per purpose (shape ``(P, ...)``).

        Row ``k`` equals ``uniform(purposes[k], ids, day, index)`` bit for bit; hashing them together only
        saves the per-call work.
        """
        self._keys(purposes)
        return self._units(purposes, ids, day, index)

    def uniform(
        self,
        purpose: Purpose,
        ids: NDArray[np.integer] | int,
        day: NDArray[np.integer] | int = 0,
        index: NDArray[np.integer] | int = 0,
    ) -> NDArray[np.float64]:
        """Uniform draws in the open interval (0, 1); see :meth:`bits` for the arguments."""
        return self._units(int(purpose), ids, day, index)[0]

    def normal(
        self,
        purpose: Purpose,
        ids: NDArray[np.integer] | int,
        day: NDArray[np.integer] | int = 0,
        index: NDArray[np.integer] | int = 0,
    ) -> NDArray[np.float64]:
        """Standard normal draws by the inverse CDF; see :meth:`bits` for the arguments."""
        return np.asarray(ndtri(self.uniform(purpose, ids, day, index)), dtype=np.float64)

    def exponential(
        self,
        purpose: Purpose,
        ids: NDArray[np.integer] | int,
        day: NDArray[np.integer] | int = 0,
        index: NDArray[np.integer] | int = 0,
    ) -> NDArray[np.float64]:
        """Exponential draws with mean 1; see :meth:`bits` for the arguments."""
        return -np.log(self.uniform(purpose, ids, day, index))

    def categorical(
        self,
        purpose: Purpose,
        ids: NDArray[np.integer] | int,
        probs: NDArray[np.float64] | list[float],
        day: NDArray[np.integer] | int = 0,
    ) -> NDArray[np.int64]:
        """Category indices drawn with the given probabilities (one distribution for all elements)."""
        cdf = np.cumsum(np.asarray(probs, dtype=np.float64))
        cdf /= cdf[-1]
        idx = np.searchsorted(cdf, self.uniform(purpose, ids, day), side="right")
        return np.minimum(idx, len(cdf) - 1).astype(np.int64)

    def generator(self, purpose: Purpose, *extra: int) -> np.random.Generator:
        """An ordinary NumPy generator for a stream that belongs to no debtor (e.g. policy exploration)."""
        return np.random.Generator(np.random.PCG64(np.random.SeedSequence([self.seed, int(purpose), *extra])))
