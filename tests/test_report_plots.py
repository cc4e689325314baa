"""Plots are rendered as valid, non-empty PNGs with the expected content size."""

from __future__ import annotations

import struct
import zlib

import pytest

from test_report_paper import group, paper_sweep
from xsweep.errors import XsweepError
from xsweep.report.plots import plot_language_bars, plot_vs_prompt_length, plot_vs_shots, write_plots
from xsweep.selection import summarise

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


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
    header = data[16:24]
    return struct.unpack(">II", header)


def is_drawn(path) -> bool:
    """More than one colour in the image: something was drawn, not a blank canvas."""
    import matplotlib.image as mpimg

    pixels = mpimg.imread(str(path))
    return pixels.reshape(-1, pixels.shape[-1]).std(axis=0).max() > 0.01


@pytest.mark.timeout(60)
def test_language_bars_png(tmp_path):
    path = plot_language_bars(summarise(paper_sweep()), tmp_path / "bars.png")
    width, height = png_size(path)
    assert width > 300 and height > 200
    assert is_drawn(path)


@pytest.mark.timeout(60)
def test_prompt_length_and_shots_pngs(tmp_path):
    lengths = group("apt", 5, 1, [0.40, 0.42]) + group("apt", 5, 16, [0.55, 0.57]) + group("pt", 5, 16, [0.3])
    path = plot_vs_prompt_length(summarise(lengths), tmp_path / "length.png", locales=["AVG", "en-US"])
    assert png_size(path)[0] > 300 and is_drawn(path)
    path = plot_vs_shots(summarise(paper_sweep()), tmp_path / "shots.png")
    assert png_size(path)[0] > 300 and is_drawn(path)


@pytest.mark.timeout(60)
def test_write_plots_picks_the_meaningful_ones(tmp_path):
    paths = write_plots(summarise(paper_sweep()), tmp_path)
    assert sorted(paths) == ["languages", "shots"]  # one prompt length only: no length plot
    assert all(png_size(p) for p in paths.values())
    assert not list(tmp_path.glob(".*.tmp"))
    with pytest.raises(XsweepError):
        plot_vs_prompt_length(summarise(group("ft", 5, None, [0.1])), tmp_path / "none.png")
