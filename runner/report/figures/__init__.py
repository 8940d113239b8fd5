"""Pictures and tables of one run, from plain data: what its MLflow run page shows at a glance.

Every function takes arrays, dicts and names (no MLflow, no model) and writes one file, so each
is tested on small synthetic data. matplotlib (Agg, headless) and pandas are imported inside the
functions: neither is on the import path of ``python -m runner`` until a run reports.

Figures have fixed sizes in pixels (``SIZES``): the tests check them.

    training_curves(history, path)                 plots/training_curves.png
    confusion_matrix(y_true, y_pred, n) + plot_confusion_matrix(...)  plots/confusion_matrix.png
    misclassified_grid(images, y_true, y_pred, classes, path)        plots/misclassified.png
    gradcheck_rows(metrics) -> gradcheck_table -> plot_gradcheck  plots/gradcheck.png, tables/gradcheck.*
    per_class_table(y_true, y_pred, classes)                          tables/per_class.*
    model_summary(model)                                              summary.txt

The package, one module per kind of picture (each says what it draws and why it is drawn so):

    canvas.py         the figure every picture is drawn on: fixed pixel sizes, margins, log axes, saving
    curves.py         training_curves
    classifiers.py    confusion_matrix, plot_confusion_matrix, per_class_table, image_shape, misclassified_grid
    gradient_check.py gradcheck_rows, gradcheck_table, plot_gradcheck
    tables.py         write_table (csv and markdown), model_summary
    lettering.py      texts written into a picture's pixels by Pillow (the watch's histograms), as matplotlib places them

Every name is importable from ``runner.report.figures`` itself, as before the split.
"""

from runner.report.figures.canvas import DPI, SIZES
from runner.report.figures.classifiers import (
    class_names,
    confusion_matrix,
    image_shape,
    misclassified_grid,
    per_class_table,
    plot_confusion_matrix,
    shown_images,
)
from runner.report.figures.curves import History, training_curves
from runner.report.figures.gradient_check import REL_ERROR_FLOOR, SUMMARY_METRICS, gradcheck_rows, gradcheck_table, plot_gradcheck
from runner.report.figures.tables import format_summary, model_summary, summary_rows, write_table

__all__ = [
    "DPI",
    "REL_ERROR_FLOOR",
    "SIZES",
    "SUMMARY_METRICS",
    "History",
    "class_names",
    "confusion_matrix",
    "format_summary",
    "gradcheck_rows",
    "gradcheck_table",
    "image_shape",
    "misclassified_grid",
    "model_summary",
    "per_class_table",
    "plot_confusion_matrix",
    "plot_gradcheck",
    "shown_images",
    "summary_rows",
    "training_curves",
    "write_table",
]
