"""Image corruptions in batched torch (CIFAR-10-C / ImageNet-C style), 5 severities each.

``corrupt(images, "fog", 3, seed=0)`` corrupts a float batch ``(N, C, H, W)`` in ``[0, 1]``; see
:mod:`calikd.corruptions.base` for the severity tables and :func:`list_corruptions` for the names.
"""

from calikd.corruptions.base import (
    SEVERITIES,
    Corruption,
    corrupt,
    get_corruption,
    list_corruptions,
    register_corruption,
    resolve_corruptions,
    resolve_table,
)

__all__ = [
    "SEVERITIES",
    "Corruption",
    "corrupt",
    "get_corruption",
    "list_corruptions",
    "register_corruption",
    "resolve_corruptions",
    "resolve_table",
]
