"""Q-learning over lattices (stage 6): exactness against brute force, the reference loop, bad input."""

import math
import random

import k2
import pytest
import torch
from lattices import edit_return, enumerate_paths, frame_return, logsumexp, random_lattice

from rlhf.rl import LatticeMdp, QLearningConfig, frame_rewards, lattice_values, q_learning
from rlhf.rl.rewards import edit_distance
from rlhf.rl.values import oracle_errors
from rlhf.testing.qlearning_reference import q_learning_loop

NUM_RANDOM = 40


def random_cases(seed: int, vocab: int = 5):
    """(lattice, alignment, reference) triples of varied shapes."""
    rng = random.Random(seed)
    for _ in range(NUM_RANDOM):
        num_frames = rng.randrange(2, 7)
        fsa = random_lattice(rng, num_states=rng.randrange(3, 9), num_frames=num_frames, vocab=vocab)
        alignment = torch.tensor([rng.randrange(0, vocab) for _ in range(num_frames)])
        reference = [rng.randrange(1, vocab + 1) for _ in range(rng.randrange(0, 5))]
        yield fsa, alignment, reference


def arc_src(fsa: k2.Fsa) -> list[int]:
    return fsa.arcs.values()[:, 0].tolist()


def test_frame_q_is_best_return_of_paths_through_each_arc():
    for fsa, alignment, _ in random_cases(1):
        values = lattice_values(k2.create_fsa_vec([fsa]), "frame", alignments=[alignment])
        rewards = frame_rewards(k2.create_fsa_vec([fsa]), [alignment]).tolist()
        complete = enumerate_paths(fsa)
        assert values.start_value[0] == max(frame_return(p, rewards) for p in complete)
        for a, src in enumerate(arc_src(fsa)):
            suffixes = [p for p in enumerate_paths(fsa, src) if p.arcs[0] == a]
            assert values.q[a] == max(frame_return(p, rewards) for p in suffixes)
            assert values.best_return[a] == max(frame_return(p, rewards) for p in complete if a in p.arcs)


def test_discounted_q_is_best_discounted_return():
    config = QLearningConfig(gamma=0.9)
    for fsa, alignment, _ in random_cases(2):
        fsas = k2.create_fsa_vec([fsa])
        rewards = frame_rewards(fsas, [alignment])
        values = q_learning(LatticeMdp.from_fsas(fsas), rewards, config)
        for a, src in enumerate(arc_src(fsa)):
            suffixes = [p for p in enumerate_paths(fsa, src) if p.arcs[0] == a]
            best = max(frame_return(p, rewards.tolist(), 0.9) for p in suffixes)
            assert values.q[a].item() == pytest.approx(best, abs=1e-12)


def test_edit_v_start_is_minus_oracle_errors_and_q_is_best_through_each_arc():
    for fsa, _, reference in random_cases(3):
        values = lattice_values(k2.create_fsa_vec([fsa]), "edit", references=[reference])
        complete = enumerate_paths(fsa)
        oracle = min(-edit_return(p, reference) for p in complete)
        assert values.start_value[0] == -oracle
        for a in range(fsa.num_arcs):
            through = [edit_return(p, reference) for p in complete if a in p.arcs]
            assert values.best_return[a] == max(through)
        path = next(p for p in complete if p.arcs == values.greedy_arcs[0])  # the greedy path is an oracle path
        assert edit_return(path, reference) == -oracle


def test_edit_distance_agrees_with_jiwer():
    import jiwer
    rng = random.Random(10)
    for _ in range(200):
        hyp = [rng.randrange(1, 4) for _ in range(rng.randrange(1, 7))]
        ref = [rng.randrange(1, 4) for _ in range(rng.randrange(1, 7))]
        m = jiwer.process_words(" ".join(map(str, ref)), " ".join(map(str, hyp)))
        assert edit_distance(hyp, ref) == m.substitutions + m.deletions + m.insertions


