"""HLG compilation: disambiguation symbols, a hand-made lexicon and G, and a real tiny lang dir."""

import logging
from pathlib import Path
from typing import Optional

import k2
import pytest
import torch
from lhotse import SupervisionSegment, SupervisionSet

from rlhf.graphs import (add_disambig_symbols, compile_hlg, compile_lg, compose_hlg, ctc_topo_graph, lexicon_fst,
                         load_g, load_graph, read_lexicon, read_symbols, save_graph)
from rlhf.lang.compile_hlg import compile_hlg_step
from rlhf.lang.prepare_lang import prepare_lang
from rlhf.lang.train_lm import train_lm

TOKENS = ["<blk>", "<sos/eos>", "<unk>", "A", "B", "C", "D"]
WORDS = ["<eps>", "<UNK>", "baa", "cab", "cat", "dog", "read", "red", "#0", "<s>", "</s>"]
LEXICON = """\
<UNK> <unk>
baa B A A
cab A B C
cat A B
dog D
read C D
red C D
"""
# A bigram in kaldilm's format: 0 is the <s> state, 1 the unigram (back-off) state,
# 2 the history "cat"; 8 is #0 on back-off arcs; costs are -log p.
G_TXT = """\
0 2 4 4 0.7
0 1 8 8 0.3
1 2 4 4 2.0
1 1 3 3 2.0
1 1 2 2 2.2
1 1 5 5 2.0
1 1 6 6 1.5
1 1 7 7 2.5
1 1 1 1 4.0
2 1 5 5 0.3
2 1 8 8 0.4
1 1.2
2 1.0
"""
A, B, C, D, UNK = 3, 4, 5, 6, 2
W = {w: i for i, w in enumerate(WORDS)}


