"""Row chunking: every metric streams over ``(rows, C)`` slices so that ``N x C`` never has to fit twice.

A chunk holds about :data:`CHUNK_ELEMENTS` logits; each pass keeps a handful of ``(rows, C)`` work buffers
(compute dtype) and a few ``(rows,)`` float64 vectors, so memory is ``O(chunk x C)`` whatever ``N`` is.
"""

from __future__ import annotations

from collections.abc import Iterator

from calikd.errors import ConfigError

#: Target number of logits per chunk: ``2**22``, i.e. 16 MiB per float32 work buffer (32 MiB in float64).
#: Smaller chunks cost more per-chunk overhead (and more OpenMP barriers); larger ones gain nothing
#: measurable on CPU (``benchmarks/metrics_speed.py``).
CHUNK_ELEMENTS = 1 << 22


def chunk_rows(num_classes: int, chunk_size: int | None = None) -> int:
    """Rows per chunk: ``chunk_size`` if given (validated), else about ``CHUNK_ELEMENTS / num_classes``."""
    if chunk_size is None:
        return max(1, CHUNK_ELEMENTS // max(1, num_classes))
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ConfigError(f"chunk_size must be a positive integer (rows per chunk); got {chunk_size!r}")
    return chunk_size


def row_slices(n: int, rows: int) -> Iterator[slice]:
    """Consecutive ``slice`` objects of at most ``rows`` rows covering ``range(n)``."""
    for start in range(0, n, rows):
        yield slice(start, min(n, start + rows))
