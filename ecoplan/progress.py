"""Progress reporting for long steps: a callback the pipeline calls, a tqdm bar the CLI shows."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

__all__ = ["STEPS", "Progress", "silent", "tqdm_progress"]

STEPS = ("inputs", "classify", "buffers", "proportions", "polygons", "write")
"""The steps of a run, in order, as reported to a progress callback."""


class Progress(Protocol):
    def __call__(self, step: str, /) -> None: ...


def silent(step: str, /) -> None:
    """Report nothing (the library's default)."""


def tqdm_progress(steps: int, *, desc: str) -> tuple[Progress, Callable[[], None]]:
    """A progress callback drawing a tqdm bar of ``steps`` steps on stderr, and its closer."""
    from tqdm.auto import tqdm

    # disable=None: no bar when stderr is not a terminal (logs and pipes get clean lines)
    bar = tqdm(total=steps, desc=desc, unit="step", leave=False, disable=None)
    state = {"started": False}

    def report(step: str, /) -> None:
        if state["started"]:
            bar.update(1)
        state["started"] = True
        bar.set_postfix_str(step)

    def close() -> None:
        bar.update(bar.total - bar.n)
        bar.close()

    return report, close
