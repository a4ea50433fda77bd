"""The allocation's cells and classes, block by block: no whole-grid array is ever held.

:func:`ecoplan.allocation.allocate` works on numpy arrays with one entry per cell. A region at
10 m has hundreds of millions of cells, so the pipeline uses this module instead, which gives
the same answer (tested) with memory bounded by the block size and the number of classes:

1. :func:`gather_classes` — one pass over the blocks: every cell's class key (unit, today's
   zone, allowed zones, rounded suitabilities) and its ground area; per block the distinct keys
   and their areas; the blocks' tables merged (exact integer areas, in units of
   ``pixel_area / AREA_STEPS``, so the sums do not depend on the chunking).
2. The LP on the classes (:func:`ecoplan.allocation.solve_classes`), as in memory.
3. :func:`assign_zones` — cells take zones as :func:`ecoplan.allocation.disaggregate` gives
   them: a class the LP gives to one zone gives it to every cell; a class it splits between
   zones (at most one per binding target) fills them in raster order by cumulative area. The
   cell where each split happens is found from per-row areas of the split classes (one pass)
   and one block per split, so the final pass is a per-block lookup.

A class key is two 64-bit words: ``hi = unit << 8 | allowed-zone bits`` and
``lo = today's zone | level(z) << 8z`` for zones 1 … 7 (levels of zones not allowed are 0),
so a rounded suitability level must fit a byte (``suitability_step`` ≥ 0.005 gives ≤ 200).
"""

from __future__ import annotations

from dataclasses import dataclass

import dask
import dask.array as da
import numpy as np
import pandas as pd

from ecoplan.areas import AREA_STEPS, cell_area_block
from ecoplan.grid import Grid
from ecoplan.zones import MAX_CODE

__all__ = ["CellInputs", "ClassTable", "gather_classes", "assign_zones", "class_order"]

N_Z = MAX_CODE + 1
_NEVER = np.iinfo(np.int64).max
_MIX = np.uint64(0x9E3779B97F4A7C15)


@dataclass(frozen=True)
class CellInputs:
    """The lazy rasters a cell's class is made of, all on ``grid`` with the same chunks.

    ``allowed_from[c]`` is the bit set of zones the transitions allow from zone ``c``
    (staying included); ``forbidden`` holds the zone bits buffers and constraints forbid;
    ``levels`` maps a zone code to its rounded suitability level (uint8) where it has one.
    """

    zones: da.Array
    units: da.Array
    forbidden: da.Array
    levels: dict[int, da.Array]
    allowed_from: np.ndarray  # uint8 (8,)
    grid: Grid

    @property
    def unit_m2(self) -> float:
        return self.grid.pixel_area_m2 / AREA_STEPS

    def arrays(self) -> list[da.Array]:
        chunks = self.zones.chunks
        return [
            self.zones,
            self.units.rechunk(chunks),
            self.forbidden.rechunk(chunks),
            *(self.levels[z].rechunk(chunks) for z in sorted(self.levels)),
        ]


def _block_cells(zones, units, forbidden, *levels, level_zones, allowed_from):
    """Cells of a block (mask), their class key words and whether they are stuck. Halo: 0."""
    cells = (zones > 0) & (units > 0)
    cur = zones[cells].astype(np.uint8)
    bits = allowed_from[cur] & ~forbidden[cells].astype(np.uint8)
    stuck = bits == 0
    bits = np.where(stuck, np.left_shift(np.uint8(1), cur), bits).astype(np.uint8)
    hi = (units[cells].astype(np.uint64) << np.uint64(8)) | bits.astype(np.uint64)
    lo = cur.astype(np.uint64)
    for z, lv in zip(level_zones, levels, strict=True):
        on = ((bits >> z) & 1).astype(np.uint64)
        lo |= (lv[cells].astype(np.uint64) * on) << np.uint64(8 * z)
    return cells, hi, lo, stuck


def _quantised_area(grid: Grid, block_info) -> np.ndarray:
    (r0, r1), (c0, c1) = block_info[0]["array-location"]
    area = cell_area_block(grid, r0, r1, c0, c1)
    return np.rint(area / (grid.pixel_area_m2 / AREA_STEPS)).astype(np.int64)


