"""Charts for the planners' pages: matplotlib figures rendered to inline SVG text.

No pyplot (no global figure state), the Agg-free SVG canvas, text kept as text and a fixed hash
salt, so a page is self-contained (no network, no files beside it) and deterministic.
"""
from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import matplotlib
from matplotlib.backends.backend_svg import FigureCanvasSVG
from matplotlib.figure import Figure

if TYPE_CHECKING:  # matplotlib.typing is newer than the floor version (3.7)
    from matplotlib.typing import RcKeyType

PALETTE = ["#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#ff9da6",
           "#9d755d"]
# text.parse_math off: labels are data (offer IDs such as "$5 OFF $20"), drawn as written,
# never read as mathtext (which renders them as maths or fails on "$\frac{$")
_RC: dict[RcKeyType, Any] = {"svg.hashsalt": "offeropt", "svg.fonttype": "none", "font.size": 9,
       "axes.spines.top": False, "axes.spines.right": False, "text.parse_math": False,
       "text.usetex": False}


def _svg(fig: Figure) -> str:
    buffer = io.StringIO()
    with matplotlib.rc_context(_RC):
        FigureCanvasSVG(fig)
        fig.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None, "Creator": "offeropt"})
    text = buffer.getvalue()
    return text[text.index("<svg"):]


def _figure(width: float, height: float) -> Figure:
    with matplotlib.rc_context(_RC):
        return Figure(figsize=(width, height))


def bar_chart(labels: Sequence[str], series: Mapping[str, Sequence[float]], title: str,
              xlabel: str = "", ylabel: str = "", horizontal: bool = False,
              reference: float | None = None) -> str:
    """Grouped bars, one group per label and one bar per series; ``reference`` draws a dashed
    line (e.g. 100% budget use). Returns SVG text."""
    n_series = max(len(series), 1)
    height = 2.6 + (0.2 * len(labels) if horizontal else 0.0)
    with matplotlib.rc_context(_RC):
        fig = _figure(7.5, height)
        ax = fig.add_subplot()
        width = 0.8 / n_series
        positions = range(len(labels))
        for k, (name, values) in enumerate(series.items()):
            offset = [p - 0.4 + width * (k + 0.5) for p in positions]
            draw = ax.barh if horizontal else ax.bar
            draw(offset, list(values), width, label=name, color=PALETTE[k % len(PALETTE)])
        if horizontal:
            ax.set_yticks(list(positions), list(labels))
            ax.invert_yaxis()
            if reference is not None:
                ax.axvline(reference, color="#444", linestyle="--", linewidth=1)
        else:
            ax.set_xticks(list(positions), list(labels),
                          rotation=45 if max((len(s) for s in labels), default=0) > 4 else 0,
                          ha="right" if max((len(s) for s in labels), default=0) > 4 else "center")
            if reference is not None:
                ax.axhline(reference, color="#444", linestyle="--", linewidth=1)
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if len(series) > 1:
            ax.legend(frameon=False)
        return _svg(fig)


def line_chart(x: Sequence[float], series: dict[str, Sequence[float]], title: str,
               xlabel: str = "", ylabel: str = "", secondary: dict[str, Sequence[float]] | None = None,
               secondary_label: str = "") -> str:
    """Lines with markers over ``x``; ``secondary`` series go on a right-hand axis. SVG text."""
    with matplotlib.rc_context(_RC):
        fig = _figure(7.5, 3.6)
        ax = fig.add_subplot()
        for k, (name, values) in enumerate(series.items()):
            ax.plot(list(x), list(values), marker="o", label=name, color=PALETTE[k % len(PALETTE)])
        handles, names = ax.get_legend_handles_labels()
        if secondary:
            ax2 = ax.twinx()
            for k, (name, values) in enumerate(secondary.items(), start=len(series)):
                ax2.plot(list(x), list(values), marker="s", linestyle="--", label=name,
                         color=PALETTE[k % len(PALETTE)])
            ax2.set_ylabel(secondary_label)
            ax2.ticklabel_format(axis="y", useOffset=False, style="plain")
            top = max((max(v, default=0.0) for v in secondary.values()), default=0.0)
            ax2.set_ylim(0, top * 1.08 if top > 0 else 1.0)
            more_handles, more_names = ax2.get_legend_handles_labels()
            handles, names = handles + more_handles, names + more_names
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.legend(handles, names, frameon=False, loc="lower right")
        return _svg(fig)


def interval_chart(labels: Sequence[str], estimates: Sequence[float], lows: Sequence[float],
                   highs: Sequence[float], title: str, xlabel: str = "") -> str:
    """Horizontal point estimates with their intervals, one row per label, a dashed line at 0
    (e.g. lift per customer with its 95% interval). Returns SVG text."""
    with matplotlib.rc_context(_RC):
        fig = _figure(7.5, 1.2 + 0.28 * max(len(labels), 1))
        ax = fig.add_subplot()
        rows = list(range(len(labels)))
        left = [e - lo for e, lo in zip(estimates, lows)]
        right = [hi - e for e, hi in zip(estimates, highs)]
        ax.errorbar(list(estimates), rows, xerr=[left, right], fmt="o", color=PALETTE[0],
                    ecolor=PALETTE[0], capsize=3)
        ax.axvline(0.0, color="#444", linestyle="--", linewidth=1)
        ax.set_yticks(rows, list(labels))
        ax.invert_yaxis()
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        return _svg(fig)
