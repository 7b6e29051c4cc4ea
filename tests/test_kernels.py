"""The compiled CPU kernels (rlhf.rl.kernels) against the torch sweeps they replace on the CPU.

Bit-identical where both do the same arithmetic in the same order (hard-max Q-learning, the
sampled paths); within 1e-12 where exp and log (numba's against torch's and k2's) may differ by
an ulp. Random lattices have dead ends, epsilon labels and several FSAs (several finals); the
real ones come from the tiny recipe's stage 5.
"""

import dataclasses
import random

import k2
import pytest
import torch
from lattices import random_lattice

from rlhf.rl import kernels
from rlhf.rl.mdp import LatticeMdp
from rlhf.rl.objective import expected_advantage, posteriors, sample_paths
from rlhf.rl.qlearning import QLearningConfig, q_learning
from rlhf.rl.rewards import frame_rewards
from rlhf.rl.values import lattice_values

CONFIGS = [QLearningConfig(), QLearningConfig(gamma=0.8), QLearningConfig(alpha=0.5, gamma=0.9, tolerance=1e-9),
           QLearningConfig(alpha=0.7, max_sweeps=3), QLearningConfig(temperature=0.7),
           QLearningConfig(alpha=0.6, gamma=0.95, temperature=0.5, tolerance=1e-8)]
CLOSE = {"rtol": 1e-12, "atol": 1e-12}
FLOAT32_ULP = {"rtol": 2.0 ** -23, "atol": 1e-12}


def dead_end_lattice(rng: random.Random, num_states: int, vocab: int = 4) -> k2.Fsa:
    """A top-sorted acyclic Fsa whose states may be dead ends (no arcs) or unreachable; label 0
    is epsilon. The start may have no complete path at all."""
    final = num_states - 1
    rows = []
    for s in range(final):
        if s == final - 1:
            rows.append([s, final, -1, 0])
        elif s == 0 or rng.random() > 0.2:  # else a dead end
            for dest in sorted(rng.randrange(s + 1, final + 1) for _ in range(rng.randrange(1, 4))):
                rows.append([s, dest, -1 if dest == final else rng.randrange(0, vocab), 0])
    fsa = k2.Fsa(torch.tensor(rows, dtype=torch.int32))
    fsa.scores = torch.randn(len(rows), generator=torch.Generator().manual_seed(rng.randrange(1 << 30)))
    return fsa


def random_vec(seed: int, count: int = 30) -> k2.Fsa:
    rng = random.Random(seed)
    return k2.create_fsa_vec([dead_end_lattice(rng, rng.randrange(2, 12)) for _ in range(count)])


@pytest.fixture(scope="module")
def real_shard(tiny_recipe):
    from rlhf.lattice_shards import LatticeShard
    return LatticeShard.load(tiny_recipe.model_dir / "lattices" / "train" / "shard-00000.pt")


def both(fn):
    """fn() with the compiled kernels and with the torch code."""
    with kernels.sweeps("auto"):
        compiled = fn()
    with kernels.sweeps("torch"):
        reference = fn()
    return compiled, reference


def assert_same_q(fsas: k2.Fsa, rewards: torch.Tensor, configs=CONFIGS, init=None):
    mdp = LatticeMdp.from_fsas(fsas)
    for config in configs:
        compiled, reference = both(lambda: q_learning(mdp, rewards, config, init=init))
        assert (compiled.sweeps, compiled.residual == pytest.approx(reference.residual, abs=1e-12)) == \
            (reference.sweeps, True), config
        if config.temperature == 0.0:  # same arithmetic in the same order: the same bits
            assert torch.equal(compiled.q, reference.q) and torch.equal(compiled.v, reference.v), config
            assert compiled.residual == reference.residual
        else:  # exp and log may differ by an ulp
            torch.testing.assert_close(compiled.q, reference.q, **CLOSE)
            torch.testing.assert_close(compiled.v, reference.v, **CLOSE)


