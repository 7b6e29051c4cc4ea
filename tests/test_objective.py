"""The fine-tuning objective: values and gradients against brute-force path enumeration."""

import random

import k2
import pytest
import torch

from lattices import edit_return, enumerate_paths, frame_return, random_lattice
from rlhf.rl.mdp import LatticeMdp, first_arcs
from rlhf.rl.objective import (NonFiniteWeightError, arc_output_index, distinct_paths, expected_advantage,
                               expected_path_advantage, frame_fisher_product, posteriors, rescore, sample_paths,
                               token_occupancy)
from rlhf.rl.rewards import frame_rewards
from rlhf.rl.values import lattice_values


def _lattices(seed: int, count: int = 4):
    rng = random.Random(seed)
    fsas = [random_lattice(rng, num_states=rng.randrange(3, 8), num_frames=6, vocab=5) for _ in range(count)]
    vec = k2.create_fsa_vec(fsas)
    return fsas, vec


def _brute_expected(fsa: k2.Fsa, weights: torch.Tensor, returns_of) -> torch.Tensor:
    """E[return] under the path posterior of ``weights`` (one FSA), by enumerating every path."""
    paths = enumerate_paths(fsa)
    scores = torch.stack([weights[p.arcs].sum() for p in paths])
    returns = torch.tensor([returns_of(p) for p in paths], dtype=weights.dtype)
    return (torch.softmax(scores, 0) * returns).sum()


def test_frame_objective_and_gradient_equal_brute_force_expected_reward():
    """J + V(start) is the expected reward, and dJ/dw its brute-force gradient (gamma = 1, exact Q)."""
    for seed in range(10):
        fsas, vec = _lattices(seed)
        rng = torch.Generator().manual_seed(seed)
        vec.frame_idx = torch.cat([f.frame_idx for f in fsas])
        alignments = [torch.randint(0, 5, (6,), generator=rng) for _ in fsas]
        values = lattice_values(vec, "frame", alignments=alignments)
        rewards = frame_rewards(vec, alignments)
        mdp = LatticeMdp.from_fsas(vec)
        weights = torch.randn(vec.num_arcs, dtype=torch.float64, generator=rng, requires_grad=True)
        j = expected_advantage(weights, mdp, values.advantage)
        j.sum().backward()
        firsts = first_arcs(vec).tolist()
        for i, fsa in enumerate(fsas):
            lo, hi = firsts[i], firsts[i + 1]
            w = weights.detach()[lo:hi].clone().requires_grad_(True)
            r = rewards[lo:hi].tolist()
            brute = _brute_expected(fsa, w, lambda p: frame_return(p, r))
            brute.backward()
            # k2 runs forward-backward on float32 scores: agreement to float32 precision
            assert float(j[i]) + float(values.start_value[i]) == pytest.approx(float(brute), abs=1e-6)
            torch.testing.assert_close(weights.grad[lo:hi], w.grad, atol=1e-6, rtol=1e-5)


def test_frame_objective_gradient_equals_finite_differences():
    fsas, vec = _lattices(3, count=3)
    mdp = LatticeMdp.from_fsas(vec)
    rng = torch.Generator().manual_seed(0)
    advantages = torch.randn(vec.num_arcs, dtype=torch.float64, generator=rng)  # any fixed values
    weights = torch.randn(vec.num_arcs, dtype=torch.float64, generator=rng, requires_grad=True)
    j = expected_advantage(weights, mdp, advantages)
    grad, = torch.autograd.grad(j.sum(), weights)
    eps = 1e-3  # the objective's forward-backward runs on float32 scores
    for a in range(vec.num_arcs):
        plus, minus = weights.detach().clone(), weights.detach().clone()
        plus[a] += eps
        minus[a] -= eps
        numeric = (expected_advantage(plus, mdp, advantages).sum() - expected_advantage(minus, mdp, advantages).sum())
        assert float(grad[a]) == pytest.approx(float(numeric) / (2 * eps), abs=1e-4)


def test_edit_objective_on_all_paths_is_the_expected_reward():
    """With every path among the 'samples', the path objective is exactly the expected reward minus V(start)."""
    fsas, vec = _lattices(5, count=3)
    refs = [[1, 2, 3], [2, 2], []]
    outputs = vec.aux_labels.tolist()
    firsts = first_arcs(vec).tolist()
    arcs, path_ids, fsa_of = [], [], []
    for i, fsa in enumerate(fsas):
        for p in enumerate_paths(fsa):
            arcs += [firsts[i] + a for a in p.arcs]
            path_ids += [len(fsa_of)] * len(p.arcs)
            fsa_of.append(i)
    paths = distinct_paths(torch.tensor(arcs), torch.tensor(path_ids), torch.tensor(fsa_of), outputs, refs)
    baseline = torch.tensor([1.5, -2.0, 0.25], dtype=torch.float64)
    weights = torch.randn(vec.num_arcs, dtype=torch.float64, requires_grad=True)
    j = expected_path_advantage(weights, paths, baseline, len(fsas))
    j.sum().backward()
    for i, fsa in enumerate(fsas):
        lo, hi = firsts[i], firsts[i + 1]
        w = weights.detach()[lo:hi].clone().requires_grad_(True)
        brute = _brute_expected(fsa, w, lambda p: edit_return(p, refs[i]))
        brute.backward()
        assert float(j[i]) == pytest.approx(float(brute) - float(baseline[i]), abs=1e-9)
        torch.testing.assert_close(weights.grad[lo:hi], w.grad, atol=1e-9, rtol=1e-7)


