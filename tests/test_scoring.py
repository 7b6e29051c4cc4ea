"""WER scoring: counts agree with jiwer, and the recogs/errs/wer-summary files read back as written."""

import ast
import math

import jiwer
import pytest

from rlhf.scoring import EPS, Utterance, WerStats, align, compute_wer, write_errs, write_recogs, write_wer_summary

# Three substitutions (B->X twice), one deletion and one insertion over 12 reference words;
# not in cut-id order, so the writers' sorting is tested too.
UTTS = [
    Utterance("u3", ["D", "E", "F"], ["D", "F"]),  # deletes E
    Utterance("u1", ["A", "B", "C", "D"], ["A", "X", "C", "D"]),  # B->X
    Utterance("u5", ["C"], ["Y"]),  # C->Y
    Utterance("u2", ["B", "C"], ["X", "C", "E"]),  # B->X, inserts E
    Utterance("u4", ["A", "B"], ["A", "B"]),  # correct
]


def _jiwer(utts):
    return jiwer.process_words([" ".join(u.ref) for u in utts], [" ".join(u.hyp) for u in utts])


def _sections(text: str) -> dict[str, list[str]]:
    """An errs file's blank-line separated sections, keyed by the header's first word."""
    blocks = [block.splitlines() for block in text.strip("\n").split("\n\n")]
    return {block[0].split(":")[0] if ":" in block[0] else "SUMMARY": block for block in blocks}


def test_counts_and_summary_line_agree_with_jiwer():
    stats = compute_wer(UTTS)
    expected = _jiwer(UTTS)
    assert (stats.num_ins, stats.num_del, stats.num_sub) == (expected.insertions, expected.deletions,
                                                              expected.substitutions)
    assert stats.num_ref_words == expected.hits + expected.substitutions + expected.deletions == 12
    assert f"{stats.wer:.2f}" == f"{100 * expected.wer:.2f}" == "41.67"
    assert stats.summary_line() == "%WER 41.67 [ 5 / 12, 1 ins, 1 del, 3 sub ]"
    assert (stats.num_utts, stats.num_err_utts) == (5, 4)


def test_summary_line_format():
    stats = WerStats(num_ref_words=8, num_ins=1, num_del=0, num_sub=1, num_utts=2, num_err_utts=1)
    assert stats.summary_line() == "%WER 25.00 [ 2 / 8, 1 ins, 0 del, 1 sub ]"


def test_align_known_case():
    ref = "a b c d e f g".split()
    hyp = "a x c e f g h".split()
    assert align(ref, hyp) == [("a", "a"), ("b", "x"), ("c", "c"), ("d", EPS), ("e", "e"), ("f", "f"),
                               ("g", "g"), (EPS, "h")]


def test_align_counts_agree_with_jiwer_where_alignments_tie():
    # "d e" -> "e f" is two substitutions or a deletion and an insertion; jiwer picks one.
    ref, hyp = "a b c d e".split(), "a x c e f".split()
    stats = compute_wer([Utterance("u", ref, hyp)])
    expected = _jiwer([Utterance("u", ref, hyp)])
    assert (stats.num_ins, stats.num_del, stats.num_sub) == (expected.insertions, expected.deletions,
                                                              expected.substitutions)
    pairs = align(ref, hyp)
    assert sum(r != h and EPS not in (r, h) for r, h in pairs) == stats.num_sub


def test_empty_hypothesis_is_all_deletions():
    assert align(["A", "B", "C"], []) == [("A", EPS), ("B", EPS), ("C", EPS)]
    stats = compute_wer([Utterance("u", ["A", "B", "C"], [])])
    assert stats.summary_line() == "%WER 100.00 [ 3 / 3, 0 ins, 3 del, 0 sub ]"
    assert stats.num_err_utts == 1


