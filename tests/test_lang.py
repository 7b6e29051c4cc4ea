"""Stage 1: BPE lang dir, lexicon and the word n-gram LM as a k2-loadable G."""

import k2
import sentencepiece as spm
from lhotse import load_manifest

from rlhf.lang.ngram import BOS


def read_symbols(path):
    return dict(line.split() for line in path.read_text(encoding="utf-8").splitlines())


def test_bpe_round_trips_every_transcript(tiny_recipe):
    lang = tiny_recipe.data_dir / "lang_bpe_50"
    sp = spm.SentencePieceProcessor(model_file=str(lang / "bpe.model"))
    assert sp.get_piece_size() == 50
    for split in ("train", "dev", "test"):
        for sup in load_manifest(tiny_recipe.data_dir / "manifests" / f"synth_supervisions_{split}.jsonl.gz"):
            ids = sp.encode(sup.text)
            assert sp.decode(ids) == sup.text
            assert 0 not in ids, "the CTC blank must never be a text token"


def test_tokens_words_and_lexicon_are_consistent(tiny_recipe):
    lang = tiny_recipe.data_dir / "lang_bpe_50"
    tokens = read_symbols(lang / "tokens.txt")
    assert tokens["<blk>"] == "0" and len(tokens) == 50
    words = read_symbols(lang / "words.txt")
    assert words["<eps>"] == "0"
    assert {"#0", "<s>", "</s>", "<UNK>"} <= set(words)
    assert sorted(int(i) for i in words.values()) == list(range(len(words)))
    train_words = {w for line in (lang / "transcript_words.txt").read_text().splitlines() for w in line.split()}
    lexicon = {}
    for line in (lang / "lexicon.txt").read_text(encoding="utf-8").splitlines():
        word, *pieces = line.split()
        assert pieces and all(p in tokens for p in pieces), line
        lexicon[word] = pieces
    assert set(lexicon) == train_words | {"<UNK>"}
    assert train_words == set(words) - {"<eps>", "<UNK>", "#0", "<s>", "</s>"}
    sp = spm.SentencePieceProcessor(model_file=str(lang / "bpe.model"))
    assert all(sp.decode_pieces(lexicon[w]) == w for w in train_words)


def test_arpa_lm_is_normalised_and_compiles_to_a_k2_graph(tiny_recipe):
    lm_dir = tiny_recipe.data_dir / "lm"
    arpa = (lm_dir / "lm_3gram.arpa").read_text()
    assert arpa.startswith("\\data\\\nngram 1=") and arpa.rstrip().endswith("\\end\\")
    G = k2.Fsa.from_openfst((lm_dir / "G_3_gram.fst.txt").read_text(), acceptor=False)
    words = read_symbols(tiny_recipe.data_dir / "lang_bpe_50" / "words.txt")
    labels = set(G.labels.tolist()) - {-1, 0}
    assert labels <= {int(i) for i in words.values()}
    assert int(words["#0"]) in labels, "backoff arcs carry the #0 disambiguation symbol"
    assert int(words[BOS]) not in labels, "<s> and </s> become epsilon in G"
    assert G.num_arcs > 100
