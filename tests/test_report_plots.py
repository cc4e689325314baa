"""Plots show the selected learning rate's test scores: bar heights, error bars, points and axes are
read back from the figure each shipped function saves, against means and stds computed here from
the trial records; the PNG each writes is checked to be a valid, drawn image."""

from __future__ import annotations

import struct
import zlib
from statistics import mean, stdev

import pytest
from matplotlib.container import BarContainer, ErrorbarContainer

from xsweep.errors import XsweepError
from xsweep.record import DevPoint, TrialRecord
from xsweep.report.plots import plot_language_bars, plot_vs_prompt_length, plot_vs_shots, write_plots
from xsweep.selection import summarise

pytestmark = pytest.mark.timeout(60)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
LOCALES = ("en-US", "de-DE", "ja-JP")
TICKS = ["en-US", "de-DE", "ja-JP", "AVG"]  # the training locale first, then sorted, then AVG

# Seed -> language -> test score of the learning rate each group selects (best English dev).
PT_5 = [{"en-US": 0.80, "de-DE": 0.60, "ja-JP": 0.40}, {"en-US": 0.70, "de-DE": 0.50, "ja-JP": 0.45}]
APT_5 = [{"en-US": 0.85, "de-DE": 0.75, "ja-JP": 0.65}, {"en-US": 0.83, "de-DE": 0.77, "ja-JP": 0.61}]
REJECTED = [{loc: 0.99 for loc in LOCALES}] * 2
"""A learning rate with a worse dev score: its test scores must appear nowhere."""


def trials(method: str, by_seed: list[dict[str, float]], *, shots: int | None = 5, length: int = 16,
           lr: float = 1e-2, dev: float = 0.6) -> list[TrialRecord]:
    """One group's completed trials at `lr`: seed i scores by_seed[i] on test and `dev` on English dev."""
    config = {"method": method, "data": {"dataset": "massive", "shots": shots, "train_locale": "en-US"},
              "prompt": {"kind": "layer", "length": length}, "head": {"kind": "vanilla"},
              "backbone": {"name": "builtin:tiny"}}
    key = f"{method}-{shots}-{length}"
    records = []
    for seed, scores in enumerate(by_seed):
        record = TrialRecord(trial_id=f"{key}-lr{lr}-s{seed}", group_key=key, group_name=f"massive/{key}",
                             lr=lr, seed=seed, status="completed", config=config)
        record.add_dev(DevPoint(step=1, epoch=1, score=dev, train_loss=1.0))
        record.test_scores = dict(scores)
        records.append(record)
    return records


def with_rejected_rate(method: str, by_seed: list[dict[str, float]], **group) -> list[TrialRecord]:
    return trials(method, by_seed, **group) + trials(method, REJECTED, lr=1e-1, dev=0.2, **group)


def expected(by_seed: list[dict[str, float]]) -> dict[str, tuple[float, float]]:
    """Language (and AVG) -> (mean, sample std) over seeds, in percent, as the plots document them:
    AVG is the mean over seeds of each seed's average over the languages."""
    out = {}
    for locale in LOCALES:
        values = [100 * scores[locale] for scores in by_seed]
        out[locale] = (mean(values), stdev(values))
    averages = [100 * mean(scores[loc] for loc in LOCALES) for scores in by_seed]
    out["AVG"] = (mean(averages), stdev(averages))
    return out


def bars_of(fig) -> dict[str, dict[str, tuple[float, float]]]:
    """Legend label -> x tick label -> (bar height, error bar half-length), read from the figure."""
    ax = fig.axes[0]
    ticks = dict(zip(ax.get_xticks(), (t.get_text() for t in ax.get_xticklabels())))
    out: dict[str, dict[str, tuple[float, float]]] = {}
    for container in ax.containers:
        if not isinstance(container, BarContainer):
            continue
        segments = container.errorbar.lines[2][0].get_segments()  # one vertical error line a bar
        assert len(segments) == len(container.patches)
        for patch, ((_, low), (_, high)) in zip(container.patches, segments):
            centre = patch.get_x() + patch.get_width() / 2
            tick = min(ticks, key=lambda t: abs(t - centre))  # bars sit within 0.4 of their tick
            assert (low + high) / 2 == pytest.approx(patch.get_height())
            out.setdefault(container.get_label(), {})[ticks[tick]] = (patch.get_height(), (high - low) / 2)
    return out


def lines_of(fig) -> dict[str, list[tuple[str, float, float]]]:
    """Legend label -> [(x tick label, y, error bar half-length)] of each errorbar line of the figure."""
    ax = fig.axes[0]
    ticks = dict(zip(ax.get_xticks(), (t.get_text() for t in ax.get_xticklabels())))
    out = {}
    for container in ax.containers:
        assert isinstance(container, ErrorbarContainer)
        line = container.lines[0]
        segments = container.lines[2][0].get_segments()
        out[container.get_label()] = [(ticks[x], y, (high - low) / 2)
                                      for x, y, ((_, low), (_, high)) in zip(line.get_xdata(), line.get_ydata(), segments)]
    return out


