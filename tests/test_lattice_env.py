"""The Gymnasium view of a lattice: episodes return exactly the rewards of the paths they take."""

import random

import k2
import numpy as np
import pytest
import torch
from lattices import edit_return, enumerate_paths, frame_return, random_lattice

from rlhf.rl import frame_rewards, lattice_values
from rlhf.rl.env import LatticeEnv


def cases(seed: int, n: int = 20):
    rng = random.Random(seed)
    for _ in range(n):
        fsa = random_lattice(rng, num_states=rng.randrange(3, 9), num_frames=5)
        alignment = torch.tensor([rng.randrange(0, 5) for _ in range(5)])
        reference = [rng.randrange(1, 6) for _ in range(rng.randrange(0, 5))]
        yield fsa, alignment, reference


def run_episode(env: LatticeEnv, choose) -> tuple[float, list[int]]:
    state, info = env.reset(seed=0)
    total, arcs, done = 0.0, [], False
    while not done:
        state, reward, done, truncated, info = env.step(choose(state, info))
        assert not truncated
        total += reward
        arcs.append(info["arc"])
    return total, arcs


def test_random_episodes_return_their_paths_rewards():
    rng = np.random.default_rng(0)
    for fsa, alignment, reference in cases(1):
        rewards = frame_rewards(k2.create_fsa_vec([fsa]), [alignment]).tolist()
        paths = {tuple(p.arcs): p for p in enumerate_paths(fsa)}
        for mode in ("frame", "edit"):
            env = LatticeEnv(fsa, mode, alignment=alignment, reference=reference)
            for _ in range(5):
                total, arcs = run_episode(env, lambda s, info: rng.choice(np.flatnonzero(info["action_mask"])))
                path = paths[tuple(arcs)]
                expected = frame_return(path, rewards) if mode == "frame" else edit_return(path, reference)
                assert total == expected


def test_q_greedy_episode_returns_v_start():
    for fsa, alignment, reference in cases(2):
        values = lattice_values(k2.create_fsa_vec([fsa]), "frame", alignments=[alignment])
        env = LatticeEnv(fsa, "frame", alignment=alignment)
        q = values.q.tolist()
        total, _ = run_episode(env, lambda s, info: int(np.argmax([q[a] for a in env.arcs_from(s)])))
        assert total == values.start_value[0].item()
        # edit mode: the oracle path found on the product earns V(start) = minus the oracle errors
        edit = lattice_values(k2.create_fsa_vec([fsa]), "edit", references=[reference])
        env = LatticeEnv(fsa, "edit", reference=reference)
        oracle = iter(edit.greedy_arcs[0])
        total, _ = run_episode(env, lambda s, info: env.arcs_from(s).index(next(oracle)))
        assert total == edit.start_value[0].item()


def test_env_follows_the_gymnasium_api_and_rejects_bad_actions():
    fsa, alignment, _ = next(cases(3))
    env = LatticeEnv(fsa, "frame", alignment=alignment)
    state, info = env.reset(seed=1)
    assert env.observation_space.contains(state) and info["action_mask"].shape == (env.action_space.n,)
    action = int(np.flatnonzero(info["action_mask"])[0])
    assert env.action_space.contains(action)
    state, reward, terminated, truncated, info = env.step(action)
    assert env.observation_space.contains(state) and isinstance(reward, float)
    assert isinstance(terminated, bool) and truncated is False
    env.reset()
    with pytest.raises(ValueError, match="not valid"):
        env.step(env.action_space.n + 1)
    with pytest.raises(ValueError, match="no path"):
        LatticeEnv(k2.Fsa.from_str("0 1 1 0\n2 3 -1 0\n3"), "edit", reference=[1])
