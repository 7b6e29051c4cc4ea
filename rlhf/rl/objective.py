"""The sequence-training objective over re-scored lattices (docs/finetuning.md).

A fixed lattice is re-scored by the current network: arc weight
w(a) = kappa * log p(label(a) | frame(a)) + graph_score(a), a gather from the network output,
so it is differentiable. Under the lattice posterior pi_theta (arc occupancies gamma(a)):

- ``frame`` mode: J = sum_a gamma(a) A(a), with A the stage-6 advantages held fixed. With exact
  Q and gamma = 1, sum_{a in path} A(a) = R(path) - V(start), so J is the expected reward
  (sMBR) minus a constant. Its gradient, dJ/dw(a) = gamma(a) (E[R | a] - J), comes from
  expectation-semiring forward-backward sweeps (``ExpectedAdvantage``).
- ``edit`` mode: paths sampled from pi_theta at the start of an optimizer iteration and kept
  fixed through it (so the objective is deterministic there); J = sum_i P(i) (R_i - V(start)),
  P the posterior renormalized over the distinct sampled paths, R_i minus the path's errors.

``frame_fisher_product`` is the output curvature used by Hessian-free, per frame
kappa^2 (diag(q_t) - q_t q_t^T) applied to log-prob tangents, positive semi-definite unlike the
Hessian of J. With q_t the lattice's token occupancy it is the frame-diagonal block of the
Fisher of pi_theta (the covariance of the arc indicators); with q_t the network's softmax it
is the Fisher of the per-frame output distribution (the Gauss-Newton matrix of cross-entropy),
which also holds still the frames where the lattice leaves no choice.
"""

from dataclasses import dataclass
from typing import Optional

import k2
import numpy as np
import torch

from rlhf.k2_private import backward_scores, forward_scores, total_scores
from rlhf.rl import kernels
from rlhf.rl.mdp import LatticeMdp, first_arcs
from rlhf.rl.rewards import edit_distance


def arc_output_index(lattice: k2.Fsa, arc_fsa: torch.Tensor, num_frames: int, vocab_size: int) -> torch.Tensor:
    """Per arc, its flat index into an (N, T, V) network output; -1 for final arcs (label -1)."""
    labels = lattice.labels.long()
    frames = lattice.frame_idx.long()
    real = labels >= 0
    if bool((real & ((frames < 0) | (frames >= num_frames))).any()):
        raise ValueError(f"lattice arcs refer to frames beyond the network output ({num_frames} frames): "
                         f"the lattices and the features are of different utterances or models")
    index = (arc_fsa * num_frames + frames) * vocab_size + labels
    return torch.where(real, index, torch.full_like(index, -1))


def rescore(log_probs: torch.Tensor, output_index: torch.Tensor, graph_scores: torch.Tensor,
            kappa: float) -> torch.Tensor:
    """Arc weights w = kappa * log p(label | frame) + graph score (final arcs: the graph score).

    Differentiable with respect to ``log_probs`` (N, T, V).
    """
    real = output_index >= 0
    picked = log_probs.reshape(-1).index_select(0, output_index.clamp(min=0))
    return torch.where(real, kappa * picked, torch.zeros_like(picked)) + graph_scores.to(picked.dtype)


class NonFiniteWeightError(ValueError):
    """An arc weight is NaN or infinite (a diverged network, say): raised, never dropped, so it
    cannot pass for an arc of probability 0."""


def check_finite_weights(mdp: LatticeMdp, weights: torch.Tensor) -> None:
    """NonFiniteWeightError naming the first arc (lattice, arc within it) whose weight is not finite."""
    bad = ~torch.isfinite(weights.detach())
    if not bool(bad.any()):
        return
    arcs = torch.nonzero(bad).squeeze(1)
    a = int(arcs[0])
    fsa = int(mdp.arc_fsa[a])
    local = a - int(first_arcs(mdp.fsas)[fsa])
    more = f" ({arcs.numel()} non-finite arc weights in all)" if arcs.numel() > 1 else ""
    raise NonFiniteWeightError(f"non-finite arc weight {float(weights[a])} on arc {local} of lattice {fsa} "
                               f"(arc {a} of the FsaVec){more}: the network output or the graph scores are not "
                               f"finite")


