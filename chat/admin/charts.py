"""The usage dashboard's charts, drawn on the server as inline SVG: no script, no style attribute, so
the Content-Security-Policy stays as it is. Labels are escaped like any other text."""

from collections.abc import Sequence
from decimal import Decimal

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

WIDTH, HEIGHT, MARGIN = 720, 180, 28
BAR_FILL = "#417690"  # the admin's own blue
Series = Sequence[tuple[str, float | int | Decimal]]


def _scale(values: Series) -> float:
    top = max((float(value) for _, value in values), default=0.0)
    return top if top > 0 else 1.0


def columns(series: Series, *, title: str, unit: str = "") -> SafeString:
    """Vertical bars, one per label (a day), the highest value written at the top left."""
    top, count = _scale(series), max(len(series), 1)
    step = (WIDTH - MARGIN) / count
    bars = format_html_join(
        "",
        '<rect x="{}" y="{}" width="{}" height="{}" fill="{}"><title>{}: {} {}</title></rect>',
        (
            (
                _px(MARGIN + index * step),
                _px(HEIGHT - MARGIN - (float(value) / top) * (HEIGHT - 2 * MARGIN)),
                _px(max(step - 1, 0.5)),
                _px((float(value) / top) * (HEIGHT - 2 * MARGIN)),
                BAR_FILL,
                label,
                _number(value),
                unit,
            )
            for index, (label, value) in enumerate(series)
        ),
    )
    first, last = (series[0][0], series[-1][0]) if series else ("", "")
    return format_html(
        '<svg class="usage-chart" role="img" aria-label="{}" viewBox="0 0 {} {}" width="100%">'
        '<text x="{}" y="14" font-size="12">{} (max {} {})</text>{}'
        '<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="#999"/>'
        '<text x="{}" y="{}" font-size="11">{}</text><text x="{}" y="{}" font-size="11" text-anchor="end">{}</text>'
        "</svg>",
        title,
        WIDTH,
        HEIGHT,
        MARGIN,
        title,
        _number(max((value for _, value in series), default=0)),
        unit,
        bars,
        MARGIN,
        HEIGHT - MARGIN,
        WIDTH,
        HEIGHT - MARGIN,
        MARGIN,
        HEIGHT - 10,
        first,
        WIDTH,
        HEIGHT - 10,
        last,
    )


def rows(series: Series, *, title: str, unit: str = "") -> SafeString:
    """Horizontal bars, one per label (a model, a user), the value written after each."""
    top, row_height, label_width = _scale(series), 22, 220
    height = MARGIN + row_height * max(len(series), 1)
    bars = format_html_join(
        "",
        '<text x="0" y="{}" font-size="12">{}</text>'
        '<rect x="{}" y="{}" width="{}" height="14" fill="{}"/>'
        '<text x="{}" y="{}" font-size="11">{} {}</text>',
        (
            (
                MARGIN + index * row_height + 11,
                label,
                label_width,
                MARGIN + index * row_height,
                _px((float(value) / top) * (WIDTH - label_width - 120)),
                BAR_FILL,
                _px(label_width + (float(value) / top) * (WIDTH - label_width - 120) + 6),
                MARGIN + index * row_height + 11,
                _number(value),
                unit,
            )
            for index, (label, value) in enumerate(series)
        ),
    )
    return format_html(
        '<svg class="usage-chart" role="img" aria-label="{}" viewBox="0 0 {} {}" width="100%">'
        '<text x="0" y="14" font-size="12">{}</text>{}</svg>',
        title,
        WIDTH,
        height,
        title,
        bars,
    )


def _px(value: float) -> str:
    return f"{value:.1f}"


def _number(value: float | int | Decimal) -> str:
    if isinstance(value, Decimal):
        return f"{value.normalize():f}" if value else "0"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.4f}"
