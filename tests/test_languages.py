"""The language tables: counts, MASSIVE spellings, and the mappings between schemes."""

from __future__ import annotations

import pytest

from xsweep import languages as L
from xsweep.errors import XsweepError

pytestmark = pytest.mark.timeout(30)


def test_massive_has_52_locales_with_its_own_spellings():
    assert len(L.MASSIVE_LOCALES) == 52
    assert "sl-SL" in L.MASSIVE_LOCALES and "ca-ES" in L.MASSIVE_LOCALES
    assert "sl-SI" not in L.MASSIVE_LOCALES
    assert all(name for name in L.MASSIVE_LOCALES.values())


def test_xsgd_has_105_codes_and_maps_onto_massive():
    assert len(L.XSGD_CODES) == 105
    assert "en" not in L.XSGD_CODES and "jw" not in L.XSGD_CODES
    assert L.xsgd_code_for("nb-NO") == "no"
    assert L.xsgd_code_for("zh-CN") == "zh-CN" and L.xsgd_code_for("zh-TW") == "zh-TW"
    assert L.xsgd_code_for("jv-ID") is None
    assert L.locale_for_xsgd("no") == "nb-NO"
    assert L.locale_for_xsgd("he") == "he-IL"
    assert L.locale_for_xsgd("haw") is None
    # Every MASSIVE locale but English (the source) and Javanese has XSGD data.
    missing = [loc for loc, code in L.MASSIVE_TO_XSGD.items() if code is None]
    assert sorted(missing) == ["en-US", "jv-ID"]
    assert all(code in L.XSGD_CODES for code in L.XSGD_TO_MASSIVE)


def test_tatoeba_codes_map_to_massive_where_they_exist():
    assert len(L.TATOEBA_CODES) == 36
    assert L.locale_for_tatoeba("cmn") == "zh-CN"
    assert L.locale_for_tatoeba("pes") == "fa-IR"
    assert L.locale_for_tatoeba("bul") is None
    assert L.tatoeba_code_for("de-DE") == "deu"
    assert L.tatoeba_code_for("cy-GB") is None
    assert all(loc in L.MASSIVE_LOCALES for _, loc in L.TATOEBA_CODES.values() if loc)


def test_unknown_locale_lists_nearest_valid_codes():
    assert L.check_locale("de-DE") == "de-DE"
    with pytest.raises(XsweepError) as e:
        L.check_locale("sl-SI")
    assert "sl-SL" in e.value.what
    with pytest.raises(XsweepError) as e:
        L.check_locale("de-de")
    assert "de-DE" in e.value.what
    with pytest.raises(XsweepError):
        L.check_xsgd_code("nb")
    with pytest.raises(XsweepError) as e:
        L.check_tatoeba_code("ger")
    assert e.value.fix


def test_resolve_xsgd_targets_one_list_all():
    assert L.resolve_xsgd_targets("de") == ["de"]
    assert L.resolve_xsgd_targets(["de", "nb-NO", "de"]) == ["de", "no"]
    assert len(L.resolve_xsgd_targets("all")) == 105
    with pytest.raises(XsweepError, match="jv-ID"):
        L.resolve_xsgd_targets(["jv-ID"])
    with pytest.raises(XsweepError):
        L.resolve_xsgd_targets([])
