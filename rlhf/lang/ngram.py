"""Word n-gram language model with interpolated Kneser-Ney smoothing, written as ARPA.

Pure Python, so a recipe can build its decoding LM without SRILM or KenLM.

Counting follows the usual KN recipe with one absolute discount per order: the
highest order uses raw counts; lower orders use continuation counts N1+(. g),
the number of distinct words seen before g, except n-grams starting with
``<s>``, which keep raw counts because nothing can precede ``<s>``.
The interpolated model is stored in backoff form (probabilities of seen
n-grams plus backoff weights gamma(h)), so an ARPA reader reproduces it exactly.
"""

import math
import os
import tempfile
from collections import Counter, defaultdict
from pathlib import Path
from typing import Iterable, Optional, Sequence

BOS = "<s>"
EOS = "</s>"
BOS_LOG10_PROB = -99.0  # ARPA convention: <s> is never predicted
Ngram = tuple[str, ...]


class NgramLM:
    """A backoff n-gram LM: log10 probabilities per order and log10 backoff weights.

    ``probs[k][g]`` holds log10 p(g[-1] | g[:-1]) for the listed (k+1)-grams ``g``;
    ``bows[h]`` holds log10 gamma(h) for n-grams ``h`` that are histories.
    """

    def __init__(self, order: int, probs: list[dict[Ngram, float]], bows: dict[Ngram, float]) -> None:
        if len(probs) != order:
            raise ValueError(f"expected {order} probability tables, got {len(probs)}")
        self.order = order
        self._probs = probs
        self._bows = bows

    def log10_prob(self, word: str, history: Sequence[str]) -> float:
        """log10 p(word | history) by the standard ARPA backoff over the stored tables.

        Only the last ``order - 1`` history words are used. A word missing from the
        unigram table gets ``-inf``: callers map out-of-vocabulary words (e.g. to
        ``<unk>``) themselves, as in any ARPA reader.
        """
        hist: Ngram = tuple(history)
        hist = hist[max(0, len(hist) - (self.order - 1)) :]
        total = 0.0
        while True:
            ngram = hist + (word,)
            logp = self._probs[len(ngram) - 1].get(ngram)
            if logp is not None:
                return total + logp
            if not hist:
                return -math.inf
            total += self._bows.get(hist, 0.0)
            hist = hist[1:]

    def num_ngrams(self) -> list[int]:
        """Number of listed n-grams per order (index 0 = unigrams, including ``<s>``)."""
        return [len(table) for table in self._probs]

    def write_arpa(self, path: Path) -> None:
        """Write the model in ARPA format, atomically (temp file in the same directory, then rename).

        Entries are sorted, so the same model always gives a byte-identical file.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = ["\\data\\"]
        lines += [f"ngram {k + 1}={n}" for k, n in enumerate(self.num_ngrams())]
        for k, table in enumerate(self._probs):
            lines += ["", f"\\{k + 1}-grams:"]
            for ngram in sorted(table):
                line = f"{table[ngram]:.7f}\t{' '.join(ngram)}"
                if k + 1 < self.order and ngram in self._bows:
                    line += f"\t{self._bows[ngram]:.7f}"
                lines.append(line)
        lines += ["", "\\end\\", ""]
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
                f.write("\n".join(lines))
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise


def _discount(counts: Iterable[int]) -> float:
    """Absolute discount D = n1 / (n1 + 2 n2), clamped to [0.05, 0.95] so tiny corpora work."""
    count_of_counts = Counter(counts)
    n1, n2 = count_of_counts[1], count_of_counts[2]
    if n1 == 0:
        return 0.5
    return min(max(n1 / (n1 + 2 * n2), 0.05), 0.95)


def _check_word(word: str) -> None:
    """Reject tokens that would corrupt the ARPA file or the sentence boundaries."""
    if not word or any(ch.isspace() for ch in word):
        raise ValueError(f"invalid word {word!r}: words must be non-empty and contain no whitespace")
    if word in (BOS, EOS):
        raise ValueError(f"sentences must not contain {word}: boundaries are added automatically")


def _count(sentences: Iterable[Sequence[str]], order: int) -> tuple[list[Counter[Ngram]], int]:
    """Raw counts of every n-gram of length 1..order in ``<s> w1 .. wn </s>``; also the sentence count."""
    raw: list[Counter[Ngram]] = [Counter() for _ in range(order)]
    num_sentences = 0
    for sentence in sentences:
        words = list(sentence)
        for word in words:
            _check_word(word)
        padded = [BOS, *words, EOS]
        for n in range(1, order + 1):
            for i in range(len(padded) - n + 1):
                raw[n - 1][tuple(padded[i : i + n])] += 1
        num_sentences += 1
    return raw, num_sentences


def _kn_counts(raw: list[Counter[Ngram]]) -> list[dict[Ngram, int]]:
    """Counts each order uses: raw at the top order and for ``<s>``-initial n-grams, else N1+(. g)."""
    order = len(raw)
    counts: list[dict[Ngram, int]] = []
    for k in range(order):
        if k == order - 1:
            counts.append(dict(raw[k]))
            continue
        left_contexts: Counter[Ngram] = Counter(ngram[1:] for ngram in raw[k + 1])
        counts.append({g: (c if g[0] == BOS else left_contexts[g]) for g, c in raw[k].items()})
    counts[0].pop((BOS,), None)  # <s> is never predicted
    return counts


def estimate_kneser_ney(
    sentences: Iterable[Sequence[str]], order: int = 3, vocab: Optional[Iterable[str]] = None
) -> NgramLM:
    """Estimate an interpolated Kneser-Ney n-gram LM of the given order.

    ``sentences`` are word sequences without ``<s>``/``</s>``; ``vocab`` adds words
    (e.g. ``<unk>``) that get probability mass from the uniform floor of the unigram level.
    """
    if order < 1:
        raise ValueError(f"n-gram order must be >= 1, got {order}")
    raw, num_sentences = _count(sentences, order)
    if num_sentences == 0:
        raise ValueError("cannot estimate an n-gram LM from no sentences")
    counts = _kn_counts(raw)

    vocabulary = {g[0] for g in counts[0]} | {EOS} | set(vocab or ())
    vocabulary.discard(BOS)
    for word in vocabulary - {EOS}:
        _check_word(word)

    # Unigrams: discounted continuation counts interpolated with the uniform distribution.
    d1 = _discount(counts[0].values())
    total1 = sum(counts[0].values())
    floor = d1 * len(counts[0]) / total1 / len(vocabulary)
    linear: dict[Ngram, float] = {
        (w,): max(counts[0].get((w,), 0) - d1, 0.0) / total1 + floor for w in vocabulary
    }
    probs: list[dict[Ngram, float]] = [{g: math.log10(p) for g, p in linear.items()}]
    probs[0][(BOS,)] = BOS_LOG10_PROB
    bows: dict[Ngram, float] = {}

    for k in range(1, order):
        d = _discount(counts[k].values())
        context_total: defaultdict[Ngram, int] = defaultdict(int)
        context_types: defaultdict[Ngram, int] = defaultdict(int)
        for ngram, c in counts[k].items():
            context_total[ngram[:-1]] += c
            context_types[ngram[:-1]] += 1
        gamma = {h: d * context_types[h] / total for h, total in context_total.items()}
        lower = linear
        linear = {
            g: max(c - d, 0.0) / context_total[g[:-1]] + gamma[g[:-1]] * lower[g[1:]]
            for g, c in counts[k].items()
        }
        probs.append({g: math.log10(p) for g, p in linear.items()})
        bows.update((h, math.log10(w)) for h, w in gamma.items())
    return NgramLM(order, probs, bows)
