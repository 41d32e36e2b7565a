"""Strict JSON on stdout for every ``--json`` command.

JSON has no NaN or infinity (Python's ``json`` would print the non-standard tokens ``NaN``
and ``Infinity``, which other readers reject): a value that is not finite is ``null``, as
"nothing was measured" (a loss over no finite sample, a statistic that does not apply).
NumPy scalars and arrays become numbers and lists.
"""

from __future__ import annotations

import json
import math
from typing import Any

__all__ = ["print_json", "strict"]


def strict(obj: Any) -> Any:
    """``obj`` with every non-finite float replaced by ``None`` and NumPy values unwrapped."""
    if hasattr(obj, "tolist"):  # NumPy arrays and scalars, JAX arrays
        obj = obj.tolist()
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict(v) for v in obj]
    return obj


def print_json(obj: Any, *, indent: int | None = None) -> None:
    """Print ``obj`` as one strict JSON document (``allow_nan=False`` guards the rule)."""
    print(json.dumps(strict(obj), indent=indent, allow_nan=False))
