"""Languages as data: the 52 MASSIVE 1.1 locales, the 105 XSGD codes, the Tatoeba codes.

Every data set names languages its own way: MASSIVE by locale (`de-DE`, `sl-SL`), XSGD by the
Google-Translate code used to translate it (`de`, `no`, `zh-CN`), Tatoeba (XTREME) by ISO-639-3
(`deu`, `cmn`, `pes`). Experiments are reported per MASSIVE locale, so everything else maps onto
those. One table per scheme, plus the explicit mappings; unknown codes are errors that list the
nearest valid ones, so a typo never silently drops a language from a sweep.
"""

from __future__ import annotations

import difflib
import re
from typing import Iterable, Mapping

from xsweep.errors import XsweepError

# The 52 locales of MASSIVE 1.1 (51 in 1.0 plus ca-ES), with MASSIVE's own spellings (`sl-SL`).
MASSIVE_LOCALES: dict[str, str] = {
    "af-ZA": "Afrikaans",
    "am-ET": "Amharic",
    "ar-SA": "Arabic",
    "az-AZ": "Azerbaijani",
    "bn-BD": "Bengali",
    "ca-ES": "Catalan",
    "cy-GB": "Welsh",
    "da-DK": "Danish",
    "de-DE": "German",
    "el-GR": "Greek",
    "en-US": "English",
    "es-ES": "Spanish",
    "fa-IR": "Persian",
    "fi-FI": "Finnish",
    "fr-FR": "French",
    "he-IL": "Hebrew",
    "hi-IN": "Hindi",
    "hu-HU": "Hungarian",
    "hy-AM": "Armenian",
    "id-ID": "Indonesian",
    "is-IS": "Icelandic",
    "it-IT": "Italian",
    "ja-JP": "Japanese",
    "jv-ID": "Javanese",
    "ka-GE": "Georgian",
    "km-KH": "Khmer",
    "kn-IN": "Kannada",
    "ko-KR": "Korean",
    "lv-LV": "Latvian",
    "ml-IN": "Malayalam",
    "mn-MN": "Mongolian",
    "ms-MY": "Malay",
    "my-MM": "Burmese",
    "nb-NO": "Norwegian Bokmal",
    "nl-NL": "Dutch",
    "pl-PL": "Polish",
    "pt-PT": "Portuguese",
    "ro-RO": "Romanian",
    "ru-RU": "Russian",
    "sl-SL": "Slovenian",
    "sq-AL": "Albanian",
    "sv-SE": "Swedish",
    "sw-KE": "Swahili",
    "ta-IN": "Tamil",
    "te-IN": "Telugu",
    "th-TH": "Thai",
    "tl-PH": "Tagalog",
    "tr-TR": "Turkish",
    "ur-PK": "Urdu",
    "vi-VN": "Vietnamese",
    "zh-CN": "Chinese (Simplified)",
    "zh-TW": "Chinese (Traditional)",
}

# Locales written without spaces between words: the official MASSIVE preprocessing splits them
# into characters (ASCII runs kept whole) before word-level slot labelling.
CHARACTER_SPLIT_LOCALES: frozenset[str] = frozenset({"ja-JP", "zh-CN", "zh-TW"})

