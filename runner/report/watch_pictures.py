"""What the watch saw while the network learned (runner.core.watch), as pictures and one file of counts:

    plots/watch_weights.png      per parameter array: its histogram at each watched step (step x value)
    plots/watch_gradients.png    the same for the gradients
    plots/watch_activations.png  the same for each layer's output
    plots/gradient_flow.png      each weight matrix's gradient norm over training, and layer by layer
    watch/histograms.npz         the raw counts and edges behind the three histogram pictures, and every watch metric

A histogram picture has a panel per array: x is the training step, y the value, the colour how many of the
binned entries fell there (log scale: the tails show beside the peak). Every step of a panel is counted on
the same bins, the array's range at the end (a power of two that doubled whenever the values outgrew it:
runner.core.watch.histograms), so a distribution that drifts, spreads or collapses shows as such; the rows
below and above the dashed lines count the entries outside the range of their time. Each warning is marked in red where it
was raised, in the panel of the array it names. Plain data in, files out; matplotlib only when drawing.

Off the run's path: the run's process writes only the npz (``write_npz``, milliseconds) and hands its path to
where MLflow is written (``draw_watch_pictures``, a painting: in the sidecar or its painter process, on the other
core, runner.tracking.painter; ``warm_pictures`` has matplotlib loaded there while the run trains); ``Seen`` reads
the npz back there. ``log_watch_pictures`` is the same as a report part that logs its files itself. With
``tracking.sidecar=false`` the same parts run in the run's process.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runner.core.watch import KINDS, Watch
from runner.report.figures import lettering
from runner.report.figures.canvas import DPI, log_scale, save
from runner.report.figures.lettering import Text

#: the most panels a histogram picture shows (the first arrays in run order)
MAX_PANELS = 16
PANEL = (330, 250)  # pixels per panel


def _figure(columns: int, rows: int, panel: tuple[int, int] = PANEL, extra: tuple[int, int] = (0, 40)):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    width, height = columns * panel[0] + extra[0], rows * panel[1] + extra[1]
    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


@dataclass
class Seen:
    """What the watch saw, as plain data (what the pictures are drawn from): the watched ``steps``, their metrics
    (``points``, one dict per step), the histograms (``kind -> name -> (edges, counts)``), the ``warnings`` and the
    weight ``matrices`` in run order. From a live ``Watch`` (``of``) or from its npz (``load``)."""

    steps: list[int]
    points: list[dict[str, float]]
    histograms: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]
    warnings: list[dict]
    matrices: list[str]

    @classmethod
    def of(cls, watch: Watch) -> Seen:
        arrays = watch.histograms.arrays()
        histograms = {
            kind: {
                name: (arrays[f"{kind}/{name}/edges"], arrays[f"{kind}/{name}/counts"]) for name in watch.histograms.edges[kind]
            }
            for kind in KINDS
        }
        return cls(list(watch.steps), [dict(p) for p in watch.points], histograms, list(watch.warnings), list(watch.matrices))

    @classmethod
    def load(cls, npz: Path, warnings: list[dict], matrices: list[str]) -> Seen:
        """From ``write_npz``'s file: its metrics back as points (a NaN: not measured at that step)."""
        with np.load(npz, allow_pickle=False) as saved:
            files = {name: saved[name] for name in saved.files}
        steps = [int(s) for s in files.pop("steps")]
        histograms: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {kind: {} for kind in KINDS}
        metrics = {}
        for key, value in files.items():
            head, _, rest = key.partition("/")
            if head == "metrics":
                metrics[f"watch/{rest}"] = value
            elif head in histograms and rest.endswith("/edges"):
                name = rest.removesuffix("/edges")
                histograms[head][name] = (value, files[f"{head}/{name}/counts"])
        points = [{k: float(v[i]) for k, v in metrics.items() if not np.isnan(v[i])} for i in range(len(steps))]
        return cls(steps, points, histograms, [dict(w) for w in warnings], list(matrices))

    def series(self, metric: str) -> tuple[list[int], list[float]]:
        """(steps, values) of one metric over the watched steps where it was measured."""
        found = [(s, p[metric]) for s, p in zip(self.steps, self.points) if metric in p]
        return [s for s, _ in found], [v for _, v in found]


def marks_for(warnings: list[dict], name: str) -> list[tuple[int, str]]:
    """(step, kind) of each warning that names ``name`` (a flow warning names the first and the last matrix)."""
    return [(w["step"], w["kind"]) for w in warnings if w["name"] == name or name in w["name"].split(" vs ")]


