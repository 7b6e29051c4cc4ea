"""Stage 3 on torch.distributed: DDP steps equal one-process steps, and the step script under torchrun."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from batches import make_word_lang
from conftest import REPO, relative_difference
from rlhf.checkpoint import checkpoint_path

pytestmark = pytest.mark.slow  # multi-process jobs: minutes in all

STEP_SCRIPT = REPO / "tests" / "ddp_step.py"


# rlhf.torchrun's --standalone takes a free port, so concurrent jobs do not meet.
TORCHRUN = [sys.executable, "-m", "rlhf.torchrun", "--standalone"]


def run(args: list, cwd: Path = REPO, timeout: float = 240) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run([str(a) for a in args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout)


def test_ddp_steps_equal_one_process_steps_on_the_concatenated_batches(tmp_path):
    lang = make_word_lang(tmp_path / "lang")
    outs = {name: tmp_path / name for name in ("full", "half", "ddp")}
    for out in outs.values():
        out.mkdir()
    for part in ("full", "half"):
        result = run([sys.executable, STEP_SCRIPT, outs[part], lang, part])
        assert result.returncode == 0, result.stdout
    result = run([*TORCHRUN, "--nproc_per_node", "2", STEP_SCRIPT, outs["ddp"], lang])
    assert result.returncode == 0, result.stdout
    full, half = torch.load(outs["full"] / "rank-0.pt"), torch.load(outs["half"] / "rank-0.pt")
    rank0, rank1 = torch.load(outs["ddp"] / "rank-0.pt"), torch.load(outs["ddp"] / "rank-1.pt")
    assert rank0["world_size"] == 2 and full["world_size"] == 1

    # The ranks agree exactly, started from the one-process initial weights, and trained.
    for k, v in rank0["final"].items():
        assert torch.equal(v, rank1["final"][k]) and torch.equal(rank0["grads"][k], rank1["grads"][k]), k
    assert all(torch.equal(v, full["initial"][k]) for k, v in rank0["initial"].items())
    assert relative_difference(full["final"], full["initial"]) > 1e-3

    # Same steps: an update, the epoch's end when rank 1 ran out (rank 0's batch dropped), an
    # update, a skip (rank 1's share has an impossible transcript), an update.
    assert rank0["results"][1] == "out of batches, 1 dropped" and full["results"][1] == "out of batches, 0 dropped"
    assert rank0["results"][3] is None and full["results"][3] is None
    assert rank0["step"] == full["step"] == 3
    for i in (0, 2, 4):
        assert rank0["results"][i] == pytest.approx(full["results"][i], rel=1e-6)
        assert rank1["results"][i] == rank0["results"][i]

    # Gradients (the loss normalization: Adam alone would hide a wrong scale) and weights.
    assert relative_difference(rank0["grads"], full["grads"]) < 1e-5
    assert relative_difference(rank0["final"], full["final"]) < 1e-5
    # The tolerance tells the concatenated batch from rank 0's share alone.
    assert relative_difference(rank0["grads"], half["grads"]) > 1e-2
    assert relative_difference(rank0["final"], half["final"]) > 1e-4

    # Evaluation: every rank has the whole set's loss and WER, without lhotse's duplicate.
    assert rank0["evaluation"] == rank1["evaluation"]
    assert rank0["evaluation"][0] == pytest.approx(full["evaluation"][0], rel=1e-6)
    assert rank0["evaluation"][1] == full["evaluation"][1]


def rank_logs(log_dir: Path) -> dict[int, str]:
    logs = {}
    for path in log_dir.glob("train-*.rank-*.log"):
        logs[int(re.search(r"rank-(\d+)\.log$", path.name)[1])] = path.read_text()
    return logs


def test_stage_3_runs_on_two_ranks_and_resumes_on_one(tiny_recipe, tmp_path):
    data = tiny_recipe.data_dir
    exp = tmp_path / "exp"
    options = ["--max-duration", "40", "--hidden-dim", "32", "--num-layers", "2", "--device", "cpu",
               "--dist-timeout", "120", data / "lang_bpe_50", data / "fbank", exp]
    result = run([REPO / "steps" / "train_ctc.sh", "--world-size", "2",
                  "--num-epochs", "1", *options], cwd=tmp_path)
    assert result.returncode == 0, result.stdout
    assert checkpoint_path(exp, 1).is_file() and (exp / ".train.done.json").is_file()
    assert (exp / "lang" / "tokens.txt").is_file() and (exp / "features.json").is_file()
    # Rank 0 alone wrote the files: one TensorBoard event file, and only its log says it saved.
    assert len(list((exp / "tensorboard").glob("events.out.tfevents.*"))) == 1
    logs = rank_logs(exp / "log")
    assert sorted(logs) == [0, 1]
    assert "rank 1 of 2 (local rank 1) joined the gloo process group" in logs[1]
    assert f"Wrote {checkpoint_path(exp, 1)}" in logs[0] and "Wrote" not in logs[1]
    # Both ranks computed the dev loss and WER of the whole dev set.
    dev = [re.search(r"epoch 1: train loss \S+, dev loss \S+, dev WER \(greedy\) \S+", logs[r])[0] for r in (0, 1)]
    assert dev[0] == dev[1]
    # No progress bar or log line of rank 1 reached the console beyond warnings.
    assert "INFO rank 1" not in result.stdout and "epoch 1: " in result.stdout
    first = torch.load(checkpoint_path(exp, 1))
    assert first["history"][0]["world_size"] == 2
    assert first["history"][0]["num_batches"] >= 1

    # Resume for a second epoch in one process.
    result = run([REPO / "steps" / "train_ctc.sh", "--start-epoch", "2", "--num-epochs", "2", *options], cwd=tmp_path)
    assert result.returncode == 0, result.stdout
    assert f"Resuming from {checkpoint_path(exp, 1)}" in result.stdout
    second = torch.load(checkpoint_path(exp, 2))
    assert [h["world_size"] for h in second["history"]] == [2, 1]
    assert second["history"][0] == first["history"][0]
    assert second["trainer"]["step"] > first["trainer"]["step"]
    assert any(not torch.equal(v, second["model"][k]) for k, v in first["model"].items())
    metrics = json.loads((exp / "metrics.json").read_text())
    assert [m["epoch"] for m in metrics] == [1, 2]
    assert (exp / "training-curve.png").stat().st_size > 0
