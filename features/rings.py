"""Rings: the group of applications linked to an application through shared link keys, directly or
through one another, among the applications of the window before it. The same numbers offline (every
application of a whole history at once, numpy) and online (`walk_ring`, one application against a
store that answers two questions: which earlier applications carry these keys, and which keys do
these applications carry).

The ring of an application submitted at t is the set of applications reachable from it in the graph
whose nodes are the application and the applications submitted in [t - window, t), two of them
adjacent when they carry the same link key; only a key carried by at most `hub` applications of that
window links (a branch terminal, a carrier's NAT address or a big household would otherwise join
strangers), and applications more than `hops` links away are not followed. Two features count it,
the application itself included: `ring_applications_28d` and `ring_identities_28d` (distinct
identities). A ring of more than `cap` applications reads `cap` on both: the walk stops there, so the
identities of a larger ring are not known either. All three bounds are counts of applications or
links, never of time, so the cost of one application is bounded whatever the history holds.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, TypeVar

import numpy as np
import numpy.typing as npt
import polars as pl

RING_APPLICATIONS: Final = "ring_applications_28d"
RING_IDENTITIES: Final = "ring_identities_28d"
RING_FEATURES: Final = (RING_APPLICATIONS, RING_IDENTITIES)


@dataclass(frozen=True, slots=True)
class RingBound:
    """How far a ring is followed. Training and serving must use the same bound: it is part of the
    features' definition."""

    # A key carried by more earlier applications of the window than this does not link: more than
    # ten in four weeks is a branch terminal, a broker's computer or a carrier's NAT address. With 20,
    # such keys joined 5% of honest synthetic applicants into rings of more than 50.
    hub: int = 10
    cap: int = 50  # a ring of more applications than this reads `cap` on both features
    hops: int = 3  # applications further than this many links away are not followed

    def __post_init__(self) -> None:
        if self.hub < 1 or self.cap < 1 or self.hops < 1:
            raise ValueError(f"ring bounds must be >= 1 (got {self})")


RING_BOUND: Final = RingBound()


@dataclass(frozen=True, slots=True)
class RingSize:
    applications: int
    identities: int


# -- online: one application, walked through a store ---------------------------------------------
K = TypeVar("K", bound=Hashable)  # a link key as the store names it (kind and hash)
A = TypeVar("A", bound=Hashable)  # an application as the store names it
I = TypeVar("I", bound=Hashable)  # noqa: E741  # an identity as the store names it


def walk_ring(
    identity: I | None,
    keys: Iterable[K],
    *,
    neighbours: Callable[[Sequence[K]], Iterable[tuple[K, Sequence[A]]]],
    links: Callable[[Sequence[A]], Mapping[A, tuple[I | None, Sequence[K]]]],
    known_counts: Mapping[K, int] | None = None,
    bound: RingBound = RING_BOUND,
) -> RingSize:
    """The ring of one application with `identity` and link `keys`, from the store's answers.

    `neighbours(keys)` yields, key by key, the earlier applications of the window that carry it
    (at least `bound.hub + 1` of them when there are more: the key is then a hub and links nothing;
    a key it does not yield has none); it is consumed lazily, so a store may stop reading once the
    cap is passed. `links(apps)` gives each application's identity and link keys. `known_counts`
    may give, for some of the application's own keys, how many earlier applications of the window
    carry them (the velocity features already counted them): a key with none, or a hub, is then
    not asked about."""
    visited: set[A] = set()
    identities: set[I] = set() if identity is None else {identity}
    expanded: set[K] = set()
    frontier = list(dict.fromkeys(keys))
    if known_counts is not None:
        expanded.update(k for k in frontier if not 0 < known_counts.get(k, 1) <= bound.hub)
    for _ in range(bound.hops):
        todo = [k for k in dict.fromkeys(frontier) if k not in expanded]
        expanded.update(todo)
        if not todo:
            break
        new: list[A] = []
        for _key, apps in neighbours(todo):
            if len(apps) > bound.hub:
                continue  # a hub: shared too widely to say anything about a ring
            for app in apps:
                if app not in visited:
                    visited.add(app)
                    new.append(app)
            if 1 + len(visited) > bound.cap:
                return RingSize(bound.cap, bound.cap)
        if not new:
            break
        found = links(new)
        frontier = []
        for app in new:
            ident, app_keys = found[app]
            if ident is not None:
                identities.add(ident)
            frontier.extend(app_keys)
    return RingSize(1 + len(visited), len(identities))


# -- offline: every application of a history at once ---------------------------------------------
Ints = npt.NDArray[np.int64]


def _ranges(starts: Ints, lengths: Ints) -> tuple[Ints, Ints]:
    """For ranges [start, start + length): each element's range number and its index."""
    which = np.repeat(np.arange(len(starts), dtype=np.int64), lengths)
    before = np.cumsum(lengths) - lengths
    index = starts[which] + np.arange(which.size, dtype=np.int64) - before[which]
    return which, index