# The 105 Google-Translate codes of XSGD (paper, appendix A; English is the source, not listed).
XSGD_CODES: dict[str, str] = {
    "af": "Afrikaans", "am": "Amharic", "ar": "Arabic", "az": "Azerbaijani",
    "be": "Belarusian", "bg": "Bulgarian", "bn": "Bengali", "bs": "Bosnian", "ca": "Catalan",
    "ceb": "Cebuano", "co": "Corsican", "cs": "Czech", "cy": "Welsh", "da": "Danish",
    "de": "German", "el": "Greek", "eo": "Esperanto", "es": "Spanish", "et": "Estonian",
    "eu": "Basque", "fa": "Persian", "fi": "Finnish", "fr": "French", "fy": "Frisian",
    "ga": "Irish", "gd": "Scots Gaelic", "gl": "Galician", "gu": "Gujarati", "ha": "Hausa",
    "haw": "Hawaiian", "he": "Hebrew", "hi": "Hindi", "hmn": "Hmong", "hr": "Croatian",
    "ht": "Haitian Creole", "hu": "Hungarian", "hy": "Armenian", "id": "Indonesian",
    "ig": "Igbo", "is": "Icelandic", "it": "Italian", "ja": "Japanese", "ka": "Georgian",
    "kk": "Kazakh", "km": "Khmer", "kn": "Kannada", "ko": "Korean", "ku": "Kurdish",
    "ky": "Kyrgyz", "la": "Latin", "lb": "Luxembourgish", "lo": "Lao", "lt": "Lithuanian",
    "lv": "Latvian", "mg": "Malagasy", "mi": "Maori", "mk": "Macedonian", "ml": "Malayalam",
    "mn": "Mongolian", "mr": "Marathi", "ms": "Malay", "mt": "Maltese", "my": "Burmese",
    "ne": "Nepali", "nl": "Dutch", "no": "Norwegian", "ny": "Chichewa", "or": "Odia",
    "pa": "Punjabi", "pl": "Polish", "pt": "Portuguese", "ro": "Romanian", "ru": "Russian",
    "rw": "Kinyarwanda", "si": "Sinhala", "sk": "Slovak", "sl": "Slovenian", "sm": "Samoan",
    "sn": "Shona", "so": "Somali", "sq": "Albanian", "sr": "Serbian", "st": "Sesotho",
    "su": "Sundanese", "sv": "Swedish", "sw": "Swahili", "ta": "Tamil", "te": "Telugu",
    "tg": "Tajik", "th": "Thai", "tk": "Turkmen", "tl": "Filipino", "tr": "Turkish",
    "tt": "Tatar", "ug": "Uyghur", "uk": "Ukrainian", "ur": "Urdu", "uz": "Uzbek",
    "vi": "Vietnamese", "xh": "Xhosa", "yi": "Yiddish", "yo": "Yoruba",
    "zh-CN": "Chinese (Simplified)", "zh-TW": "Chinese (Traditional)", "zu": "Zulu",
}

# XSGD code of each MASSIVE locale. Mostly the language part of the locale; the exceptions are
# written out: Norwegian is `no` in Google Translate, Chinese keeps its region, and Javanese was
# not translated (None: no XSGD data for jv-ID).
_XSGD_EXCEPTIONS: dict[str, str | None] = {
    "nb-NO": "no",
    "zh-CN": "zh-CN",
    "zh-TW": "zh-TW",
    "jv-ID": None,
    "en-US": None,  # English is XSGD's source text (`utterance`), not a translation.
}
MASSIVE_TO_XSGD: dict[str, str | None] = {
    loc: _XSGD_EXCEPTIONS.get(loc, loc.split("-")[0]) for loc in MASSIVE_LOCALES
}
XSGD_TO_MASSIVE: dict[str, str] = {code: loc for loc, code in MASSIVE_TO_XSGD.items() if code}

