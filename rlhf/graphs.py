"""Decoding graphs with k2: the lexicon L, the CTC topology H and HLG = H o L o G.

Conventions (those of ``rlhf.lang.prepare_lang`` and icefall):

* token ids come from ``tokens.txt``; 0 is the CTC blank, and the acoustic model has
  one output per line of it, so disambiguation symbols are *not* in ``tokens.txt``:
  token-side ``#k`` gets the id ``max_token_id + 1 + k`` while graphs are built, and
  those ids are gone from the final graph;
* word ids come from ``words.txt``; ``#0`` is G's back-off symbol, and every word id
  from ``#0`` on (``#0``, ``<s>``, ``</s>``) is removed from LG;
* HLG's ``labels`` are token ids (0 = blank, -1 on arcs to the final state), its
  ``aux_labels`` a ragged tensor of word ids (a determinized LG may put zero, one or
  several words on an arc), and its ``tokens`` attribute the token H emitted.
"""

import logging
from collections import Counter
from pathlib import Path
from typing import Union

import k2
import torch

from rlhf.stage import save_torch

Lexicon = list[tuple[str, list[str]]]
DISAMBIG_PREFIX = "#"
BACKOFF_SYMBOL = "#0"


def read_symbols(path: Path) -> dict[str, int]:
    """Read a ``<symbol> <id>`` table (tokens.txt, words.txt) into a dict.

    Duplicate symbols or ids would silently corrupt a graph, so they are errors.
    """
    table: dict[str, int] = {}
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        fields = line.split()
        if len(fields) != 2 or not fields[1].lstrip("-").isdigit():
            raise ValueError(f"{path}:{n}: expected '<symbol> <id>', got {line!r}")
        if fields[0] in table:
            raise ValueError(f"{path}:{n}: duplicate symbol {fields[0]!r}")
        table[fields[0]] = int(fields[1])
    if len(set(table.values())) != len(table):
        raise ValueError(f"{path}: duplicate ids")
    return table


def read_lexicon(path: Path) -> Lexicon:
    """Read ``<word> <piece> <piece> ...`` lines, in file order (the order Kaldi's disambiguation numbers follow)."""
    lexicon: Lexicon = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        word, *pieces = line.split()
        if not pieces:
            raise ValueError(f"{path}:{n}: word {word!r} has no pronunciation")
        lexicon.append((word, pieces))
    return lexicon


def add_disambig_symbols(lexicon: Lexicon) -> tuple[Lexicon, int]:
    """Append ``#1``, ``#2``, ... so that no pronunciation equals or prefixes another (Kaldi's add_lex_disambig.pl).

    Without them L is not determinizable: after a shared or prefix token sequence,
    the word would stay undecided for ever. ``#0`` is left for G's back-off arcs.
    Returns the new lexicon and the largest k used (0 when none was needed).
    """
    count = Counter(tuple(pieces) for _, pieces in lexicon)
    prefixes = {tuple(pieces[:i]) for _, pieces in lexicon for i in range(1, len(pieces))}
    last_used: dict[tuple[str, ...], int] = {}
    out: Lexicon = []
    for word, pieces in lexicon:
        seq = tuple(pieces)
        if count[seq] == 1 and seq not in prefixes:
            out.append((word, list(pieces)))
            continue
        last_used[seq] = last_used.get(seq, 0) + 1
        out.append((word, [*pieces, f"{DISAMBIG_PREFIX}{last_used[seq]}"]))
    return out, max(last_used.values(), default=0)


def disambig_token_id(symbol: str, token_ids: dict[str, int]) -> int:
    """Id of token-side ``#k``: after the largest real token id, so tokens.txt stays the model's output set."""
    return max(token_ids.values()) + 1 + int(symbol[len(DISAMBIG_PREFIX):])