def _distinct(values: Ints) -> Ints:
    """Sorted distinct values (np.unique, without its hashing: sorting int64 is faster here)."""
    values = np.sort(values)
    keep = np.ones(values.size, dtype=bool)
    keep[1:] = values[1:] != values[:-1]
    return values[keep]


def _codes(column: pl.Series, offset: int) -> tuple[Ints, int]:
    """Integer codes of a column's values, from `offset`, -1 for null; and how many there are."""
    frame = column.rename("value").to_frame()
    distinct = frame.drop_nulls().unique().with_row_index("code", offset=offset)
    coded = frame.join(distinct, on="value", how="left", maintain_order="left").get_column("code")
    return coded.cast(pl.Int64).fill_null(-1).to_numpy(), distinct.height


def offline_rings(
    base: pl.DataFrame, key_names: Collection[str], window_us: int, bound: RingBound = RING_BOUND
) -> dict[str, pl.Series]:
    """Both ring features of every application of `base` (columns `ts` in µs, `identity` and the
    hashed `key_names`, frame order), each from the applications strictly before it in the frame.

    A breadth-first walk of all applications at once, one hop per round: pairs (application, key)
    find the key's earlier applications in the application's window by binary search over the
    entries sorted by (key, time). Null where the application has none of the keys."""
    n = base.height
    if n == 0:
        return {name: pl.Series(name, [], dtype=pl.Float64) for name in RING_FEATURES}
    ts = base.get_column("ts").to_numpy().astype(np.int64)
    rows, keys, n_keys = [], [], 0
    for name in key_names:  # one code per (kind, value): equal values of two kinds do not link
        code, n_values = _codes(base.get_column(name), n_keys)
        n_keys += n_values
        present = np.flatnonzero(code >= 0)
        rows.append(present)
        keys.append(code[present])
    e_row, e_key = np.concatenate(rows).astype(np.int64), np.concatenate(keys)
    n_keys = max(n_keys, 1)
    # Entries sorted by (key, time), searchable through one int64: key * span + rank of the time.
    times = np.unique(ts)
    span = times.size + 1
    order = np.lexsort((ts[e_row], e_key))
    s_row = e_row[order]
    position = e_key[order] * span + np.searchsorted(times, ts[s_row])
    win_lo = np.searchsorted(times, ts - window_us)  # window of each application: [lo, hi) ranks
    win_hi = np.searchsorted(times, ts)
    # Each application's keys, grouped by application.
    by_row = np.argsort(e_row, kind="stable")
    row_key = e_key[by_row]
    n_own = np.bincount(e_row, minlength=n).astype(np.int64)
    own_start = np.cumsum(n_own) - n_own

    roots = np.flatnonzero(n_own > 0).astype(np.int64)
    visited = roots * n + roots  # (application, ring member) as application * n + member, sorted
    expanded = np.empty(0, dtype=np.int64)  # (application, key) as application * n_keys + key, sorted
    capped = np.zeros(n, dtype=bool)
    f_root, f_node = roots, roots
    for _ in range(bound.hops):
        if f_root.size == 0:
            break
        which, index = _ranges(own_start[f_node], n_own[f_node])
        pairs = _distinct(f_root[which] * n_keys + row_key[index])
        pairs = pairs[~np.isin(pairs, expanded, assume_unique=True)]
        expanded = np.sort(np.concatenate((expanded, pairs)), kind="stable")  # two sorted runs
        p_root, p_key = pairs // n_keys, pairs % n_keys
        lo = np.searchsorted(position, p_key * span + win_lo[p_root])
        hi = np.searchsorted(position, p_key * span + win_hi[p_root])
        count = hi - lo
        links = (count > 0) & (count <= bound.hub)
        which, index = _ranges(lo[links], count[links])
        found = _distinct(p_root[links][which] * n + s_row[index])
        new = found[~np.isin(found, visited, assume_unique=True)]
        visited = np.sort(np.concatenate((visited, new)), kind="stable")
        capped |= np.bincount(visited // n, minlength=n) > bound.cap
        new = new[~capped[new // n]]
        f_root, f_node = new // n, new % n

    size = np.bincount(visited // n, minlength=n)
    identity, n_ids = _codes(base.get_column("identity"), 0)
    members = identity[visited % n]
    known = members >= 0
    distinct = _distinct((visited // n)[known] * max(n_ids, 1) + members[known])
    ids = np.bincount(distinct // max(n_ids, 1), minlength=n)
    has_key = n_own > 0
    out = {}
    for name, counted in ((RING_APPLICATIONS, size), (RING_IDENTITIES, ids)):
        value = np.where(capped, bound.cap, counted).astype(np.float64)
        out[name] = pl.Series(name, value, dtype=pl.Float64).scatter(np.flatnonzero(~has_key), None)
    return out
