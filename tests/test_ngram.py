"""Tests for the interpolated Kneser-Ney n-gram estimator and its ARPA output."""

import math
import random
from pathlib import Path

import pytest

from rlhf.lang.ngram import estimate_kneser_ney

DETS = ["the", "a"]
NOUNS = ["cat", "dog", "bird"]
VERBS = ["sees", "chases", "sleeps"]


def tiny_corpus(num: int = 30, seed: int = 0) -> list[list[str]]:
    """Sentences from a toy grammar: DET NOUN VERB [DET NOUN]."""
    rng = random.Random(seed)
    sentences = []
    for _ in range(num):
        words = [rng.choice(DETS), rng.choice(NOUNS), rng.choice(VERBS)]
        if words[-1] != "sleeps":
            words += [rng.choice(DETS), rng.choice(NOUNS)]
        sentences.append(words)
    return sentences


def corpus_vocab(sentences: list[list[str]], extra: tuple[str, ...] = ()) -> list[str]:
    """Predictable words: all seen words, </s> and extras (never <s>)."""
    return sorted({w for s in sentences for w in s} | {"</s>"} | set(extra))


HISTORIES = [
    (),
    ("<s>",),
    ("<s>", "the"),
    ("the", "cat"),  # seen
    ("cat", "the"),  # seen bigram history "the" only after backoff
    ("sleeps", "sleeps"),  # unseen
    ("zebra", "dog"),  # unknown first word
    ("zebra", "<unk>"),  # vocab-only word in the history
    ("a", "b", "<s>", "the"),  # longer than order - 1
]


def read_arpa(path: Path) -> tuple[dict[int, int], list[dict[tuple[str, ...], tuple[float, float]]]]:
    """Minimal ARPA reader: declared counts and, per order, n-gram -> (log10 p, log10 bow)."""
    declared: dict[int, int] = {}
    tables: list[dict[tuple[str, ...], tuple[float, float]]] = []
    section = None
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "\\data\\" and lines[-1] == "\\end\\"
    for line in lines[1:-1]:
        if not line.strip():
            continue
        if line.startswith("ngram "):
            k, n = line[len("ngram ") :].split("=")
            declared[int(k)] = int(n)
        elif line.startswith("\\") and line.endswith("-grams:"):
            section = int(line[1 : -len("-grams:")])
            assert section == len(tables) + 1
            tables.append({})
        else:
            assert section is not None
            fields = line.split("\t")
            assert len(fields) in (2, 3)
            ngram = tuple(fields[1].split())
            assert len(ngram) == section and ngram not in tables[-1]
            bow = float(fields[2]) if len(fields) == 3 else 0.0
            tables[-1][ngram] = (float(fields[0]), bow)
    return declared, tables


def arpa_log10_prob(tables, word: str, history: tuple[str, ...]) -> float:
    """Standard ARPA backoff: p(w|h) if listed, else bow(h) + p(w|h[1:])."""
    order = len(tables)
    hist = tuple(history)[max(0, len(history) - (order - 1)) :] if order > 1 else ()
    total = 0.0
    while True:
        entry = tables[len(hist)].get(hist + (word,))
        if entry is not None:
            return total + entry[0]
        assert hist, f"{word} missing from unigrams"
        if hist in tables[len(hist) - 1]:
            total += tables[len(hist) - 1][hist][1]
        hist = hist[1:]


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_distributions_sum_to_one(order: int) -> None:
    sentences = tiny_corpus()
    lm = estimate_kneser_ney(sentences, order=order, vocab=["<unk>"])
    vocab = corpus_vocab(sentences, ("<unk>",))
    for history in HISTORIES:
        total = sum(10 ** lm.log10_prob(w, history) for w in vocab)
        assert total == pytest.approx(1.0, abs=1e-6), history


def test_arpa_round_trip(tmp_path: Path) -> None:
    sentences = tiny_corpus()
    lm = estimate_kneser_ney(sentences, order=3, vocab=["<unk>"])
    path = tmp_path / "lm.arpa"
    lm.write_arpa(path)
    declared, tables = read_arpa(path)

    assert [declared[k] for k in sorted(declared)] == [len(t) for t in tables] == lm.num_ngrams()
    assert sorted(declared) == [1, 2, 3]
    assert tables[0][("<s>",)][0] == -99.0
    assert ("<unk>",) in tables[0]
    # Seen n-grams only: every trigram in the file occurs in the corpus.
    padded = [("<s>", *s, "</s>") for s in sentences]
    seen3 = {p[i : i + 3] for p in padded for i in range(len(p) - 2)}
    assert set(tables[2]) == seen3
    assert all(bow == 0.0 for _, bow in tables[2].values())

    vocab = corpus_vocab(sentences, ("<unk>",))
    histories = list(HISTORIES) + [g for t in tables[:2] for g in t]
    for history in histories:
        for word in vocab:
            expected = lm.log10_prob(word, history)
            got = arpa_log10_prob(tables, word, history)
            assert got == pytest.approx(expected, abs=1e-6), (word, history)
            assert 10**got == pytest.approx(10**expected, abs=1e-6)
    assert list(tmp_path.iterdir()) == [path], "temporary file left behind"


