"""Stages 5, 6 and 7 as two processes of one torch.distributed job (gloo, localhost) against one.

The steps are launched exactly as run.sh launches them (steps/*.sh --world-size N, which runs
``python -m rlhf.torchrun --standalone``). Every process uses one thread (as torchrun sets), so
one process and two do the same arithmetic but for the order of the all-reduced sums.
"""

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from conftest import REPO, TINY_OPTIONS, relative_difference, run_recipe
from rlhf.lattice_shards import LatticeShard, shard_paths
from rlhf.torchrun import free_port, standalone_on_free_port

pytestmark = pytest.mark.slow  # multi-process jobs: minutes in all

STEPS = REPO / "steps"
# The tiny recipe's stage 5 options (conftest.TINY_MODEL_OPTIONS), shards of 5 cuts so both ranks work.
LATTICE_OPTIONS = ["--epoch", "2", "--avg", "2", "--max-active-states", "1000", "--output-beam", "3",
                   "--search-beam", "20", "--lm-scale", "0.5", "--max-duration", "40", "--shard-size", "5"]
# Many small batches, all of them in the gradient and the curvature, so both ranks share every sum.
HF_OPTIONS = ["--epoch", "2", "--avg", "2", "--max-active-states", "1000", "--max-duration", "40",
              "--heldout-utts", "4", "--grad-fraction", "1", "--curvature-fraction", "1", "--batch-frames", "300",
              "--hf-cg-max-iters", "8", "--decode-splits", ""]


def _env() -> dict:
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")


