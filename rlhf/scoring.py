"""Kaldi/icefall-style WER scoring: the summary line and the recogs, errs and wer-summary files.

Alignments come from jiwer (rapidfuzz's Levenshtein), so every count here equals what
``jiwer.process_words`` reports for the same words. The files follow icefall's
``store_transcripts``, ``write_error_stats`` and ``wer-summary`` formats, and the summary
line is Kaldi ``compute-wer``'s, so the usual habits (``grep %WER``, diffing errs files
between runs) work on them. Every file is written atomically.
"""

import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import jiwer

from rlhf.stage import atomic_output

EPS = "*"
"""Stands in alignments for the missing word of an insertion or deletion (icefall's ``ERR``)."""

Alignment = list[tuple[str, str]]


@dataclass
class Utterance:
    """One scored utterance: the reference and hypothesis words of a cut."""

    cut_id: str
    ref: list[str]
    hyp: list[str]


@dataclass
class WerStats:
    """Error counts summed over utterances; rates are derived so they never disagree with them."""

    num_ref_words: int
    num_ins: int
    num_del: int
    num_sub: int
    num_utts: int
    num_err_utts: int  # utterances with at least one error

    @property
    def num_errors(self) -> int:
        return self.num_ins + self.num_del + self.num_sub

    @property
    def wer(self) -> float:
        """Word error rate in percent.

        With no reference words it is 0.0 when there are no errors either, and inf
        otherwise: insertions into an empty reference have no finite rate, and inf
        cannot be mistaken for a good result or sort as the best one.
        """
        if self.num_ref_words == 0:
            return math.inf if self.num_errors else 0.0
        return 100.0 * self.num_errors / self.num_ref_words

    @property
    def ser(self) -> float:
        """Sentence error rate in percent (0.0 for no utterances)."""
        return 100.0 * self.num_err_utts / self.num_utts if self.num_utts else 0.0

    def summary_line(self) -> str:
        """Kaldi compute-wer's line, e.g. ``%WER 12.34 [ 123 / 997, 10 ins, 20 del, 93 sub ]``."""
        return (
            f"%WER {self.wer:.2f} [ {self.num_errors} / {self.num_ref_words}, "
            f"{self.num_ins} ins, {self.num_del} del, {self.num_sub} sub ]"
        )


def align(ref: list[str], hyp: list[str]) -> Alignment:
    """Levenshtein alignment as (ref_word, hyp_word) pairs, ``EPS`` on the missing side.

    Among equally short alignments it picks jiwer's, so it counts as ``compute_wer`` does.
    """
    return _align_all([Utterance("", ref, hyp)])[0]


def compute_wer(utts: Sequence[Utterance]) -> WerStats:
    """Sum the insertions, deletions and substitutions of every utterance."""
    edits = Counter()
    num_err_utts = 0
    for ali in _align_all(utts):
        utt_edits = Counter(_edit_type(r, h) for r, h in ali)
        edits += utt_edits
        num_err_utts += any(utt_edits[t] for t in ("ins", "del", "sub"))
    return WerStats(
        num_ref_words=sum(len(u.ref) for u in utts),
        num_ins=edits["ins"],
        num_del=edits["del"],
        num_sub=edits["sub"],
        num_utts=len(utts),
        num_err_utts=num_err_utts,
    )


def utterance_errors(utts: Sequence[Utterance]) -> list[int]:
    """Word errors (insertions + deletions + substitutions) of each utterance; one jiwer call."""
    return [sum(_edit_type(r, h) != "cor" for r, h in ali) for ali in _align_all(utts)]


def oracle_hypothesis(ref: list[str], hyps: Sequence[list[str]]) -> list[str]:
    """The hypothesis with the fewest errors against ``ref`` (the first of equals); one jiwer call."""
    errors = utterance_errors([Utterance("", ref, h) for h in hyps])
    return hyps[errors.index(min(errors))]


