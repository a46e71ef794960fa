"""The outcome chart's geometry: bars, ticks and labels for an SVG the template draws.

Pure arithmetic over a stats series (tasks.stats); the template
(deliveries/_chart.html) turns the returned dict into SVG, with a data table
beside it as its text alternative.
"""

from datetime import datetime, timedelta

from tasks.stats import OUTCOMES

#: Chart colours (Bootstrap's success, danger, warning and secondary).
COLOURS = {"delivered": "#198754", "failed": "#dc3545", "retrying": "#ffc107", "cancelled": "#6c757d"}


def _nice_step(peak: int, ticks: int = 4) -> int:
    """The smallest 1-2-5 × 10^k step whose ``ticks`` steps reach ``peak``."""
    magnitude = 1
    while True:
        for factor in (1, 2, 5):
            step = factor * magnitude
            if step * ticks >= peak:
                return step
        magnitude *= 10


def _span_label(start: datetime, end: datetime, width: timedelta) -> str:
    """``"14:00–15:00 UTC"`` or ``"Mon 13 Oct 06:00–12:00 UTC"``, for a bar's tooltip."""
    day = "" if width < timedelta(hours=2) else start.strftime("%a %d %b ")
    return f"{day}{start:%H:%M}–{end:%H:%M} UTC"


def chart(series, *, width: int = 720, height: int = 220) -> dict:
    """Geometry of the stacked bar chart for the Jinja macro in ``_chart.html``.

    Coordinates are in viewBox units; the SVG scales to its container.
    """
    left, right, top, bottom = 36, 8, 10, 26
    plot_w, plot_h = width - left - right, height - top - bottom
    step = _nice_step(series.peak)
    y_max = step * 4
    slot = plot_w / max(len(series.buckets), 1)
    hourly = series.width < timedelta(hours=2)
    bars = []
    for i, bucket in enumerate(series.buckets):
        x = left + i * slot + slot * 0.15
        y = top + plot_h
        parts = []
        for key, label in OUTCOMES:
            count = getattr(bucket, key)
            if not count:
                continue
            h = plot_h * count / y_max
            y -= h
            parts.append({"key": key, "y": round(y, 2), "h": round(h, 2), "colour": COLOURS[key]})
        counts = ", ".join(f"{getattr(bucket, k)} {label.lower()}" for k, label in OUTCOMES)
        # Label every 3rd hour, or each midnight of the 7-day view.
        if hourly:
            tick = bucket.start.strftime("%H:%M") if bucket.start.hour % 3 == 0 else ""
        else:
            tick = bucket.start.strftime("%a %d") if bucket.start.hour == 0 else ""
        bars.append({
            "x": round(x, 2),
            "w": round(slot * 0.7, 2),
            "parts": parts,
            "title": f"{_span_label(bucket.start, bucket.end, series.width)}: {counts}",
            "tick": tick,
            "tick_x": round(left + i * slot + slot / 2, 2),
        })
    totals = series.totals()
    total = sum(totals.values())
    unit = "hour" if hourly else "6 hours"
    span = "last 24 hours" if series.range == "24h" else "last 7 days"
    busiest = max(series.buckets, key=lambda b: b.total, default=None)
    description = f"{total} outcomes in the {span}: " + ", ".join(
        f"{totals[k]} {label.lower()}" for k, label in OUTCOMES) + "."
    if busiest is not None and busiest.total:
        description += (f" Busiest: {_span_label(busiest.start, busiest.end, series.width)}"
                        f" with {busiest.total}.")
    return {
        "series": series,
        "width": width,
        "height": height,
        "left": left,
        "right": width - right,
        "top": top,
        "baseline": top + plot_h,
        "bars": bars,
        "grid": [{"value": step * i, "y": round(top + plot_h - plot_h * i / 4, 2)} for i in range(5)],
        "title": f"Delivery attempts per {unit} by outcome, {span} (UTC)",
        "description": description,
        "totals": totals,
        "outcomes": [{"key": k, "label": label, "colour": COLOURS[k], "count": totals[k]}
                     for k, label in OUTCOMES],
    }
