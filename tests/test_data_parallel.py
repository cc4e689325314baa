"""Alignment pairs from XSGD, line-aligned files and TSV; Tatoeba sets."""

from __future__ import annotations

import random

import pytest

from xsweep.data.parallel import (
    AlignedDocument,
    draw_pair,
    epoch_pairs,
    line_aligned_documents,
    tsv_documents,
    xsgd_documents,
)
from xsweep.data.tatoeba import available_tatoeba, read_tatoeba
from xsweep.errors import XsweepError

pytestmark = pytest.mark.timeout(60)


def test_xsgd_documents_one_list_all(demo):
    de = xsgd_documents(demo, "train", "de")
    assert {d.lang for d in de} == {"de"} and len(de) == 24
    assert all(len(d.source) == len(d.target) > 1 for d in de)
    assert {d.lang for d in xsgd_documents(demo, "dev", ["ja-JP", "ru"])} == {"ja", "ru"}
    assert {d.lang for d in xsgd_documents(demo, "dev", "all")} == {"de", "es", "ja", "ru"}
    with pytest.raises(XsweepError) as e:
        xsgd_documents(demo, "dev", "fr")
    assert "utterance_fr" in e.value.what and "de, es, ja, ru" in e.value.fix
    with pytest.raises(XsweepError, match="jv-ID"):
        xsgd_documents(demo, "dev", "jv-ID")


def test_pairs_take_1_to_4_consecutive_turns_in_both_languages(demo):
    docs = xsgd_documents(demo, "train", "es")
    seen_lengths = set()
    for epoch in range(5):
        pairs = epoch_pairs(docs, seed=0, epoch=epoch)
        assert sorted(p.doc_id for p in pairs) == sorted(d.doc_id for d in docs)
        for p in pairs:
            doc = next(d for d in docs if d.doc_id == p.doc_id)
            span = slice(p.first_segment, p.first_segment + p.num_segments)
            assert 1 <= p.num_segments <= 4
            assert p.source == " ".join(doc.source[span]) and p.target == " ".join(doc.target[span])
            seen_lengths.add(p.num_segments)
    assert seen_lengths == {1, 2, 3, 4}
    assert epoch_pairs(docs, 0, 1) == epoch_pairs(docs, 0, 1)
    assert epoch_pairs(docs, 0, 1) != epoch_pairs(docs, 0, 2)
    short = AlignedDocument("x", "de", ("a",), ("b",))
    assert draw_pair(short, random.Random(0)).num_segments == 1
    with pytest.raises(XsweepError):
        epoch_pairs([], 0, 0)


def test_line_aligned_and_tsv(demo, tmp_path):
    folder = demo / "tatoeba" / "v1"
    docs = line_aligned_documents(folder / "tatoeba.deu-eng.eng", folder / "tatoeba.deu-eng.deu",
                                  "de")
    assert len(docs) == 300 and all(len(d.source) == 1 for d in docs)
    grouped = line_aligned_documents(folder / "tatoeba.deu-eng.eng",
                                     folder / "tatoeba.deu-eng.deu", "de", lines_per_document=4)
    assert len(grouped) == 75 and len(grouped[0].source) == 4
    (tmp_path / "short.txt").write_text("eins\nzwei\n")
    with pytest.raises(XsweepError, match="line counts differ"):
        line_aligned_documents(folder / "tatoeba.deu-eng.eng", tmp_path / "short.txt", "de")
    (tmp_path / "pairs.tsv").write_text("hello\thallo\n\ngood night\tgute nacht\n")
    docs = tsv_documents(tmp_path / "pairs.tsv", "de")
    assert [(d.source, d.target) for d in docs] == [(("hello",), ("hallo",)),
                                                    (("good night",), ("gute nacht",))]
    (tmp_path / "bad.tsv").write_text("hello\thallo\nno tab here\n")
    with pytest.raises(XsweepError) as e:
        tsv_documents(tmp_path / "bad.tsv", "de")
    assert e.value.where.endswith("bad.tsv:2")


def test_real_tatoeba(shared_data):
    codes = available_tatoeba(shared_data)
    assert codes == sorted("ara cmn deu fra hin ind jpn kor rus spa tha tur".split())
    cmn = read_tatoeba(shared_data / "tatoeba", "cmn")
    assert cmn.locale == "zh-CN" and len(cmn.sentences) == len(cmn.english) == 1000
    with pytest.raises(XsweepError, match="no Tatoeba files for bul"):
        read_tatoeba(shared_data, "bul")
    with pytest.raises(XsweepError, match="no Tatoeba files for ger") as e:
        read_tatoeba(shared_data, "ger")
    assert "languages present: ara, cmn, deu" in e.value.fix
    with pytest.raises(XsweepError, match="is not a Tatoeba language code"):
        read_tatoeba(shared_data, "German")


def test_demo_tatoeba_reads(demo):
    assert available_tatoeba(demo) == ["deu", "jpn", "rus", "spa"]
    assert read_tatoeba(demo, "jpn").locale == "ja-JP"
