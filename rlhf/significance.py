"""Is a WER difference real? The paired bootstrap over utterances (Bisani & Ney, ICASSP 2004).

Two systems decode the same utterances. Resampling the utterances with replacement, each
resample's WER difference (B - A) is recomputed from the per-utterance error and reference
word counts; the 2.5% and 97.5% quantiles are the 95% interval of the difference, and the
share of resamples in which B makes fewer errors is the "probability of improvement". A
difference whose interval holds zero is not a result. Reads icefall's ``recogs-*.txt``.

Utterances of one speaker are not independent: a change that helps or hurts a voice moves all
of its utterances. Resampling whole speakers instead (``speakers``: a block bootstrap) gives the
interval for new speakers, which is wider when the effect differs from voice to voice.
"""

import ast
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from rlhf.scoring import Utterance, utterance_errors

_RECOGS_LINE = re.compile(r"^(?P<cut>.+?):\t(?P<side>ref|hyp)=(?P<words>\[.*\])$")


def read_recogs(path: Path) -> dict[str, Utterance]:
    """The utterances of an icefall ``recogs-*.txt`` (a ``ref=[...]`` and a ``hyp=[...]`` line per cut)."""
    sides: dict[str, dict[str, list[str]]] = {}
    with open(path, encoding="utf-8") as f:
        for num, line in enumerate(f, 1):
            if not line.strip():
                continue
            m = _RECOGS_LINE.match(line.rstrip("\n"))
            if m is None:
                raise ValueError(f"{path}:{num}: not a recogs line (<cut>:<TAB>ref=[...] or hyp=[...]): {line.strip()!r}")
            sides.setdefault(m["cut"], {})[m["side"]] = [str(w) for w in ast.literal_eval(m["words"])]
    incomplete = [c for c, s in sides.items() if set(s) != {"ref", "hyp"}]
    if incomplete:
        raise ValueError(f"{path}: cut {incomplete[0]} has no {'hyp' if 'ref' in sides[incomplete[0]] else 'ref'} line")
    return {c: Utterance(c, s["ref"], s["hyp"]) for c, s in sides.items()}


@dataclass
class PairedBootstrap:
    num_utts: int
    num_ref_words: int
    wer_a: float                  # percent
    wer_b: float
    low: float                    # 95% interval of wer_b - wer_a, percent (absolute)
    high: float
    prob_b_better: float          # share of resamples where B has fewer errors than A
    num_samples: int
    num_speakers: int = 0         # the speakers resampled (0: utterances were resampled)

    @property
    def difference(self) -> float:
        return self.wer_b - self.wer_a

    @property
    def significant(self) -> bool:
        """The 95% interval of the difference excludes zero."""
        return self.high < 0 or self.low > 0

    def summary(self, name_a: str = "A", name_b: str = "B") -> str:
        relative = 100 * self.difference / self.wer_a if self.wer_a else float("nan")
        return (f"{name_b} vs {name_a}: WER {self.wer_b:.2f} vs {self.wer_a:.2f}, difference {self.difference:+.2f} "
                f"({relative:+.1f}% relative), 95% interval [{self.low:+.2f}, {self.high:+.2f}], "
                f"P({name_b} better) {self.prob_b_better:.3f}; {self.num_utts} utterances, {self.num_ref_words} words, "
                f"{self.num_samples} resamples{f' of {self.num_speakers} speakers' if self.num_speakers else ''}: "
                f"{'significant' if self.significant else 'not significant'}")


def speakers_by_pattern(cuts: list[str], pattern: str) -> dict[str, str]:
    """Each cut's speaker: the first group of ``pattern`` (a regular expression) in its id."""
    regex = re.compile(pattern)
    if regex.groups < 1:
        raise ValueError(f"--speaker-pattern {pattern!r} has no group: put the speaker in parentheses, "
                         f"e.g. '^([^-]+)-'")
    speakers = {}
    for cut in cuts:
        m = regex.search(cut)
        if m is None or not m.group(1):
            raise ValueError(f"--speaker-pattern {pattern!r} finds no speaker in cut id {cut!r}")
        speakers[cut] = m.group(1)
    return speakers


def paired_bootstrap(a: dict[str, Utterance], b: dict[str, Utterance], num_samples: int = 10000,
                     seed: int = 0, speakers: Optional[dict[str, str]] = None) -> PairedBootstrap:
    """Compare system B with system A on the utterances both decoded (the same cuts and references).

    ``speakers`` (cut id -> speaker): resample speakers, each with all of its utterances."""
    if set(a) != set(b):
        only = sorted(set(a) ^ set(b))
        raise ValueError(f"the two systems decoded different utterances ({len(only)} in one only, e.g. {only[0]})")
    cuts = sorted(a)
    if not cuts:
        raise ValueError("no utterances to compare")
    for c in cuts:
        if a[c].ref != b[c].ref:
            raise ValueError(f"cut {c} has different references in the two systems")
    ref_words = np.array([len(a[c].ref) for c in cuts], dtype=np.int64)
    if ref_words.sum() == 0:
        raise ValueError("the references hold no words")
    err_a = np.array(utterance_errors([a[c] for c in cuts]), dtype=np.int64)
    err_b = np.array(utterance_errors([b[c] for c in cuts]), dtype=np.int64)
    units_words, units_diff = ref_words, err_b - err_a
    num_speakers = 0
    if speakers is not None:
        # One unit per speaker: its words and error difference summed over its utterances.
        names = {name: i for i, name in enumerate(sorted({speakers[c] for c in cuts}))}
        index = np.array([names[speakers[c]] for c in cuts])
        units_words = np.bincount(index, weights=ref_words, minlength=len(names))
        units_diff = np.bincount(index, weights=err_b - err_a, minlength=len(names))
        num_speakers = len(names)
    rng = np.random.default_rng(seed)
    samples = rng.integers(0, len(units_words), size=(num_samples, len(units_words)))
    words = units_words[samples].sum(axis=1)
    diff_errors = units_diff[samples].sum(axis=1)
    diffs = 100.0 * diff_errors / np.maximum(words, 1)
    low, high = np.quantile(diffs, [0.025, 0.975])
    return PairedBootstrap(num_utts=len(cuts), num_ref_words=int(ref_words.sum()),
                           wer_a=100.0 * err_a.sum() / ref_words.sum(), wer_b=100.0 * err_b.sum() / ref_words.sum(),
                           low=float(low), high=float(high), prob_b_better=float((diff_errors < 0).mean()),
                           num_samples=num_samples, num_speakers=num_speakers)
