"""The NAS-Bench-201 cell space: 6 edges of a 4-node DAG, each one of 5 operations, with isomorphism collapsing."""

from __future__ import annotations

from functools import cached_property

import numpy as np

from search_spaces.decisions import Categorical
from search_spaces.errors import UserInputError
from search_spaces.space import Space

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
NONE = 0
EDGES = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))
NUM_NODES = 4


def _unique_cell_string(ops: tuple[str, ...]) -> str:
    """NAS-Bench-201's `to_unique_str(consider_zero=True)`: a string shared exactly by isomorphic cells.

    'none' edges and edges from zero nodes contribute zero ('#'), 'skip_connect' passes its input's string
    through, other operations wrap it; a node's inputs are sorted, so their order does not matter. Nodes that do
    not feed the output never appear in the result."""
    nodes = {0: "0"}
    for target in range(1, NUM_NODES):
        terms = []
        for (to, src), op in zip(EDGES, ops):
            if to != target:
                continue
            if op == "none" or nodes[src] == "#":
                terms.append("#")
            elif op == "skip_connect":
                terms.append(nodes[src])
            else:
                terms.append(f"({nodes[src]})@{op}")
        nodes[target] = "+".join(sorted(terms))
    return nodes[NUM_NODES - 1]


class NB201Space(Space):
    """Six decisions `edge_<to>_<from>` over OPS; `to_string` is the standard NAS-Bench-201 arch string."""

    def __init__(self):
        decisions = [Categorical(f"edge_{to}_{src}", OPS) for to, src in EDGES]
        super().__init__("nb201", decisions, {})

    @cached_property
    def _canonical_rank(self) -> np.ndarray:
        """For each of the 5^6 cells (by rank), the rank of the smallest-ranked cell isomorphic to it."""
        all_cells = self._unrank(np.arange(len(OPS) ** len(EDGES)))
        first: dict[str, int] = {}
        table = np.empty(len(all_cells), dtype=np.int64)
        for rank, cell in enumerate(all_cells):
            key = _unique_cell_string(tuple(OPS[i] for i in cell))
            table[rank] = first.setdefault(key, rank)
        return table

    def active(self, archs) -> np.ndarray:
        """An edge is active when it is not 'none', its source is reachable from the input through non-'none'
        edges, and its target reaches the output; only active edges cost latency or change the output."""
        archs = self._as_batch(archs)
        live = archs != NONE
        reach_in = np.zeros((archs.shape[0], NUM_NODES), dtype=bool)
        reach_in[:, 0] = True
        for j, (to, src) in enumerate(EDGES):
            reach_in[:, to] |= reach_in[:, src] & live[:, j]
        reach_out = np.zeros_like(reach_in)
        reach_out[:, NUM_NODES - 1] = True
        for j in reversed(range(len(EDGES))):
            to, src = EDGES[j]
            reach_out[:, src] |= reach_out[:, to] & live[:, j]
        src_idx = np.array([s for _, s in EDGES])
        to_idx = np.array([t for t, _ in EDGES])
        return live & reach_in[:, src_idx] & reach_out[:, to_idx]

    def canonical(self, archs) -> np.ndarray:
        """The smallest-ranked cell isomorphic to each cell (NAS-Bench-201's unique-string classes: 6,466)."""
        archs = self._as_batch(archs)
        return self._unrank(self._canonical_rank[self._rank(archs)])

    def cardinality(self) -> int:
        return int(np.unique(self._canonical_rank).size)

    def to_string(self, arch) -> str:
        arch = self.validate(arch)[0]
        nodes = []
        for target in range(1, NUM_NODES):
            parts = [f"{OPS[arch[j]]}~{src}" for j, (to, src) in enumerate(EDGES) if to == target]
            nodes.append("|" + "|".join(parts) + "|")
        return "+".join(nodes)

    def from_string(self, text: str) -> np.ndarray:
        if not isinstance(text, str):
            raise UserInputError(f"nb201: architecture string must be text, got {text!r}")
        expected = "e.g. |nor_conv_3x3~0|+|none~0|skip_connect~1|+|skip_connect~0|none~1|avg_pool_3x3~2|"
        nodes = text.strip().split("+")
        if len(nodes) != NUM_NODES - 1:
            raise UserInputError(f"nb201: architecture string {text!r} must have {NUM_NODES - 1} nodes joined by "
                                 f"'+', {expected}")
        arch = np.zeros(len(EDGES), dtype=self.dtype)
        for target, node in enumerate(nodes, start=1):
            if not (node.startswith("|") and node.endswith("|")):
                raise UserInputError(f"nb201: node {node!r} of {text!r} must be wrapped in '|', {expected}")
            parts = node[1:-1].split("|")
            if len(parts) != target:
                raise UserInputError(f"nb201: node {target} in {text!r} needs {target} inputs, got {len(parts)}")
            for src, part in enumerate(parts):
                op, sep, given_src = part.partition("~")
                if not sep or given_src != str(src):
                    raise UserInputError(f"nb201: edge {part!r} in {text!r} must read '<op>~{src}'")
                if op not in OPS:
                    raise UserInputError(f"nb201: operation {op!r} in {text!r} is not one of {list(OPS)}")
                arch[EDGES.index((target, src))] = OPS.index(op)
        return arch
