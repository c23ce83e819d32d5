"""Line charts as SVG, written by hand with the standard library.

Shared by bench/summarize.py (docs/images/queue-bench.svg) and bench/http/summarize_http.py
(docs/images/http-bench.svg). A chart is header() + one or more panel()s + legend() + footer():
a panel draws one line per series against evenly spaced x levels, on a log-scale y axis.
"""

import math
from xml.sax.saxutils import escape


def log_ticks(low: float, high: float) -> list[float]:
    ticks = []
    exponent = math.floor(math.log10(low))
    while 10 ** exponent <= high * 1.0001:
        for mantissa in (1, 2, 5):
            value = mantissa * 10 ** exponent
            if low * 0.9999 <= value <= high * 1.0001:
                ticks.append(value)
        exponent += 1
    return ticks


def tick_label(value: float) -> str:
    if value >= 1000:
        return f"{value / 1000:g}k"
    return f"{value:g}"


def header(width: float, height: float, title: str, subtitle: str) -> list[str]:
    """The <svg> element, a white background, a bold title and a grey subtitle line."""
    return [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
            f'<rect width="{width}" height="{height}" fill="white"/>',
            f'<text x="{width / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">'
            f'{escape(title)}</text>',
            f'<text x="{width / 2}" y="40" text-anchor="middle" font-size="11" fill="#555">'
            f'{escape(subtitle)}</text>']


def panel(x0: float, y0: float, width: float, height: float, title: str, y_label: str,
          series: dict[str, list[tuple[int, float]]], *, x_label: str, order: list[str],
          labels: dict[str, str], colors: dict[str, str], x_unit: str) -> list[str]:
    """One panel: a line per name of `order` found in `series` ({name: [(x, value)]}); points
    with a value of 0 or less are left out. Each point's tooltip reads
    '<label>, <x> <x_unit>: <value>'."""
    out = []
    left, right, top, bottom = 62, 14, 28, 38
    px, py = x0 + left, y0 + top
    pw, ph = width - left - right, height - top - bottom
    values = [v for pts in series.values() for _, v in pts if v > 0]
    levels = sorted({c for pts in series.values() for c, _ in pts})
    out.append(f'<text x="{x0 + width / 2:.1f}" y="{y0 + 16}" text-anchor="middle" '
               f'font-weight="bold">{escape(title)}</text>')
    if not values or not levels:
        return out
    low = 10 ** math.floor(math.log10(min(values)))
    high = 10 ** math.ceil(math.log10(max(values)))
    if high <= low:
        high = low * 10

    def y_of(value: float) -> float:
        return py + ph - (math.log10(value) - math.log10(low)) / (math.log10(high) - math.log10(low)) * ph

    def x_of(level: int) -> float:
        if len(levels) == 1:
            return px + pw / 2
        return px + levels.index(level) / (len(levels) - 1) * pw

    out.append(f'<rect x="{px}" y="{py}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>')
    for tick in log_ticks(low, high):
        y = y_of(tick)
        major = math.isclose(math.log10(tick), round(math.log10(tick)))
        out.append(f'<line x1="{px}" y1="{y:.1f}" x2="{px + pw}" y2="{y:.1f}" '
                   f'stroke="{"#ccc" if major else "#eee"}"/>')
        out.append(f'<text x="{px - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11">'
                   f'{tick_label(tick)}</text>')
    for level in levels:
        x = x_of(level)
        out.append(f'<line x1="{x:.1f}" y1="{py + ph}" x2="{x:.1f}" y2="{py + ph + 4}" stroke="#999"/>')
        out.append(f'<text x="{x:.1f}" y="{py + ph + 17}" text-anchor="middle" font-size="11">'
                   f'{level}</text>')
    out.append(f'<text x="{px + pw / 2:.1f}" y="{py + ph + 32}" text-anchor="middle" '
               f'font-size="11">{escape(x_label)}</text>')
    out.append(f'<text transform="translate({x0 + 14},{py + ph / 2:.1f}) rotate(-90)" '
               f'text-anchor="middle" font-size="11">{escape(y_label)} (log scale)</text>')
    for name in order:
        pts = [(c, v) for c, v in series.get(name, []) if v > 0]
        if not pts:
            continue
        path = " ".join(f"{x_of(c):.1f},{y_of(v):.1f}" for c, v in pts)
        color = colors[name]
        out.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        for c, v in pts:
            out.append(f'<circle cx="{x_of(c):.1f}" cy="{y_of(v):.1f}" r="3" fill="{color}">'
                       f'<title>{escape(labels[name])}, {c} {escape(x_unit)}: {v:,.2f}</title></circle>')
    return out


def legend(order: list[str], labels: dict[str, str], colors: dict[str, str], x: float, y: float,
           step: float) -> list[str]:
    """A row of line swatches and labels, the first at (x, y), `step` apart."""
    out = []
    for name in order:
        out.append(f'<line x1="{x}" y1="{y - 4}" x2="{x + 24}" y2="{y - 4}" '
                   f'stroke="{colors[name]}" stroke-width="3"/>')
        out.append(f'<text x="{x + 30}" y="{y}">{escape(labels[name])}</text>')
        x += step
    return out


def footer(out: list[str]) -> str:
    """Closes the chart: the whole SVG text."""
    return "\n".join(out + ["</svg>"]) + "\n"