# The 36 Tatoeba languages of XTREME, by the ISO-639-3 codes of its file names
# (`tatoeba.<iso3>-eng.<iso3>`), with the MASSIVE locale each is reported under (None: the
# language is not in MASSIVE).
TATOEBA_CODES: dict[str, tuple[str, str | None]] = {
    "afr": ("Afrikaans", "af-ZA"), "ara": ("Arabic", "ar-SA"), "ben": ("Bengali", "bn-BD"),
    "bul": ("Bulgarian", None), "cmn": ("Mandarin Chinese", "zh-CN"),
    "deu": ("German", "de-DE"), "ell": ("Greek", "el-GR"), "est": ("Estonian", None),
    "eus": ("Basque", None), "fin": ("Finnish", "fi-FI"), "fra": ("French", "fr-FR"),
    "heb": ("Hebrew", "he-IL"), "hin": ("Hindi", "hi-IN"), "hun": ("Hungarian", "hu-HU"),
    "ind": ("Indonesian", "id-ID"), "ita": ("Italian", "it-IT"), "jav": ("Javanese", "jv-ID"),
    "jpn": ("Japanese", "ja-JP"), "kat": ("Georgian", "ka-GE"), "kaz": ("Kazakh", None),
    "kor": ("Korean", "ko-KR"), "mal": ("Malayalam", "ml-IN"), "mar": ("Marathi", None),
    "nld": ("Dutch", "nl-NL"), "pes": ("Persian", "fa-IR"), "por": ("Portuguese", "pt-PT"),
    "rus": ("Russian", "ru-RU"), "spa": ("Spanish", "es-ES"), "swh": ("Swahili", "sw-KE"),
    "tam": ("Tamil", "ta-IN"), "tel": ("Telugu", "te-IN"), "tgl": ("Tagalog", "tl-PH"),
    "tha": ("Thai", "th-TH"), "tur": ("Turkish", "tr-TR"), "urd": ("Urdu", "ur-PK"),
    "vie": ("Vietnamese", "vi-VN"),
}
MASSIVE_TO_TATOEBA: dict[str, str] = {
    loc: iso3 for iso3, (_, loc) in TATOEBA_CODES.items() if loc is not None
}
# MASSIVE locales whose language the full LASER/XTREME download (112 `xxx-eng` pairs) holds
# beyond XTREME's 36, by the code of its file names. kn-IN, my-MM (and en-US) have no pair.
TATOEBA_BEYOND_XTREME: dict[str, str] = {
    "am-ET": "amh", "az-AZ": "aze", "cy-GB": "cym", "da-DK": "dan", "hy-AM": "hye", "is-IS": "isl",
    "km-KH": "khm", "lv-LV": "lvs", "mn-MN": "mon", "ms-MY": "zsm", "nb-NO": "nob", "pl-PL": "pol",
    "ro-RO": "ron", "sl-SL": "slv", "sq-AL": "sqi", "sv-SE": "swe",
}
_TATOEBA_CODE = re.compile(r"[a-z]{2,3}")


def _check(code: str, valid: Mapping[str, object], kind: str, fix: str) -> str:
    if not isinstance(code, str):
        raise XsweepError(f"{kind} must be a string, got {type(code).__name__} {code!r}", fix=fix)
    if code in valid:
        return code
    # Case slips (`de-de`, `ZH-cn`) are common; say so rather than guessing silently.
    folded = {c.lower(): c for c in valid}
    near = difflib.get_close_matches(code, list(valid), n=5, cutoff=0.4)
    if code.lower() in folded and folded[code.lower()] not in near:
        near.insert(0, folded[code.lower()])
    hint = f"nearest valid: {', '.join(near)}" if near else f"valid codes: {', '.join(valid)}"
    raise XsweepError(f"unknown {kind} {code!r}; {hint}", fix=fix)


def check_locale(code: str) -> str:
    """Return `code` if it is one of the 52 MASSIVE 1.1 locales, else raise with the nearest ones."""
    return _check(code, MASSIVE_LOCALES, "MASSIVE locale",
                  "use a MASSIVE locale such as en-US, de-DE, sl-SL (see xsweep.languages)")


def check_xsgd_code(code: str) -> str:
    """Return `code` if it is one of XSGD's 105 Google-Translate codes."""
    return _check(code, XSGD_CODES, "XSGD language code",
                  "use a Google-Translate code as in XSGD's utterance_<code> fields, e.g. de, no, zh-CN")


def check_tatoeba_code(code: str) -> str:
    """Return `code` if it is one of the 36 XTREME Tatoeba ISO-639-3 codes."""
    return _check(code, TATOEBA_CODES, "Tatoeba language code",
                  "use an ISO-639-3 code as in tatoeba.<iso3>-eng.<iso3>, e.g. deu, cmn, jpn")


def locale_name(locale: str) -> str:
    """English name of a MASSIVE locale."""
    return MASSIVE_LOCALES[check_locale(locale)]