@dataclass
class Posteriors:
    """Log-semiring forward-backward of an FsaVec under arc weights w (float64)."""
    alpha: torch.Tensor       # [num_states] log forward scores
    beta: torch.Tensor        # [num_states] log backward scores (0 at final states)
    occupancy: torch.Tensor   # [num_arcs] gamma(a), the arc posteriors
    log_total: torch.Tensor   # [num_fsas] log of the sum over complete paths


def posteriors(mdp: LatticeMdp, weights: torch.Tensor) -> Posteriors:
    """Arc posteriors of the lattices in ``mdp`` re-scored with ``weights`` (no autograd).

    A non-finite weight raises NonFiniteWeightError naming its lattice and arc.
    """
    check_finite_weights(mdp, weights)
    if kernels.compiled(weights):
        return _compiled_posteriors(mdp, weights)
    fsas = k2.Fsa(mdp.fsas.arcs.clone())
    fsas.scores = weights.detach().to(torch.float32)  # k2 keeps float32 scores; sums are done in double
    alpha = forward_scores(fsas, log_semiring=True)
    beta = backward_scores(fsas, log_semiring=True)
    log_total = total_scores(fsas, log_semiring=True)
    w = weights.detach().to(torch.float64)
    log_post = alpha.index_select(0, mdp.src) + w + beta.index_select(0, mdp.dest) - log_total[mdp.arc_fsa]
    occupancy = torch.exp(log_post).nan_to_num_(0.0)  # -inf - -inf: an arc on no complete path
    return Posteriors(alpha, beta, occupancy, log_total)


def _compiled_posteriors(mdp: LatticeMdp, weights: torch.Tensor) -> Posteriors:
    """``posteriors`` by one compiled kernel: k2's forward, backward and total scores, then gamma(a)."""
    post = Posteriors(*(kernels.empty(n) for n in (mdp.num_states, mdp.num_states, mdp.num_arcs, mdp.num_fsas)))
    arrays = (kernels.as_numpy(t) for t in (mdp.state_splits, mdp.arc_splits, mdp.src, mdp.dest, weights))
    kernels.arc_posteriors(*arrays, post.alpha.numpy(), post.beta.numpy(), post.log_total.numpy(),
                           post.occupancy.numpy())
    return post


def _arc_probs(weights: torch.Tensor, plus: torch.Tensor, minus: torch.Tensor) -> torch.Tensor:
    """exp(w + plus - minus): an arc's conditional probability given one of its ends
    (0 where a state is unreachable or cannot finish)."""
    return torch.exp(weights + plus - minus).nan_to_num_(0.0)


