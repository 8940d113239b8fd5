"""Texts written straight into a picture's pixels (Pillow), where matplotlib would have placed them.

A picture drawn pixel by pixel (the watch's histograms: runner.report.watch_pictures) still needs its labels.
matplotlib draws a figure of nothing but texts at about 1.7 ms a text (its layout, then each glyph rendered
on its own: 40 ms for a histogram picture's 23); Pillow writes the same texts in the same font at the same
size in a tenth of that (docs/benchmarks.md). The font is matplotlib's (``findfont`` of the default font
properties: DejaVu Sans unless the user's rcParams say otherwise), and a text is placed as ``Figure.text``
places it: ``ha`` left, center or right of x; ``va`` top, center, bottom or baseline of y, where a line is
as tall as the font's ascent and descent (its OS/2 table, as matplotlib reads them) and the lines of a
multi-line text have the font's line gap between them. Glyphs are hinted otherwise (matplotlib renders them
unhinted across, Pillow to whole pixels), so a text's width differs by a pixel or two in a hundred; where it
starts, its height and its lines do not.

    Text                          (x, y, string, {fontsize, ha, va, color}): x, y in pixels from the top left
    on_white(texts, size)         RGBA pixels (height x width x 4, uint8): the texts on white
    write(pixels, texts)          the texts written over RGBA pixels (a label over a heat map)
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from runner.report.figures.canvas import DPI

#: a text of a picture: (x, y) in pixels from the top left corner, the string, and its matplotlib keywords
Text = tuple[float, float, str, dict]

_ANCHOR = {"left": "l", "center": "m", "right": "r"}


def on_white(texts: list[Text], size: tuple[int, int]) -> np.ndarray:
    """``texts`` on a white picture of ``size`` (width, height) pixels."""
    from PIL import Image

    image = Image.new("RGBA", size, "white")
    _draw(image, texts)
    return np.array(image)


def write(pixels: np.ndarray, texts: list[Text]) -> np.ndarray:
    """``texts`` written over RGBA ``pixels`` (a new array; anti-aliased edges blend with what is beneath)."""
    from PIL import Image

    image = Image.fromarray(pixels, "RGBA")
    _draw(image, texts)
    return np.array(image)


def _draw(image, texts: list[Text]) -> None:
    from PIL import ImageDraw

    draw = ImageDraw.Draw(image)
    for x, y, string, keywords in texts:
        font, ascent, descent, gap = _font(float(keywords.get("fontsize", 10)))
        lines = string.split("\n")
        gap = gap if len(lines) > 1 else 0.0  # a line's gap only between lines, as matplotlib has it
        pitch = ascent + descent + gap
        box = pitch * len(lines)
        last = box - descent - gap / 2  # from the top to the last line's baseline, which "baseline" means
        top = {"top": y, "bottom": y - box, "center": y - box / 2, "baseline": y - last}[keywords.get("va", "baseline")]
        anchor = _ANCHOR[keywords.get("ha", "left")] + "s"  # x, and the baseline
        fill = _colour(keywords.get("color", "black"))
        for i, line in enumerate(lines):
            draw.text((x, top + gap / 2 + ascent + i * pitch), line, font=font, fill=fill, anchor=anchor)


def _colour(colour) -> tuple[int, ...]:
    """A matplotlib colour (a name, hex, or RGB(A) floats) as Pillow's RGBA bytes."""
    from matplotlib.colors import to_rgba

    return tuple(round(255 * c) for c in to_rgba(colour))


@lru_cache(maxsize=8)
def _font(points: float):
    """(the Pillow font of matplotlib's default family at ``points``; its ascent, descent and line gap in pixels)."""
    from matplotlib import font_manager
    from PIL import ImageFont

    path = font_manager.findfont(font_manager.FontProperties())
    pixels = points * DPI / 72
    # Pillow's basic layout on every machine (its Raqm layout depends on libraqm being found): about 1.5 % wider than
    # matplotlib's text (whole-pixel advances), Raqm's 1 % narrower
    font = ImageFont.truetype(path, size=pixels, layout_engine=ImageFont.Layout.BASIC)
    tables = font_manager.get_font(path)
    head, typo = tables.get_sfnt_table("head"), tables.get_sfnt_table("OS/2")
    if head is None or typo is None:  # a font without an OS/2 table (matplotlib then reads hhea): Pillow's own metrics
        ascent, descent = font.getmetrics()
        return font, float(ascent), float(descent), 0.0
    scale = pixels / head["unitsPerEm"]
    return font, typo["sTypoAscender"] * scale, -typo["sTypoDescender"] * scale, typo["sTypoLineGap"] * scale
