"""Row strips with a fixed pixel budget: the metrics walk an image a strip at a time, so their
memory stays flat whatever the image's size — its width included (a strip of a fixed number
of rows grows with the width: 256 rows of a 3000-px image are three times a 1024-px one's)."""

from __future__ import annotations

STRIP_PIXELS = 512 * 1024  # pixels per strip: 256 rows at 2048 px, 174 at 3000 px
MIN_STRIP_ROWS = 16  # a very wide image still gets strips tall enough for the halos around them


def strip_rows(width: int) -> int:
    """Rows per strip for an image ``width`` pixels wide (at least ``MIN_STRIP_ROWS``)."""
    return max(MIN_STRIP_ROWS, STRIP_PIXELS // max(1, width))


def strips(height: int, width: int, start: int = 0, stop: int | None = None) -> list[tuple[int, int]]:
    """``(y0, y1)`` row ranges covering ``start``..``stop`` (default: every row) of an image
    ``width`` pixels wide, each at most ``strip_rows(width)`` rows."""
    stop = height if stop is None else stop
    rows = strip_rows(width)
    return [(y, min(stop, y + rows)) for y in range(start, stop, rows)]
