"""The lang dir: a sentencepiece model (or word units) and icefall's tokens.txt, words.txt, lexicon.txt.
"""

import io
import logging
from pathlib import Path
from typing import Iterable, Sequence

import sentencepiece as spm
from lhotse import load_manifest_lazy

from rlhf.stage import StageMarker, atomic_output

BLANK, SOS_EOS, UNK_PIECE = "<blk>", "<sos/eos>", "<unk>"
UNK_WORD = "<UNK>"


def read_transcripts(supervisions: Path) -> list[str]:
    """Transcripts of a supervision manifest, in order (whitespace normalised)."""
    texts = [" ".join(s.text.split()) for s in load_manifest_lazy(supervisions)]
    if not texts:
        raise ValueError(f"{supervisions}: no supervisions")
    return texts


def train_bpe(texts: Sequence[str], vocab_size: int, model_type: str = "bpe") -> bytes:
    """A sentencepiece model (its serialized bytes) trained on ``texts``; the same bytes for the same
    transcripts. Trained from memory: a model trained from files records the input file and the
    output prefix in its trainer spec, and the prefix was a temporary directory's random name."""
    model = io.BytesIO()
    spm.set_random_generator_seed(1)
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts), model_writer=model, model_type=model_type,
        vocab_size=vocab_size, character_coverage=1.0, input_sentence_size=100_000_000,
        shuffle_input_sentence=False, num_threads=1, user_defined_symbols=[BLANK, SOS_EOS],
        unk_id=2, bos_id=-1, eos_id=-1, minloglevel=2,
    )
    return model.getvalue()


def write_symbols(path: Path, symbols: Iterable[str]) -> None:
    with atomic_output(path) as tmp:
        tmp.write_text("".join(f"{s} {i}\n" for i, s in enumerate(symbols)))


def prepare_lang(supervisions: Path, lang_dir: Path, vocab_size: int, model_type: str = "bpe",
                 force: bool = False) -> None:
    marker = StageMarker(lang_dir, "prepare_lang", {"vocab_size": vocab_size, "model_type": model_type}, [supervisions])
    if marker.skip_if_complete(force):
        return
    texts = read_transcripts(supervisions)
    lang_dir.mkdir(parents=True, exist_ok=True)
    with atomic_output(lang_dir / "transcript_words.txt") as tmp:
        tmp.write_text("".join(t + "\n" for t in texts))

    words = sorted({w for t in texts for w in t.split()})
    if model_type == "word":
        (lang_dir / "bpe.model").unlink(missing_ok=True)
        tokens = [BLANK, SOS_EOS, UNK_PIECE, *words]
        spellings = {w: [w] for w in words}
    else:
        sp = train_sentencepiece(lang_dir, texts, supervisions, vocab_size, model_type)
        tokens = [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
        spellings = {w: sp.encode(w, out_type=str) for w in words}
    write_symbols(lang_dir / "tokens.txt", tokens)
    write_symbols(lang_dir / "words.txt", ["<eps>", UNK_WORD, *words, "#0", "<s>", "</s>"])
    with atomic_output(lang_dir / "lexicon.txt") as tmp:
        lines = [f"{UNK_WORD} {UNK_PIECE}"] + [f"{w} {' '.join(spellings[w])}" for w in words]
        tmp.write_text("\n".join(lines) + "\n")
    marker.write()
    logging.info("Wrote %s: %d tokens (%s), %d words", lang_dir, len(tokens), model_type, len(words))


def train_sentencepiece(lang_dir: Path, texts: Sequence[str], supervisions: Path, vocab_size: int,
                        model_type: str) -> spm.SentencePieceProcessor:
    """Train ``lang_dir/bpe.model`` on the transcripts (those of ``lang_dir/transcript_words.txt``)."""
    try:
        model = train_bpe(texts, vocab_size, model_type)
    except RuntimeError as e:
        raise ValueError(f"sentencepiece could not train a {vocab_size}-piece model on {supervisions}: {e}. "
                         f"Choose a smaller --bpe-vocab-size.") from e
    with atomic_output(lang_dir / "bpe.model") as tmp:
        tmp.write_bytes(model)
    sp = spm.SentencePieceProcessor(model_file=str(lang_dir / "bpe.model"))
    assert sp.id_to_piece(0) == BLANK, "the CTC blank must be token 0"
    return sp