def test_hand_computed_bigram(tmp_path: Path) -> None:
    # <s> a b </s> ; <s> a </s>
    # bigrams (raw): <s> a:2, a b:1, b </s>:1, a </s>:1 -> n1=3, n2=1, D2 = 3/5 = 0.6
    # unigram continuation counts: a:1, b:1, </s>:2 -> n1=2, n2=1, D1 = 0.5; total 4, 3 types, |V| = 3
    # p1(a) = p1(b) = 0.5/4 + 0.5*3/4/3 = 0.25 ; p1(</s>) = 1.5/4 + 0.125 = 0.5
    # history "a": total 2, 2 types, gamma = 0.6 ; history "<s>": total 2, 1 type, gamma = 0.3
    lm = estimate_kneser_ney([["a", "b"], ["a"]], order=2)
    p = lambda w, h: 10 ** lm.log10_prob(w, h)  # noqa: E731
    assert p("b", ["a"]) == pytest.approx(0.4 / 2 + 0.6 * 0.25, abs=1e-12)  # 0.35
    assert p("</s>", ["a"]) == pytest.approx(0.2 + 0.6 * 0.5, abs=1e-12)  # 0.5
    assert p("a", ["a"]) == pytest.approx(0.6 * 0.25, abs=1e-12)  # unseen: backoff, 0.15
    assert p("a", ["<s>"]) == pytest.approx(1.4 / 2 + 0.3 * 0.25, abs=1e-12)  # 0.775
    assert p("</s>", []) == pytest.approx(0.5, abs=1e-12)
    assert lm.num_ngrams() == [4, 4]  # <s> a b </s> ; four seen bigrams

    lm.write_arpa(tmp_path / "lm.arpa")
    _, tables = read_arpa(tmp_path / "lm.arpa")
    assert tables[0][("a",)][1] == pytest.approx(math.log10(0.6), abs=1e-7)
    assert tables[0][("<s>",)][1] == pytest.approx(math.log10(0.3), abs=1e-7)
    assert tables[0][("</s>",)][1] == 0.0  # never a history: no backoff field
    assert tables[1][("a", "b")][0] == pytest.approx(math.log10(0.35), abs=1e-7)


def test_hand_computed_trigram() -> None:
    # Same corpus, order 3. Order-2 counts: "<s> a" keeps its raw count 2 (no left context);
    # a b, b </s>, a </s> get continuation count 1 -> D2 = 0.6 and the bigram model is as above.
    # trigrams: <s> a b, a b </s>, <s> a </s> all once -> n1=3, n2=0 -> D3 = 1 clamped to 0.95
    # history "<s> a": total 2, 2 types, gamma = 0.95
    lm = estimate_kneser_ney([["a", "b"], ["a"]], order=3)
    p = lambda w, h: 10 ** lm.log10_prob(w, h)  # noqa: E731
    assert p("a", ["<s>"]) == pytest.approx(0.775, abs=1e-12)
    assert p("b", ["<s>", "a"]) == pytest.approx(0.05 / 2 + 0.95 * 0.35, abs=1e-12)
    assert p("a", ["<s>", "a"]) == pytest.approx(0.95 * 0.15, abs=1e-12)
    assert lm.num_ngrams() == [4, 4, 3]


def test_deterministic_output(tmp_path: Path) -> None:
    sentences = tiny_corpus(seed=3)
    estimate_kneser_ney(sentences, order=3).write_arpa(tmp_path / "a.arpa")
    estimate_kneser_ney(iter(list(reversed(sentences))), order=3).write_arpa(tmp_path / "b.arpa")
    assert (tmp_path / "a.arpa").read_bytes() == (tmp_path / "b.arpa").read_bytes()


def test_invalid_input() -> None:
    with pytest.raises(ValueError, match="no sentences"):
        estimate_kneser_ney([], order=3)
    with pytest.raises(ValueError, match="order"):
        estimate_kneser_ney([["a"]], order=0)
    with pytest.raises(ValueError):
        estimate_kneser_ney([["a", "<s>"]], order=2)


def test_unk_from_vocab_has_probability() -> None:
    lm = estimate_kneser_ney(tiny_corpus(), order=3, vocab=["<unk>"])
    for history in [(), ("<s>",), ("the", "cat")]:
        logp = lm.log10_prob("<unk>", history)
        assert math.isfinite(logp) and logp < 0.0
    assert lm.log10_prob("never-seen", ["the"]) == -math.inf
