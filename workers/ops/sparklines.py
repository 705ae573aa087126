"""Small SVG line charts drawn on the server: the console needs no script and no CDN."""

from collections.abc import Sequence

from django.utils.html import format_html
from django.utils.safestring import SafeString

WIDTH, HEIGHT = 120, 24


def sparkline(values: Sequence[float], *, label: str, colour: str = "#417690") -> SafeString:
    """A polyline over `values` (oldest first), scaled to its own maximum, titled `label`
    (a screen reader and a hover read the figures the line leaves out)."""
    top = max(values, default=0) or 1
    step = WIDTH / max(len(values) - 1, 1)
    points = " ".join(f"{index * step:.1f},{HEIGHT - 1 - value / top * (HEIGHT - 2):.1f}"
                      for index, value in enumerate(values))
    return format_html(
        '<svg class="sparkline" width="{}" height="{}" viewBox="0 0 {} {}" role="img" '
        'aria-label="{}"><title>{}</title><polyline fill="none" stroke="{}" '
        'stroke-width="1.5" points="{}"/></svg>',
        WIDTH, HEIGHT, WIDTH, HEIGHT, label, label, colour, points)
