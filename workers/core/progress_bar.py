"""A progress bar for admin lists and pages (redrives, exports): a native <progress>, so it
needs no script and a screen reader reads its figure."""

from django.utils.html import format_html
from django.utils.safestring import SafeString


def progress_bar(percent: int, *, note: str = "") -> SafeString:
    percent = max(0, min(100, percent))
    return format_html('<progress class="progress-bar" value="{}" max="100">{}%</progress> '
                       '{}%{}', percent, percent, percent, f" ({note})" if note else "")
