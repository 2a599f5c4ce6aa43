"""Memory planning: every intermediate tensor gets a place in one arena, reused once its lifetime ends.

Views (ops registered with ``view=``: Reshape, Flatten, Squeeze, Unsqueeze, Identity, inference Dropout) share
the storage of their input.
A storage that holds a graph output is the caller's output buffer, so the producing node writes there
directly. Sizes are monomials of the symbolic dimensions; storages that scale with the same monomial
(``N * c`` bytes for the batch size ``N``, say) form a group planned once in units of that monomial, so one
plan serves every batch size: the group's offsets are ``N * offset``. Within a group, storages are placed
greedily by decreasing size at the lowest offset that no storage with an overlapping lifetime occupies.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .. import dims as D
from ..graph import Graph, nested_nodes
from .. import ops as O

ALIGN = 64


@dataclass
class Storage:
    kind: str  # "input", "output", "const", "arena"
    name: str  # the root tensor (input/output name for those kinds)
    members: list[str] = field(default_factory=list)
    first: int = 0
    last: int = 0
    nbytes: D.DimLike = 0
    group: tuple = ()
    offset: int = 0  # in units of the group's monomial


@dataclass
class Plan:
    storage_of: dict[str, Storage]  # tensor -> storage (arena/input/output); consts are absent
    storages: list[Storage]
    groups: dict[tuple, int]  # monomial symbols -> total size coefficient (bytes)
    workspaces: dict[tuple[str, int], Storage]  # (node name, index) -> storage


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def plan(g: Graph) -> Plan:
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.get(x, x) != x:
            x = parent[x]
        return x

    pinned: dict[str, str] = {}  # root -> kind for graph inputs and outputs
    for i in g.inputs:
        pinned[i] = "input"
    for o in g.outputs:
        if o not in pinned:
            pinned[o] = "output"

    # 1. alias views with their input when at most one side is pinned
    for node in g.nodes:
        node.attrs.pop("_copy", None)
        opdef = O.get(node.op_type)
        if opdef is None or opdef.view is None or not node.outputs[0]:
            continue
        x, y = node.inputs[0], node.outputs[0]
        if g.is_const(x):
            node.attrs["_copy"] = True
            continue
        rx, ry = find(x), find(y)
        kx, ky = pinned.get(rx), pinned.get(ry)
        if kx and ky or (kx == "input" and ky is None and y in g.outputs):
            node.attrs["_copy"] = True
            continue
        # the pinned root wins
        if ky and not kx:
            parent[rx] = ry
        else:
            parent[ry] = rx

    # 2. lifetimes of storages
    storages: dict[str, Storage] = {}
    n_nodes = len(g.nodes)

    def touch(name: str, idx: int) -> None:
        if not name or g.is_const(name):
            return
        r = find(name)
        s = storages.get(r)
        if s is None:
            kind = pinned.get(r, "arena")
            s = storages[r] = Storage(kind, r, first=idx, last=idx)
        if name not in s.members:
            s.members.append(name)
        s.first, s.last = min(s.first, idx), max(s.last, idx)

    for i in g.inputs:
        touch(i, -1)
    for idx, node in enumerate(g.nodes):
        for name in node.inputs:
            touch(name, idx)
        for name in node.outputs:
            touch(name, idx)
        # control flow: every tensor of the bodies lives while the node runs
        for inner in [node, *nested_nodes(node)]:
            for sg in inner.subgraphs.values():
                for name in [*sg.inputs, *sg.outputs]:
                    touch(name, idx)
            if inner is not node:
                for name in [*inner.inputs, *inner.outputs]:
                    touch(name, idx)
    for o in g.outputs:
        touch(o, n_nodes)

    for s in storages.values():
        if s.kind == "arena":
            # data-dependent dimensions (NonZero's count, ...) take their upper bound
            sizes = [g.derived.bound(D.norm(g.t(m).numel * g.t(m).dtype.itemsize)) for m in s.members]
            s.nbytes = _largest(sizes)

    # 3. per-node scratch space
    workspaces: dict[tuple[str, int], Storage] = {}
    import numpy as np

    for idx, top in enumerate(g.nodes):
        for node in [top, *nested_nodes(top)]:
            opdef = O.get(node.op_type)
            if opdef is None or opdef.workspace is None:
                continue
            for k, (numel, dtype) in enumerate(opdef.workspace(node, g)):
                ws = Storage("arena", f"{node.name}#ws{k}", first=idx, last=idx,
                             nbytes=g.derived.bound(D.norm(D.norm(numel) * np.dtype(dtype).itemsize)))
                workspaces[(node.name, k)] = ws

    # 4. group by monomial and place
    arena = [s for s in storages.values() if s.kind == "arena"] + list(workspaces.values())
    groups: dict[tuple, list[Storage]] = {}
    for s in arena:
        c, syms = D.split(s.nbytes)
        s.group = syms
        s.nbytes = c
        groups.setdefault(syms, []).append(s)
    totals: dict[tuple, int] = {}
    for key, members in groups.items():
        placed: list[Storage] = []
        for s in sorted(members, key=lambda s: (-int(s.nbytes), s.first)):
            size = _align(int(s.nbytes))
            busy = sorted(
                (p.offset, p.offset + _align(int(p.nbytes)))
                for p in placed
                if not (p.last < s.first or s.last < p.first)
            )
            off = 0
            for lo, hi in busy:
                if off + size <= lo:
                    break
                off = max(off, hi)
            s.offset = off
            placed.append(s)
        totals[key] = max((p.offset + _align(int(p.nbytes)) for p in placed), default=0)

    storage_of = {m: s for s in storages.values() for m in s.members}
    return Plan(storage_of, list(storages.values()), totals, workspaces)


def _largest(sizes: list) -> D.DimLike:
    """The largest of sizes that share one monomial (views of one storage always do)."""
    best = sizes[0]
    for s in sizes[1:]:
        if D.split(s)[1] != D.split(best)[1]:
            raise D.SymbolicError(f"views of one storage have sizes {D.fmt(best)} and {D.fmt(s)}")
        if D.split(s)[0] > D.split(best)[0]:
            best = s
    return best
