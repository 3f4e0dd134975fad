"""Values written for people, shared by the command line and the dashboard."""

from __future__ import annotations

from datetime import timedelta


def format_seconds(value: float | timedelta | None) -> str:
    """A duration for people: ``0.25s``, ``42s``, ``3m 04s``, ``2h 03m``, ``4d 02h``."""
    if value is None:
        return "-"
    total = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if abs(total) < 60:
        return f"{total:.3g}s"
    minutes, secs = divmod(int(total), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours:02d}h"
