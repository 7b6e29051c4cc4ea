"""The sequence objective that stage 7 minimizes, as a differentiable function of the network.

A batch of stage-5 lattices (rlhf.lattice_batches) is re-scored by the current network and
the loss is one of ``--objective``: ``rl`` (minus the expected stage-6 advantage,
rlhf.rl.objective), ``mwer`` (k2's ``mwer_loss``), ``mmi`` (lattice MMI: the lattice's paths of
the reference against the whole re-scored lattice) or ``ctc`` (the baseline's loss). Besides the
loss, ``SequenceObjective`` gives what Hessian-free asks for: the gradient over many batches
(all-reduced over the ranks), the held-out value, and curvature-vector products G v (the
generalized Gauss-Newton matrix with a positive semi-definite per-frame output curvature).
See docs/finetuning.md.
"""

import random
from typing import TYPE_CHECKING, Any, Callable

import k2
import torch

from rlhf import distributed
from rlhf.ctc import CtcGraphCompiler, ctc_loss
from rlhf.hf import module_ggn_product
from rlhf.lattice_batches import LatticeBatch
from rlhf.model import CtcModel
from rlhf.rl.objective import (arc_output_index, distinct_paths, expected_advantage, expected_path_advantage,
                               frame_fisher_product, posteriors, rescore, sample_paths, token_occupancy)

if TYPE_CHECKING:  # rlhf.finetune, the optimization loop, imports this module
    from rlhf.finetune import FinetuneConfig

OBJECTIVES = ("rl", "mwer", "mmi", "ctc")
CURVATURES = ("softmax", "occupancy")  # the output curvature of G v: see curvature_operator


def rescored_lattice(batch: LatticeBatch, weights: torch.Tensor) -> k2.Fsa:
    """The batch's lattices with the re-scored arc weights as their scores (differentiable), for k2's
    own lattice losses."""
    lattice = k2.Fsa(batch.lattice.arcs.clone(), aux_labels=batch.lattice.aux_labels)
    lattice.scores = weights
    return lattice


def numerator_lattice(batch: LatticeBatch, compiler: CtcGraphCompiler) -> k2.Fsa:
    """The lattices' paths that spell the reference: each lattice intersected with the reference's
    CTC graph (both over tokens, one arc per frame). Attribute ``lattice_arc``: the lattice arc of
    each arc. Empty where the reference is not in the lattice (the pruned search dropped it)."""
    lattice = k2.Fsa(batch.lattice.arcs.clone())
    lattice.lattice_arc = torch.arange(lattice.num_arcs, dtype=torch.int32, device=lattice.device)
    graphs = k2.arc_sort(compiler.compile(batch.texts).to(lattice.device))
    return k2.connect(k2.intersect(k2.arc_sort(lattice), graphs, treat_epsilons_specially=False))


def mmi_loss(batch: LatticeBatch, weights: torch.Tensor, compiler: CtcGraphCompiler) -> torch.Tensor:
    """Per-utterance lattice MMI loss, log p(lattice) - log p(numerator), in the log semiring (N,).

    Both are scored by the re-scored arc weights (``weights``: kappa x the network's log-probs +
    graph scores, LM included). The numerator is the lattice's own paths that spell the reference
    (``numerator_lattice``), so it is part of the denominator and the loss is >= 0, as in
    lattice-based MMI with the reference forced into the lattice. An utterance whose lattice lacks
    the reference gets 0 and no gradient (Kaldi's MMI drops its frames too). A numerator of every
    CTC alignment, most of them off the pruned lattice, made the loss unbounded or, added to the
    denominator, still let dev WER degrade to 38% on AN4 (docs/finetuning.md).
    """
    den = rescored_lattice(batch, weights).get_tot_scores(log_semiring=True, use_double_scores=True)
    num_lattice = numerator_lattice(batch, compiler)
    num_lattice.scores = weights[num_lattice.lattice_arc.long()]
    num = num_lattice.get_tot_scores(log_semiring=True, use_double_scores=True)
    keep = torch.isfinite(num)
    return torch.where(keep, den - num.masked_fill(~keep, 0.0), torch.zeros_like(den))