def write_recogs(path: Path, utts: Sequence[Utterance]) -> None:
    """icefall's recogs-*.txt: a ref and a hyp line per cut, sorted by cut id so runs diff cleanly."""
    with atomic_output(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for u in _by_cut_id(utts):
            print(f"{u.cut_id}:\tref={list(u.ref)}", file=f)
            print(f"{u.cut_id}:\thyp={list(u.hyp)}", file=f)


def write_errs(path: Path, utts: Sequence[Utterance], stats: WerStats) -> None:
    """icefall's errs-*.txt: the summary, each utterance's alignment, then the most frequent errors.

    Lists are sorted most frequent first, ties by word, so the file is the same on every run.
    """
    utts = _by_cut_id(utts)
    alignments = _align_all(utts)
    subs, dels, ins = Counter(), Counter(), Counter()
    corr, errs, in_ref, in_hyp = Counter(), Counter(), Counter(), Counter()
    for ali in alignments:
        for r, h in ali:
            kind = _edit_type(r, h)
            if r != EPS:
                in_ref[r] += 1
            if h != EPS:
                in_hyp[h] += 1
            if kind == "cor":
                corr[r] += 1
                continue
            # As in icefall, a substitution is an error of both words.
            errs.update(w for w in (r, h) if w != EPS)
            if kind == "sub":
                subs[r, h] += 1
            elif kind == "del":
                dels[r] += 1
            else:
                ins[h] += 1

    with atomic_output(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        print(stats.summary_line(), file=f)
        print(f"%SER {stats.ser:.2f} [ {stats.num_err_utts} / {stats.num_utts} ]", file=f)
        print("", file=f)
        print("PER-UTT DETAILS: corr or (ref->hyp)", file=f)
        for u, ali in zip(utts, alignments):
            print(f"{u.cut_id}:\t" + " ".join(r if r == h else f"({r}->{h})" for r, h in ali), file=f)
        print("", file=f)
        print("SUBSTITUTIONS: count ref -> hyp", file=f)
        for (r, h), count in _most_frequent_first(subs):
            print(f"{count}   {r} -> {h}", file=f)
        print("", file=f)
        print("DELETIONS: count ref", file=f)
        for r, count in _most_frequent_first(dels):
            print(f"{count}   {r}", file=f)
        print("", file=f)
        print("INSERTIONS: count hyp", file=f)
        for h, count in _most_frequent_first(ins):
            print(f"{count}   {h}", file=f)
        print("", file=f)
        print("PER-WORD STATS: word  corr tot_errs count_in_ref count_in_hyp", file=f)
        for word in sorted((in_ref + in_hyp).keys(), key=lambda w: (-errs[w], w)):
            print(f"{word}   {corr[word]} {errs[word]} {in_ref[word]} {in_hyp[word]}", file=f)


def write_wer_summary(path: Path, rows: Mapping[str, WerStats]) -> None:
    """icefall's wer-summary-*.txt: one line per decoding setting, best WER first."""
    with atomic_output(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        print("settings\tWER", file=f)
        for name, stats in sorted(rows.items(), key=lambda kv: (kv[1].wer, kv[0])):
            print(f"{name}\t{stats.wer:.2f}", file=f)


def _align_all(utts: Sequence[Utterance]) -> list[Alignment]:
    """Align every utterance with one jiwer call (it builds its word table once)."""
    for u in utts:
        _check_words(u.cut_id, u.ref)
        _check_words(u.cut_id, u.hyp)
    # jiwer refuses empty references; aligning one is trivial: all insertions.
    alignments = [[(EPS, w) for w in u.hyp] for u in utts]
    scored = [i for i, u in enumerate(utts) if u.ref]
    if scored:
        out = jiwer.process_words([" ".join(utts[i].ref) for i in scored], [" ".join(utts[i].hyp) for i in scored])
        for i, chunks in zip(scored, out.alignments):
            alignments[i] = [pair for chunk in chunks for pair in _chunk_pairs(chunk, utts[i].ref, utts[i].hyp)]
    return alignments


def _chunk_pairs(chunk: jiwer.AlignmentChunk, ref: list[str], hyp: list[str]) -> Alignment:
    ref_words = ref[chunk.ref_start_idx:chunk.ref_end_idx]
    hyp_words = hyp[chunk.hyp_start_idx:chunk.hyp_end_idx]
    if chunk.type == "insert":
        return [(EPS, w) for w in hyp_words]
    if chunk.type == "delete":
        return [(w, EPS) for w in ref_words]
    return list(zip(ref_words, hyp_words, strict=True))  # "equal" or "substitute"


def _check_words(cut_id: str, words: list[str]) -> None:
    """Reject words jiwer would re-split or that would read as an alignment gap (as Kaldi does)."""
    for w in words:
        if w.split() != [w] or w == EPS:  # empty, or contains whitespace, or is EPS
            raise ValueError(f"{cut_id}: invalid word {w!r}: words must be non-empty, "
                             f"without whitespace and not {EPS!r}")


def _edit_type(ref_word: str, hyp_word: str) -> str:
    if ref_word == hyp_word:
        return "cor"
    if ref_word == EPS:
        return "ins"
    if hyp_word == EPS:
        return "del"
    return "sub"


def _by_cut_id(utts: Sequence[Utterance]) -> list[Utterance]:
    return sorted(utts, key=lambda u: u.cut_id)


def _most_frequent_first(counts: Counter) -> list[tuple]:
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