def test_sampled_paths_follow_the_posterior_and_are_deterministic():
    fsas, vec = _lattices(7, count=2)
    mdp = LatticeMdp.from_fsas(vec)
    weights = torch.randn(vec.num_arcs, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    post = posteriors(mdp, weights)
    num = 4000
    arcs, paths, fsa_of = sample_paths(mdp, post, weights, num, torch.Generator().manual_seed(0))
    again = sample_paths(mdp, post, weights, num, torch.Generator().manual_seed(0))
    assert torch.equal(arcs, again[0]) and torch.equal(paths, again[1])
    # every sampled path is a complete path; arc frequencies match the posteriors
    counts = torch.bincount(arcs, minlength=vec.num_arcs).double() / num
    torch.testing.assert_close(counts, post.occupancy, atol=0.04, rtol=0)
    finals = set(mdp.final.tolist())
    for p in range(fsa_of.numel()):
        path = arcs[paths == p]
        assert int(mdp.src[path[0]]) == int(mdp.start[fsa_of[p]])
        assert int(mdp.dest[path[-1]]) in finals
        assert torch.equal(mdp.dest[path[:-1]], mdp.src[path[1:]])


def test_rescore_gathers_the_network_output_at_each_arc():
    fsas, vec = _lattices(2, count=2)
    vec.graph_scores = torch.randn(vec.num_arcs)
    mdp = LatticeMdp.from_fsas(vec)
    log_probs = torch.randn(2, 7, 5).log_softmax(-1)
    index = arc_output_index(vec, mdp.arc_fsa, 7, 5)
    w = rescore(log_probs, index, vec.graph_scores, kappa=0.5)
    for a in range(vec.num_arcs):
        label = int(vec.labels[a])
        want = float(vec.graph_scores[a])
        if label >= 0:
            want += 0.5 * float(log_probs[mdp.arc_fsa[a], vec.frame_idx[a], label])
        assert float(w[a]) == pytest.approx(want, abs=1e-6)
    with pytest.raises(ValueError, match="frames beyond"):
        arc_output_index(vec, mdp.arc_fsa, 3, 5)


def test_frame_fisher_is_psd_and_token_occupancy_gathers_the_arc_posteriors():
    fsas, vec = _lattices(4, count=3)
    mdp = LatticeMdp.from_fsas(vec)
    index = arc_output_index(vec, mdp.arc_fsa, 7, 5)
    post = posteriors(mdp, torch.randn(vec.num_arcs, dtype=torch.float64))
    q = token_occupancy(post, index, torch.Size([3, 7, 5]))
    assert float(q.min()) >= 0
    real = index >= 0
    assert float(q.sum()) == pytest.approx(float(post.occupancy[real].sum()))
    a = int(torch.nonzero(real)[0])
    same = (index == index[a])
    assert float(q.view(-1)[index[a]]) == pytest.approx(float(post.occupancy[same].sum()))
    rng = torch.Generator().manual_seed(0)
    log_probs = torch.randn(3, 7, 5, dtype=torch.float64, generator=rng).log_softmax(-1)
    for posterior in (q, log_probs.exp()):
        for _ in range(20):
            y = torch.randn(3, 7, 5, dtype=torch.float64, generator=rng)
            hy = frame_fisher_product(posterior, y, kappa=0.7, softmax_weight=0.3, log_probs=log_probs)
            assert float((y * hy).sum()) >= -1e-12
            # equals the explicit per-frame matrix kappa^2 (diag(q) - q q^T) + 0.3 diag(p)
            want = torch.stack([torch.stack([
                (0.49 * (torch.diag(posterior[n, t]) - torch.outer(posterior[n, t], posterior[n, t]))
                 + 0.3 * torch.diag(log_probs[n, t].exp())) @ y[n, t] for t in range(7)]) for n in range(3)])
            torch.testing.assert_close(hy, want)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_arc_weight_raises_naming_lattice_and_arc(bad):
    """A NaN or infinite weight (a diverged network) is an error naming it, never an arc of
    probability 0 (issue 17, item 6): in the posteriors, the frame objective (also when every weight
    is bad), the path sampler and the edit objective."""
    fsas, vec = _lattices(11, count=3)
    mdp = LatticeMdp.from_fsas(vec)
    firsts = first_arcs(vec).tolist()
    weights = torch.randn(vec.num_arcs, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    post = posteriors(mdp, weights)
    arcs, path_ids, fsa_of = sample_paths(mdp, post, weights, 3, torch.Generator().manual_seed(0))
    paths = distinct_paths(arcs, path_ids, fsa_of, vec.aux_labels.tolist(), [[1], [2], [3]])
    on_path = int(paths.arcs[paths.fsa_of_path[paths.path_of_arc] == 1][0])  # an arc of lattice 1 on a path
    broken = weights.clone()
    broken[on_path] = bad
    named = f"arc {on_path - firsts[1]} of lattice 1 (arc {on_path} of the FsaVec)"
    with pytest.raises(NonFiniteWeightError, match=named.replace("(", r"\(").replace(")", r"\)")):
        posteriors(mdp, broken)
    with pytest.raises(NonFiniteWeightError, match="lattice 1"):
        expected_advantage(broken.requires_grad_(), mdp, torch.ones(vec.num_arcs, dtype=torch.float64))
    with pytest.raises(NonFiniteWeightError, match="lattice 0 .* non-finite arc weights in all"):
        expected_advantage(torch.full((vec.num_arcs,), bad, dtype=torch.float64), mdp,
                           torch.ones(vec.num_arcs, dtype=torch.float64))
    with pytest.raises(NonFiniteWeightError, match="lattice 1"):
        sample_paths(mdp, post, broken.detach(), 3, torch.Generator().manual_seed(0))
    with pytest.raises(NonFiniteWeightError, match=f"arc {on_path} of the FsaVec, on a sampled path of lattice 1"):
        expected_path_advantage(broken, paths, torch.zeros(3, dtype=torch.float64), 3)