#: a histogram panel in pixels: the heat map, and the margins for its name (top), values (left) and steps (bottom)
MAP = (250, 180)
MARGIN = {"left": 52, "right": 34, "top": 22, "bottom": 26}
RED = np.array([0.85, 0.1, 0.1, 1.0])
#: a histogram panel's cell in pixels (its map and margins), and the band above the panels for the picture's legend
CELL = (MARGIN["left"] + MAP[0] + MARGIN["right"], MARGIN["top"] + MAP[1] + MARGIN["bottom"])
HEADER = 46


def histograms_figure(
    kind: str, arrays: dict[str, tuple[np.ndarray, np.ndarray]], steps: list[int], warnings: list[dict], path: Path
) -> Path:
    """One panel per array (``name -> (edges, counts)``, counts: points x (under, bins..., over)), each a heat map
    painted pixel by pixel beside its texts, without axes: a panel of axes and ticks costs matplotlib about 50 ms to
    lay out, a picture of them several times the watch's whole cost during training. The texts are drawn first, on
    white by Pillow where matplotlib would have placed them (``lettering``: a tenth of matplotlib's time for a figure of
    texts), then the maps are written into those pixels (they overlap no text), then a warning's label over its map."""
    names = list(arrays)[:MAX_PANELS]
    columns = min(len(names), 4)
    size = _size(len(names))
    peak = max((int(counts.max()) for _, counts in arrays.values()), default=1)
    texts, over_maps = _texts(kind, arrays, names, steps, warnings, peak, size)
    image = lettering.on_white(texts, size)
    columns_at = _columns(steps, MAP[0])
    for k, name in enumerate(names):
        left, top = _corner(k, columns)
        panel = _paint(arrays[name][1][columns_at], peak)
        for step, _ in marks_for(warnings, name):
            x = int(np.searchsorted(_step_edges(steps), step, side="right")) - 1
            at = np.flatnonzero(columns_at == min(x, len(steps) - 1))
            panel[:, at[:1] if len(at) else [], :] = RED
        image[top : top + MAP[1], left : left + MAP[0]] = (panel * 255).astype(np.uint8)
    if over_maps:
        image = lettering.write(image, over_maps)
    return _save_pixels(image, path)


def _size(panels: int) -> tuple[int, int]:
    """A histogram picture's (width, height) in pixels for this many panels: up to four a row."""
    columns = min(panels, 4)
    return columns * CELL[0], max(1, math.ceil(panels / columns)) * CELL[1] + HEADER


def _corner(k: int, columns: int) -> tuple[int, int]:
    """The top left pixel of panel ``k``'s map."""
    row, column = divmod(k, columns)
    return column * CELL[0] + MARGIN["left"], HEADER + row * CELL[1] + MARGIN["top"]


def _texts(kind, arrays, names, steps, warnings, peak, size) -> tuple[list[Text], list[Text]]:
    """The picture's texts: (those beside the maps, the warnings' labels drawn over them)."""
    texts: list[Text] = []
    over_maps: list[Text] = []
    columns = min(len(names), 4)
    say = lambda x, y, s, **kw: texts.append((x, y, s, {"fontsize": 7, **kw}))  # noqa: E731
    for k, name in enumerate(names):
        left, top = _corner(k, columns)
        edges = arrays[name][0]
        say(left, top - 5, name, fontsize=9, va="bottom")
        row_px = MAP[1] / (len(edges) + 1)  # a bin's height; the under- and overflow rows are one each
        for value, y in ((edges[-1], top + row_px), (edges[0], top + MAP[1] - row_px)):
            say(left - 4, y, f"{value:.3g}", ha="right", va="center")
        # what every panel shares is said once (a text costs about 0.2 ms to write): over and under on a row's last
        # panel, the steps (the same watched steps for every array) under a column's bottom panel
        if k % columns == columns - 1 or k == len(names) - 1:
            say(left + MAP[0] + 2, top + row_px / 2, "over", va="center", color="grey")
            say(left + MAP[0] + 2, top + MAP[1] - row_px / 2, "under", va="center", color="grey")
        if k + columns >= len(names):
            for frac, step in ((0.0, steps[0]), (1.0, steps[-1])):
                say(left + frac * MAP[0], top + MAP[1] + 3, f"step {step}", ha="center" if frac else "left", va="top")
        for step, what in marks_for(warnings, name):
            across = left + MAP[0] * (step - steps[0]) / max(1, steps[-1] - steps[0])
            over_maps.append((across, top + 2, f" {what}", {"fontsize": 7, "color": "red", "va": "top"}))
    more = f" (the first {MAX_PANELS} of {len(arrays)})" if len(arrays) > MAX_PANELS else ""
    legend = (
        f"{kind} over training{more}: value (up) by step (across); colour: how many sampled entries fell there, log scale "
        f"(white 0, dark 1, yellow {peak})\none range per array, doubled whenever the values outgrew it (earlier steps "
        "rebinned); the over and under rows count what fell outside the range of its time; red: a warning"
    )
    texts.append((0.01 * size[0], 8, legend, {"fontsize": 8, "va": "top"}))
    return texts, over_maps