def test_alpha_below_one_converges_to_the_same_fixed_point():
    for alpha in (0.3, 0.8):
        config = QLearningConfig(alpha=alpha, tolerance=1e-9)
        for fsa, alignment, _ in list(random_cases(4))[:10]:
            fsas = k2.create_fsa_vec([fsa])
            rewards = frame_rewards(fsas, [alignment])
            mdp = LatticeMdp.from_fsas(fsas)
            exact = q_learning(mdp, rewards)
            slow = q_learning(mdp, rewards, config)
            assert exact.sweeps == 1 and exact.residual == 0.0
            assert (slow.sweeps > 1 or not rewards.any()) and slow.residual <= 1e-9
            assert torch.allclose(slow.q, exact.q, atol=1e-7)


def test_soft_values_are_log_sum_exp_over_paths():
    temperature = 0.7
    config = QLearningConfig(temperature=temperature)
    for fsa, alignment, _ in list(random_cases(5))[:15]:
        fsas = k2.create_fsa_vec([fsa])
        rewards = frame_rewards(fsas, [alignment])
        values = q_learning(LatticeMdp.from_fsas(fsas), rewards, config)
        returns = [frame_return(p, rewards.tolist()) for p in enumerate_paths(fsa)]
        assert values.v[0].item() == pytest.approx(logsumexp(returns, temperature), abs=1e-9)
        assert values.v[0].item() >= max(returns)


def test_advantages_along_any_path_sum_to_its_return_minus_v_start():
    for fsa, alignment, _ in random_cases(6):
        fsas = k2.create_fsa_vec([fsa])
        values = lattice_values(fsas, "frame", alignments=[alignment])
        rewards = frame_rewards(fsas, [alignment]).tolist()
        for path in enumerate_paths(fsa):
            total = sum(values.advantage[a].item() for a in path.arcs)
            assert total == pytest.approx(frame_return(path, rewards) - values.start_value[0].item(), abs=1e-12)


def test_vectorized_equals_the_plain_loop_on_a_batch():
    cases = list(random_cases(7))
    fsas = k2.create_fsa_vec([c[0] for c in cases])
    rewards = frame_rewards(fsas, [c[1] for c in cases])
    for config in (QLearningConfig(), QLearningConfig(alpha=0.5, gamma=0.9)):
        values = q_learning(LatticeMdp.from_fsas(fsas), rewards, config)
        q, sweeps, residual = q_learning_loop(fsas, rewards.tolist(), config)
        assert values.q.tolist() == q
        assert (values.sweeps, values.residual) == (sweeps, residual)


def test_vectorized_equals_the_plain_loop_on_real_lattices(tiny_recipe):
    from rlhf.lattice_shards import LatticeShard
    shard = LatticeShard.load(tiny_recipe.model_dir / "lattices" / "train" / "shard-00000.pt")
    rewards = frame_rewards(shard.lattice, shard.alignments)
    mdp = LatticeMdp.from_fsas(shard.lattice)
    assert mdp.arc_frames is not None  # frame-synchronous: levels are frames
    values = q_learning(mdp, rewards)
    assert values.q.tolist() == q_learning_loop(shard.lattice, rewards.tolist(), QLearningConfig())[0]
    # alpha < 1 takes many sweeps: the plain loop runs on two lattices only
    few = k2.index_fsa(shard.lattice, torch.tensor([0, 1], dtype=torch.int32))
    few_rewards = frame_rewards(few, shard.alignments[:2])
    config = QLearningConfig(alpha=0.5, gamma=0.95)
    values = q_learning(LatticeMdp.from_fsas(few), few_rewards, config)
    q, sweeps, residual = q_learning_loop(few, few_rewards.tolist(), config)
    assert values.q.tolist() == q and values.sweeps == sweeps > 1
    heights_only = k2.Fsa(shard.lattice.arcs.clone())  # no frame_idx: levels from longest paths
    assert torch.equal(q_learning(LatticeMdp.from_fsas(heights_only), rewards).q, q_learning(mdp, rewards).q)


