"""What MASSIVE's rows must satisfy beyond parsing, checked before any trial starts.

Each fault here used to pass silently and change a score: a test row whose intent the label map
lacks can only be scored wrong; a row written twice (one published copy of MASSIVE has every row
twice) doubles its weight in the test set; a locale whose row `id` has another intent or partition
than the training locale's row is not MASSIVE's parallel data; and a slot experiment whose
evaluated file has no `annot_utt`, or a damaged one, would fail only at evaluation, hours in.
Every error names the row as `file:line`.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

from xsweep.data.massive import MassiveExample, parse_annot_utt
from xsweep.errors import XsweepError


def check_no_duplicates(rows: Sequence[MassiveExample]) -> None:
    """No `id` twice within one locale's file."""
    first: dict[str, MassiveExample] = {}
    for row in rows:
        if row.id in first:
            raise XsweepError(f"row id {row.id!r} appears twice in the {row.locale} file (first at "
                              f"{first[row.id].where or 'an earlier line'})", where=row.where or None,
                              fix="remove the duplicate rows (a copy that holds every row twice doubles "
                                  "the test set); re-download the official file")
        first[row.id] = row


def check_known_intents(rows: Iterable[MassiveExample], intents: Iterable[str], train_locale: str,
                        partitions: Iterable[str] = ("dev", "test")) -> None:
    """Every dev/test row's intent is in the label map (the intents of the training locale's train
    split): otherwise it can only be scored as wrong."""
    known = set(intents)
    wanted = set(partitions)
    for row in rows:
        if row.partition in wanted and row.intent not in known:
            raise XsweepError(f"{row.partition} row {row.id!r} has intent {row.intent!r}, which the "
                              f"{train_locale} training split (the label map) does not have",
                              where=row.where or None,
                              fix="use the same MASSIVE release for every locale, or correct the row's "
                                  f"intent; the label map holds {len(known)} intents")


def check_parallel(rows: Sequence[MassiveExample], reference: Mapping[str, MassiveExample]) -> None:
    """MASSIVE is parallel: a row of another locale with the same `id` as a row of the training
    locale (`reference`: id -> row) has the same intent and partition."""
    for row in rows:
        ref = reference.get(row.id)
        if ref is None:
            continue
        for key in ("intent", "partition"):
            if getattr(row, key) != getattr(ref, key):
                raise XsweepError(
                    f"row id {row.id!r} has {key} {getattr(row, key)!r} in {row.locale} but "
                    f"{getattr(ref, key)!r} in {ref.locale} ({ref.where or 'the training locale'})",
                    where=row.where or None,
                    fix="MASSIVE's locales are translations of the same rows: use files of one release, "
                        "and do not re-split or relabel one locale alone")


def check_slot_markup(rows: Iterable[MassiveExample], partitions: Iterable[str]) -> None:
    """Every row of `partitions` has `annot_utt`, and it parses (balanced brackets, no empty slot)."""
    wanted = set(partitions)
    for row in rows:
        if row.partition not in wanted:
            continue
        if row.annot_utt is None:
            raise XsweepError(f"{row.partition} row {row.id!r} of {row.locale} has no annot_utt: slots "
                              "cannot be scored", where=row.where or None,
                              fix="use the official MASSIVE files (with annot_utt) for slot filling, or "
                                  "drop the locale from data.eval_locales, or use head.kind vanilla/nli")
        parse_annot_utt(row.annot_utt, row.locale, where=row.where or None)


def check_locale_rows(rows: Sequence[MassiveExample], train_rows: Sequence[MassiveExample], *,
                      evaluated: bool, trains: bool, slots: bool) -> None:
    """All of the above for one locale's whole file, as a sweep reads it: its train/dev split if it
    is the training locale (`trains`), its test split if it is evaluated; `train_rows` is the
    training locale's whole file (the label map and the parallel reference)."""
    check_no_duplicates(rows)
    train_locale = train_rows[0].locale if train_rows else "training locale"
    intents = {row.intent for row in train_rows if row.partition == "train"}
    partitions = (["train", "dev"] if trains else []) + (["test"] if evaluated else [])
    check_known_intents(rows, intents, train_locale, [p for p in partitions if p != "train"])
    if not trains:
        check_parallel(rows, {row.id: row for row in train_rows})
    if slots:
        check_slot_markup(rows, partitions)