def _save_pixels(image: np.ndarray, path: Path) -> Path:
    """RGBA pixels as a PNG, as ``figures.canvas.save`` writes a figure (zlib level 3)."""
    from matplotlib.image import imsave

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    imsave(path, image, format="png", origin="upper", dpi=DPI, pil_kwargs={"compress_level": 3})
    return path


def _columns(steps: list[int], width: int) -> np.ndarray:
    """For each pixel column of a map, the watched point it shows: steps are placed where they fall in the run."""
    at = steps[0] + (np.arange(width) + 0.5) * (steps[-1] - steps[0] + 1) / width
    return np.clip(np.searchsorted(_step_edges(steps), at, side="right") - 1, 0, len(steps) - 1)


def _paint(counts: np.ndarray, peak: int) -> np.ndarray:
    """Counts (pixel columns x rows, under first) as RGBA pixels (MAP, over on top): log(count) / log(peak) through
    viridis, white where nothing fell, a grey dashed line between the edges' range and the two outside rows."""
    import matplotlib

    rows = counts.shape[1]
    index = np.minimum((np.arange(MAP[1]) * rows) // MAP[1], rows - 1)[::-1]  # pixel row -> bin, over at the top
    grid = counts[:, index].T.astype(float)  # (MAP[1], MAP[0])
    level = np.log(np.maximum(grid, 1)) / math.log(max(peak, 2))
    image = matplotlib.colormaps["viridis"](level)
    image[grid == 0] = 1.0
    for boundary in (np.flatnonzero(np.diff(index) != 0)[[0, -1]] + 1) if rows > 2 else []:
        image[boundary, ::4] = (0.5, 0.5, 0.5, 1.0)
    return image


def _step_edges(steps: list[int]) -> np.ndarray:
    """Cell boundaries around each watched step: halfway to its neighbours (the first and last cells as wide)."""
    s = np.asarray(steps, dtype=float)
    if len(s) == 1:
        return np.array([s[0] - 0.5, s[0] + 0.5])
    middle = (s[1:] + s[:-1]) / 2
    return np.concatenate([[s[0] - (middle[0] - s[0])], middle, [s[-1] + (s[-1] - middle[-1])]])


def gradient_flow_figure(watch: Seen, path: Path) -> Path:
    """Left: each weight matrix's gradient norm against the step (log y). Right: the norms layer by layer, from
    the input's side to the output's, at the first, middle and last watched step: a falling line toward the
    input is a vanishing gradient, a rising one an exploding gradient."""
    matrices = watch.matrices or [n.split("/")[1] for n in watch.points[0] if n.endswith("/grad_norm")]
    fig = _figure(2, 1, panel=(600, 420), extra=(0, 30))
    left, right = fig.subplots(1, 2)
    import matplotlib

    colours = matplotlib.colormaps["viridis"](np.linspace(0.0, 0.9, max(len(matrices), 2)))  # input side dark, output light
    for name, colour in zip(matrices, colours):
        steps, values = watch.series(f"watch/{name}/grad_norm")
        left.plot(steps, values, label=name, linewidth=1.2, color=colour)
    left.set_xlabel("step")
    left.set_ylabel("gradient norm ||dL/dW||")
    left.set_title("gradient norm per weight matrix", fontsize=10, y=1.0)
    chosen = sorted({0, len(watch.steps) // 2, len(watch.steps) - 1})
    for k in chosen:
        values = [watch.points[k].get(f"watch/{name}/grad_norm", float("nan")) for name in matrices]
        right.plot(range(len(matrices)), values, marker="o", label=f"step {watch.steps[k]}")
    right.set_xticks(range(len(matrices)), [n.rsplit(".", 1)[0] for n in matrices], rotation=30, ha="right", fontsize=7)
    right.set_xlabel("layer (input side -> output side)")
    right.set_title("gradient flow: norm layer by layer", fontsize=10, y=1.0)
    for ax in (left, right):
        if _positive(ax):
            log_scale(ax, "y")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    for w in watch.warnings:
        if w["kind"] in ("vanishing", "exploding"):
            left.axvline(w["step"], color="red", linewidth=1.2)
            left.text(w["step"], 1.0, f" {w['kind']}", color="red", fontsize=8, va="top", transform=left.get_xaxis_transform())
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.2, top=0.92, wspace=0.25)
    return save(fig, path)


def _positive(ax) -> bool:
    values = [v for line in ax.get_lines() for v in np.asarray(line.get_ydata(), dtype=float)]
    return bool(values) and all(v > 0 for v in values if math.isfinite(v))


def write_npz(watch: Watch, path: Path) -> Path:
    """``steps`` (the watched steps), ``<kind>/<name>/edges`` (bins + 1) and ``<kind>/<name>/counts`` (steps x
    (under, bins..., over)) per histogram, and ``metrics/<metric>`` per watch metric (one value per step, NaN
    where it was not measured): what the pictures show, for reuse (``np.load``; ``Seen.load``)."""
    arrays: dict[str, np.ndarray] = {"steps": np.asarray(watch.steps, dtype=np.int64), **watch.histograms.arrays()}
    for metric in dict.fromkeys(k for p in watch.points for k in p):
        arrays[f"metrics/{metric.removeprefix('watch/')}"] = np.array([p.get(metric, np.nan) for p in watch.points])
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, allow_pickle=False, **arrays)
    return path


#: the pictures, by file name under plots/
PICTURES = tuple(f"watch_{kind}" for kind in KINDS) + ("gradient_flow",)


def draw_pictures(seen: Seen, plots: Path, only: tuple[str, ...] = PICTURES) -> tuple[list[Path], dict[str, str]]:
    """The three histogram pictures and the gradient flow in ``plots`` (``only``: those of these names): (the files
    drawn, ``{picture: why it failed}``). One picture failing leaves the others drawn."""
    drawn, failed = [], {}
    for kind in KINDS:
        arrays = seen.histograms.get(kind) or {}
        name = f"watch_{kind}"
        if arrays and name in only:
            try:
                drawn.append(histograms_figure(kind, arrays, seen.steps, seen.warnings, plots / f"{name}.png"))
            except Exception as e:  # a picture is worth less than the others
                failed[name] = f"{type(e).__name__}: {e}"
    if "gradient_flow" in only and (seen.matrices or (seen.points and any(k.endswith("/grad_norm") for k in seen.points[0]))):
        try:
            drawn.append(gradient_flow_figure(seen, plots / "gradient_flow.png"))
        except Exception as e:
            failed["gradient_flow"] = f"{type(e).__name__}: {e}"
    return drawn, failed


def draw_all(watch: Watch, out: Path) -> list[Path]:
    """The npz and the four pictures in ``out`` (watch/, plots/), in this process; a picture that fails raises."""
    npz = write_npz(watch, out / "watch" / "histograms.npz")
    drawn, failed = draw_pictures(Seen.of(watch), out / "plots")
    if failed:
        raise RuntimeError("; ".join(f"{k}: {v}" for k, v in failed.items()))
    return [*drawn, npz]


def warm_pictures(client=None, run_id: str | None = None, experiment_id: str | None = None) -> None:
    """(A report part, sent when training starts) matplotlib imported and its font loaded where the pictures will
    be drawn, while the run trains: about 0.3 s less on the sidecar's work at the run's end."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(0.5, 0.5), dpi=DPI)
    FigureCanvasAgg(fig).draw()
    fig.text(0, 0, "0", fontsize=7)
    fig.canvas.draw()
    lettering.on_white([(0, 8, "0", {"fontsize": size}) for size in (7, 8, 9)], (8, 8))  # Pillow, and the fonts' sizes


def draw_watch_pictures(
    *, npz: str, warnings: list[dict], matrices: list[str], plots: str, only: list[str] | None = None
) -> tuple[list, str | None]:
    """(A painting, where the writer is: runner.tracking.writer.Writer.paint) the pictures of ``npz`` drawn into
    ``plots`` (``only``: those named, else all four; the run asks for each alone, so that the sidecar and its painter
    share them): (the files, for the run's plots/; why a picture failed, or None). The others are drawn all the same."""
    seen = Seen.load(Path(npz), warnings, matrices)
    drawn, failed = draw_pictures(seen, Path(plots), tuple(only) if only else PICTURES)
    return [(str(path), "plots") for path in drawn], "; ".join(f"{k}: {v}" for k, v in failed.items()) or None


def log_watch_pictures(
    client, run_id: str, experiment_id: str, *, npz: str, warnings: list[dict], matrices: list[str], plots: str
) -> None:
    """(A report part, where the writer is: the sidecar process, or the run's with ``tracking.sidecar=false``)
    the pictures of ``npz`` (``write_npz``'s file) drawn into ``plots`` and logged under the run's plots/. The
    pictures drawn are logged even when another failed; a failure is raised (a warning, and the tag
    ``runner.report.failed``: the run is not failed by it)."""
    files, failure = draw_watch_pictures(npz=npz, warnings=warnings, matrices=matrices, plots=plots)
    for path, folder in files:
        client.log_artifact(run_id, path, folder)
    if failure:
        raise RuntimeError(failure)
