"""argparse types shared by every CLI flag that takes seconds or another float.

`float()` accepts `inf`, `nan` and `1e309`; none is a meaningful duration, and JSON cannot carry
them (httpx refuses to encode them), so they are refused at parse time with the flag's name.
"""

from __future__ import annotations

import argparse
import math


def finite_float(raw: str, *, allow_zero: bool) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{raw!r} is not a finite number; pass a number such as 30 or 2.5")
    if value < 0 or (value == 0 and not allow_zero):
        raise argparse.ArgumentTypeError(f"{raw!r} must be {'0 or more' if allow_zero else 'greater than 0'}")
    return value


def positive_float(raw: str) -> float:
    """A finite number > 0 (durations such as --ttl and the *_s settings)."""
    return finite_float(raw, allow_zero=False)


def non_negative_float(raw: str) -> float:
    """A finite number >= 0 (--wait: 0 means do not queue)."""
    return finite_float(raw, allow_zero=True)