def _token_id(piece: str, token_ids: dict[str, int]) -> int:
    if piece in token_ids:
        return token_ids[piece]
    if piece.startswith(DISAMBIG_PREFIX) and piece[len(DISAMBIG_PREFIX):].isdigit():
        return disambig_token_id(piece, token_ids)
    raise ValueError(f"lexicon piece {piece!r} is not in the token table")


def lexicon_fst(lexicon_disambig: Lexicon, token_ids: dict[str, int], word_ids: dict[str, int]) -> k2.Fsa:
    """L_disambig: a transducer from token ids to word ids, one loop per word through state 0.

    The word is output on its first token so that composition with G can prune early.
    No optional silence (BPE has none). State 0 also carries a token-#0 : word-#0
    self-loop, so that G's back-off arcs (#0 on the word side) survive L o G and
    keep LG determinizable. Arcs are returned arc-sorted.
    """
    if word_ids.get("<eps>") != 0:
        raise ValueError("words.txt must map <eps> to 0")
    loop, next_state = 0, 1
    arcs: list[tuple[int, int, int, int]] = []
    for word, pieces in lexicon_disambig:
        if word not in word_ids:
            raise ValueError(f"lexicon word {word!r} is not in the word table")
        ids = [_token_id(p, token_ids) for p in pieces]
        src = loop
        for i, token in enumerate(ids):
            dst = loop if i == len(ids) - 1 else next_state
            arcs.append((src, dst, token, word_ids[word] if i == 0 else 0))
            if dst != loop:
                src, next_state = dst, next_state + 1
    arcs.append((loop, loop, disambig_token_id(BACKOFF_SYMBOL, token_ids), word_ids[BACKOFF_SYMBOL]))
    final = next_state
    arcs.append((loop, final, -1, -1))
    lines = [f"{s} {d} {t} {w} 0" for s, d, t, w in sorted(arcs, key=lambda a: a[0])] + [str(final)]
    return k2.arc_sort(k2.Fsa.from_str("\n".join(lines), acceptor=False))


def ctc_topo_graph(max_token_id: int, modified: bool = False) -> k2.Fsa:
    """H: the (standard or modified) CTC topology over ids 0..max_token_id, arc-sorted for composition."""
    return k2.arc_sort(k2.ctc_topo(max_token_id, modified=modified))


def _log_shape(name: str, fsa: k2.Fsa) -> None:
    logging.info("%s: %d states, %d arcs", name, fsa.shape[0], fsa.num_arcs)


def _remove_disambig(lg: k2.Fsa, first_token_disambig: int, first_word_disambig: int) -> k2.Fsa:
    """Turn disambiguation ids into epsilons on both sides, now that determinization no longer needs them."""
    # Assigning .labels (rather than editing in place) makes k2 recompute the FSA's
    # cached properties; in-place edits leave them stale (k2 issue #874).
    lg.labels = torch.where(lg.labels >= first_token_disambig, torch.zeros_like(lg.labels), lg.labels)
    aux = lg.aux_labels
    if isinstance(aux, torch.Tensor):  # determinize keeps a plain tensor when no arc got several words
        lg.aux_labels = torch.where(aux >= first_word_disambig, torch.zeros_like(aux), aux)
        return lg
    values = torch.where(aux.values >= first_word_disambig, torch.zeros_like(aux.values), aux.values)
    lg.aux_labels = k2.RaggedTensor(aux.shape, values)
    return lg


