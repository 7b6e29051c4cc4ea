"""Rewards from the reference transcript (docs/lattice-rl.md).

``frame``: r(a) = 1 when the arc's CTC label (blank included) equals the reference's forced
alignment at the arc's frame, else 0. Additive over lattice arcs.

``edit``: minus the number of errors. Not additive over lattice arcs, but additive over the
arcs of the product of the lattice's output labels (blanks and repeats are already epsilons
there) with the reference's Levenshtein automaton: 0 for a match, -1 for a substitution,
insertion or deletion. The best product path through a lattice path scores minus its edit
distance to the reference.
"""

from dataclasses import dataclass

import k2
import torch

from rlhf.rl.mdp import arc_fsa_index


def frame_rewards(lattice: k2.Fsa, alignments: list[torch.Tensor]) -> torch.Tensor:
    """Per-arc 0/1 frame rewards (float64) of an FsaVec with a ``frame_idx`` attribute.

    ``alignments[i]`` is the reference's CTC label at every frame of lattice i. Final arcs
    (label -1) earn 0.
    """
    if not hasattr(lattice, "frame_idx"):
        raise ValueError("the lattice has no frame_idx attribute: make it with "
                         "k2.intersect_dense_pruned(..., frame_idx_name='frame_idx')")
    num_fsas = lattice.shape[0]
    if len(alignments) != num_fsas:
        raise ValueError(f"{len(alignments)} alignments for {num_fsas} lattices")
    device = lattice.device
    lengths = torch.tensor([len(a) for a in alignments], dtype=torch.long, device=device)
    offsets = torch.cat([torch.zeros(1, dtype=torch.long, device=device), lengths.cumsum(0)])
    flat = torch.cat([a.to(device=device, dtype=torch.long) for a in alignments]) if num_fsas else \
        torch.zeros(0, dtype=torch.long, device=device)
    arc_fsa = arc_fsa_index(lattice)
    labels = lattice.labels.long()
    frames = lattice.frame_idx.long()
    real = labels >= 0
    out_of_range = real & ((frames < 0) | (frames >= lengths[arc_fsa]))
    if out_of_range.any():
        i = int(arc_fsa[out_of_range][0])
        raise ValueError(f"lattice {i} has arcs at frame {int(frames[out_of_range][0])} but its alignment has "
                         f"{int(lengths[i])} frames: the lattice and the alignment are of different utterances")
    index = torch.where(real, offsets[arc_fsa] + frames, torch.zeros_like(frames))
    return (real & (labels == flat[index] if flat.numel() else torch.zeros_like(real))).to(torch.float64)


@dataclass
class EditProduct:
    """The product of lattices with their references' Levenshtein automata."""
    fsas: k2.Fsa                 # connected, top-sorted FsaVec; state = (lattice state, reference position)
    rewards: torch.Tensor        # [num product arcs] 0 (match, or an arc that outputs nothing) or -1
    lattice_arc: torch.Tensor    # [num product arcs] the lattice arc taken (long), -1 for a deletion


def levenshtein_automaton(reference: list[int], vocabulary: list[int]) -> k2.Fsa:
    """Acceptor over hypothesis labels whose state j means "j reference labels consumed".

    Arcs carry a ``reward`` attribute: j -> j+1 on reference[j] (0, match), on every other label
    of ``vocabulary`` (-1, substitution), on epsilon (-1, deletion); j -> j on every label of
    ``vocabulary`` (-1, insertion). Only the labels the lattice can output are needed.
    """
    m = len(reference)
    vocab = torch.tensor(sorted(set(vocabulary)), dtype=torch.int32)
    ref = torch.tensor(reference, dtype=torch.int32)
    pos = torch.arange(m, dtype=torch.int32)
    rows = []  # (src, dest, label, reward)
    if m:
        rows.append(torch.stack([pos, pos + 1, ref, torch.zeros(m, dtype=torch.int32)], 1))
        rows.append(torch.stack([pos, pos + 1, torch.zeros(m, dtype=torch.int32),
                                 torch.full((m,), -1, dtype=torch.int32)], 1))
        sub_src = pos.repeat_interleave(len(vocab))
        sub_label = vocab.repeat(m)
        keep = sub_label != ref.repeat_interleave(len(vocab))
        rows.append(torch.stack([sub_src[keep], sub_src[keep] + 1, sub_label[keep],
                                 torch.full((int(keep.sum()),), -1, dtype=torch.int32)], 1))
    states = torch.arange(m + 1, dtype=torch.int32)
    ins_src = states.repeat_interleave(len(vocab))
    rows.append(torch.stack([ins_src, ins_src, vocab.repeat(m + 1),
                             torch.full((len(ins_src),), -1, dtype=torch.int32)], 1))
    rows.append(torch.tensor([[m, m + 1, -1, 0]], dtype=torch.int32))
    table = torch.cat(rows)
    table = table[torch.argsort(table[:, 0] * (1 << 20) + table[:, 1], stable=True)]
    arcs = torch.cat([table[:, :3], torch.zeros(len(table), 1, dtype=torch.int32)], 1)
    fsa = k2.Fsa(arcs)
    fsa.reward = _dense(table[:, 3].to(torch.float32))
    return fsa


