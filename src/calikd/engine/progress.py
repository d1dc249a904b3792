"""Progress bars with throughput (img/s) and ETA."""

from __future__ import annotations

import sys

from tqdm.auto import tqdm


def progress_bar(total: int, desc: str, *, enabled: bool = True, unit: str = "img") -> tqdm:
    """A tqdm bar counting images: shows img/s and ETA. Hidden when disabled or stderr is not a terminal."""
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        unit_scale=True,
        dynamic_ncols=True,
        leave=False,
        disable=not enabled or not sys.stderr.isatty(),
    )