def test_q_learning_kernel_equals_torch_on_random_lattices():
    for seed in range(3):
        fsas = random_vec(seed)
        rewards = torch.randn(fsas.num_arcs, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
        assert_same_q(fsas, rewards)
        assert_same_q(fsas, rewards, init=torch.randn(fsas.num_arcs, dtype=torch.float64))


def test_q_learning_kernel_equals_torch_on_real_lattices(real_shard):
    lattice, alignments = real_shard.lattice, real_shard.alignments
    assert_same_q(lattice, frame_rewards(lattice, alignments), [c for c in CONFIGS if c.alpha == 1.0])
    # alpha < 1 takes over a hundred sweeps to 1e-8 here; the torch code takes seconds for that
    capped = [dataclasses.replace(c, max_sweeps=10) for c in CONFIGS if c.alpha < 1.0]
    few = k2.index_fsa(lattice, torch.arange(4, dtype=torch.int32))
    assert_same_q(few, frame_rewards(few, alignments[:4]), capped)


def test_lattice_values_equal_torch_in_both_reward_modes():
    """Q-learning on the lattice (frame) or on its product with the reference (edit), and the
    forward sweep of the best return through each arc."""
    rng = random.Random(5)
    fsas = [random_lattice(rng, num_states=rng.randrange(3, 9), num_frames=5) for _ in range(20)]
    vec = k2.create_fsa_vec(fsas)
    vec.frame_idx = torch.cat([f.frame_idx for f in fsas])
    alignments = [torch.tensor([rng.randrange(0, 5) for _ in range(5)]) for _ in fsas]
    references = [[rng.randrange(1, 6) for _ in range(rng.randrange(0, 4))] for _ in fsas]
    for mode in ("frame", "edit"):
        compiled, reference = both(lambda: lattice_values(vec, mode, alignments=alignments, references=references))
        for name in ("mdp_q", "mdp_v", "q", "v_src", "advantage", "best_return", "start_value"):
            assert torch.equal(getattr(compiled, name), getattr(reference, name)), (mode, name)
        assert compiled.greedy_arcs == reference.greedy_arcs


def assert_same_objective(fsas: k2.Fsa, weights: torch.Tensor, advantages: torch.Tensor):
    mdp = LatticeMdp.from_fsas(fsas)

    def run():
        post = posteriors(mdp, weights)
        w = weights.clone().requires_grad_(True)
        j = expected_advantage(w, mdp, advantages)
        (j * torch.linspace(0.5, 1.5, j.numel(), dtype=j.dtype)).sum().backward()
        return post, j.detach(), w.grad

    (post, j, grad), (ref_post, ref_j, ref_grad) = both(run)
    for name in ("alpha", "beta", "log_total", "occupancy"):
        torch.testing.assert_close(getattr(post, name), getattr(ref_post, name), **CLOSE)
    torch.testing.assert_close(j, ref_j, **CLOSE)
    # float32 weights (stage 7's) get float32 gradients: a 1e-13 difference can round one ulp apart
    torch.testing.assert_close(grad, ref_grad, **(CLOSE if weights.dtype == torch.float64 else FLOAT32_ULP))
    assert float(ref_grad.abs().max()) > 0.01
    for seed in (0, 1):  # the same paths from the same seed
        def sample():
            return sample_paths(mdp, ref_post, weights, 8, torch.Generator().manual_seed(seed))
        compiled, reference = both(sample)
        assert compiled[0].numel() > 0
        for c, r in zip(compiled, reference):
            assert c.dtype == r.dtype and torch.equal(c, r)


def test_objective_kernels_equal_torch_on_random_lattices():
    for seed in range(3):
        fsas = random_vec(10 + seed)
        g = torch.Generator().manual_seed(seed)
        assert not bool(torch.isfinite(posteriors(LatticeMdp.from_fsas(fsas), fsas.scores).log_total).all())
        assert_same_objective(fsas, torch.randn(fsas.num_arcs, dtype=torch.float64, generator=g),
                              torch.randn(fsas.num_arcs, dtype=torch.float64, generator=g))


def test_objective_kernels_equal_torch_on_real_lattices(real_shard):
    fsas = real_shard.lattice
    advantages = torch.randn(fsas.num_arcs, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert_same_objective(fsas, fsas.scores.detach().to(torch.float64), advantages)
    assert_same_objective(fsas, fsas.scores.detach(), advantages)


@pytest.mark.parametrize("kernel", ["arc_dests", "q_sweeps", "forward_returns", "arc_posteriors", "fsa_sums",
                                    "expected_advantage_grad", "sampling_keys", "walk_paths", "group_by_path"])
def test_cpu_tensors_take_the_compiled_path(monkeypatch, kernel):
    """Without this, the equality tests could be comparing the torch code with itself."""
    def refuse(*args):
        raise RuntimeError(f"{kernel} ran")

    monkeypatch.setattr(kernels, kernel, refuse)
    fsas = random_vec(0, count=3)
    framed = k2.create_fsa_vec([random_lattice(random.Random(0))])
    weights = torch.randn(fsas.num_arcs, dtype=torch.float64, requires_grad=True)

    def everything():
        lattice_values(framed, "frame", alignments=[torch.zeros(6, dtype=torch.long)])
        mdp = LatticeMdp.from_fsas(fsas)
        q_learning(mdp, torch.zeros(fsas.num_arcs))
        expected_advantage(weights, mdp, torch.ones(fsas.num_arcs)).sum().backward()
        sample_paths(mdp, posteriors(mdp, weights), weights, 2, torch.Generator().manual_seed(0))

    with kernels.sweeps("torch"):
        everything()
    with pytest.raises(RuntimeError, match=f"{kernel} ran"):
        everything()


def test_unknown_sweeps_choice_is_an_error(monkeypatch):
    monkeypatch.setenv(kernels.SWEEPS_ENV, "fast")
    with pytest.raises(ValueError, match="RLHF_SWEEPS='fast'; choose from auto, torch"):
        kernels.compiled(torch.zeros(1))
