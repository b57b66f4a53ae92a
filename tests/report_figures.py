"""What the report tests share: the figures `build_report` draws, captured as it saves them (the PNG's file stem ->
its matplotlib Figure), and what can be read off a drawn figure."""

from __future__ import annotations

from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def capture_figures(monkeypatch) -> dict[str, Figure]:
    """Record every figure saved from now on (the report's plots), keyed by the file's stem."""
    drawn: dict[str, Figure] = {}
    save = Figure.savefig

    def savefig(self, fname, *args, **kwargs):
        drawn[Path(str(fname)).stem] = self
        return save(self, fname, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", savefig)
    return drawn


def _renderer(fig: Figure):
    """A drawn Agg canvas' renderer (a figure closed after saving keeps only a bare canvas)."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return canvas.get_renderer()


def legends(fig: Figure) -> list:
    return [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend() is not None)]


def legend_covers_an_axes(fig: Figure) -> bool:
    """Whether a legend of `fig` lies (partly) over the area of one of its axes."""
    renderer = _renderer(fig)
    boxes = [legend.get_window_extent(renderer) for legend in legends(fig)]
    return any(box.overlaps(ax.get_window_extent(renderer)) for box in boxes for ax in fig.axes)


def labelled_ticks(ax, which: str = "y") -> dict[float, str]:
    """The ticks with a visible label inside the axis' view (major and minor): position -> label."""
    _renderer(ax.figure)
    axis = ax.yaxis if which == "y" else ax.xaxis
    low, high = sorted(ax.get_ylim() if which == "y" else ax.get_xlim())
    out = {}
    for minor in (False, True):
        for loc, label in zip(axis.get_ticklocs(minor=minor), axis.get_ticklabels(minor=minor)):
            if low <= loc <= high and label.get_text().strip() and label.get_visible():
                out[float(loc)] = label.get_text()
    return out


def titles(fig: Figure) -> list[str]:
    return [ax.get_title() for ax in fig.axes] + ([fig._suptitle.get_text()] if fig._suptitle else [])
