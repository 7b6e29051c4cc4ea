"""Shared fixtures: the default recipe run once on a tiny configuration, and a copy of it with the edit reward.

Tests read these runs and must not change them: a test that runs a stage again works on a copy.
"""

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Small enough to run in seconds, large enough for every split to have several speakers.
TINY_DATA_OPTIONS = [
    "--num-train", "24", "--num-dev", "4", "--num-test", "4",
    "--num-train-speakers", "4", "--num-dev-speakers", "2", "--num-test-speakers", "2",
    "--bpe-vocab-size", "50", "--nj", "2",
]
# A model that trains in seconds; its WER means nothing, the stages' outputs do.
TINY_MODEL_OPTIONS = [
    "--num-epochs", "2", "--hidden-dim", "32", "--num-layers", "2", "--max-duration", "40", "--avg", "2",
    "--max-active-states", "1000", "--lattice-output-beam", "3",  # an untrained model's lattices are wide
    "--hf-iters", "2",
]
TINY_OPTIONS = TINY_DATA_OPTIONS + TINY_MODEL_OPTIONS


def run_recipe(workdir: Path, *args: str, script: Path = REPO / "run.sh") -> subprocess.CompletedProcess:
    """Run a recipe in ``workdir`` and capture its output (stdout and stderr together)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run([str(script), *args], cwd=workdir, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)


@dataclass
class RecipeRun:
    workdir: Path
    output: str

    @property
    def corpus_dir(self) -> Path:
        return self.workdir / "download" / "synth"

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    @property
    def model_dir(self) -> Path:
        return self.workdir / "exp" / "ctc_tdnn"


@pytest.fixture(scope="session")
def tiny_recipe(tmp_path_factory) -> RecipeRun:
    workdir = tmp_path_factory.mktemp("recipe")
    result = run_recipe(workdir, *TINY_OPTIONS)
    assert result.returncode == 0, result.stdout
    return RecipeRun(workdir, result.stdout)


@pytest.fixture(scope="session")
def edit_recipe(tiny_recipe, tmp_path_factory) -> RecipeRun:
    """A copy of the tiny recipe with stages 5-6 run again for the edit reward (output: that run's)."""
    workdir = tmp_path_factory.mktemp("recipe-edit")
    shutil.copytree(tiny_recipe.workdir, workdir, symlinks=True, dirs_exist_ok=True)
    result = run_recipe(workdir, *TINY_OPTIONS, "--stage", "5", "--stop-stage", "6", "--reward", "edit")
    assert result.returncode == 0, result.stdout
    return RecipeRun(workdir, result.stdout)


def relative_difference(a: dict, b: dict) -> float:
    """|a - b| / |b| over the floating-point tensors of two state dicts (``b`` the reference)."""
    keys = [k for k, v in b.items() if v.is_floating_point()]
    diff = sum(float(((a[k].double() - b[k].double()) ** 2).sum()) for k in keys) ** 0.5
    return diff / sum(float((b[k].double() ** 2).sum()) for k in keys) ** 0.5