def png_size(path) -> tuple[int, int]:
    """(width, height) after checking the signature and every chunk's CRC up to IEND."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    offset, chunks = 8, []
    while offset < len(data):
        length, kind = struct.unpack(">I4s", data[offset:offset + 8])
        body = data[offset + 8:offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length:offset + 12 + length])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF, f"bad CRC in {kind!r}"
        chunks.append(kind)
        offset += 12 + length
    assert chunks[0] == b"IHDR" and chunks[-1] == b"IEND" and b"IDAT" in chunks
    return struct.unpack(">II", data[16:24])


def is_drawn(path) -> bool:
    """More than one colour in the image: something was drawn, not a blank canvas."""
    import matplotlib.image as mpimg

    pixels = mpimg.imread(str(path))
    return pixels.reshape(-1, pixels.shape[-1]).std(axis=0).max() > 0.01


def approx_table(table: dict[str, tuple[float, float]]) -> dict:
    return {k: pytest.approx(v, abs=1e-9) for k, v in table.items()}


def at(tick: str, mean_std: tuple[float, float]) -> tuple:
    """A point as lines_of gives it: (x tick label, mean, std)."""
    return (tick, pytest.approx(mean_std[0], abs=1e-9), pytest.approx(mean_std[1], abs=1e-9))


def test_language_bars_show_each_groups_selected_scores(tmp_path, plot_figures):
    records = with_rejected_rate("pt", PT_5) + with_rejected_rate("apt", APT_5)
    path = plot_language_bars(summarise(records), tmp_path / "bars.png")
    bars = bars_of(plot_figures["bars.png"])
    assert bars == {"PT": approx_table(expected(PT_5)), "APT": approx_table(expected(APT_5))}
    ax = plot_figures["bars.png"].axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == TICKS
    assert ax.get_ylabel() == "test accuracy (%)" and ax.get_ylim() == (0, 100)
    assert sorted(t.get_text() for t in ax.get_legend().get_texts()) == sorted(bars)
    width, height = png_size(path)
    assert width > 300 and height > 200 and is_drawn(path)


def test_a_group_missing_a_language_has_no_bar_height_there(tmp_path, plot_figures):
    partial = [{k: v for k, v in scores.items() if k != "ja-JP"} for scores in PT_5]
    plot_language_bars(summarise(trials("pt", partial) + trials("apt", APT_5)), tmp_path / "bars.png")
    bars = bars_of(plot_figures["bars.png"])
    assert bars["PT"]["ja-JP"] == (0.0, 0.0)
    assert bars["PT"]["en-US"] == pytest.approx(expected(PT_5)["en-US"])
    assert bars["APT"]["ja-JP"] == pytest.approx(expected(APT_5)["ja-JP"])


def test_prompt_length_plot_draws_avg_and_a_language_per_series(tmp_path, plot_figures):
    scores = {1: APT_5[:1] * 2, 16: APT_5, 100: PT_5}  # length -> APT scores by seed
    records = [r for length, by_seed in scores.items() for r in with_rejected_rate("apt", by_seed, length=length)]
    records += trials("pt", PT_5, length=16)
    path = plot_vs_prompt_length(summarise(records), tmp_path / "length.png", locales=["AVG", "en-US"])
    lines = lines_of(plot_figures["length.png"])
    ax = plot_figures["length.png"].axes[0]
    assert ax.get_xscale() == "log" and ax.get_xlabel() == "prompt length"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["P=1", "P=16", "P=100"]
    for locale in ("AVG", "en-US"):
        assert lines[f"APT {locale}"] == [at(f"P={n}", expected(scores[n])[locale]) for n in (1, 16, 100)]
        assert lines[f"PT {locale}"] == [at("P=16", expected(PT_5)[locale])]
    assert len(lines) == 4
    assert png_size(path)[0] > 300 and is_drawn(path)


def test_shots_plot_draws_avg_per_method_against_shots(tmp_path, plot_figures):
    by_shots = {5: (PT_5, APT_5), 15: (APT_5, PT_5), None: (APT_5[:1] * 2, APT_5)}  # shots -> (PT, APT)
    records = []
    for shots, (pt, apt) in by_shots.items():
        records += with_rejected_rate("pt", pt, shots=shots) + trials("apt", apt, shots=shots)
    path = plot_vs_shots(summarise(records), tmp_path / "shots.png")
    lines = lines_of(plot_figures["shots.png"])
    names = ["5-shots", "15-shots", "all"]
    assert lines == {
        "PT": [at(name, expected(pt)["AVG"]) for name, (pt, _) in zip(names, by_shots.values())],
        "APT": [at(name, expected(apt)["AVG"]) for name, (_, apt) in zip(names, by_shots.values())],
    }
    assert plot_figures["shots.png"].axes[0].get_xlabel() == "training examples per intent"
    assert png_size(path)[0] > 300 and is_drawn(path)


def test_write_plots_picks_the_meaningful_ones(tmp_path, plot_figures):
    one_length = trials("pt", PT_5) + trials("apt", APT_5) + trials("apt", APT_5, shots=None)
    paths = write_plots(summarise(one_length), tmp_path)
    assert sorted(paths) == ["languages", "shots"]  # one prompt length only: no length plot
    assert sorted(plot_figures) == ["languages.png", "shots.png"]
    assert all(p.parent == tmp_path and png_size(p) for p in paths.values())
    assert set(bars_of(plot_figures["languages.png"])) == {"PT · 5-shots", "APT · 5-shots", "APT · all"}
    assert not list(tmp_path.glob(".*.tmp"))

    two_lengths = trials("apt", APT_5, length=1) + trials("apt", PT_5, length=16)
    assert sorted(write_plots(summarise(two_lengths), tmp_path / "lengths")) == ["languages", "prompt_length"]
    assert lines_of(plot_figures["prompt_length.png"]) == {
        "all groups": [at("P=1", expected(APT_5)["AVG"]), at("P=16", expected(PT_5)["AVG"])]}
    with pytest.raises(XsweepError):
        plot_vs_prompt_length(summarise(trials("ft", PT_5, length=None)), tmp_path / "none.png")