def xsgd_code_for(locale: str) -> str | None:
    """XSGD code holding the translation of MASSIVE `locale`; None where XSGD has none (jv-ID, en-US)."""
    return MASSIVE_TO_XSGD[check_locale(locale)]


def locale_for_xsgd(code: str) -> str | None:
    """MASSIVE locale an XSGD language is reported under; None for the 54 XSGD-only languages."""
    return XSGD_TO_MASSIVE.get(check_xsgd_code(code))


def tatoeba_code_for(locale: str) -> str | None:
    """Tatoeba ISO-639-3 code for a MASSIVE locale; None where XTREME's Tatoeba lacks it."""
    return MASSIVE_TO_TATOEBA.get(check_locale(locale))


def locale_for_tatoeba(code: str) -> str | None:
    """MASSIVE locale of a Tatoeba language; None for bul, est, eus, kaz, mar."""
    return TATOEBA_CODES[check_tatoeba_code(code)][1]


def resolve_xsgd_targets(spec: str | Iterable[str]) -> list[str]:
    """Target languages for alignment: one code, a list, or "all" (every XSGD code).

    MASSIVE locales are accepted too and mapped to their XSGD code, so a sweep can name its
    languages one way throughout; a locale without XSGD data (jv-ID) is an error, not a skip.
    """
    items = list(XSGD_CODES) if spec == "all" else [spec] if isinstance(spec, str) else list(spec)
    if not items:
        raise XsweepError("no XSGD target language given",
                          fix='name one code, a list of codes, or "all"')
    out: list[str] = []
    for item in items:
        if item in MASSIVE_LOCALES and item not in XSGD_CODES:
            code = MASSIVE_TO_XSGD[item]
            if code is None:
                raise XsweepError(f"XSGD has no translation for {item} ({MASSIVE_LOCALES[item]})",
                                  fix="drop it from the alignment targets")
        else:
            code = check_xsgd_code(item)
        if code not in out:
            out.append(code)
    return out


def resolve_tatoeba_targets(spec: str | Iterable[str], present: Iterable[str]) -> list[str]:
    """Tatoeba languages to align on or score: one code, a list, or "all" (every language in
    `present`, the codes a folder holds: any ISO 639-3 code, XTREME's 36 or not).

    MASSIVE locales are accepted too and mapped to their code, so an experiment can name the same
    languages for XSGD and Tatoeba. With `present` empty (the folder is not read yet, as at config
    load) a code is only checked for its form; with the folder's codes, a language it lacks is an
    error naming those it holds. A locale no Tatoeba pair covers (kn-IN) is an error, not a skip.
    """
    present = sorted(present)
    if spec == "all":
        return present
    items = [spec] if isinstance(spec, str) else list(spec)
    if not items:
        raise XsweepError("no Tatoeba target language given", fix='name one code, a list of codes, or "all"')
    out: list[str] = []
    for item in items:
        if item in MASSIVE_LOCALES:
            code = MASSIVE_TO_TATOEBA.get(item) or TATOEBA_BEYOND_XTREME.get(item)
            if code is None:
                raise XsweepError(f"Tatoeba has no {item} ({MASSIVE_LOCALES[item]}): no xxx-eng pair covers it",
                                  fix="drop it from the list, or align on XSGD")
        elif isinstance(item, str) and _TATOEBA_CODE.fullmatch(item):
            code = item
        else:
            raise XsweepError(f"{item!r} is neither a Tatoeba language code nor a MASSIVE locale",
                              fix="use an ISO 639-3 code as in tatoeba.<iso3>-eng.<iso3> (deu, pol, yue) "
                                  "or a MASSIVE locale (de-DE)")
        if present and code not in present:
            near = difflib.get_close_matches(code, present, n=3, cutoff=0.5)
            raise XsweepError(f"the Tatoeba folder has no {code}" + (f" ({item})" if item != code else ""),
                              fix=(f"did you mean {', '.join(near)}? " if near else "")
                              + f"languages present: {', '.join(present)}")
        if code not in out:
            out.append(code)
    return out