def test_lattice_without_a_complete_path_is_an_error_or_a_counted_skip():
    dead_end = k2.Fsa.from_str("0 1 1 0\n0 2 2 0\n1 3 -1 0\n3")  # state 2 leads nowhere
    no_path = k2.Fsa.from_str("0 1 1 0\n2 3 -1 0\n3")  # the final state cannot be reached
    for fsa in (dead_end, no_path):
        fsa.frame_idx = torch.zeros(fsa.num_arcs, dtype=torch.int32)
        fsa.aux_labels = fsa.labels.clone()
    fsas = k2.create_fsa_vec([dead_end, no_path])
    alignments = [torch.tensor([1]), torch.tensor([1])]
    with pytest.raises(ValueError, match=r"lattice\(s\) \[1\] have no path"):
        lattice_values(fsas, "frame", alignments=alignments)
    values = lattice_values(fsas, "frame", alignments=alignments, skip_invalid=True)
    assert values.valid.tolist() == [True, False]
    assert values.start_value.tolist() == [1.0, 0.0]
    assert not torch.isnan(values.q).any() and not torch.isnan(values.advantage).any()
    assert values.q[1].item() == -math.inf  # the dead-end arc: no return, documented as -inf
    assert values.q[3:].tolist() == [0.0, 0.0]  # the invalid lattice: zeros


def test_empty_reference_counts_every_output_as_an_insertion():
    for fsa, _, _ in list(random_cases(8))[:10]:
        values = lattice_values(k2.create_fsa_vec([fsa]), "edit", references=[[]])
        assert values.start_value[0] == -min(len(p.outputs) for p in enumerate_paths(fsa))


def test_oov_reference_label_can_only_be_an_error():
    for fsa, _, reference in list(random_cases(9))[:10]:
        oov = 1000  # no arc outputs it
        ref = reference + [oov]
        expected = max(edit_return(p, ref) for p in enumerate_paths(fsa))
        assert lattice_values(k2.create_fsa_vec([fsa]), "edit", references=[ref]).start_value[0] == expected
        assert oracle_errors(k2.create_fsa_vec([fsa]), [ref])[0] == -expected


def test_bad_input_is_named():
    fsa = random_lattice(random.Random(0))
    fsas = k2.create_fsa_vec([fsa])
    with pytest.raises(ValueError, match="positive"):
        lattice_values(fsas, "edit", references=[[0, 1]])
    with pytest.raises(ValueError, match="different utterances"):
        lattice_values(fsas, "frame", alignments=[torch.tensor([0])])
    with pytest.raises(ValueError, match="reward mode"):
        lattice_values(fsas, "wer", references=[[1]])
    with pytest.raises(ValueError, match="alpha"):
        q_learning(LatticeMdp.from_fsas(fsas), torch.zeros(fsa.num_arcs), QLearningConfig(alpha=0.0))
    unsorted = k2.Fsa.from_str("0 2 1 0\n1 3 -1 0\n2 1 1 0\n3")
    with pytest.raises(ValueError, match="top-sorted"):
        LatticeMdp.from_fsas(k2.create_fsa_vec([unsorted]))


def final_arc_only(ragged: bool) -> k2.Fsa:
    """The smallest lattice: one arc, the final one (its output -1 as a ragged list or a tensor view)."""
    fsa = k2.Fsa(torch.tensor([[0, 1, -1, 0]], dtype=torch.int32))
    fsa.aux_labels = k2.RaggedTensor([[-1]]) if ragged else torch.tensor([[-1, 7]], dtype=torch.int32)[:, 0]
    fsa.frame_idx = torch.tensor([0], dtype=torch.int32)
    return fsa


@pytest.mark.parametrize("ragged", [True, False])
def test_single_arc_lattice_has_minus_reference_length_as_value(ragged):
    """A lattice of only the final arc outputs nothing: V(start) = -len(reference), alone or in a batch
    (k2 once aborted on its one-element attributes, issue 17 item 5)."""
    for reference in ([3, 4], [], [2]):
        values = lattice_values(k2.create_fsa_vec([final_arc_only(ragged)]), "edit", references=[reference])
        assert values.start_value.tolist() == [-len(reference)]
        assert values.q.tolist() == [-len(reference)] and values.advantage.tolist() == [0.0]
        assert oracle_errors(k2.create_fsa_vec([final_arc_only(ragged)]), [reference]).tolist() == [len(reference)]
    fsa, _, reference = next(random_cases(7))
    alone = lattice_values(k2.create_fsa_vec([fsa]), "edit", references=[reference])
    batch = lattice_values(k2.create_fsa_vec([final_arc_only(True), fsa]), "edit",  # ragged like fsa's
                           references=[[3, 4], reference])
    assert batch.start_value.tolist() == [-2.0, alone.start_value.item()]
    assert batch.q[1:].tolist() == alone.q.tolist()