def _factorize(hi: np.ndarray, lo: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(codes, first) of the distinct (hi, lo) pairs, in order of first appearance.

    Hashes the pair to one word for pandas' factorize, then checks every cell against its
    group's first member: on a collision (never seen) it falls back to an exact sort.
    """
    codes, uniques = pd.factorize(lo ^ (hi * _MIX))
    first = np.empty(len(uniques), dtype=np.int64)
    first[codes[::-1]] = np.arange(len(codes) - 1, -1, -1)
    if (hi[first][codes] == hi).all() and (lo[first][codes] == lo).all():
        return codes, first
    pairs = np.column_stack([hi, lo])
    _, first, codes = np.unique(pairs, axis=0, return_index=True, return_inverse=True)
    return codes.ravel(), first


def _sum_by(codes: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """Exact int64 sums of ``values`` per code 0 … n−1."""
    out = np.zeros(n, dtype=np.int64)
    np.add.at(out, codes, values)
    return out


def _block_table(*blocks, level_zones, allowed_from, grid, block_info=None):
    cells, hi, lo, stuck = _block_cells(*blocks, level_zones=level_zones, allowed_from=allowed_from)
    q = _quantised_area(grid, block_info)[cells]
    codes, first = _factorize(hi, lo)
    # a block holds far fewer than 2**33 cells: float sums of these integers are exact
    area = np.bincount(codes, weights=q, minlength=len(first)).astype(np.int64)
    return hi[first], lo[first], area, int(q[stuck].sum())


@dataclass(frozen=True)
class ClassTable:
    """Classes of interchangeable cells, sorted as :func:`ecoplan.allocation.aggregate` sorts
    them (so both give the LP the same problem): key words, decoded fields, exact areas."""

    hi: np.ndarray  # uint64
    lo: np.ndarray  # uint64
    area_q: np.ndarray  # int64, in units of pixel_area / AREA_STEPS
    unit_m2: float
    stuck_q: int  # area of cells whose every other zone is forbidden and no transition is left

    def __len__(self) -> int:
        return len(self.hi)

    @property
    def area_m2(self) -> np.ndarray:
        return self.area_q * self.unit_m2

    @property
    def unit(self) -> np.ndarray:
        return (self.hi >> np.uint64(8)).astype(np.int32)

    @property
    def allowed(self) -> np.ndarray:
        bits = (self.hi & np.uint64(0xFF)).astype(np.uint8)
        return ((bits[:, None] >> np.arange(N_Z, dtype=np.uint8)) & 1).astype(bool)

    @property
    def current(self) -> np.ndarray:
        return (self.lo & np.uint64(0xFF)).astype(np.uint8)

    @property
    def level(self) -> np.ndarray:
        """uint8 (K, 8): the rounded suitability level of each zone (0 where not allowed)."""
        out = np.zeros((len(self), N_Z), dtype=np.uint8)
        for z in range(1, N_Z):
            out[:, z] = ((self.lo >> np.uint64(8 * z)) & np.uint64(0xFF)).astype(np.uint8)
        return out

    def __post_init__(self):
        order = np.lexsort((self.lo, self.hi))
        object.__setattr__(self, "_sorted", (order, self.hi[order], self.lo[order]))

    def index_of(self, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
        """Class index of each (hi, lo) pair; every pair must be a class of the table."""
        order, s_hi, s_lo = self._sorted
        out = np.empty(len(hi), dtype=np.int64)
        for h in np.unique(hi):
            sel = hi == h
            a, b = np.searchsorted(s_hi, h, "left"), np.searchsorted(s_hi, h, "right")
            pos = a + np.searchsorted(s_lo[a:b], lo[sel])
            out[sel] = order[pos]
        if len(out) and not ((self.hi[out] == hi).all() and (self.lo[out] == lo).all()):
            raise AssertionError("a cell's class is not in the class table")
        return out


def class_order(unit, current, allowed, level) -> np.ndarray:
    """The order :func:`ecoplan.allocation.aggregate` gives its classes (byte order of keys)."""
    n = len(unit)
    bits = (allowed.astype(np.uint8) << np.arange(N_Z, dtype=np.uint8)).sum(axis=1, dtype=np.uint8)
    packed = np.empty((n, 4 + 1 + 1 + N_Z), dtype=np.uint8)
    packed[:, 0:4] = np.asarray(unit).astype("<u4").view(np.uint8).reshape(n, 4)
    packed[:, 4] = current
    packed[:, 5] = bits
    packed[:, 6:] = np.where(allowed, level, 0)
    keys = np.ascontiguousarray(packed).view(np.dtype((np.void, packed.shape[1]))).ravel()
    return np.argsort(keys, kind="stable")


def gather_classes(inputs: CellInputs) -> ClassTable:
    """The classes of every cell of the region, one pass over the blocks (see the module doc)."""
    level_zones = tuple(sorted(inputs.levels))
    arrays = inputs.arrays()
    blocks = [a.to_delayed().ravel() for a in arrays]
    locations = _locations(arrays[0].chunks)
    parts = [
        dask.delayed(_block_table)(
            *(b[i] for b in blocks),
            level_zones=level_zones,
            allowed_from=inputs.allowed_from,
            grid=inputs.grid,
            block_info={0: {"array-location": loc}},
        )
        for i, loc in enumerate(locations)
    ]
    tables = dask.compute(*parts)
    hi = np.concatenate([t[0] for t in tables]) if tables else np.zeros(0, np.uint64)
    lo = np.concatenate([t[1] for t in tables]) if tables else np.zeros(0, np.uint64)
    area = np.concatenate([t[2] for t in tables]) if tables else np.zeros(0, np.int64)
    stuck = sum(t[3] for t in tables)
    codes, first = _factorize(hi, lo)
    area = _sum_by(codes, area, len(first))
    hi, lo = hi[first], lo[first]
    table = ClassTable(hi, lo, area, inputs.unit_m2, stuck)
    order = class_order(table.unit, table.current, table.allowed, table.level)
    return ClassTable(hi[order], lo[order], area[order], inputs.unit_m2, stuck)


def _locations(chunks) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    rows = np.cumsum((0, *chunks[0]))
    cols = np.cumsum((0, *chunks[1]))
    return [
        ((int(rows[i]), int(rows[i + 1])), (int(cols[j]), int(cols[j + 1])))
        for i in range(len(chunks[0]))
        for j in range(len(chunks[1]))
    ]


def _class_block(*blocks, level_zones, allowed_from, table, block_info=None):
    """Class index of each cell of a block (−1 outside the cells). Halo: 0."""
    cells, hi, lo, _ = _block_cells(*blocks, level_zones=level_zones, allowed_from=allowed_from)
    out = np.full(cells.shape, -1, dtype=np.int64)
    if cells.any():
        codes, first = _factorize(hi, lo)
        out[cells] = table.index_of(hi[first], lo[first])[codes]
    return out


def class_index(inputs: CellInputs, table: ClassTable) -> da.Array:
    """The class of every cell as a lazy int64 array (−1 outside the region's cells)."""
    arrays = inputs.arrays()
    return da.map_blocks(
        _class_block,
        *arrays,
        level_zones=tuple(sorted(inputs.levels)),
        allowed_from=inputs.allowed_from,
        table=dask.delayed(table, pure=True),
        dtype=np.int64,
        meta=np.empty((0, 0), np.int64),
    )


def _zone_bounds(y_m2: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """As :func:`ecoplan.allocation.disaggregate`: cumulative zone bounds (inf past the last
    zone with area), whether each class has area anywhere, and its single zone if unsplit."""
    bounds = np.cumsum(y_m2, axis=1)
    positive = y_m2 > 0
    last = np.where(positive.any(axis=1), N_Z - 1 - np.argmax(positive[:, ::-1], axis=1), 0)
    bounds[np.arange(N_Z)[None, :] >= last[:, None]] = np.inf
    return bounds, positive, last


def _split_row_areas(cls, q, *, split, block_info=None):
    """(len(split), rows) area of each split class in each row of the block."""
    rows = cls.shape[0]
    rank = np.searchsorted(split, cls)
    rank = np.minimum(rank, len(split) - 1)
    hit = split[rank] == cls
    r = np.broadcast_to(np.arange(rows)[:, None], cls.shape)[hit]
    sums = np.bincount(rank[hit] * rows + r, weights=q[hit], minlength=len(split) * rows)
    return sums.astype(np.int64).reshape(len(split), rows)


def _area_q_array(grid: Grid, chunks) -> da.Array:
    def block(block_info=None):
        return _quantised_area(grid, {0: block_info[None]})

    return da.map_blocks(block, chunks=chunks, dtype=np.int64, meta=np.empty((0, 0), np.int64))


def _cut_positions(
    classes_idx: da.Array,
    table: ClassTable,
    split: np.ndarray,
    bounds: np.ndarray,
    grid: Grid,
    *,
    max_bytes: int = 64 * 2**20,
) -> np.ndarray:
    """Raster position (row × width + col) from which the cells of each split class pass each
    of its zone bounds: ``cuts[s, z]`` (``_NEVER`` for an infinite bound).

    Per split class, the areas per (row, column block) in raster order locate the block and row
    where the cumulative area crosses a bound; that one block is then read to find the cell.
    Split classes are taken in batches of at most ``max_bytes`` of per-row areas per pass.
    """
    chunks = classes_idx.chunks
    cb = classes_idx.to_delayed()
    qb = _area_q_array(grid, chunks).to_delayed()
    n_r, n_c = cb.shape
    row_starts = np.cumsum((0, *chunks[0]))
    col_starts = np.cumsum((0, *chunks[1]))
    per_class = grid.height * n_c * 8
    batch = max(1, max_bytes // per_class)
    cuts = np.full((len(split), N_Z), _NEVER, dtype=np.int64)
    bounds_q = bounds / table.unit_m2
    for b0 in range(0, len(split), batch):
        part = split[b0 : b0 + batch]
        tasks = [
            [dask.delayed(_split_row_areas)(cb[i, j], qb[i, j], split=part) for j in range(n_c)]
            for i in range(n_r)
        ]
        computed = dask.compute(tasks)[0]
        # per split class: areas per (row, column block); flattened, that is raster order
        seg = np.zeros((len(part), grid.height, n_c), dtype=np.int64)
        for i in range(n_r):
            for j in range(n_c):
                seg[:, row_starts[i] : row_starts[i + 1], j] = computed[i][j]
        del computed
        wanted: dict[tuple[int, int], list] = {}
        for s_local, k in enumerate(part):
            s = b0 + s_local
            flat = seg[s_local].ravel()
            cum = np.cumsum(flat)
            for z in range(N_Z):
                b = bounds_q[k, z]
                if not np.isfinite(b):
                    continue
                if b <= 0:
                    cuts[s, z] = 0
                    continue
                f = int(np.searchsorted(cum, b, "left"))
                if f >= len(flat):
                    continue
                r, j = divmod(f, n_c)
                i = int(np.searchsorted(row_starts, r, "right") - 1)
                before = int(cum[f - 1]) if f else 0
                # if no cell of this row segment reaches b, the class's next cell does
                nxt = np.nonzero(flat[f + 1 :])[0]
                after = None
                if len(nxt):
                    r2, j2 = divmod(f + 1 + int(nxt[0]), n_c)
                    after = r2 * grid.width + int(col_starts[j2])
                wanted.setdefault((i, j), []).append(
                    (s, z, k, r - int(row_starts[i]), before, b, after)
                )
        del seg
        keys = sorted(wanted)
        blocks = dask.compute(*[(cb[i, j], qb[i, j]) for i, j in keys])
        for (i, j), (cls, q) in zip(keys, blocks, strict=True):
            for s, z, k, rr, before, b, after in wanted[(i, j)]:
                cols = np.nonzero(cls[rr] == k)[0]
                a = q[rr, cols]
                mid = before + np.cumsum(a) - a / 2  # exact: half-integers below 2**52
                past = np.nonzero(mid >= b)[0]
                if len(past):
                    row = int(row_starts[i]) + rr
                    cuts[s, z] = row * grid.width + int(col_starts[j]) + int(cols[past[0]])
                elif after is not None:
                    cuts[s, z] = after
    return cuts


def _zone_block(zones, cls, *, zone_of, split, cuts, width, block_info=None):
    """Proposed zone of each cell of a block (today's zone outside the cells). Halo: 0."""
    out = zones.astype(np.uint8, copy=True)
    inside = cls >= 0
    if not inside.any():
        return out
    k = cls[inside]
    z = zone_of[k]
    if len(split):
        rank = np.minimum(np.searchsorted(split, k), len(split) - 1)
        hit = split[rank] == k
        if hit.any():
            (r0, _), (c0, _) = block_info[0]["array-location"]
            rr, cc = np.nonzero(inside)
            pos = (rr[hit] + r0).astype(np.int64) * width + (cc[hit] + c0)
            z[hit] = (pos[:, None] >= cuts[rank[hit]]).sum(axis=1).astype(np.uint8)
    out[inside] = z
    return out


def assign_zones(inputs: CellInputs, table: ClassTable, y_m2: np.ndarray) -> da.Array:
    """The proposed zone raster (lazy uint8) from the LP's class areas ``y_m2`` (K × 8).

    Same zones as :func:`ecoplan.allocation.disaggregate` on the whole grid. Computes the split
    classes' cut cells now (one pass over the blocks plus one block per cut).
    """
    cls = class_index(inputs, table)
    bounds, positive, last = _zone_bounds(y_m2)
    zone_of = last.astype(np.uint8)
    empty = ~positive.any(axis=1)
    zone_of[empty] = table.current[empty]  # a class the LP left empty keeps today's zone
    split = np.nonzero(positive.sum(axis=1) > 1)[0]
    cuts = np.zeros((0, N_Z), np.int64)
    if len(split):
        cuts = _cut_positions(cls, table, split, bounds, inputs.grid)
    return da.map_blocks(
        _zone_block,
        inputs.zones,
        cls,
        zone_of=zone_of,
        split=split,
        cuts=cuts,
        width=inputs.grid.width,
        dtype=np.uint8,
        meta=np.empty((0, 0), np.uint8),
    )