def _step(script: str, *args: str, world_size: int = 1, timeout: float = 300) -> str:
    result = subprocess.run([str(STEPS / script), "--world-size", str(world_size), *map(str, args)], env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout
    return result.stdout


@pytest.fixture(scope="module")
def model_dirs(tiny_recipe, tmp_path_factory):
    """Two copies of the tiny recipe's model directory (checkpoints only): one for one process, one for two."""
    dirs = {}
    for world_size in (1, 2):
        exp = tmp_path_factory.mktemp(f"world{world_size}") / "ctc_tdnn"
        exp.mkdir()
        for epoch in (1, 2):
            shutil.copy(tiny_recipe.model_dir / f"epoch-{epoch}.pt", exp)
        dirs[world_size] = exp
    return dirs


def _data(recipe) -> list[Path]:
    return [recipe.data_dir / "lang_bpe_50", recipe.data_dir / "fbank"]


@pytest.fixture(scope="module")
def lattices(tiny_recipe, model_dirs):
    """Stages 5 and 6 (both rewards) run by one process and by two."""
    for world_size, exp in model_dirs.items():
        _step("make_lattices.sh", *LATTICE_OPTIONS, *_data(tiny_recipe), exp, world_size=world_size)
        for reward in ("frame", "edit"):
            _step("qlearn.sh", "--reward", reward, exp, world_size=world_size)
    return model_dirs


def _flat(attribute) -> torch.Tensor:
    """A lattice attribute's values (aux_labels of HLG lattices are ragged)."""
    return attribute if torch.is_tensor(attribute) else attribute.values


def test_lattices_and_q_values_do_not_depend_on_the_number_of_processes(lattices):
    one, two = lattices[1] / "lattices", lattices[2] / "lattices"
    for split in ("train", "dev"):
        paths = shard_paths(one / split)
        assert [p.name for p in paths] == [p.name for p in shard_paths(two / split)]
        assert split != "train" or len(paths) >= 4  # both ranks made shards
        for path in paths:
            a, b = LatticeShard.load(path), LatticeShard.load(two / split / path.name)
            assert a.cut_ids == b.cut_ids and a.references == b.references and a.num_frames == b.num_frames
            assert torch.equal(a.lattice.arcs.values(), b.lattice.arcs.values())
            for name in ("scores", "frame_idx", "graph_scores", "aux_labels"):
                assert torch.equal(_flat(getattr(a.lattice, name)), _flat(getattr(b.lattice, name))), (path, name)
            assert all(torch.equal(x, y) for x, y in zip(a.alignments, b.alignments))
            for reward in ("frame", "edit"):
                qa = torch.load(one / split / f"q-{reward}" / path.name)
                qb = torch.load(two / split / f"q-{reward}" / path.name)
                for name in ("q", "v_src", "advantage", "best_return", "start_value", "valid"):
                    assert torch.equal(qa[name], qb[name]), (path, reward, name)
    # rank 1 logged to its own file; rank 0 wrote the summary
    assert list((lattices[2] / "log").glob("make-lattices-*.rank-1.log"))
    assert (lattices[2] / "qlearn-frame.md").is_file() and (lattices[2] / "lattices" / "stats.json").is_file()


def test_recipe_stages_3_to_7_on_two_processes(tiny_recipe, tmp_path):
    """./run.sh --world-size 2 from stage 3 on, in a copy of the tiny recipe's data."""
    shutil.copytree(tiny_recipe.data_dir, tmp_path / "data")
    result = run_recipe(tmp_path, *TINY_OPTIONS, "--stage", "3", "--world-size", "2", "--dist-timeout", "120")
    assert result.returncode == 0, result.stdout
    for stage in range(3, 8):
        assert f"Stage {stage} done" in result.stdout
    assert "INFO rank 0" in result.stdout and "rank 1" not in result.stdout  # rank 1 is quiet on the console
    model_dir = tmp_path / "exp" / "ctc_tdnn"
    assert list((model_dir / "log").glob("train-*.rank-1.log"))
    assert (model_dir / "finetune" / "rl-hf-frame" / "comparison.md").is_file()


@pytest.mark.parametrize("reward", ["frame", "edit"])
def test_one_hf_iteration_on_two_processes_equals_one_process(tiny_recipe, lattices, tmp_path, reward):
    states = {}
    for world_size, exp in lattices.items():
        out = tmp_path / f"world{world_size}"
        _step("finetune.sh", *HF_OPTIONS, "--reward", reward, "--max-iters", "1", "--out-dir", out,
              *_data(tiny_recipe), exp, world_size=world_size)
        states[world_size] = torch.load(out / "state.pt")
    one, two = states[1], states[2]
    assert one["progress"]["steps"][0]["loss"] == pytest.approx(two["progress"]["steps"][0]["loss"], rel=1e-6)
    assert one["progress"]["steps"][0]["cg_iters"] == two["progress"]["steps"][0]["cg_iters"]
    baseline = torch.load(lattices[1] / "epoch-2.pt")["model"]
    assert relative_difference(one["model"], baseline) > 1e-3  # the iteration moved the model ...
    assert relative_difference(two["model"], one["model"]) < 1e-5  # ... and two processes moved it alike


def test_adam_control_runs_on_two_processes(tiny_recipe, lattices, tmp_path):
    out = tmp_path / "adam"
    _step("finetune.sh", *HF_OPTIONS, "--objective", "ctc", "--optimizer", "adam", "--max-iters", "3",
          "--out-dir", out, *_data(tiny_recipe), lattices[2], world_size=2)
    state = torch.load(out / "state.pt")
    assert state["progress"]["iteration"] == 3 and (out / "best.pt").is_file()


def _rank_pid(agent: int, rank: int, deadline: float) -> int:
    """The pid of the worker of torchrun agent ``agent`` that has RANK=``rank``."""
    while time.time() < deadline:
        for child in Path(f"/proc/{agent}/task/{agent}/children").read_text().split():
            try:
                environ = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if f"RANK={rank}".encode() in environ:
                return int(child)
        time.sleep(0.5)
    raise AssertionError(f"no rank {rank} under process {agent}")


@pytest.mark.parametrize("signal_name", ["SIGKILL", "SIGSTOP"])
def test_a_rank_that_dies_or_hangs_ends_the_job_with_an_error(tiny_recipe, lattices, tmp_path, signal_name):
    """SIGKILL: torchrun sees the dead rank and stops the job. SIGSTOP: the rank hangs; the other
    rank's next collective times out (--dist-timeout) and the job ends. Either way rank 0 gets no
    further than the iteration it is in (the timeouts below only turn a hang into a failure)."""
    out = tmp_path / "killed"
    timeout = 10
    proc = subprocess.Popen([str(STEPS / "finetune.sh"), "--world-size", "2", "--dist-timeout", str(timeout),
                             *HF_OPTIONS, "--max-iters", "100000", "--out-dir", str(out),
                             *map(str, _data(tiny_recipe)), str(lattices[2])],
                            env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 600
        while not (out / "progress.json").is_file() or '"steps": []' in (out / "progress.json").read_text():
            assert proc.poll() is None and time.time() < deadline, "the job did not start iterating"
            time.sleep(0.5)
        victim = _rank_pid(proc.pid, 1, deadline)
        iteration = json.loads((out / "progress.json").read_text())["iteration"]
        os.kill(victim, getattr(signal, signal_name))
        output, _ = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0
    assert json.loads((out / "progress.json").read_text())["iteration"] <= iteration + 1
    assert "rlhf.bin.finetune FAILED" in output
    if signal_name == "SIGKILL":
        assert "Signal 9 (SIGKILL)" in output and "rank      : 1" in output
    else:  # rank 0 names the collective that timed out
        assert "Timed out" in output or "timed out" in output, output[-3000:]


def test_two_machine_launch_commands_on_one_host(lattices, tmp_path):
    """cmd.sh's multi-machine form (one torchrun agent per machine, --nnodes 2, a c10d rendezvous),
    with both 'machines' on localhost: stage 6 gives the values one process gives."""
    exp = tmp_path / "ctc_tdnn"
    shutil.copytree(lattices[2], exp)
    launcher = (f"python -m rlhf.torchrun --nnodes=2 --rdzv_backend=c10d "
                f"--rdzv_endpoint=localhost:{free_port()} --rdzv_id=two-machines")
    agents = [subprocess.Popen([str(STEPS / "qlearn.sh"), "--world-size", "2", "--nodes", "2", "--cmd", launcher,
                                "--reward", "frame", "--force", "true", str(exp)],
                               env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
              for _ in range(2)]
    for agent in agents:
        output, _ = agent.communicate(timeout=300)
        assert agent.returncode == 0, output
    for path in shard_paths(lattices[1] / "lattices" / "train"):
        qa = torch.load(lattices[1] / "lattices" / "train" / "q-frame" / path.name)
        qb = torch.load(exp / "lattices" / "train" / "q-frame" / path.name)
        assert torch.equal(qa["advantage"], qb["advantage"]) and torch.equal(qa["q"], qb["q"])


def test_launch_refuses_a_world_size_that_is_not_a_multiple_of_the_machines():
    result = subprocess.run([str(REPO / "utils" / "launch.sh"), "rlhf.bin.qlearn", "--world-size", "3", "--nodes", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert result.returncode != 0 and "not a multiple of --nodes 2" in result.stdout


def test_standalone_jobs_get_their_own_rendezvous_port():
    argv = standalone_on_free_port(["--standalone", "--nproc_per_node", "2", "-m", "rlhf.bin.qlearn", "--standalone"])
    assert "--standalone" not in argv[:-1] and argv[-1] == "--standalone"  # the step's own options are kept
    assert any(a.startswith("--rdzv_endpoint=localhost:") for a in argv) and "--nnodes=1" in argv
    assert standalone_on_free_port(["--nnodes=2", "-m", "x"]) == ["--nnodes=2", "-m", "x"]
