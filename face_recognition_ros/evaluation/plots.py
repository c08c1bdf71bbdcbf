"""Plots of evaluation results (matplotlib, drawn off-screen to a file)."""

from __future__ import annotations

from pathlib import Path

from ..errors import EvaluationError


def check_plot_target(path: str | Path) -> Path:
    """Refuse, before any evaluation runs, a plot file that could not be written: a missing folder,
    or an extension matplotlib has no format for."""
    path = Path(path)
    if not path.parent.is_dir():
        raise EvaluationError(f"{path}: cannot write the plot (no folder {path.parent})")
    try:
        from matplotlib.backend_bases import FigureCanvasBase
    except ImportError:
        raise EvaluationError("--plot needs matplotlib: pip install matplotlib") from None
    formats = FigureCanvasBase.get_supported_filetypes()
    if path.suffix.lower().lstrip(".") not in formats:
        raise EvaluationError(f"{path}: cannot write the plot (name it .png, .svg or .pdf; matplotlib writes "
                              f"{', '.join(sorted(formats))})")
    return path


def plot_open_set(figures: dict, path: str | Path, title: str) -> Path:
    """A DET-style curve of ``evaluation.identify.open_set_figures``: known people missed (1 - DIR)
    against strangers given a name (FAR, log scale), per score, with the operating point marked."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise EvaluationError("--plot needs matplotlib: pip install matplotlib") from None
    figure, axis = plt.subplots(figsize=(6.4, 4.8), dpi=120)
    labels = {"raw": "plain threshold (raw score)", "normalised": "normalised score (asnorm)"}
    for name, curve in figures["curves"].items():
        points = [(far, 1.0 - rate) for far, rate in zip(curve["false_accept_rate"], curve["identification_rate"])
                  if far > 0]
        if points:
            axis.plot(*zip(*points), label=labels.get(name, name))
    point = figures["operating_point"]
    if point["false_accept_rate"] > 0:
        axis.plot(point["false_accept_rate"], 1.0 - point["identification_rate"], "o", color="black",
                  label=f"operating point (target {point['target_false_accept_rate']:g})")
    axis.axvline(point["target_false_accept_rate"], color="grey", linestyle=":", linewidth=1)
    axis.set_xscale("log")
    axis.set_xlabel("strangers given a name (false-accept rate)")
    axis.set_ylabel("known people missed or misnamed (1 - DIR)")
    axis.set_title(title, fontsize=9)
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    path = Path(path)
    try:
        figure.savefig(path)
    except (OSError, ValueError) as error:
        raise EvaluationError(f"{path}: cannot write the plot ({getattr(error, 'strerror', None) or error})") from None
    finally:
        plt.close(figure)
    return path