def expected_returns(mdp: LatticeMdp, post: Posteriors, weights: torch.Tensor,
                     values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Expectation-semiring sweeps: per state, the expected sum of ``values`` over the arcs
    before it (given the path reaches it) and after it (given the path leaves from it).

    Then E[sum over the path | arc a] = before(src a) + values(a) + after(dest a).
    One level of the topological order at a time (a frame of a lattice); no loop over arcs.
    """
    w = weights.detach().to(torch.float64)
    before = torch.zeros(mdp.num_states, dtype=torch.float64, device=w.device)
    after = torch.zeros_like(before)
    order, bounds = mdp.forward_order
    src, dest, wo, vo = (t.index_select(0, order) for t in (mdp.src, mdp.dest, w, values))
    # Probability of arriving at dest(a) through a, given the path reaches dest(a).
    p_in = _arc_probs(wo, post.alpha.index_select(0, src), post.alpha.index_select(0, dest))
    for begin, end in zip(bounds[:-1], bounds[1:]):
        s = src[begin:end]
        before.index_add_(0, dest[begin:end], p_in[begin:end] * (before.index_select(0, s) + vo[begin:end]))
    order, bounds = mdp.sweep_order
    src, dest, wo, vo = (t.index_select(0, order) for t in (mdp.src, mdp.dest, w, values))
    # Probability of taking a, given the path leaves from src(a): the policy pi(a | s).
    p_out = _arc_probs(wo, post.beta.index_select(0, dest), post.beta.index_select(0, src))
    for begin, end in zip(bounds[:-1], bounds[1:]):
        d = dest[begin:end]
        after.index_add_(0, src[begin:end], p_out[begin:end] * (vo[begin:end] + after.index_select(0, d)))
    return before, after


class ExpectedAdvantage(torch.autograd.Function):
    """J_i = sum over the arcs a of lattice i of gamma(a) A(a), differentiable in the arc weights.

    The backward pass is the exact gradient gamma(a) (E[sum A | a] - J) (covariance of the arc
    indicator with the path's summed advantage), not an autograd trace of forward-backward.
    """

    @staticmethod
    def forward(ctx, weights: torch.Tensor, mdp: LatticeMdp, advantages: torch.Tensor) -> torch.Tensor:
        post = posteriors(mdp, weights)
        advantages = advantages.to(torch.float64)
        per_fsa = torch.zeros(mdp.num_fsas, dtype=torch.float64, device=weights.device)
        if kernels.compiled(weights):
            kernels.fsa_sums(kernels.as_numpy(mdp.state_splits), kernels.as_numpy(mdp.arc_splits),
                             post.occupancy.numpy(), kernels.as_numpy(advantages), per_fsa.numpy())
        else:
            per_fsa.index_add_(0, mdp.arc_fsa, post.occupancy * advantages)
        ctx.mdp, ctx.post = mdp, post
        ctx.save_for_backward(weights, advantages, per_fsa)
        return per_fsa

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        weights, advantages, per_fsa = ctx.saved_tensors
        mdp, post = ctx.mdp, ctx.post
        if kernels.compiled(weights):
            grad = kernels.empty(mdp.num_arcs, weights.dtype)
            arrays = (kernels.as_numpy(t) for t in (mdp.state_splits, mdp.arc_splits, mdp.src, mdp.dest, weights,
                                                    post.alpha, post.beta, post.occupancy, advantages, per_fsa,
                                                    grad_output.to(torch.float64), kernels.empty(mdp.num_states),
                                                    kernels.empty(mdp.num_states)))
            kernels.expected_advantage_grad(*arrays, grad.numpy())
            return grad, None, None
        before, after = expected_returns(mdp, post, weights, advantages)
        given_arc = before.index_select(0, mdp.src) + advantages + after.index_select(0, mdp.dest)
        grad = post.occupancy * (given_arc - per_fsa[mdp.arc_fsa]) * grad_output.to(torch.float64)[mdp.arc_fsa]
        return grad.to(weights.dtype), None, None


def expected_advantage(weights: torch.Tensor, mdp: LatticeMdp, advantages: torch.Tensor) -> torch.Tensor:
    """Per lattice, sum_a gamma(a) A(a) under the lattice posterior of ``weights`` ([num_fsas], float64).

    ``advantages`` must be finite (the stage-6 values give dead arcs -inf: pass 0 there, their
    occupancy is 0 anyway), and so must ``weights`` (NonFiniteWeightError names the arc).
    """
    if not bool(torch.isfinite(advantages).all()):
        raise ValueError("advantages must be finite; set arcs with no complete path (-inf) to 0")
    return ExpectedAdvantage.apply(weights, mdp, advantages)


@dataclass
class SampledPaths:
    """Distinct paths drawn from each lattice's posterior, with their rewards."""
    arcs: torch.Tensor          # [num_path_arcs] global arc index of every arc of every path
    path_of_arc: torch.Tensor   # [num_path_arcs] which path each belongs to
    fsa_of_path: torch.Tensor   # [num_paths] which lattice each path comes from
    rewards: torch.Tensor       # [num_paths] minus the path's errors against the reference (float64)


def sample_paths(mdp: LatticeMdp, post: Posteriors, weights: torch.Tensor, num_paths: int,
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``num_paths`` paths per lattice from pi(a | s) = exp(w(a) + beta(dest) - beta(s)).

    Walks all paths one step at a time (vectorized over paths). k2 keeps a state's arcs
    contiguous, so the key src(a) + (cumulative pi up to a) increases along the arc array and a
    uniform draw u picks the arc by ``searchsorted(key, s + u)``. Returns the arcs of all paths
    and the path each arc belongs to; lattices without a complete path get none. A non-finite
    weight raises NonFiniteWeightError.
    """
    check_finite_weights(mdp, weights)
    if kernels.compiled(weights):
        return _compiled_sample_paths(mdp, post, weights, num_paths, generator)
    w = weights.detach().to(torch.float64)
    pi = _arc_probs(w, post.beta.index_select(0, mdp.dest), post.beta.index_select(0, mdp.src))
    # Cumulative pi within each state: global cumsum minus the cumsum before the state's first arc.
    cum = torch.cumsum(pi, 0)
    arc_splits = mdp.fsas.arcs.shape().row_splits(2).long()
    before_state = torch.cat([torch.zeros(1, dtype=torch.float64, device=pi.device), cum])[arc_splits[:-1]]
    key = mdp.src.to(torch.float64) + (cum - before_state.index_select(0, mdp.src)).clamp(max=1.0)
    ok = torch.isfinite(post.log_total) & (mdp.start >= 0)
    fsas = torch.nonzero(ok).squeeze(1).repeat_interleave(num_paths)
    path_ids = torch.arange(fsas.numel(), device=pi.device)
    current = mdp.start[fsas].long()
    final = mdp.final[fsas].long()
    all_arcs, all_paths = [], []
    while path_ids.numel():
        u = torch.rand(path_ids.numel(), dtype=torch.float64, generator=generator).to(pi.device)
        arc = torch.searchsorted(key, current.to(torch.float64) + u)
        arc = torch.minimum(torch.maximum(arc, arc_splits[current]), arc_splits[current + 1] - 1)
        all_arcs.append(arc)
        all_paths.append(path_ids)
        current = mdp.dest.index_select(0, arc).long()
        going = current != final
        path_ids, current, final = path_ids[going], current[going], final[going]
    if not all_arcs:
        empty = torch.zeros(0, dtype=torch.long, device=pi.device)
        return empty, empty, fsas
    arcs, paths = torch.cat(all_arcs), torch.cat(all_paths)
    order = torch.argsort(paths, stable=True)  # each path's arcs together, in path order
    return arcs[order], paths[order], fsas


def _compiled_sample_paths(mdp: LatticeMdp, post: Posteriors, weights: torch.Tensor, num_paths: int,
                           generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``sample_paths`` by compiled kernels, with the same draws: the uniforms come from
    ``generator`` in the order the torch code draws them (a step of every walking path at a
    time), in blocks that grow with the arcs walked so far (at most half more than needed)."""
    arc_splits, dest = kernels.as_numpy(mdp.arc_splits), kernels.as_numpy(mdp.dest)
    key = np.empty(mdp.num_arcs)
    kernels.sampling_keys(arc_splits, dest, kernels.as_numpy(weights), kernels.as_numpy(post.beta), key)
    ok = torch.isfinite(post.log_total) & (mdp.start >= 0)
    fsas = torch.nonzero(ok).squeeze(1).repeat_interleave(num_paths)
    current = mdp.start[fsas].numpy().astype(np.int64)
    final = mdp.final[fsas].numpy().astype(np.int64)
    path_ids = np.arange(fsas.numel())
    walking, walked = fsas.numel(), 0
    spare = np.empty(0)
    all_arcs, all_paths = [], []
    while walking:
        drawn = torch.rand(max(walking, walked // 2), dtype=torch.float64, generator=generator).numpy()
        uniforms = np.concatenate([spare, drawn])
        arcs, paths = np.empty(uniforms.size, dtype=np.int64), np.empty(uniforms.size, dtype=np.int64)
        used, walking = kernels.walk_paths(key, arc_splits, dest, current, final, path_ids, walking, uniforms, arcs,
                                           paths)
        all_arcs.append(arcs[:used])
        all_paths.append(paths[:used])
        spare = uniforms[used:]
        walked += used
    arcs, paths = kernels.empty(walked, torch.long), kernels.empty(walked, torch.long)
    kernels.group_by_path(np.concatenate(all_arcs + [np.empty(0, dtype=np.int64)]),
                          np.concatenate(all_paths + [np.empty(0, dtype=np.int64)]), fsas.numel(), arcs.numpy(),
                          paths.numpy())
    return arcs, paths, fsas


def distinct_paths(arcs: torch.Tensor, paths: torch.Tensor, fsa_of_path: torch.Tensor,
                   outputs: list[list[int]], references: list[list[int]]) -> SampledPaths:
    """Keep one copy of each distinct arc sequence per lattice and score it against the reference.

    ``outputs[a]`` are the output labels of global arc a (epsilon: none).
    """
    seen: set[tuple[int, tuple[int, ...]]] = set()
    keep_arcs, keep_paths, keep_fsas, rewards = [], [], [], []
    counts = torch.bincount(paths, minlength=fsa_of_path.numel()).tolist()
    for fsa, path_arcs in zip(fsa_of_path.tolist(), torch.split(arcs, counts)):
        key = (fsa, tuple(path_arcs.tolist()))
        if key in seen:
            continue
        seen.add(key)
        keep_arcs.append(path_arcs)
        keep_paths.append(torch.full_like(path_arcs, len(keep_fsas)))
        keep_fsas.append(fsa)
        words = [w for a in key[1] for w in outputs[a] if w > 0]
        rewards.append(-float(edit_distance(words, references[fsa])))
    device = arcs.device
    cat = (lambda ts: torch.cat(ts)) if keep_arcs else (lambda ts: torch.zeros(0, dtype=torch.long, device=device))
    return SampledPaths(cat(keep_arcs), cat(keep_paths), torch.tensor(keep_fsas, dtype=torch.long, device=device),
                        torch.tensor(rewards, dtype=torch.float64, device=device))


def expected_path_advantage(weights: torch.Tensor, paths: SampledPaths, baseline: torch.Tensor,
                            num_fsas: int) -> torch.Tensor:
    """Per lattice, sum_i P(i) (R_i - baseline), P the posterior renormalized over its sampled paths.

    Differentiable in ``weights`` by autograd ([num_fsas], float64; 0 for a lattice without paths).
    A non-finite weight on a sampled path raises NonFiniteWeightError.
    """
    w = weights.to(torch.float64)
    on_paths = w.detach().index_select(0, paths.arcs)
    if not bool(torch.isfinite(on_paths).all()):
        k = int(torch.nonzero(~torch.isfinite(on_paths))[0])
        raise NonFiniteWeightError(f"non-finite arc weight {float(on_paths[k])} on arc {int(paths.arcs[k])} of the "
                                   f"FsaVec, on a sampled path of lattice {int(paths.fsa_of_path[paths.path_of_arc[k]])}"
                                   f": the network output or the graph scores are not finite")
    num_paths = paths.fsa_of_path.numel()
    score = torch.zeros(num_paths, dtype=torch.float64, device=w.device).index_add(
        0, paths.path_of_arc, w.index_select(0, paths.arcs))
    peak = torch.full((num_fsas,), float("-inf"), dtype=torch.float64, device=w.device).scatter_reduce(
        0, paths.fsa_of_path, score.detach(), reduce="amax", include_self=True)
    unnorm = torch.exp(score - peak[paths.fsa_of_path])
    total = torch.zeros(num_fsas, dtype=torch.float64, device=w.device).index_add(0, paths.fsa_of_path, unnorm)
    prob = unnorm / total[paths.fsa_of_path]
    gain = paths.rewards - baseline.to(torch.float64)[paths.fsa_of_path]
    return torch.zeros(num_fsas, dtype=torch.float64, device=w.device).index_add(0, paths.fsa_of_path, prob * gain)


def token_occupancy(post: Posteriors, output_index: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """q[n, t, k]: the posterior of token k at frame t of lattice n (sums to 1 over k at every frame)."""
    real = output_index >= 0
    q = torch.zeros(shape.numel(), dtype=torch.float64, device=output_index.device)
    q.index_add_(0, output_index[real], post.occupancy[real])
    return q.view(shape)


def frame_fisher_product(posterior: torch.Tensor, tangent: torch.Tensor, kappa: float,
                         scale: float = 1.0, softmax_weight: float = 0.0,
                         log_probs: Optional[torch.Tensor] = None) -> torch.Tensor:
    """H_out applied to a log-prob tangent (N, T, V): the PSD output curvature of Hessian-free.

    scale * kappa^2 (q * y - q <q, y>) per frame for a per-frame token distribution q (the
    lattice's token occupancy, or the network's own softmax), plus ``softmax_weight`` * p * y,
    which on log-prob outputs is the softmax Fisher diag(p) - p p^T on the logits (the CTC
    regularizer's curvature). Every term is a covariance matrix, hence PSD.
    """
    q = posterior.to(tangent.dtype)
    y = tangent
    out = scale * kappa ** 2 * (q * y - q * (q * y).sum(-1, keepdim=True))
    if softmax_weight:
        out = out + softmax_weight * log_probs.detach().exp().to(y.dtype) * y
    return out