def compile_lg(lexicon: Lexicon, token_ids: dict[str, int], word_ids: dict[str, int], G: k2.Fsa) -> k2.Fsa:
    """det(L o G) without disambiguation symbols or epsilons, arc-sorted, ready for H.

    k2.remove_epsilon keeps only the best path between two states, whatever its words:
    of two homophones leading to the same G state only the likelier survives (harmless
    for BPE or word lexicons, which have no homophones, and for 1-best decoding).
    """
    lexicon_disambig, max_disambig = add_disambig_symbols(lexicon)
    logging.info("Lexicon: %d words, disambiguation symbols #1..#%d", len(lexicon), max_disambig)
    L = lexicon_fst(lexicon_disambig, token_ids, word_ids)
    _log_shape("L_disambig", L)
    _log_shape("G", G)
    LG = k2.connect(k2.compose(L, k2.arc_sort(G)))
    _log_shape("L o G (connected)", LG)
    LG = k2.connect(k2.determinize(LG))
    _log_shape("det(LG)", LG)
    LG = _remove_disambig(LG, disambig_token_id(BACKOFF_SYMBOL, token_ids), word_ids[BACKOFF_SYMBOL])
    LG = k2.connect(k2.remove_epsilon(LG))
    LG.aux_labels = LG.aux_labels.remove_values_eq(0)
    LG = k2.arc_sort(LG)
    _log_shape("LG (no disambig, no epsilons)", LG)
    return LG


def compose_hlg(H: k2.Fsa, LG: k2.Fsa) -> k2.Fsa:
    """H o LG, matching H's epsilon outputs (blanks, repeats) with explicit epsilon self-loops on LG.

    With the self-loops, composition treats 0 as an ordinary symbol, which is the
    algorithm that also runs on GPU and gives one HLG arc per frame consumed.
    """
    LG = k2.arc_sort(k2.add_epsilon_self_loops(LG))
    HLG = k2.compose(H, LG, treat_epsilons_specially=False, inner_labels="tokens")
    HLG = k2.arc_sort(k2.connect(HLG))
    _log_shape("HLG", HLG)
    return HLG


def load_g(g_path: Path) -> k2.Fsa:
    """G from kaldilm's OpenFst text (transducer lines ``src dst ilabel olabel [cost]``; costs become scores)."""
    return k2.Fsa.from_openfst(Path(g_path).read_text(encoding="utf-8"), acceptor=False)


def compile_hlg(lang_dir: Path, g_path: Path, modified_ctc_topo: bool = False) -> k2.Fsa:
    """HLG of a lang dir (tokens.txt, words.txt, lexicon.txt) and a word-level G (OpenFst text)."""
    lang_dir = Path(lang_dir)
    token_ids = read_symbols(lang_dir / "tokens.txt")
    word_ids = read_symbols(lang_dir / "words.txt")
    if token_ids.get("<blk>") != 0:
        raise ValueError(f"{lang_dir}/tokens.txt: the CTC blank <blk> must have id 0")
    if BACKOFF_SYMBOL not in word_ids:
        raise ValueError(f"{lang_dir}/words.txt has no {BACKOFF_SYMBOL}")
    LG = compile_lg(read_lexicon(lang_dir / "lexicon.txt"), token_ids, word_ids, load_g(g_path))
    H = ctc_topo_graph(max(token_ids.values()), modified=modified_ctc_topo)
    _log_shape("H (modified)" if modified_ctc_topo else "H", H)
    return compose_hlg(H, LG)


def fsa_to_dict(fsa: k2.Fsa) -> dict:
    """``fsa.as_dict()`` with its attributes in name order. k2 keeps them in the order they were set,
    which after its operations can depend on the process (set iteration under hash randomization), so
    the same FSA saved twice could differ in bytes. ``k2.Fsa.from_dict`` reads it as usual."""
    d = fsa.as_dict()
    return {"arcs": d.pop("arcs"), **{name: d[name] for name in sorted(d)}}


def save_graph(fsa: k2.Fsa, path: Path) -> None:
    """torch.save the FSA's dict, atomically: a crash never leaves a truncated graph."""
    save_torch(fsa_to_dict(fsa), Path(path))


def load_graph(path: Path, device: Union[str, torch.device] = "cpu") -> k2.Fsa:
    """A graph saved by save_graph, on ``device``."""
    return k2.Fsa.from_dict(torch.load(path, map_location="cpu")).to(device)
