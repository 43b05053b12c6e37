"""Plain-text tables for the eval and bench reports (one printer, so both read alike)."""
from __future__ import annotations

import math
from typing import Iterable


def fmt(v, digits: int = 3) -> str:
    if isinstance(v, bool) or v is None:
        return "" if v is None else str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "-"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        if v != 0.0 and abs(v) < 10 ** -digits:
            return f"{v:.{digits}g}"
        return f"{v:.{digits}f}"
    return str(v)


def format_table(rows: list[dict], cols: Iterable[str], title: str | None = None, digits: int = 3,
                 headers: dict[str, str] | None = None) -> str:
    """Rows of dicts -> aligned text; columns no row has are dropped, missing cells stay blank."""
    cols = [c for c in cols if any(c in r for r in rows)]
    headers = headers or {}
    names = [headers.get(c, c) for c in cols]
    cells = [[fmt(r.get(c), digits) if c in r else "" for c in cols] for r in rows]
    widths = [max([len(n)] + [len(row[i]) for row in cells]) for i, n in enumerate(names)]
    lines = [] if title is None else ["", title]
    lines.append("  ".join(n.ljust(w) for n, w in zip(names, widths)).rstrip())
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    return "\n".join(lines)


def print_table(rows: list[dict], cols: Iterable[str], title: str | None = None, digits: int = 3,
                headers: dict[str, str] | None = None) -> None:
    print(format_table(rows, cols, title, digits, headers), flush=True)


def markdown_table(rows: list[dict], cols: Iterable[str], digits: int = 3, headers: dict[str, str] | None = None) -> str:
    """The same table as GitHub markdown (for docs/results.md)."""
    cols = [c for c in cols if any(c in r for r in rows)]
    headers = headers or {}
    out = ["| " + " | ".join(headers.get(c, c) for c in cols) + " |", "|" + "---|" * len(cols)]
    out += ["| " + " | ".join(fmt(r.get(c), digits) if c in r else "" for c in cols) + " |" for r in rows]
    return "\n".join(out)
