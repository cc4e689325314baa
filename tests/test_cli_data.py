"""`xsweep data download`: the CLI over data.download, and `data.path: massive` finding its result."""

from __future__ import annotations

import pytest

from xsweep.cli import main
from xsweep.config import load_config
from xsweep.errors import XsweepError
from xsweep.sweep.prepare import massive_dir


def test_xsgd_prints_how_to_get_it_into_the_data_root(tmp_path, capsys):
    assert main(["data", "download", "xsgd", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "gsutil" in out and f"{tmp_path}/xsgd" in out


def test_unknown_data_set_is_an_error(tmp_path, capsys):
    assert main(["data", "download", "massiv", "--root", str(tmp_path)]) == 2
    assert "unknown data set 'massiv'" in capsys.readouterr().err


def test_named_massive_path_is_found_in_the_data_root_or_explained(tmp_path, monkeypatch):
    monkeypatch.setenv("XSWEEP_DATA", str(tmp_path))
    config = tmp_path / "exp.yaml"
    config.write_text("name: x\ndata: {path: massive}\n")
    cfg = load_config(config)  # validates without the data: it is looked for when the sweep runs
    with pytest.raises(XsweepError, match="xsweep data download massive"):
        massive_dir(cfg)
    folder = tmp_path / "massive" / "1.1" / "data"
    folder.mkdir(parents=True)
    assert massive_dir(cfg) == folder
