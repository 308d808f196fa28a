"""HTML building blocks of ``report.html``: escaping, number formatting and tables.

Every piece of text goes through :func:`esc`; numbers through :func:`fmt` (4 significant
digits, ``[lo, hi]`` for an interval).
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping
from typing import Any

__all__ = ["esc", "is_num", "fmt", "cell", "table", "kv_table", "markdown_table", "sci"]


def esc(x: Any) -> str:
    """``x`` as HTML-escaped text (quotes too)."""
    return html.escape(str(x), quote=True)


def is_num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def fmt(x: Any) -> str:
    """A value as short plain text: 4 significant digits, ``[lo, hi]`` for intervals."""
    if x is None:
        return "–"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if hasattr(x, "item") and not isinstance(x, (str, bytes)):
        try:
            x = x.item()
        except (ValueError, AttributeError):
            pass
    if is_num(x):
        v = float(x)
        if not math.isfinite(v):
            return "n/a"
        if isinstance(x, int) and abs(x) < 10**6:
            return str(x)
        if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3):
            return f"{v:.4g}" if "e" in f"{v:.4g}" else f"{v:.3e}"
        return f"{v:.4g}"
    if isinstance(x, (list, tuple)):
        if len(x) == 2 and all(is_num(v) for v in x):
            return f"[{fmt(x[0])}, {fmt(x[1])}]"
        if all(not isinstance(v, (dict, list, tuple)) for v in x):
            return ", ".join(fmt(v) for v in x)
    if isinstance(x, (dict, list, tuple)):
        return json.dumps(x, default=str, separators=(", ", ": "))[:2000]
    return str(x)


def cell(x: Any) -> str:
    cls = ' class="num"' if is_num(x) or (
        isinstance(x, (list, tuple)) and len(x) == 2 and all(is_num(v) for v in x)) else ""
    return f"<td{cls}>{esc(fmt(x))}</td>"


def table(rows: list[Mapping[str, Any]], columns: list[str] | None = None,
           headers: Mapping[str, str] | None = None, status_col: str | None = None) -> str:
    """An HTML table of dict rows (columns: the union of keys, in first-seen order)."""
    if not rows:
        return "<p><em>none</em></p>"
    if columns is None:
        columns = []
        for r in rows:
            for k in r:
                if k not in columns:
                    columns.append(k)
    headers = headers or {}
    out = ['<div class="scroll"><table><thead><tr>']
    out += [f"<th>{esc(headers.get(c, c))}</th>" for c in columns]
    out.append("</tr></thead><tbody>")
    for r in rows:
        out.append("<tr>")
        for c in columns:
            v = r.get(c)
            if c == status_col and v is not None:
                s = str(v)
                cls = "status-" + "".join(ch for ch in s.lower() if ch.isalnum())
                out.append(f'<td class="{esc(cls)}">{esc(s)}</td>')
            else:
                out.append(cell(v))
        out.append("</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


def kv_table(d: Mapping[str, Any]) -> str:
    return table([{"key": k, "value": v} for k, v in d.items()], ["key", "value"])


def markdown_table(md: str) -> str:
    """A pipe-delimited markdown table as HTML (anything else as preformatted text)."""
    lines = [ln.strip() for ln in md.strip().splitlines() if ln.strip()]
    rows = [ln for ln in lines if ln.startswith("|")]
    if len(rows) < 2:
        return f"<pre>{esc(md)}</pre>"

    def cells(ln: str) -> list[str]:
        return [c.strip() for c in ln.strip().strip("|").split("|")]

    head = cells(rows[0])
    body = [cells(r) for r in rows[1:] if not set(r.replace("|", "").strip()) <= set("-: ")]
    out = ['<div class="scroll"><table><thead><tr>']
    out += [f"<th>{esc(h)}</th>" for h in head]
    out.append("</tr></thead><tbody>")
    for r in body:
        out.append("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>")
    out.append("</tbody></table></div>")
    other = [ln for ln in lines if not ln.startswith("|")]
    if other:
        out.append("".join(f"<p>{esc(ln)}</p>" for ln in other))
    return "".join(out)


def sci(x: Any) -> str:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return "–"
    if not math.isfinite(v):
        return "n/a"
    return f"{v:.3g}"
