"""The table ``python -m bench`` prints: one Markdown row per figure, "median [min-max]"."""

from __future__ import annotations

from typing import Any


def number(value: Any) -> str:
    """A figure to three significant digits or so; a spread as "median [min-max]"."""
    if isinstance(value, dict):
        if value["n"] == 1:
            return number(value["median"])
        return f"{number(value['median'])} [{number(value['min'])}-{number(value['max'])}]"
    if value == 0 or abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"


def ratio(value: Any) -> str:
    return f"{number(value)}x"


def stages(by_stage: dict[str, dict]) -> str:
    """Medians of each stage's spread: "load 2.7, classify 0.1, ..."."""
    return ", ".join(f"{name} {number(value['median'])}" for name, value in by_stage.items())


def table(rows: list[tuple[str, str, str]]) -> str:
    """(section, figure, value) rows as a Markdown table."""
    lines = ["| section | figure | measured |", "|---|---|---:|"]
    lines += [f"| {section} | {figure} | {value} |" for section, figure, value in rows]
    return "\n".join(lines)
