"""What a ConvNet learned, as pictures (the deep-learning-from-scratch book's figures 7-24 and 7-26):

    plots/filters.png       the first convolution's filters before and after training, one tile each
    plots/feature_maps.png  a few test images and, per convolution, what its channels give for them

Each tile is scaled to its own range (black: its smallest value, white: its largest), as the book
does: a filter's pattern shows, whatever its size. Filters of several input channels are shown as
their mean over those channels (three channels as colour). Plain arrays in, a PNG out.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

#: at most this many filters and channel maps are drawn per panel (the first ones)
MAX_FILTERS = 64
MAX_CHANNELS = 16


def conv_layers(model) -> list[tuple[int, str]]:
    """(index, label) of every layer with a 4-axis weight (out, in, kh, kw), in run order: ``0.conv2d``."""
    labels = list(getattr(model, "names", None) or range(len(model.layers)))
    return [
        (i, f"{labels[i]}.{model.types[i]}")
        for i, layer in enumerate(model.layers)
        if any(np.ndim(p) == 4 for p in layer.params.values())
    ]


def first_filters(model) -> np.ndarray | None:
    """A copy of the first convolution's weights (out, in, kh, kw), or None for a model without one."""
    found = conv_layers(model)
    if not found:
        return None
    layer = model.layers[found[0][0]]
    return next(np.array(p, dtype=np.float64) for p in layer.params.values() if np.ndim(p) == 4)


def _scaled(tile: np.ndarray) -> np.ndarray:
    """A tile mapped to [0, 1] by its own range (a constant tile is grey)."""
    low, high = float(np.min(tile)), float(np.max(tile))
    return np.full(tile.shape, 0.5) if high - low <= 0 else (tile - low) / (high - low)


def _mosaic(tiles: list[np.ndarray], cols: int, gap: int = 1) -> np.ndarray:
    """Tiles of one shape (h, w) or (h, w, 3) in a grid, NaN (drawn as background) between them."""
    h, w = tiles[0].shape[:2]
    rows = max(1, math.ceil(len(tiles) / cols))
    mosaic = np.full((rows * (h + gap) + gap, cols * (w + gap) + gap, *tiles[0].shape[2:]), np.nan)
    for k, tile in enumerate(tiles):
        r, c = divmod(k, cols)
        mosaic[gap + r * (h + gap) : gap + r * (h + gap) + h, gap + c * (w + gap) : gap + c * (w + gap) + w] = tile
    return mosaic


def _filter_tiles(weights: np.ndarray) -> list[np.ndarray]:
    shown = weights[:MAX_FILTERS]
    if shown.shape[1] == 3:  # colour filters: (kh, kw, 3)
        return [_scaled(f.transpose(1, 2, 0)) for f in shown]
    return [_scaled(f.mean(axis=0)) for f in shown]


def _grey():
    import matplotlib

    return matplotlib.colormaps["gray"].with_extremes(bad="#dde3ea")  # bad: the gaps between tiles


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def filters_figure(before: np.ndarray | None, after: np.ndarray, label: str, path: Path) -> Path:
    """The filters of ``label`` (out, in, kh, kw) before and after training, side by side."""
    panels = [("before training", before), ("after training", after)] if before is not None else [("after training", after)]
    cols = max(1, math.ceil(math.sqrt(min(len(after), MAX_FILTERS))))
    fig = _figure(4.2 * len(panels), 4.6)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (title, weights) in zip(axes, panels):
        ax.imshow(_mosaic(_filter_tiles(weights), cols), cmap=_grey(), vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(title, fontsize=10)
        ax.set_axis_off()
    out, channels, kh, kw = after.shape
    shown = f"the first {MAX_FILTERS} of {out}" if out > MAX_FILTERS else f"{out}"
    mean = f", mean over {channels} input channels" if channels not in (1, 3) else ""
    fig.suptitle(f"{label}: {shown} filters of {kh}x{kw}{mean}, each scaled to its own range", fontsize=11)
    return _save(fig, path)


def feature_maps(model, images: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """(label, output) of every convolution of ``model`` for ``images`` (batch, c, h, w), in evaluation
    mode: what each channel responds to. A graph's nodes run as the graph does."""
    wanted = dict(conv_layers(model))
    if hasattr(model, "outputs"):  # a graph: every node's output in one pass
        outputs = model.outputs(images, False)
        return [(label, np.asarray(outputs[i])) for i, label in wanted.items()]
    found, h = [], images
    for i, layer in enumerate(model.layers):
        h = layer.forward(h, training=False)
        if i in wanted:
            found.append((wanted[i], np.array(h)))
    return found


def feature_maps_figure(images: np.ndarray, maps: list[tuple[str, np.ndarray]], path: Path) -> Path:
    """A column per test image: the image, then per convolution its first channels, each scaled alone."""
    n = len(images)
    rows = [("input", [[_scaled(img.mean(axis=0))] for img in images], 1)]
    for label, output in maps:
        channels = min(output.shape[1], MAX_CHANNELS)
        rows.append((f"{label} ({output.shape[1]} channels)", [[_scaled(c) for c in out[:channels]] for out in output], channels))
    fig = _figure(2.6 * n + 1.0, 2.5 * len(rows))
    axes = fig.subplots(len(rows), n, squeeze=False)
    for r, (label, tiles_per_image, channels) in enumerate(rows):
        cols = max(1, math.ceil(math.sqrt(channels)))
        for k in range(n):
            ax = axes[r][k]
            ax.imshow(_mosaic(tiles_per_image[k], cols), cmap=_grey(), vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if k == 0:
                ax.set_ylabel(label, fontsize=9)
            if r == 0:
                ax.set_title(f"test image {k}", fontsize=9)
    fig.suptitle(
        f"feature maps: the first {MAX_CHANNELS} channels of each convolution, each scaled to its own range", fontsize=11
    )
    return _save(fig, path)
