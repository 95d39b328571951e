"""Number formatting shared by the terminal table and the HTML report, so both say the same thing."""

from __future__ import annotations

NOT_ESTIMABLE = "n/e"


def pct(value: float | None, digits: int = 1, signed: bool = False) -> str:
    """A share as a percentage ("n/e" when not estimable)."""
    if value is None:
        return NOT_ESTIMABLE
    return f"{value * 100:+.{digits}f}%" if signed else f"{value * 100:.{digits}f}%"


def interval(low: float | None, high: float | None, digits: int = 1) -> str:
    """A percentage interval "[low, high]" ("n/e" when either end is not estimable).

    An upper end beyond +1000% is shown as ">+1000%": on a handful of conversions the log-scale interval
    reaches absurd numbers whose digits carry no information.
    """
    if low is None or high is None:
        return NOT_ESTIMABLE
    upper = ">+1000%" if high > 10 else pct(high, digits, True)
    return f"[{pct(low, digits, True)}, {upper}]"


def short_note(note: str) -> str:
    """The part of a comparison's note before the colon ("no control conversions"), for table flags."""
    return note.split(":", 1)[0]


def number(value: float | None, digits: int = 1) -> str:
    """A signed count-like number with thousands separators (incremental conversions)."""
    if value is None:
        return NOT_ESTIMABLE
    return f"{value:+,.{digits}f}"


def p_value(value: float | None) -> str:
    """A p-value with sensible precision ("<0.0001" in the tail)."""
    if value is None:
        return NOT_ESTIMABLE
    if value < 0.0001:
        return "<0.0001"
    return f"{value:.4f}" if value < 0.01 else f"{value:.3f}"
