"""The workbook's graph: topological order, cycles, ancestors and descendants.

Nodes are stage ids; an edge ``a -> b`` exists when stage ``b`` reads ``a`` (as an input or in its
``when`` condition). Workbook inputs are not nodes. Built on :mod:`graphlib`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from graphlib import CycleError, TopologicalSorter

__all__ = ["Graph", "GraphCycle"]


class GraphCycle(Exception):
    """The graph has a cycle; ``stages`` lists it in order, first stage repeated at the end."""

    def __init__(self, stages: list[str]) -> None:
        self.stages = stages
        super().__init__(" -> ".join(stages))


class Graph:
    """Edges between stages; ``deps`` maps each stage id to the names it reads."""

    def __init__(self, deps: Mapping[str, Iterable[str]]) -> None:
        self.nodes: tuple[str, ...] = tuple(deps)
        known = set(self.nodes)
        self.upstream: dict[str, tuple[str, ...]] = {
            node: tuple(dict.fromkeys(d for d in names if d in known and d != node))
            for node, names in deps.items()
        }
        self.self_loops = tuple(n for n, names in deps.items() if n in set(names))
        self._order: list[str] | None = None
        self.downstream: dict[str, list[str]] = {n: [] for n in self.nodes}
        for node, ups in self.upstream.items():
            for up in ups:
                self.downstream[up].append(node)

    def order(self) -> list[str]:
        """Stages in a topological order, stable with respect to the declaration order.

        Raises :class:`GraphCycle` naming the stages of one cycle.
        """
        if self._order is None:
            self._order = self._sorted()
        return list(self._order)

    def _sorted(self) -> list[str]:
        if self.self_loops:
            node = self.self_loops[0]
            raise GraphCycle([node, node])
        position = {n: i for i, n in enumerate(self.nodes)}
        sorter: TopologicalSorter[str] = TopologicalSorter(self.upstream)
        try:
            sorter.prepare()
        except CycleError as exc:
            cycle = list(exc.args[1])
            cycle.reverse()  # graphlib lists the cycle against the edge direction
            raise GraphCycle(cycle) from None
        ordered: list[str] = []
        while sorter.is_active():
            ready = sorted(sorter.get_ready(), key=position.__getitem__)
            ordered.extend(ready)
            sorter.done(*ready)
        return ordered

    def ancestors(self, targets: Iterable[str]) -> set[str]:
        """The targets and every stage they depend on, transitively."""
        seen: set[str] = set()
        stack = [t for t in targets if t in self.upstream]
        while stack:
            node = stack.pop()
            if node not in seen:
                seen.add(node)
                stack.extend(self.upstream[node])
        return seen

    def descendants(self, sources: Iterable[str]) -> set[str]:
        """The sources and every stage that depends on them, transitively."""
        seen: set[str] = set()
        stack = [s for s in sources if s in self.downstream]
        while stack:
            node = stack.pop()
            if node not in seen:
                seen.add(node)
                stack.extend(self.downstream[node])
        return seen
