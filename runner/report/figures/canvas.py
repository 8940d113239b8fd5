"""The figure every picture of the run is drawn on, and what drawing it quickly takes.

A figure has a fixed size in pixels (``SIZES``, which the tests check) on an Agg canvas, made with
matplotlib's object API rather than pyplot; fixed margins instead of tight_layout; log axes labelled in
plain text instead of mathtext; PNGs saved at a fast zlib level. Each of these saves time on a run's
first figure (docs/benchmarks.md); matplotlib is imported inside the functions, never at import.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

#: dots per inch of every figure, and each figure's (width, height) in pixels
DPI = 100
SIZES = {
    "training_curves": (1200, 450),
    "confusion_matrix": (700, 600),
    "misclassified": (700, 860),
    "gradcheck": (900, 500),
}


def figure(kind: str):
    """A figure of ``SIZES[kind]`` pixels on an Agg canvas: matplotlib's object API, not pyplot (whose
    import and figure manager cost a few tenths of a second and which nothing here needs)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    width, height = SIZES[kind]
    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def margins(fig, left: float, right: float, bottom: float, top: float, gap: float = 0.0, columns: int = 1) -> None:
    """Fixed margins (and the gap between ``columns`` side by side) in pixels: no tight_layout, which
    lays every text out once more before the save (about a third of a figure's drawing time)."""
    width, height = fig.get_size_inches() * fig.dpi
    axes_width = (width - left - right - gap * (columns - 1)) / columns
    fig.subplots_adjust(
        left=left / width, right=1 - right / width, bottom=bottom / height, top=1 - top / height, wspace=gap / axes_width
    )


def text_width(labels: Sequence[str], fontsize: float) -> float:
    """About how many pixels the longest of ``labels`` takes at ``fontsize`` points (DejaVu Sans)."""
    return max((len(str(label)) for label in labels), default=0) * fontsize * 0.62 * DPI / 72


def log_scale(ax, which: str, minor: bool = True) -> None:
    """``ax``'s x or y axis on a log scale whose tick labels read 0.5, 1, 1e-06 (plain text): matplotlib's
    default labels (10 to the power -6) are mathtext, whose parser costs ~0.1 s on a process's first.
    ``minor=False``: no minor ticks (each costs time to make; an axis over 8 decades has 70)."""
    from matplotlib.ticker import LogFormatter, NullLocator

    class Plain(LogFormatter):  # LogFormatter's choice of ticks to label, written 0.5, 1, 1e-06, 1e+05
        def _num_to_string(self, x, vmin, vmax):
            return f"{x:g}" if 1e-3 <= abs(x) < 1e4 else f"{x:.0e}"

    (ax.set_xscale if which == "x" else ax.set_yscale)("log")
    axis = ax.xaxis if which == "x" else ax.yaxis
    axis.set_major_formatter(Plain(10))
    if minor:
        axis.set_minor_formatter(Plain(10, labelOnlyBase=False))
    else:
        axis.set_minor_locator(NullLocator())


def save(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # no bbox_inches="tight": the size stays as given; zlib level 3: a third faster than 6, files 10% larger
    fig.savefig(path, dpi=DPI, format="png", pil_kwargs={"compress_level": 3})
    return path
