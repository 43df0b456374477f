"""Strict JSON out: never ``NaN`` or ``Infinity`` (which JSON has no words for).

A non-finite number becomes ``null``, and the answer says why in ``"not_finite"``: where
(a path of keys and indexes, the first ``MAX_REASONS``), and what the number was::

    >>> dumps({"loss": float("inf"), "grad": {"a": 1.0, "b": float("nan")}})
    '{"loss": null, "grad": {"a": 1.0, "b": null}, "not_finite": {"loss": "inf", "grad.b": "nan"}}'
    >>> dumps([1.0, 2.0])
    '[1.0, 2.0]'
"""
from __future__ import annotations

import json
import math

MAX_REASONS = 20


def finite(obj, path: str = "", found: dict | None = None):
    """``obj`` with every non-finite float replaced by None; ``found`` collects
    ``path -> "inf" | "-inf" | "nan"`` (at most ``MAX_REASONS`` entries, then a count)."""
    if isinstance(obj, float):
        if math.isfinite(obj):
            return obj
        if found is not None:
            if len(found) < MAX_REASONS:
                found[path or "value"] = "nan" if obj != obj else ("inf" if obj > 0 else "-inf")
            else:
                found["more"] = found.get("more", 0) + 1
        return None
    if isinstance(obj, dict):
        return {k: finite(v, f"{path}.{k}" if path else str(k), found) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v, f"{path}[{i}]", found) for i, v in enumerate(obj)]
    return obj


def dumps(obj, **kwargs) -> str:
    """``json.dumps`` that refuses to write NaN or Infinity: such numbers become null, and a
    dict at the top gets ``"not_finite"`` saying where and what they were."""
    try:
        return json.dumps(obj, allow_nan=False, **kwargs)
    except ValueError:
        pass
    found: dict = {}
    clean = finite(obj, "", found)
    if isinstance(clean, dict):
        clean = {**clean, "not_finite": found}
    return json.dumps(clean, allow_nan=False, **kwargs)


__all__ = ["dumps", "finite", "MAX_REASONS"]