class SequenceObjective:
    """The loss on lattice batches, its gradient, curvature products and held-out value."""

    def __init__(self, model: CtcModel, params: list[torch.nn.Parameter], config: "FinetuneConfig",
                 compiler: CtcGraphCompiler, device: torch.device):
        self.model = model.eval()  # no dropout: objective and curvature are deterministic functions of theta
        self.params = params
        self.config = config
        self.compiler = compiler
        self.device = device
        self.paths: dict[int, object] = {}  # edit reward: batch id -> the paths of this iteration

    def normalizer(self, batches: list[LatticeBatch]) -> float:
        """Frames (frame reward, mwer, ctc) or reference words (edit reward) of a set of batches."""
        if self.config.objective == "rl" and self.config.reward == "edit":
            return float(max(sum(b.total_words for b in batches), 1))
        return float(max(sum(b.total_frames for b in batches), 1))

    def forward(self, batch: LatticeBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Network log-probs (N, T, V), output lengths, and each arc's index into the log-probs."""
        log_probs, lengths = self.model(batch.features, batch.num_input_frames)
        if lengths.tolist() != batch.num_frames:
            raise ValueError("the model's output lengths differ from the lattices' frame counts: "
                             "the lattices were made with another model or features")
        n, t, v = log_probs.shape
        index = arc_output_index(batch.lattice, batch.mdp.arc_fsa, t, v)
        return log_probs, lengths, index

    def arc_weights(self, log_probs: torch.Tensor, index: torch.Tensor, batch: LatticeBatch) -> torch.Tensor:
        """The batch's lattices re-scored by the network output (differentiable)."""
        return rescore(log_probs, index, batch.lattice.graph_scores, self.config.kappa)

    def batch_loss(self, batch: LatticeBatch, batch_id: int, sample_paths_now: bool = False,
                   iteration: int = 0) -> torch.Tensor:
        """The summed (not yet normalized) loss of a batch, differentiable in the parameters."""
        c = self.config
        log_probs, lengths, index = self.forward(batch)
        if c.objective == "ctc":
            return ctc_loss(log_probs, lengths, batch.texts, self.compiler).sum()
        weights = self.arc_weights(log_probs, index, batch)
        if c.objective == "mwer":
            loss = k2.mwer_loss(rescored_lattice(batch, weights), batch.references, num_paths=c.num_paths,
                                reduction="sum")
        elif c.objective == "mmi":
            loss = mmi_loss(batch, weights, self.compiler).sum()
        elif c.reward == "frame":
            loss = -expected_advantage(weights, batch.mdp, batch.advantage).sum().to(log_probs.dtype)
        else:
            if sample_paths_now or batch_id not in self.paths:
                self.paths[batch_id] = self.draw_paths(batch, weights, iteration, batch_id)
            gain = expected_path_advantage(weights, self.paths[batch_id], batch.start_value, batch.size)
            loss = -gain.sum().to(log_probs.dtype)
        if c.ctc_weight > 0:
            # normalized like the rest (per frame or word), so ctc_weight is a share of the loss
            loss = loss + c.ctc_weight * ctc_loss(log_probs, lengths, batch.texts, self.compiler).sum()
        return loss

    def draw_paths(self, batch: LatticeBatch, weights: torch.Tensor, iteration: int, batch_id: int):
        """The edit reward's paths of a batch, seeded by (seed, iteration, batch): the same draws
        whichever rank, and however many ranks, draw them."""
        seed = random.Random(f"{self.config.seed}-{iteration}-{batch_id}").getrandbits(62)
        post = posteriors(batch.mdp, weights)
        arcs, paths, fsas = sample_paths(batch.mdp, post, weights, self.config.num_paths,
                                         torch.Generator().manual_seed(seed))
        return distinct_paths(arcs, paths, fsas, batch.outputs, batch.references)

    def gradient(self, batches: list[LatticeBatch], ids: list[int], iteration: int = 0
                 ) -> tuple[float, torch.Tensor, torch.Tensor]:
        """(loss, gradient, mean squared per-batch gradient) over ``batches``, all flat.

        Each rank takes every world_size-th batch; the sums are all-reduced, so every rank
        gets the gradient over all of them. The preconditioner wants squared per-utterance
        gradients; a backward pass per utterance would cost one pass each, so per-batch mean
        gradients stand in for them.
        """
        ctx = distributed.context()
        norm = self.normalizer(batches)
        total = torch.zeros(1, dtype=torch.float64, device=self.device)
        grad = torch.zeros(sum(p.numel() for p in self.params), dtype=torch.float32, device=self.device)
        squares = torch.zeros_like(grad)
        for batch, batch_id in zip(ctx.shard(batches), ctx.shard(ids)):
            loss, g = self.batch_gradient(batch, batch_id, iteration)
            total += float(loss)
            grad += g / norm
            squares += (g / self.normalizer([batch])) ** 2
        for t in (total, grad, squares):
            distributed.all_reduce_sum(t)
        return float(total) / norm, grad, squares / max(len(batches), 1)

    def batch_gradient(self, batch: LatticeBatch, batch_id: Any, iteration: int = 0
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """(summed loss, its flat gradient) of one batch; the edit reward draws its paths anew."""
        loss = self.batch_loss(batch, batch_id, sample_paths_now=True, iteration=iteration)
        return loss.detach(), torch.cat([x.reshape(-1) for x in torch.autograd.grad(loss, self.params)])

    def example_gradients(self, batches: list[tuple[int, LatticeBatch]], num: int, iteration: int = 0
                          ) -> torch.Tensor:
        """The normalized gradients of ``num`` batches as the rows of a (num, parameters) matrix.

        ``batches`` holds this rank's share as (row, batch); the rows are all-reduced, so every
        rank gets them all. Single-utterance batches give the per-utterance gradients of the
        Fisher preconditioner (--hf-preconditioner fisher).
        """
        rows = torch.zeros(num, sum(p.numel() for p in self.params), dtype=torch.float32, device=self.device)
        for row, batch in batches:
            _, g = self.batch_gradient(batch, ("example", row), iteration)
            rows[row] = g / self.normalizer([batch])
        return distributed.all_reduce_sum(rows)

    @torch.no_grad()
    def value(self, batches: list[LatticeBatch], ids: list[int]) -> float:
        """The normalized loss (edit reward: on the paths drawn for these batches this iteration),
        summed over the ranks' shares."""
        ctx = distributed.context()
        mine = sum(float(self.batch_loss(b, i)) for b, i in zip(ctx.shard(batches), ctx.shard(ids)))
        return distributed.sum_floats(mine)[0] / self.normalizer(batches)

    def curvature_operator(self, batch: LatticeBatch) -> Callable[[torch.Tensor], torch.Tensor]:
        """v -> G v on a batch: the generalized Gauss-Newton product with a per-frame Fisher
        (rlhf.rl.objective.frame_fisher_product, ``--curvature``) as the PSD output curvature."""
        c = self.config
        with torch.no_grad():
            log_probs, _, index = self.forward(batch)
            if c.curvature == "occupancy":
                weights = self.arc_weights(log_probs, index, batch)
                frame_posterior = token_occupancy(posteriors(batch.mdp, weights), index, log_probs.shape)
            else:
                frame_posterior = log_probs.exp()
        norm = self.normalizer([batch])
        ctc_scale = c.ctc_weight / norm if c.ctc_weight > 0 else 0.0

        def output_curvature(tangent: torch.Tensor) -> torch.Tensor:
            return frame_fisher_product(frame_posterior, tangent, c.kappa, scale=1.0 / norm,
                                            softmax_weight=ctc_scale, log_probs=log_probs)

        shapes = [p.shape for p in self.params]
        sizes = [p.numel() for p in self.params]

        def product(v: torch.Tensor) -> torch.Tensor:
            vec = [x.view(s) for x, s in zip(torch.split(v, sizes), shapes)]
            out = module_ggn_product(self.model, (batch.features, batch.num_input_frames), vec, output_curvature,
                                     output_fn=lambda out: out[0])
            return torch.cat([x.reshape(-1) for x in out])

        return product
