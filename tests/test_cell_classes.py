"""Allocation block by block (ecoplan.cell_classes) gives the in-memory allocation's plan."""

from __future__ import annotations

import dask.array as da
import numpy as np
from affine import Affine
from hypothesis import given, settings
from hypothesis import strategies as st
from rasterio.crs import CRS

from ecoplan.allocation import (
    AllocationProblem,
    Classes,
    TargetBound,
    aggregate,
    disaggregate,
    solve_classes,
)
from ecoplan.areas import AREA_STEPS, cell_area_block
from ecoplan.cell_classes import CellInputs, _factorize, assign_zones, gather_classes
from ecoplan.grid import Grid

STEP = 0.1


def random_region(seed: int, shape=(37, 53)):
    """Patchy zones, 3 units, random forbidden bits and suitability levels on a UTM grid far
    from the central meridian (cell areas differ per column)."""
    rng = np.random.default_rng(seed)
    h, w = shape
    coarse = rng.choice(
        [1, 2, 3, 4, 5, 6], size=(h // 4 + 1, w // 4 + 1), p=[0.3, 0.4, 0.1, 0.1, 0.05, 0.05]
    )
    zones = np.kron(coarse, np.ones((4, 4), np.uint8))[:h, :w].astype(np.uint8)
    specks = rng.random(shape) < 0.15
    zones[specks] = rng.choice([1, 2, 3], size=int(specks.sum()))
    units = np.ones(shape, np.int32)
    units[:, w // 3 :] = 2
    units[h // 2 :, 2 * w // 3 :] = 3
    units[:2, :] = 0  # outside the region
    zones[units == 0] = 0
    forbidden = np.where(rng.random(shape) < 0.2, np.uint8(1 << 4), np.uint8(0))
    levels = {z: rng.integers(0, 6, shape).astype(np.uint8) for z in (1, 2, 4)}
    grid = Grid(CRS.from_epsg(32647), Affine(30.0, 0, 750_000.0, 0, -30.0, 1_700_000.0), h, w)
    allowed_from = np.zeros(8, np.uint8)
    for c in range(1, 8):
        allowed_from[c] = (1 << c) | (0b00011110 if c in (1, 2, 3, 4) else 0)
    return grid, zones, units, forbidden, levels, allowed_from


def cost_matrix():
    cost = np.full((8, 8), 0.25)
    np.fill_diagonal(cost, 0.0)
    return cost


def targets_for(units, zones, q, unit_m2):
    cells = (zones > 0) & (units > 0)
    d = float(q[cells].sum()) * unit_m2
    d2 = float(q[cells & (units == 2)].sum()) * unit_m2
    return (
        TargetBound(0, 1, d, min_share=0.41),
        TargetBound(0, 4, d, max_share=0.06),
        TargetBound(2, 2, d2, min_share=0.37, max_share=0.45),
    )


def in_memory_plan(grid, zones, units, forbidden, levels, allowed_from):
    """The reference: the cell-level problem of ecoplan.allocation on numpy arrays."""
    unit_m2 = grid.pixel_area_m2 / AREA_STEPS
    q = np.rint(cell_area_block(grid, 0, grid.height, 0, grid.width) / unit_m2).astype(np.int64)
    cells = (zones > 0) & (units > 0)
    cur = zones[cells]
    allowed = ((allowed_from[cur][:, None] >> np.arange(8)) & 1).astype(bool)
    fb = forbidden[cells]
    for z in range(8):
        allowed[:, z] &= (fb & (1 << z)) == 0
    stuck = ~allowed.any(axis=1)
    allowed[stuck, cur[stuck]] = True
    level = np.zeros((int(cells.sum()), 8), np.uint8)
    for z, lv in levels.items():
        level[:, z] = lv[cells]
    targets = targets_for(units, zones, q, unit_m2)
    problem = AllocationProblem(
        units[cells], cur, q[cells] * unit_m2, allowed, level, STEP, cost_matrix(), targets
    )
    classes = aggregate(problem)
    lp = solve_classes(classes, targets)
    out = zones.copy()
    out[cells] = disaggregate(problem, classes, lp.y_m2)
    return classes, lp, out, targets


def blockwise_plan(grid, zones, units, forbidden, levels, allowed_from, targets, chunks):
    inputs = CellInputs(
        da.from_array(zones, chunks=chunks),
        da.from_array(units, chunks=chunks),
        da.from_array(forbidden, chunks=chunks),
        {z: da.from_array(v, chunks=chunks) for z, v in levels.items()},
        allowed_from,
        grid,
    )
    table = gather_classes(inputs)
    score = table.level * STEP - cost_matrix()[table.current.astype(np.intp)]
    classes = Classes(
        None,
        table.unit,
        table.current,
        table.allowed,
        np.where(table.allowed, score, 0.0),
        table.area_m2,
    )
    lp = solve_classes(classes, targets)
    return classes, lp, assign_zones(inputs, table, lp.y_m2).compute(scheduler="synchronous")


@given(seed=st.integers(0, 10_000))
@settings(max_examples=8, deadline=None, derandomize=True)
def test_classes_and_plan_block_by_block_equal_the_in_memory_allocation(seed):
    region = random_region(seed)
    ref_classes, ref_lp, ref_zones, targets = in_memory_plan(*region)
    split = ((ref_lp.y_m2 > 0).sum(axis=1) > 1).sum()
    for chunks in ((37, 53), (8, 11), (5, 29)):
        classes, lp, zones = blockwise_plan(*region, targets, chunks)
        np.testing.assert_array_equal(classes.unit, ref_classes.unit)
        np.testing.assert_array_equal(classes.current, ref_classes.current)
        np.testing.assert_array_equal(classes.allowed, ref_classes.allowed)
        np.testing.assert_array_equal(classes.score, ref_classes.score)
        np.testing.assert_array_equal(classes.area_m2, ref_classes.area_m2)
        np.testing.assert_array_equal(lp.y_m2, ref_lp.y_m2)
        np.testing.assert_array_equal(zones, ref_zones, err_msg=f"chunks {chunks}, {split} split")


def test_a_split_class_fills_its_zones_in_raster_order_across_blocks():
    # one class (every cell alike), half of it must become forest: the first half in raster
    # order, wherever the block seams fall
    h, w = 6, 10
    zones = np.full((h, w), 2, np.uint8)
    units = np.ones((h, w), np.int32)
    forbidden = np.zeros((h, w), np.uint8)
    grid = Grid(CRS.from_epsg(32647), Affine(10.0, 0, 500_000.0, 0, -10.0, 1_500_000.0), h, w)
    allowed_from = np.zeros(8, np.uint8)
    allowed_from[2] = (1 << 2) | (1 << 1)
    unit_m2 = grid.pixel_area_m2 / AREA_STEPS
    q = np.rint(cell_area_block(grid, 0, h, 0, w) / unit_m2)
    d = float(q.sum()) * unit_m2
    targets = (TargetBound(0, 1, d, min_share=0.5 - 1e-9),)
    for chunks in ((6, 10), (4, 3), (1, 7)):
        _, lp, out = blockwise_plan(
            grid, zones, units, forbidden, {}, allowed_from, targets, chunks
        )
        assert (out == 1).sum() == 30
        assert (out.ravel()[:30] == 1).all() and (out.ravel()[30:] == 2).all()


def test_factorize_groups_equal_key_pairs_only():
    rng = np.random.default_rng(0)
    hi = rng.integers(0, 4, 1000).astype(np.uint64)
    lo = rng.integers(0, 5, 1000).astype(np.uint64) << np.uint64(40)
    codes, first = _factorize(hi, lo)
    assert len(first) == len(set(zip(hi.tolist(), lo.tolist(), strict=True)))
    assert (hi[first][codes] == hi).all() and (lo[first][codes] == lo).all()
