"""Text <-> CTC token ids for a lang dir, whichever unit it uses (BPE pieces or whole words)."""

from pathlib import Path

import sentencepiece as spm

from rlhf.graphs import read_symbols
from rlhf.lang.prepare_lang import UNK_PIECE


class Tokenizer:
    """The CTC output units of a lang dir: id 0 is the blank.

    A lang dir with ``bpe.model`` uses sentencepiece; one without it (``--model-type word``)
    maps each word to one token, as tiny vocabularies such as yesno want.
    """

    def __init__(self, lang_dir: Path):
        lang_dir = Path(lang_dir)
        tokens_txt = lang_dir / "tokens.txt"
        if not tokens_txt.is_file():
            raise FileNotFoundError(f"{tokens_txt} not found: run the lang stage (steps/prepare_lang.sh) first")
        self.lang_dir = lang_dir
        self.tokens = read_symbols(tokens_txt)
        self.id_to_token = {i: t for t, i in self.tokens.items()}
        bpe_model = lang_dir / "bpe.model"
        self.sp = spm.SentencePieceProcessor(model_file=str(bpe_model)) if bpe_model.is_file() else None
        if self.sp is not None and self.sp.get_piece_size() != len(self.tokens):
            raise ValueError(f"{bpe_model} has {self.sp.get_piece_size()} pieces but {tokens_txt} has "
                             f"{len(self.tokens)}: the lang dir is inconsistent; re-run the lang stage with --force true")

    @property
    def vocab_size(self) -> int:
        """Number of CTC outputs, blank included."""
        return len(self.tokens)

    def check_model_outputs(self, num_outputs: int) -> None:
        """Refuse a model whose output layer does not match these tokens (another lang dir's model)."""
        if num_outputs != self.vocab_size:
            raise ValueError(f"the model has {num_outputs} outputs but {self.lang_dir}/tokens.txt has "
                             f"{self.vocab_size} tokens: use the lang dir it was trained with")

    def encode(self, texts: list[str]) -> list[list[int]]:
        if self.sp is not None:
            return self.sp.encode(texts, out_type=int)
        unk = self.tokens[UNK_PIECE]
        return [[self.tokens.get(w, unk) for w in text.split()] for text in texts]

    def decode(self, ids: list[int]) -> str:
        """Token ids (no blanks) to text."""
        if self.sp is not None:
            return self.sp.decode(ids)
        return " ".join(self.id_to_token[i] for i in ids)