def test_empty_reference():
    assert align([], ["A"]) == [(EPS, "A")]
    inserted = compute_wer([Utterance("u", [], ["A"])])
    assert math.isinf(inserted.wer)
    assert inserted.summary_line() == "%WER inf [ 1 / 0, 1 ins, 0 del, 0 sub ]"
    assert compute_wer([Utterance("u", [], [])]).wer == 0.0
    assert compute_wer([]).summary_line() == "%WER 0.00 [ 0 / 0, 0 ins, 0 del, 0 sub ]"
    # An empty reference among others counts only its insertions.
    stats = compute_wer([*UTTS, Utterance("u6", [], ["Z", "Z"])])
    assert stats.summary_line() == "%WER 58.33 [ 7 / 12, 3 ins, 1 del, 3 sub ]"


@pytest.mark.parametrize("word", ["", "A B", EPS])
def test_rejects_words_that_would_misalign(word):
    with pytest.raises(ValueError, match="invalid word"):
        compute_wer([Utterance("u", ["A"], [word])])


def test_write_recogs(tmp_path):
    path = tmp_path / "recogs-test.txt"
    write_recogs(path, UTTS)
    lines = path.read_text().splitlines()
    assert lines[:2] == ["u1:\tref=['A', 'B', 'C', 'D']", "u1:\thyp=['A', 'X', 'C', 'D']"]
    parsed = []
    for line in lines:
        cut_id, rest = line.split(":\t")
        side, words = rest.split("=", 1)
        parsed.append((cut_id, side, ast.literal_eval(words)))
    expected = [(u.cut_id, side, getattr(u, side)) for u in sorted(UTTS, key=lambda u: u.cut_id)
                for side in ("ref", "hyp")]
    assert parsed == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == ["recogs-test.txt"]  # no temporary left


def test_write_errs(tmp_path):
    path = tmp_path / "errs-test.txt"
    write_errs(path, UTTS, compute_wer(UTTS))
    sections = _sections(path.read_text())
    assert sections["SUMMARY"] == ["%WER 41.67 [ 5 / 12, 1 ins, 1 del, 3 sub ]", "%SER 80.00 [ 4 / 5 ]"]
    assert sections["PER-UTT DETAILS"] == [
        "PER-UTT DETAILS: corr or (ref->hyp)",
        "u1:\tA (B->X) C D",
        "u2:\t(B->X) C (*->E)",
        "u3:\tD (E->*) F",
        "u4:\tA B",
        "u5:\t(C->Y)",
    ]
    assert sections["SUBSTITUTIONS"] == ["SUBSTITUTIONS: count ref -> hyp", "2   B -> X", "1   C -> Y"]
    assert sections["DELETIONS"] == ["DELETIONS: count ref", "1   E"]
    assert sections["INSERTIONS"] == ["INSERTIONS: count hyp", "1   E"]
    # word, corr, tot_errs, count_in_ref, count_in_hyp: most errors first, ties by word.
    per_word = [line.split() for line in sections["PER-WORD STATS"][1:]]
    assert per_word == [
        ["B", "1", "2", "3", "1"],
        ["E", "0", "2", "1", "1"],
        ["X", "0", "2", "0", "2"],
        ["C", "2", "1", "3", "2"],
        ["Y", "0", "1", "0", "1"],
        ["A", "2", "0", "2", "2"],
        ["D", "2", "0", "2", "2"],
        ["F", "1", "0", "1", "1"],
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["errs-test.txt"]


def test_write_wer_summary_best_first(tmp_path):
    path = tmp_path / "wer-summary-test.txt"
    rows = {
        "greedy_search": compute_wer(UTTS),
        "empty_ref": compute_wer([Utterance("u", [], ["A"])]),
        "perfect": compute_wer([Utterance("u", ["A"], ["A"])]),
        "no_hyp": compute_wer([Utterance("u", ["A", "B"], [])]),
    }
    write_wer_summary(path, rows)
    assert path.read_text().splitlines() == [
        "settings\tWER",
        "perfect\t0.00",
        "greedy_search\t41.67",
        "no_hyp\t100.00",
        "empty_ref\tinf",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wer-summary-test.txt"]
