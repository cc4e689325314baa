"""The downloader against a loopback HTTP server serving archives the test builds.

Traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import json
import tarfile
import threading
import zipfile
from pathlib import Path

import pytest

from xsweep.data.download import MARKER, download
from xsweep.data.massive import read_massive
from xsweep.data.sgd import read_dialogues, split_dir
from xsweep.data.tatoeba import read_tatoeba
from xsweep.errors import XsweepError

pytestmark = pytest.mark.timeout(60)


class _Handler(http.server.SimpleHTTPRequestHandler):
    requests: list[str] = []

    def do_GET(self):  # noqa: N802 (http.server's naming)
        _Handler.requests.append(self.path)
        super().do_GET()

    def log_message(self, *args):  # keep test output quiet
        pass


@pytest.fixture()
def server(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    handler = functools.partial(_Handler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    _Handler.requests = []
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _row(i: int, partition: str) -> str:
    return json.dumps({"id": str(i), "locale": "en-US", "partition": partition,
                       "scenario": "alarm", "intent": "alarm_set", "utt": "wake me up",
                       "annot_utt": "wake me up", "worker_id": "1"})


def _massive_tarball(path: Path) -> str:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, text in [("1.1/data/en-US.jsonl", _row(0, "train") + "\n" + _row(1, "test")),
                           ("1.1/LICENSE", "CC BY 4.0")]:
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path.write_bytes(buf.getvalue())
    return hashlib.sha256(buf.getvalue()).hexdigest()


def _zip(path: Path, files: dict[str, str]) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)


def test_massive_download_checks_hash_and_unpacks(server, tmp_path):
    served, base = server
    digest = _massive_tarball(served / "m.tar.gz")
    root = tmp_path / "data"
    logs: list[str] = []
    dest = download("massive", root, url=f"{base}/m.tar.gz", sha256=digest, log=logs.append)
    assert dest == root / "massive"
    assert [ex.id for ex in read_massive(root, "en-US", ["test"])] == ["1"]
    assert not (dest / "1.1" / "LICENSE").exists()  # only 1.1/data/ is kept
    assert json.loads((dest / MARKER).read_text())["sha256"] == digest
    assert sorted(p.name for p in root.iterdir()) == ["massive"]  # no temporary leftovers
    download("massive", root, url=f"{base}/m.tar.gz", sha256=digest, log=logs.append)
    assert len(_Handler.requests) == 1  # the second call found the data in place
    download("massive", root, url=f"{base}/m.tar.gz", sha256=digest, force=True, log=logs.append)
    assert len(_Handler.requests) == 2


def test_hash_mismatch_leaves_old_data_and_no_leftovers(server, tmp_path):
    served, base = server
    digest = _massive_tarball(served / "m.tar.gz")
    root = tmp_path / "data"
    with pytest.raises(XsweepError) as e:
        download("massive", root, url=f"{base}/m.tar.gz", sha256="0" * 64, log=lambda m: None)
    assert "sha256 mismatch" in e.value.what and digest in e.value.what
    assert list(root.iterdir()) == []
    download("massive", root, url=f"{base}/m.tar.gz", sha256=digest, log=lambda m: None)
    before = (root / "massive/1.1/data/en-US.jsonl").read_bytes()
    with pytest.raises(XsweepError, match="mismatch"):
        download("massive", root, url=f"{base}/m.tar.gz", sha256="1" * 64, force=True,
                 log=lambda m: None)
    assert (root / "massive/1.1/data/en-US.jsonl").read_bytes() == before
    assert sorted(p.name for p in root.iterdir()) == ["massive"]


def test_unpinned_zip_sources_need_consent_and_record_the_hash(server, tmp_path):
    served, base = server
    schema = json.dumps([{"service_name": "Alarm_1", "intents": [
        {"name": "AddAlarm", "description": "Set an alarm"}]}])
    dialogue = json.dumps([{"dialogue_id": "1_00000", "services": ["Alarm_1"], "turns": [
        {"speaker": "USER", "utterance": "set an alarm", "frames": [
            {"service": "Alarm_1", "actions": [], "state": {"active_intent": "AddAlarm"}}]}]}])
    _zip(served / "sgd.zip", {"repo-master/train/schema.json": schema,
                              "repo-master/train/dialogues_001.json": dialogue,
                              "repo-master/README.md": "not kept"})
    root = tmp_path / "data"
    with pytest.raises(XsweepError, match="no sha256 is pinned"):
        download("sgd", root, url=f"{base}/sgd.zip", log=lambda m: None)
    assert _Handler.requests == []
    dest = download("sgd", root, url=f"{base}/sgd.zip", allow_unpinned=True, log=lambda m: None)
    assert read_dialogues(split_dir(root, "train"))[0]["dialogue_id"] == "1_00000"
    assert not (dest / "README.md").exists()
    info = json.loads((dest / MARKER).read_text())
    assert info["pinned"] is False
    assert info["sha256"] == hashlib.sha256((served / "sgd.zip").read_bytes()).hexdigest()


def test_tatoeba_layout_from_laser_archive(server, tmp_path):
    served, base = server
    _zip(served / "laser.zip", {"LASER-main/data/tatoeba/v1/tatoeba.deu-eng.deu": "Hallo.\n",
                                "LASER-main/data/tatoeba/v1/tatoeba.deu-eng.eng": "Hello.\n",
                                "LASER-main/source/embed.py": "x"})
    root = tmp_path / "data"
    download("tatoeba", root, url=f"{base}/laser.zip", allow_unpinned=True, log=lambda m: None)
    assert read_tatoeba(root, "deu").english == ["Hello."]


def test_bad_archives_and_urls(server, tmp_path):
    served, base = server
    _zip(served / "evil.zip", {"../evil/train/schema.json": "[]"})
    (served / "plain.txt").write_text("not an archive")
    root = tmp_path / "data"
    with pytest.raises(XsweepError, match="unsafe path"):
        download("sgd", root, url=f"{base}/evil.zip", allow_unpinned=True, log=lambda m: None)
    with pytest.raises(XsweepError, match="neither a zip nor a tar"):
        download("sgd", root, url=f"{base}/plain.txt", allow_unpinned=True, log=lambda m: None)
    with pytest.raises(XsweepError, match="download failed"):
        download("sgd", root, url=f"{base}/missing.zip", allow_unpinned=True, log=lambda m: None)
    with pytest.raises(XsweepError, match="XSGD is a manual download"):
        download("xsgd", root)
    assert list(root.iterdir()) == []
    assert not (tmp_path / "evil").exists()
