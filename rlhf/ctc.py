"""CTC with k2: dense FSA vectors from network outputs, training graphs, and the loss."""

from typing import Optional

import k2
import torch

from rlhf.lang.tokenizer import Tokenizer


def dense_fsa_vec(log_probs: torch.Tensor, lengths: torch.Tensor) -> tuple[k2.DenseFsaVec, torch.Tensor]:
    """Wrap (N, T, V) log-probs as a k2 DenseFsaVec, one sequence per utterance.

    k2 wants the segments sorted longest first; returns the DenseFsaVec and ``order``:
    its i-th sequence is utterance ``order[i]`` of the batch.
    """
    order = torch.argsort(lengths.cpu(), descending=True, stable=True)
    segments = torch.stack([order, torch.zeros_like(order), lengths.cpu()[order]], dim=1).to(torch.int32)
    return k2.DenseFsaVec(log_probs, segments), order


class CtcGraphCompiler:
    """Texts -> CTC training graphs over the lang dir's tokens (k2.ctc_graph)."""

    def __init__(self, tokenizer: Tokenizer, device: torch.device = torch.device("cpu")):
        self.tokenizer = tokenizer
        self.device = device

    def compile(self, texts: list[str]) -> k2.Fsa:
        return k2.ctc_graph(self.tokenizer.encode(texts), modified=False, device=self.device)


def ctc_loss(log_probs: torch.Tensor, lengths: torch.Tensor, texts: list[str], compiler: CtcGraphCompiler,
             output_beam: float = 10.0) -> torch.Tensor:
    """Per-utterance CTC negative log-likelihood (N,), in the batch's order.

    An utterance whose token sequence cannot fit its frames gets +inf (k2 finds no path);
    the trainer skips such batches and counts them.
    """
    dense, order = dense_fsa_vec(log_probs, lengths)
    graphs = compiler.compile([texts[i] for i in order.tolist()])
    loss_sorted = k2.ctc_loss(graphs, dense, output_beam=output_beam, reduction="none", use_double_scores=True)
    loss = torch.empty_like(loss_sorted)
    loss[order.to(loss.device)] = loss_sorted
    return loss


def greedy_search(log_probs: torch.Tensor, lengths: torch.Tensor) -> list[list[int]]:
    """Best token per frame, repeats collapsed and blanks (id 0) removed: CTC greedy decoding."""
    best = log_probs.argmax(dim=-1).cpu()
    hyps = []
    for seq, n in zip(best, lengths.tolist()):
        seq = torch.unique_consecutive(seq[:n])
        hyps.append(seq[seq != 0].tolist())
    return hyps


def forced_alignments(log_probs: torch.Tensor, lengths: torch.Tensor, texts: list[str], compiler: CtcGraphCompiler,
                      output_beam: float = 10.0) -> list[Optional[torch.Tensor]]:
    """Best CTC alignment of each transcript (one label per frame, blank = 0), in the batch's order.

    The best path of the k2 intersection of the transcript's CTC graph with the network
    output. None for an utterance whose transcript cannot be aligned (too long for its frames).
    """
    dense, order = dense_fsa_vec(log_probs, lengths)
    graphs = compiler.compile([texts[i] for i in order.tolist()])
    lattice = k2.intersect_dense(graphs, dense, output_beam=output_beam, frame_idx_name="frame_idx")
    best = k2.shortest_path(lattice, use_double_scores=True)
    alignments: list[Optional[torch.Tensor]] = [None] * len(texts)
    splits = best.arcs.shape().row_splits(2)[best.arcs.shape().row_splits(1).long()].tolist()
    labels = best.labels.cpu()
    for i, u in enumerate(order.tolist()):
        path = labels[splits[i]:splits[i + 1]]
        if len(path) == int(lengths[u]) + 1:  # one arc per frame, then the final arc
            alignments[u] = path[:-1].clone()
    return alignments