def edit_product(lattice: k2.Fsa, references: list[list[int]]) -> EditProduct:
    """Product of each lattice's output labels with its reference's Levenshtein automaton.

    The output labels are ``aux_labels`` (words for HLG lattices, tokens for CTC-topology
    lattices; 0 = no output); an arc that outputs several labels becomes a chain. A reference
    label the lattice never outputs (an OOV word, mapped by the caller to an id no arc
    carries) can only be substituted or deleted. An empty reference is fine: every output is
    an insertion. Runs on the CPU (k2's epsilon-aware intersection is CPU-only).
    """
    num_fsas = lattice.shape[0]
    if len(references) != num_fsas:
        raise ValueError(f"{len(references)} references for {num_fsas} lattices")
    if any(label <= 0 for ref in references for label in ref):
        raise ValueError("reference labels must be positive (0 is epsilon, -1 the final label)")
    if not hasattr(lattice, "aux_labels"):
        raise ValueError("the lattice has no aux_labels (output labels) to compare with the reference")
    marked = k2.Fsa(lattice.arcs.clone())
    marked.aux_labels = lattice.aux_labels.clone() if isinstance(lattice.aux_labels, k2.RaggedTensor) \
        else _dense(lattice.aux_labels)
    marked.lattice_arc_plus1 = torch.arange(1, lattice.num_arcs + 1, dtype=torch.int32, device=lattice.device)
    outputs = k2.invert(marked.to("cpu"))  # labels := output labels; multi-output arcs become chains
    acceptor = k2.Fsa(outputs.arcs.clone())
    acceptor.scores = torch.zeros(acceptor.num_arcs, dtype=torch.float32)
    acceptor.lattice_arc_plus1 = _dense(outputs.lattice_arc_plus1)
    labels_per_fsa = _labels_per_fsa(acceptor)
    automata = k2.create_fsa_vec([levenshtein_automaton(ref, vocab)
                                  for ref, vocab in zip(references, labels_per_fsa)])
    product = k2.intersect(k2.arc_sort(acceptor), k2.arc_sort(automata), treat_epsilons_specially=True)
    product = k2.connect(product)
    if not product.properties & k2.fsa_properties.TOPSORTED:
        product = k2.top_sort(product)
    rewards = product.reward.to(torch.float64)
    lattice_arc = product.lattice_arc_plus1.long() - 1
    fsas = k2.Fsa(product.arcs.clone())
    return EditProduct(fsas.to(lattice.device), rewards.to(lattice.device), lattice_arc.to(lattice.device))


def _dense(t: torch.Tensor) -> torch.Tensor:
    """A copy with stride 1. k2 takes only stride-1 attributes, and torch keeps the stride of a
    one-element view (a column of a one-arc FSA's arcs, say) through clone(), to() and contiguous()."""
    return t.clone(memory_format=torch.contiguous_format)


def _labels_per_fsa(acceptor: k2.Fsa) -> list[list[int]]:
    """The distinct positive labels of each FSA of an FsaVec."""
    arc_fsa = arc_fsa_index(acceptor)
    labels = acceptor.labels.long()
    keep = labels > 0
    pairs = torch.unique(torch.stack([arc_fsa[keep], labels[keep]], 1), dim=0)
    vocab: list[list[int]] = [[] for _ in range(acceptor.shape[0])]
    for f, label in pairs.tolist():
        vocab[f].append(label)
    return vocab


def edit_distance(hyp: list[int], ref: list[int]) -> int:
    """Levenshtein distance (unit costs) by dynamic programming: the plain reference for ``edit`` rewards."""
    row = list(range(len(ref) + 1))
    for i, h in enumerate(hyp, 1):
        prev, row[0] = row[0], i
        for j, r in enumerate(ref, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (h != r))
    return row[-1]
