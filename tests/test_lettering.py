"""Texts written into pixels by Pillow (runner.report.figures.lettering) sit where matplotlib's Figure.text puts them."""

from __future__ import annotations

import numpy as np
import pytest

from runner.report.figures import lettering

SIZE = (400, 200)


def _ink(pixels: np.ndarray) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the pixels that are not white."""
    rows, columns = np.nonzero((pixels[..., :3] < 200).any(axis=2))
    return columns.min(), rows.min(), columns.max(), rows.max()


def _matplotlib(text: lettering.Text) -> np.ndarray:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    x, y, string, keywords = text
    fig = Figure(figsize=(SIZE[0] / 100, SIZE[1] / 100), dpi=100)
    FigureCanvasAgg(fig)
    fig.text(x / SIZE[0], 1 - y / SIZE[1], string, **keywords)
    fig.canvas.draw()
    return np.array(fig.canvas.buffer_rgba())


@pytest.mark.parametrize("ha", ["left", "center", "right"])
@pytest.mark.parametrize("va", ["top", "center", "bottom", "baseline"])
@pytest.mark.parametrize("string", ["step 10000", "0.linear.W", "over", "one line\nand a second, longer line"])
def test_a_text_sits_where_matplotlib_puts_it(string, ha, va):
    text = (200.0, 100.0, string, {"fontsize": 8, "ha": ha, "va": va})
    drawn, expected = _ink(lettering.on_white([text], SIZE)), _ink(_matplotlib(text))
    # the same font at the same size: each edge of the ink within 2 pixels, but for the width's 2 % (whole-pixel advances)
    slack = 2 + 0.02 * (expected[2] - expected[0])
    assert np.abs(np.subtract(drawn, expected)).max() <= slack, (drawn, expected)
    assert abs(drawn[1] - expected[1]) <= 1 and abs(drawn[3] - expected[3]) <= 1  # up and down: within a pixel


def test_written_over_pixels_a_text_leaves_the_rest_and_takes_its_colour():
    under = np.zeros((*SIZE[::-1], 4), np.uint8)
    under[..., 2:] = 255  # opaque blue
    written = lettering.write(under, [(20, 50, "dead_relu", {"fontsize": 7, "color": "red", "va": "top"})])
    changed = (written != under).any(axis=2)
    left, top, right, bottom = _ink(np.where(changed[..., None], written, 255))
    assert 18 <= left <= 22 and 48 <= top <= 53 and right - left > 30  # from (20, 50) to the right and down
    assert changed.sum() < 0.02 * changed.size and written.shape == under.shape
    reddest = written[changed][np.argmax(written[changed][:, 0])]
    assert tuple(reddest) == (255, 0, 0, 255)  # the glyphs' cores in the colour asked for