@pytest.fixture(scope="module")
def toy_lang(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("toy_lang")
    (d / "tokens.txt").write_text("".join(f"{t} {i}\n" for i, t in enumerate(TOKENS)))
    (d / "words.txt").write_text("".join(f"{w} {i}\n" for i, w in enumerate(WORDS)))
    (d / "lexicon.txt").write_text(LEXICON)
    (d / "G.fst.txt").write_text(G_TXT)
    return d


@pytest.fixture(scope="module")
def toy_hlg(toy_lang) -> k2.Fsa:
    return compile_hlg(toy_lang, toy_lang / "G.fst.txt")


def decode(HLG: k2.Fsa, frames: list[int]) -> Optional[tuple[list[int], float]]:
    """Best word sequence and score of HLG on one CTC label per frame (None if HLG rejects it).

    The blank 0 is a real input symbol here, so epsilons must not be treated specially.
    """
    lattice = k2.connect(k2.intersect(k2.linear_fsa(frames), HLG, treat_epsilons_specially=False))
    if lattice.num_arcs == 0:
        return None
    best = k2.shortest_path(k2.create_fsa_vec([lattice]), use_double_scores=True)
    return best.aux_labels.values.tolist(), float(best.scores.sum())


def test_read_symbols_and_lexicon(toy_lang):
    assert read_symbols(toy_lang / "tokens.txt") == {t: i for i, t in enumerate(TOKENS)}
    assert read_lexicon(toy_lang / "lexicon.txt")[:3] == [("<UNK>", ["<unk>"]), ("baa", ["B", "A", "A"]),
                                                         ("cab", ["A", "B", "C"])]


def test_read_symbols_rejects_duplicates(tmp_path):
    (tmp_path / "t.txt").write_text("a 0\nb 0\n")
    with pytest.raises(ValueError, match="duplicate ids"):
        read_symbols(tmp_path / "t.txt")


def test_disambig_symbols_for_homophones_and_prefixes():
    lexicon = [("a", ["x"]), ("ab", ["x", "y"]), ("abc", ["x", "y", "z"]), ("b", ["x"]), ("c", ["w"]),
               ("d", ["x", "y"]), ("e", ["v", "w"])]
    out, max_disambig = add_disambig_symbols(lexicon)
    assert out == [("a", ["x", "#1"]), ("ab", ["x", "y", "#1"]), ("abc", ["x", "y", "z"]), ("b", ["x", "#2"]),
                   ("c", ["w"]), ("d", ["x", "y", "#2"]), ("e", ["v", "w"])]
    assert max_disambig == 2
    assert lexicon[0] == ("a", ["x"]), "the input lexicon is not modified"


def test_no_disambig_symbols_when_none_needed():
    lexicon = [("a", ["x"]), ("b", ["y", "x"])]
    assert add_disambig_symbols(lexicon) == (lexicon, 0)


def test_lexicon_fst_puts_disambig_tokens_after_the_real_ones(toy_lang):
    tokens, words = read_symbols(toy_lang / "tokens.txt"), read_symbols(toy_lang / "words.txt")
    L = lexicon_fst(add_disambig_symbols(read_lexicon(toy_lang / "lexicon.txt"))[0], tokens, words)
    # #0 = 7 (self-loop for G's back-off), #1 = 8 (cat, read), #2 = 9 (red)
    assert sorted(set(L.labels.tolist())) == [-1, 2, 3, 4, 5, 6, 7, 8, 9]
    assert sorted(set(L.aux_labels.tolist())) == [-1, 0, 1, 2, 3, 4, 5, 6, 7, 8]
    loop = (L.labels == 7).nonzero().flatten().tolist()
    assert len(loop) == 1 and L.aux_labels[loop[0]] == W["#0"]
    assert (L.arcs.values()[loop[0], :2] == 0).all(), "#0:#0 is a self-loop on the start/loop state"
    # 7 entries of 1+3+3+3+1+3+3 tokens (with #k): 17 arcs and 10 inner states; the #0 loop, the final arc
    assert (L.shape[0], L.num_arcs) == (12, 19)


@pytest.mark.parametrize("frames, words, cost", [
    ([0, A, A, 0, B, D, D, 0], ["cat", "dog"], 0.7 + 0.3 + 1.2),  # bigram "cat dog"; blanks and repeats
    ([A, B, B, C], ["cab"], 0.3 + 2.0 + 1.2),                      # back-off, then unigram
    ([A, 0, B], ["cat"], 0.7 + 1.0),                               # final weight of state 2
    ([B, A, 0, A], ["baa"], 0.3 + 2.2 + 1.2),                      # a repeated token needs a blank between
    ([C, D], ["read"], 0.3 + 1.5 + 1.2),                           # the better homophone
    ([UNK, 0], ["<UNK>"], 0.3 + 4.0 + 1.2),
    ([0, 0, 0], [], 0.3 + 1.2),                                    # all blanks: the empty sentence
])
def test_hlg_decodes_ctc_label_sequences(toy_hlg, frames, words, cost):
    best = decode(toy_hlg, frames)
    assert best is not None
    assert [WORDS[w] for w in best[0]] == words
    assert best[1] == pytest.approx(-cost, abs=1e-5)


@pytest.mark.parametrize("frames", [[B, A, A], [A, C], [1, D], [D, 0, D, A]])
def test_hlg_rejects_what_neither_ctc_nor_the_lexicon_allows(toy_hlg, frames):
    assert decode(toy_hlg, frames) is None


def test_modified_ctc_topo_needs_no_blank_between_repeats(toy_lang):
    HLG = compile_hlg(toy_lang, toy_lang / "G.fst.txt", modified_ctc_topo=True)
    assert decode(HLG, [B, A, A]) == pytest.approx(([W["baa"]], -(0.3 + 2.2 + 1.2)), abs=1e-5)


def test_hlg_has_no_disambig_symbols(toy_hlg):
    assert toy_hlg.properties & k2.fsa_properties.ARC_SORTED
    assert set(toy_hlg.labels.tolist()) == {-1, 0, UNK, A, B, C, D}, "no #k token ids (>= 7), no <sos/eos>"
    is_final_arc = toy_hlg.labels == -1
    assert (toy_hlg.arcs.values()[is_final_arc, 1] == toy_hlg.shape[0] - 1).all()
    # Word ids only: no #0 (8), <s>, </s>, epsilons or -1. "red" is gone too: it and "read"
    # link the same two LG states, and k2.remove_epsilon (tropical) keeps only the best path.
    assert set(toy_hlg.aux_labels.values.tolist()) == {W[w] for w in ("<UNK>", "baa", "cab", "cat", "dog", "read")}
    assert (toy_hlg.shape[0], toy_hlg.num_arcs) == (22, 92)


def test_epsilon_self_loop_trick_equals_composition_with_special_epsilons(toy_lang, toy_hlg):
    tokens, words = read_symbols(toy_lang / "tokens.txt"), read_symbols(toy_lang / "words.txt")
    LG = compile_lg(read_lexicon(toy_lang / "lexicon.txt"), tokens, words, load_g(toy_lang / "G.fst.txt"))
    H = ctc_topo_graph(max(tokens.values()))
    assert (H.shape[0], H.num_arcs) == (8, 7 * 8)  # a state per symbol 0..6, each with 7 arcs and a final arc
    special = k2.arc_sort(k2.connect(k2.compose(H, LG, inner_labels="tokens")))
    assert torch.equal(compose_hlg(H, LG).arcs.values(), special.arcs.values())
    assert torch.equal(toy_hlg.arcs.values(), special.arcs.values())


def test_save_and_load_graph(tmp_path, toy_hlg):
    save_graph(toy_hlg, tmp_path / "HLG.pt")
    assert [p.name for p in tmp_path.iterdir()] == ["HLG.pt"], "no temporary left behind"
    loaded = load_graph(tmp_path / "HLG.pt")
    assert torch.equal(loaded.arcs.values(), toy_hlg.arcs.values())
    assert loaded.aux_labels.tolist() == toy_hlg.aux_labels.tolist()
    assert decode(loaded, [0, A, A, 0, B, D, D, 0])[0] == [W["cat"], W["dog"]]


TRANSCRIPTS = ["the cat sat on the mat", "the dog sat", "a cat and a dog", "the mat is red", "a red cat ran",
               "the dog ran on the mat", "a cat is on a dog"]


@pytest.fixture(scope="module")
def tiny_lang(tmp_path_factory) -> tuple[Path, Path]:
    """A lang dir and a 3-gram G made by the recipe's own steps on seven sentences."""
    root = tmp_path_factory.mktemp("tiny")
    sups = SupervisionSet.from_segments(
        SupervisionSegment(id=f"u{i}", recording_id=f"r{i}", start=0.0, duration=1.0, text=t)
        for i, t in enumerate(TRANSCRIPTS))
    sups.to_file(root / "sups.jsonl.gz")
    lang_dir, lm_dir = root / "lang_bpe_20", root / "lm"
    prepare_lang(root / "sups.jsonl.gz", lang_dir, vocab_size=20)
    train_lm(lang_dir, lm_dir, order=3)
    return lang_dir, lm_dir / "G_3_gram.fst.txt"


def ctc_frames(token_ids: list[int]) -> list[int]:
    """A CTC alignment of a token sequence: each token twice, a blank between tokens and around."""
    frames = [0]
    for t in token_ids:
        frames += [t, t, 0]
    return frames


def test_hlg_of_a_real_lang_dir_and_its_marker(tiny_lang, caplog):
    lang_dir, g = tiny_lang
    compile_hlg_step(lang_dir, g)
    hlg_pt = lang_dir / "HLG.pt"
    HLG = load_graph(hlg_pt)
    tokens, words = read_symbols(lang_dir / "tokens.txt"), read_symbols(lang_dir / "words.txt")
    assert len(tokens) == 20
    assert HLG.properties & k2.fsa_properties.ARC_SORTED
    assert HLG.labels.max() < len(tokens) and HLG.labels.min() == -1
    assert set(HLG.aux_labels.values.tolist()) <= set(range(1, words["#0"]))
    lexicon = dict(read_lexicon(lang_dir / "lexicon.txt"))
    id2word = {i: w for w, i in words.items()}
    for text in TRANSCRIPTS:  # BPE spellings start with "▁", so each token sequence has exactly one reading
        frames = ctc_frames([tokens[p] for w in text.split() for p in lexicon[w]])
        assert " ".join(id2word[w] for w in decode(HLG, frames)[0]) == text

    mtime = hlg_pt.stat().st_mtime_ns
    with caplog.at_level(logging.INFO):
        compile_hlg_step(lang_dir, g)
    assert "compile_hlg: already complete" in caplog.text
    assert hlg_pt.stat().st_mtime_ns == mtime

    hlg_pt.unlink()
    compile_hlg_step(lang_dir, g)
    assert torch.equal(load_graph(hlg_pt).arcs.values(), HLG.arcs.values()), "a deleted HLG.pt is redone, identically"


def test_a_second_hlg_from_a_weaker_lm_goes_beside_the_first(tiny_lang, caplog):
    """Stage 5's unigram graph (--out): its own file and marker; HLG.pt, stage 4's, stays as it was."""
    lang_dir, g3 = tiny_lang
    compile_hlg_step(lang_dir, g3)
    hlg3_pt, hlg1_pt = lang_dir / "HLG.pt", lang_dir / "HLG_1gram.pt"
    mtime = hlg3_pt.stat().st_mtime_ns
    train_lm(lang_dir, g3.parent, order=1)
    compile_hlg_step(lang_dir, g3.parent / "G_1_gram.fst.txt", out=hlg1_pt)
    assert hlg3_pt.stat().st_mtime_ns == mtime
    assert (lang_dir / ".compile_hlg_HLG_1gram.done.json").is_file()
    HLG3, HLG1 = load_graph(hlg3_pt), load_graph(hlg1_pt)
    tokens, words = read_symbols(lang_dir / "tokens.txt"), read_symbols(lang_dir / "words.txt")
    lexicon = dict(read_lexicon(lang_dir / "lexicon.txt"))
    scores = {1: 0.0, 3: 0.0}
    for text in TRANSCRIPTS:
        frames = ctc_frames([tokens[p] for w in text.split() for p in lexicon[w]])
        for order, HLG in ((1, HLG1), (3, HLG3)):
            best_words, score = decode(HLG, frames)
            assert best_words == [words[w] for w in text.split()]
            scores[order] += score
    assert scores[1] < scores[3] - 1.0, "the trigram knows the training sentences better than the unigram"

    with caplog.at_level(logging.INFO):
        compile_hlg_step(lang_dir, g3.parent / "G_1_gram.fst.txt", out=hlg1_pt)
    assert "compile_hlg_HLG_1gram: already complete" in caplog.text
    hlg1_pt.unlink()
    compile_hlg_step(lang_dir, g3.parent / "G_1_gram.fst.txt", out=hlg1_pt)
    assert torch.equal(load_graph(hlg1_pt).arcs.values(), HLG1.arcs.values())
