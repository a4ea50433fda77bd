"""Holding an intermediate raster: in memory when it fits the budget, else in a temporary file.

Several steps read a raster again (the zones: buffers, counts, polygons, the GeoTIFF). Computing
it once and keeping it avoids reading and classifying the inputs again; a raster larger than the
memory budget goes to a raw file of blocks beside the outputs (:class:`BlockFile`), read back
block by block. :mod:`ecoplan.holding` keeps a run's rasters within one budget with it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import dask
import dask.array as da
import numpy as np

__all__ = ["hold", "hold_and_compute", "BlockFile"]


def hold(array: da.Array, *, budget_bytes: int | None = None, folder: Path | None = None):
    """``array`` computed once: persisted when ``budget_bytes`` is None or it fits, else spilled.

    Spilled arrays go to an uncompressed file of raw blocks in ``folder`` (the system's temporary
    folder by default), written and read back block by block with ``pwrite``/``pread``: nothing
    of it stays in the process's memory (the OS page cache holds what it can). The file is
    removed when the last array reading it is garbage-collected (or at exit); no ``with``
    block is needed, so intermediate results can be returned.
    """
    return hold_and_compute(array, budget_bytes=budget_bytes, folder=folder)[0]


def hold_and_compute(
    array: da.Array,
    *also: da.Array,
    budget_bytes: int | None = None,
    folder: Path | None = None,
) -> tuple[da.Array, list[np.ndarray]]:
    """:func:`hold` of ``array``, and the arrays ``also`` computed (to numpy) in the same pass,
    so the inputs they share are computed once."""
    if budget_bytes is None or array.nbytes <= budget_bytes:
        held, *rest = dask.persist(array, *also)
        return held, [a.compute() for a in rest]
    import tempfile

    folder = Path(folder) if folder is not None else Path(tempfile.gettempdir())
    blocks = BlockFile.create(folder, array.chunks, array.dtype)
    stored = da.store(array, blocks, lock=False, compute=False)
    _, *rest = dask.compute(stored, *also)
    return blocks.array(), list(rest)


class BlockFile:
    """A raw file of an array's blocks (row-major block order, each block C-ordered)."""

    def __init__(self, path: Path, chunks, dtype, *, owner: bool = False):
        self.path = Path(path)
        self.chunks = tuple(tuple(int(c) for c in cs) for cs in chunks)
        self.dtype = np.dtype(dtype)
        rows, cols = self.chunks
        sizes = np.outer(rows, cols).ravel() * self.dtype.itemsize
        self._offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self._row0 = np.concatenate([[0], np.cumsum(rows)]).astype(np.int64)
        self._col0 = np.concatenate([[0], np.cumsum(cols)]).astype(np.int64)
        if owner:
            import weakref

            weakref.finalize(self, _unlink, str(self.path))

    @classmethod
    def create(cls, folder: Path, chunks, dtype) -> BlockFile:
        import tempfile

        # the process id in the name lets a later run remove the file of a killed run
        prefix = f".ecoplan-spill-{os.getpid()}-"
        fd, name = tempfile.mkstemp(prefix=prefix, suffix=".blocks", dir=folder)
        os.close(fd)
        return cls(Path(name), chunks, dtype, owner=True)

    def __reduce__(self):  # a copy in another process reads the file but never removes it
        return (BlockFile, (self.path, self.chunks, self.dtype))

    def _block(self, r0: int, c0: int) -> tuple[int, tuple[int, int]]:
        i = int(np.searchsorted(self._row0, r0))
        j = int(np.searchsorted(self._col0, c0))
        k = i * len(self.chunks[1]) + j
        return int(self._offsets[k]), (self.chunks[0][i], self.chunks[1][j])

    def __setitem__(self, key, value) -> None:  # da.store writes one whole block per call
        (rs, cs) = key
        offset, shape = self._block(rs.start or 0, cs.start or 0)
        data = np.ascontiguousarray(value, dtype=self.dtype)
        if data.shape != shape:
            raise ValueError(f"block of shape {data.shape} at {key}, expected {shape}")
        fd = os.open(self.path, os.O_WRONLY)
        try:
            os.pwrite(fd, data.tobytes(), offset)
        finally:
            os.close(fd)

    def read(self, r0: int, c0: int) -> np.ndarray:
        offset, shape = self._block(r0, c0)
        n = shape[0] * shape[1] * self.dtype.itemsize
        out = np.empty(shape, dtype=self.dtype)
        fd = os.open(self.path, os.O_RDONLY)
        try:
            got = os.preadv(fd, [memoryview(out).cast("B")], offset) if n else 0
        finally:
            os.close(fd)
        if got != n:
            raise OSError(f"{self.path}: short read ({got} of {n} bytes)")
        return out

    def array(self) -> da.Array:
        def read(block_info=None, blocks=self):
            (r0, _), (c0, _) = block_info[None]["array-location"]
            return blocks.read(r0, c0)

        return da.map_blocks(
            read,
            chunks=self.chunks,
            dtype=self.dtype,
            meta=np.empty((0, 0), self.dtype),
            name=f"blockfile-{dask.base.tokenize(str(self.path))}",
        )


def _unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
