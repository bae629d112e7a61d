"""The search-space base: named decisions, and vectorized operations on (N, D) arrays of choice indices."""

from __future__ import annotations

import json
import math
from functools import cached_property
from typing import Any, Callable, Sequence

import numpy as np

from search_spaces.decisions import Decision
from search_spaces.errors import UserInputError

_FNV_OFFSET = np.uint64(14695981039346656037)
_FNV_PRIME = np.uint64(1099511628211)
_DRAWS = 1 << 16  # sample and mutate draw 16-bit integers
_CHUNK_ROWS = 4096
_ENUMERATE_LIMIT = 2_000_000


def as_rng(rng) -> np.random.Generator:
    """A numpy Generator from a Generator, an int seed or None."""
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(rng)


class Space:
    """An ordered set of named decisions plus fixed hyperparameters.

    An architecture is a row of choice indices, a batch an (N, D) integer array. Subclasses refine `active`
    (decisions that do not matter given others) and `_canonical_active` (further functional equivalences).
    """

    def __init__(self, name: str, decisions: Sequence[Decision], hparams: dict | None = None,
                 active_fn: Callable[["Space", np.ndarray], np.ndarray] | None = None):
        names = [d.name for d in decisions]
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise UserInputError(f"space {name!r}: decision names must be unique, repeated: {dup}")
        if not decisions:
            raise UserInputError(f"space {name!r} has no decisions")
        self.name = name
        self.decisions = tuple(decisions)
        self.hparams = dict(hparams or {})
        self._active_fn = active_fn
        self.sizes = np.array([d.size for d in decisions], dtype=np.int64)
        self.dtype = np.int8 if self.sizes.max() <= 64 else np.int32
        self._sizes_small = self.sizes.astype(self.dtype)
        self._sizes_u32 = self.sizes.astype(np.uint32)
        self._column = {n: i for i, n in enumerate(names)}
        self._numeric = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                            for d in decisions for v in d.values)
        if self._numeric:
            width = int(self.sizes.max())
            self._value_table = np.zeros((len(decisions), width), dtype=np.int64)
            for j, d in enumerate(decisions):
                self._value_table[j, : d.size] = d.values

    # ----------------------------------------------------------------- basics
    @property
    def num_decisions(self) -> int:
        return len(self.decisions)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.decisions)

    def column(self, name: str) -> int:
        if name not in self._column:
            raise UserInputError(f"space {self.name!r} has no decision {name!r}; decisions: {list(self.names)}")
        return self._column[name]

    def config(self) -> dict:
        """What `get_space(**config)` needs to rebuild this space."""
        return {"name": self.name, **{k: list(v) if isinstance(v, tuple) else v for k, v in self.hparams.items()}}

    def values(self, archs) -> np.ndarray:
        """The chosen values, (N, D): int64 for numeric spaces, object otherwise."""
        archs = self._as_batch(archs)
        if self._numeric:
            return self._value_table[np.arange(self.num_decisions), archs.astype(np.int64)]
        out = np.empty(archs.shape, dtype=object)
        for j, d in enumerate(self.decisions):
            out[:, j] = np.asarray(d.values, dtype=object)[archs[:, j]]
        return out

    def validate(self, archs) -> np.ndarray:
        """Checks shape and index ranges; returns the batch as this space's integer dtype."""
        a = np.asarray(archs)
        if a.ndim == 1:
            a = a[None]
        if a.ndim != 2 or a.shape[1] != self.num_decisions:
            raise UserInputError(f"space {self.name!r}: architectures must have shape (N, {self.num_decisions}), "
                                 f"got {np.asarray(archs).shape}")
        if a.size and not np.issubdtype(a.dtype, np.integer):
            raise UserInputError(f"space {self.name!r}: architectures are integer choice indices, got {a.dtype}")
        bad = (a < 0) | (a >= self.sizes)
        if bad.any():
            row, col = map(int, np.argwhere(bad)[0])
            raise UserInputError(f"space {self.name!r}: decision {self.names[col]!r} index {int(a[row, col])} "
                                 f"(row {row}) is out of range; allowed 0..{self.sizes[col] - 1}")
        return a.astype(self.dtype, copy=False)

    def _as_batch(self, archs) -> np.ndarray:
        a = np.asarray(archs)
        return a[None] if a.ndim == 1 else a

    # -------------------------------------------------------------- sampling
    def sample(self, n: int, rng=None) -> np.ndarray:
        """`n` architectures with every decision drawn uniformly (to one part in 65,536)."""
        draws = as_rng(rng).integers(0, _DRAWS, (n, self.num_decisions), dtype=np.uint16)
        out = np.empty(draws.shape, dtype=self.dtype)
        scaled = np.empty((min(n, _CHUNK_ROWS), self.num_decisions), dtype=np.uint32)
        for start in range(0, n, _CHUNK_ROWS):  # chunks keep the 32-bit temporaries in cache
            part = draws[start:start + _CHUNK_ROWS]
            tmp = scaled[: len(part)]
            np.multiply(part, self._sizes_u32, out=tmp, dtype=np.uint32)
            tmp >>= 16
            out[start:start + len(part)] = tmp
        return out

    def smallest(self) -> np.ndarray:
        """The first value of every decision (the smallest network for spaces whose values ascend)."""
        return np.zeros(self.num_decisions, dtype=self.dtype)

    def largest(self) -> np.ndarray:
        """The last value of every decision."""
        return (self.sizes - 1).astype(self.dtype)

    def mutate(self, archs, prob: float, rng=None) -> np.ndarray:
        """Each decision of each architecture is resampled to a different value with probability `prob` (rounded to a
        multiple of 1/65,536)."""
        archs = self._as_batch(archs)
        threshold = min(round(prob * _DRAWS), _DRAWS)
        if threshold <= 0:
            return archs.astype(self.dtype, copy=True)
        # one 16-bit draw per entry decides whether it flips; a second, only for the flipping entries, picks the
        # new value among the other sizes - 1
        rng = as_rng(rng)
        out = np.array(archs, dtype=self.dtype, order="C")
        for start in range(0, out.shape[0], _CHUNK_ROWS):  # chunks keep the temporaries in cache
            flat = out[start:start + _CHUNK_ROWS].reshape(-1)
            flips = np.flatnonzero(rng.integers(0, _DRAWS, flat.size, dtype=np.uint16) < threshold)
            cols = flips % self.num_decisions
            draw = rng.integers(0, _DRAWS, flips.size, dtype=np.uint16)
            offset = ((np.multiply(draw, self._sizes_u32[cols] - 1, dtype=np.uint32) >> 16) + 1).astype(self.dtype)
            shifted = flat[flips] + offset
            sizes = self._sizes_small[cols]
            flat[flips] = np.where(shifted >= sizes, shifted - sizes, shifted)
        return out

    def crossover(self, a, b, rng=None) -> np.ndarray:
        """Uniform crossover: each decision taken from `a` or `b` with equal probability."""
        a, b = np.broadcast_arrays(self._as_batch(a), self._as_batch(b))
        take_a = as_rng(rng).random(a.shape) < 0.5
        return np.where(take_a, a, b).astype(self.dtype)

    def neighbours(self, arch) -> np.ndarray:
        """All functionally distinct architectures that differ from `arch` in one decision (canonical forms)."""
        arch = np.asarray(arch).reshape(-1)
        rows = []
        for j, size in enumerate(self.sizes):
            for v in range(size):
                if v != arch[j]:
                    row = arch.copy()
                    row[j] = v
                    rows.append(row)
        if not rows:
            return np.zeros((0, self.num_decisions), dtype=self.dtype)
        cand = self.canonical(np.stack(rows))
        keys = self.hash(cand)
        _, first = np.unique(keys, return_index=True)
        cand = cand[np.sort(first)]
        return cand[self.hash(cand) != self.hash(arch)[0]]

    # ---------------------------------------------------------- equivalence
    def active(self, archs) -> np.ndarray:
        """(N, D) bool: whether each decision affects the network, given the others."""
        archs = self._as_batch(archs)
        if self._active_fn is None:
            return np.ones(archs.shape, dtype=bool)
        return self._active_fn(self, archs)

    def canonical(self, archs) -> np.ndarray:
        """One representative per functional-equivalence class: inactive decisions set to index 0, then
        space-specific equivalences (e.g. isomorphic cells)."""
        archs = self._as_batch(archs)
        normal = np.where(self.active(archs), archs, 0).astype(self.dtype)
        return self._canonical_active(normal)

    def _canonical_active(self, archs: np.ndarray) -> np.ndarray:
        return archs

    def hash(self, archs) -> np.ndarray:
        """uint64 key of each architecture's canonical form: its exact mixed-radix rank when the space has fewer
        than 2^63 raw architectures, else an FNV-1a mix of exact ranks of column groups."""
        archs = self._as_batch(archs)
        matrix, groups = self._hash_plan
        pieces = np.empty((archs.shape[0], matrix.shape[1]), dtype=matrix.dtype)
        for start in range(0, archs.shape[0], _CHUNK_ROWS):  # chunks keep the float temporaries in cache
            stop = start + _CHUNK_ROWS
            pieces[start:stop] = self.canonical(archs[start:stop]).astype(matrix.dtype) @ matrix
        ranks = []
        for first, weights in groups:
            rank = pieces[:, first].astype(np.int64)
            for k, weight in enumerate(weights[1:], start=first + 1):
                rank = rank * weight + pieces[:, k].astype(np.int64)
            ranks.append(rank)
        if len(ranks) == 1:
            return ranks[0].astype(np.uint64)
        h = np.full(archs.shape[0], _FNV_OFFSET, dtype=np.uint64)
        for rank in ranks:
            h ^= rank.astype(np.uint64)
            h *= _FNV_PRIME
        return h

    @cached_property
    def _hash_plan(self) -> tuple[np.ndarray, list[tuple[int, list[int]]]]:
        """How `hash` ranks cheaply: consecutive column groups whose mixed-radix rank fits in 62 bits, each split into
        pieces small enough that one float matrix product ranks them exactly. Returns the (D, pieces) matrix of
        radix weights and, per group, its first piece and each piece's radix (the product of its sizes)."""
        float_dtype, exact = (np.float32, 2 ** 24) if self.sizes.max() < 2 ** 24 else (np.float64, 2 ** 53)
        sizes = [int(x) for x in self.sizes]

        def runs(start, stop, limit):
            while start < stop:
                end, product = start, 1
                while end < stop and product * sizes[end] < limit:
                    product *= sizes[end]
                    end += 1
                yield start, end, product
                start = end

        columns, groups = [], []
        for g_start, g_stop, _ in runs(0, len(sizes), 2 ** 62):
            pieces = list(runs(g_start, g_stop, exact))
            groups.append((len(columns), [product for _, _, product in pieces]))
            columns += [(a, b) for a, b, _ in pieces]
        matrix = np.zeros((len(sizes), len(columns)), dtype=float_dtype)
        for k, (a, b) in enumerate(columns):
            for j in range(a, b):
                matrix[j, k] = math.prod(sizes[j + 1:b])
        return matrix, groups

    def _rank(self, archs: np.ndarray) -> np.ndarray:
        """Mixed-radix rank (first decision most significant) of each architecture, int64."""
        rank = np.zeros(archs.shape[0], dtype=np.int64)
        for j, size in enumerate(self.sizes):
            rank = rank * int(size) + archs[:, j].astype(np.int64)
        return rank

    def _unrank(self, ranks: np.ndarray) -> np.ndarray:
        ranks = np.asarray(ranks, dtype=np.int64).copy()
        out = np.zeros((ranks.shape[0], self.num_decisions), dtype=self.dtype)
        for j in range(self.num_decisions - 1, -1, -1):
            out[:, j] = ranks % self.sizes[j]
            ranks //= self.sizes[j]
        return out

    def enumerate(self) -> np.ndarray:
        """Every architecture (raw, not deduplicated); only for spaces of at most 2,000,000."""
        total = math.prod(int(s) for s in self.sizes)
        if total > _ENUMERATE_LIMIT:
            raise UserInputError(f"space {self.name!r} has {total} raw architectures; enumerate() is limited to "
                                 f"{_ENUMERATE_LIMIT}")
        return self._unrank(np.arange(total))

    def cardinality(self) -> int:
        """Exact number of functionally distinct (canonical) architectures."""
        total = math.prod(int(s) for s in self.sizes)
        if self._active_fn is None and type(self)._canonical_active is Space._canonical_active:
            return total
        return int(np.unique(self.hash(self.enumerate())).size)

    # -------------------------------------------------------------- features
    def features(self, archs) -> np.ndarray:
        """Float32 predictor features: one-hot of each decision of the canonical form, zero where inactive."""
        archs = self._as_batch(archs)
        c = self.canonical(archs)
        act = self.active(c)
        offsets = np.concatenate([[0], np.cumsum(self.sizes)[:-1]])
        out = np.zeros((c.shape[0], int(self.sizes.sum())), dtype=np.float32)
        rows = np.repeat(np.arange(c.shape[0]), self.num_decisions)
        cols = (offsets + c.astype(np.int64)).reshape(-1)
        out[rows, cols] = act.reshape(-1)
        return out

    # ----------------------------------------------------------------- edges
    def to_dict(self, arch) -> dict[str, Any]:
        arch = self.validate(arch)[0]
        return {d.name: d.values[int(i)] for d, i in zip(self.decisions, arch)}

    def from_dict(self, mapping: dict) -> np.ndarray:
        if not isinstance(mapping, dict):
            raise UserInputError(f"space {self.name!r}: an architecture dict is expected, got {type(mapping).__name__}")
        unknown = sorted(set(mapping) - set(self.names))
        if unknown:
            raise UserInputError(f"space {self.name!r}: unknown decision(s) {unknown}; decisions: {list(self.names)}")
        missing = [n for n in self.names if n not in mapping]
        if missing:
            raise UserInputError(f"space {self.name!r}: architecture misses decision(s) {missing}")
        try:
            return np.array([d.index_of(mapping[d.name]) for d in self.decisions], dtype=self.dtype)
        except UserInputError as e:
            raise UserInputError(f"space {self.name!r}: {e}") from None

    def to_string(self, arch) -> str:
        """Default string form `name=value,name=value,...`; spaces may define a more compact one."""
        return ",".join(f"{k}={v}" for k, v in self.to_dict(arch).items())

    def from_string(self, text: str) -> np.ndarray:
        if not isinstance(text, str) or not text.strip():
            raise UserInputError(f"space {self.name!r}: empty architecture string")
        mapping = {}
        for part in text.strip().split(","):
            if "=" not in part:
                raise UserInputError(f"space {self.name!r}: architecture string {text!r}: part {part!r} is not "
                                     f"'name=value'")
            k, v = part.split("=", 1)
            mapping[k.strip()] = v.strip()
        return self.from_dict(mapping)

    def strings(self, archs) -> list[str]:
        return [self.to_string(a) for a in self.validate(archs)]

    def parse(self, texts: Sequence[str]) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, self.num_decisions), dtype=self.dtype)
        return np.stack([self.from_string(t) for t in texts])

    def to_json(self, arch) -> str:
        return json.dumps({"space": self.config(), "arch": _plain(self.to_dict(arch))})

    def from_json(self, text: str) -> np.ndarray:
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            raise UserInputError(f"space {self.name!r}: architecture JSON is malformed: {e}") from None
        if not isinstance(obj, dict) or "arch" not in obj:
            raise UserInputError(f"space {self.name!r}: architecture JSON needs an 'arch' object, got {text[:80]!r}")
        name = obj.get("space", {}).get("name", self.name)
        if name != self.name:
            raise UserInputError(f"architecture JSON is for space {name!r}, not {self.name!r}")
        return self.from_dict(obj["arch"])

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, D={self.num_decisions}, hparams={self.hparams})"


def _plain(mapping: dict) -> dict:
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in mapping.items()}
