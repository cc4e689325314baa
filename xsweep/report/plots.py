"""PNG plots with matplotlib's Agg backend (no display needed): the paper's figures.

- `plot_language_bars`: per-language test score, one bar per group side by side, std error bars;
- `plot_vs_prompt_length`: score against prompt length (the paper's Tatoeba figure), one line
  per series (groups equal but for the length) and per requested language or AVG;
- `plot_vs_shots`: score against shots (5, 15, all), one line per series.

Scores are in percent; error bars are the sample std over seeds. Files are written atomically.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before pyplot: headless machines and Ray workers have no display
import matplotlib.pyplot as plt  # noqa: E402

from xsweep.atomic import atomic_path  # noqa: E402
from xsweep.errors import XsweepError  # noqa: E402
from xsweep.report.attrs import describe, group_attrs, label, sort_key, varying  # noqa: E402
from xsweep.selection import GroupSummary  # noqa: E402
from xsweep.report.tables import AVG_ROW, row_locales, subset_note  # noqa: E402


def _save(fig, path: Path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def _point(summary: GroupSummary, locale: str) -> tuple[float | None, float | None]:
    """(mean, std) in percent of a language or of AVG."""
    if locale == AVG_ROW:
        mean, std = summary.avg, summary.std
    else:
        score = summary.per_language.get(locale)
        mean, std = (None, None) if score is None else (score.mean, score.std)
    return (None if mean is None else 100 * mean), (None if std is None else 100 * std)


def plot_language_bars(summaries: list[GroupSummary], path: Path, locales: list[str] | None = None) -> Path:
    """Grouped bars: x = languages (then AVG), one bar per group, error bars = std over seeds."""
    if not summaries:
        raise XsweepError("nothing to plot: no groups", fix="run a sweep first")
    locales = (row_locales(summaries) if locales is None else list(locales)) + [AVG_ROW]
    labels = [describe(s, varying(summaries)) for s in summaries]
    width = 0.8 / len(summaries)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.35 * len(locales) * max(2, len(summaries))), 4.0))
    for i, (s, name) in enumerate(zip(summaries, labels)):
        points = [_point(s, loc) for loc in locales]
        xs = [j + (i - (len(summaries) - 1) / 2) * width for j in range(len(locales))]
        heights = [0.0 if m is None else m for m, _ in points]
        errors = [0.0 if e is None else e for _, e in points]
        ax.bar(xs, heights, width, yerr=errors, capsize=2, label=name + (" (partial)" if s.partial else ""))
    ax.set_xticks(range(len(locales)), locales, rotation=90 if len(locales) > 12 else 0)
    ax.set_ylabel(f"test {summaries[0].metric} (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))  # never over the bars
    title = "Per-language test scores (mean over seeds, std error bars)"
    note = subset_note(summaries)
    if note:
        ax.set_title(f"{title}\n{note}", fontsize="small", wrap=True)
    else:
        ax.set_title(title)
    return _save(fig, path)


def _plot_against(summaries: list[GroupSummary], path: Path, attr: str, xlabel: str,
                  locales: list[str], log_x: bool) -> Path:
    members = [s for s in summaries if attr != "length" or group_attrs(s)["length"] is not None]
    if not members:
        raise XsweepError(f"nothing to plot against {xlabel}: no group has a value for it",
                          fix="include groups that differ in it")
    series: dict[str, list[GroupSummary]] = {}
    others = varying(members, exclude=(attr,))
    for s in members:
        series.setdefault(describe(s, others) if others else "all groups", []).append(s)
    # Shots "all" (None) is drawn after the largest number, at an even step.
    values = sorted({repr(group_attrs(s)[attr]): group_attrs(s)[attr] for s in members}.values(),
                    key=lambda v: sort_key(attr, v))
    position = {repr(v): (v if log_x else i) for i, v in enumerate(values)}
    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    for name, groups in sorted(series.items()):
        groups = sorted(groups, key=lambda s: sort_key(attr, group_attrs(s)[attr]))
        for loc in locales:
            pts = [(position[repr(group_attrs(s)[attr])], *_point(s, loc)) for s in groups]
            pts = [(x, m, e) for x, m, e in pts if m is not None]
            if not pts:
                continue
            tag = name if len(locales) == 1 else f"{name} {loc}"
            ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] or 0.0 for p in pts],
                        marker="o", capsize=3, label=tag)
    if log_x:
        ax.set_xscale("log")
    ax.set_xticks([position[repr(v)] for v in values], [label(attr, v) for v in values])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"test {members[0].metric} (%)")
    note = subset_note(members)
    if note:
        ax.set_title(note, fontsize="small", wrap=True)
    ax.legend(fontsize="small")
    return _save(fig, path)


def plot_vs_prompt_length(summaries: list[GroupSummary], path: Path, locales: list[str] | None = None) -> Path:
    """Score against prompt length (log axis: 1, 8, 16, 100); `locales` default: AVG only."""
    return _plot_against(summaries, path, "length", "prompt length", list(locales or [AVG_ROW]), log_x=True)


def plot_vs_shots(summaries: list[GroupSummary], path: Path, locales: list[str] | None = None) -> Path:
    """Score against training examples per intent (5, 15, all); `locales` default: AVG only."""
    return _plot_against(summaries, path, "shots", "training examples per intent", list(locales or [AVG_ROW]),
                         log_x=False)


def write_plots(summaries: list[GroupSummary], out_dir: Path) -> dict[str, Path]:
    """The plots that say something for these groups; name -> PNG path."""
    out_dir = Path(out_dir)
    if not summaries:
        return {}
    paths = {"languages": plot_language_bars(summaries, out_dir / "languages.png")}
    if len({group_attrs(s)["length"] for s in summaries} - {None}) > 1:
        paths["prompt_length"] = plot_vs_prompt_length(summaries, out_dir / "prompt_length.png")
    if len({repr(group_attrs(s)["shots"]) for s in summaries}) > 1:
        paths["shots"] = plot_vs_shots(summaries, out_dir / "shots.png")
    return paths
