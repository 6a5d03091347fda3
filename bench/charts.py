"""PNG charts of the results (matplotlib, no display needed); small files for git."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on a benchmark machine
import matplotlib.pyplot as plt  # the backend must be chosen first
from matplotlib.figure import Figure

from bench.polling import CADENCE_MINUTES, Polling
from bench.report import POLLING_GOAL, Figures, Results

DPI = 80
SIZE = (9, 4)


def write_charts(results: Results, out: Path, stem: str) -> list[Path]:
    """Write the charts next to the results file; their paths."""
    figures = results.figures()
    charts = [
        _bars(
            figures,
            lambda f: f.wall,
            "wall time of the first crawl, s (log)",
            out / f"{stem}-wall.png",
        ),
        _bars(
            figures,
            lambda f: f.commands_per_message,
            "IMAP commands per message (log)",
            out / f"{stem}-commands.png",
        ),
        _bars(
            figures,
            lambda f: f.wire_per_decoded,
            "bytes on the wire per decoded attachment byte (log)",
            out / f"{stem}-bytes.png",
        ),
    ]
    if results.polling:
        charts.append(_polling(results.polling, out / f"{stem}-polling.png"))
    return charts


def _bars(
    figures: Sequence[Figures], value: Callable[[Figures], float], title: str, path: Path
) -> Path:
    servers = list(dict.fromkeys(f.server for f in figures))
    contenders = list(dict.fromkeys(f.contender for f in figures))
    width = 0.8 / max(len(contenders), 1)
    figure, axes = plt.subplots(figsize=SIZE)
    for index, contender in enumerate(contenders):
        xs, ys = [], []
        for position, server in enumerate(servers):
            found = [f for f in figures if f.server == server and f.contender == contender]
            if found:
                xs.append(position + index * width)
                ys.append(value(found[0]))
        axes.bar(xs, ys, width, label=contender)
    axes.set_xticks([position + 0.4 - width / 2 for position in range(len(servers))], servers)
    axes.set_yscale("log")
    axes.set_title(title)
    axes.legend(fontsize="small", ncols=6, loc="upper center", bbox_to_anchor=(0.5, -0.08))
    return _save(figure, path)


def _polling(polling: Sequence[Polling], path: Path) -> Path:
    figure, axes = plt.subplots(figsize=SIZE)
    axes.plot([p.concurrency for p in polling], [p.per_minute for p in polling], marker="o")
    goal = POLLING_GOAL / CADENCE_MINUTES
    axes.axhline(goal, linestyle="--", color="grey", label=f"{POLLING_GOAL:,} accounts / 15 min")
    axes.set_xscale("log", base=2)
    axes.set_xlabel("concurrency (crawls at once in one worker)")
    axes.set_title("quiet re-crawls per minute at 50 ms per command")
    axes.legend()
    return _save(figure, path)


def _save(figure: Figure, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=DPI)
    plt.close(figure)
    return path
