"""Every recipe shares steps/ and rlhf/ rather than copying another recipe's files."""

import hashlib
import re
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest

from conftest import REPO

RECIPES = [REPO / "run.sh", *sorted(REPO.glob("egs/*/run.sh"))]
# What recipes write when they run: not recipe code.
OUTPUTS = {"data", "exp", "download", "__pycache__"}


def recipe_files() -> list[Path]:
    """The recipes' own files (run.sh, local/, egs/*/) and the shared steps/ and utils/."""
    roots = [REPO / "local", REPO / "steps", REPO / "utils", REPO / "egs"]
    files = [REPO / "run.sh"]
    for root in roots:
        files += [p for p in root.rglob("*") if p.is_file() and not p.is_symlink()
                  and not OUTPUTS & set(p.relative_to(REPO).parts)]
    return files


def test_no_two_recipe_files_are_duplicates():
    by_digest = defaultdict(list)
    for path in recipe_files():
        by_digest[hashlib.sha256(path.read_bytes()).hexdigest()].append(str(path.relative_to(REPO)))
    duplicates = [paths for paths in by_digest.values() if len(paths) > 1]
    assert not duplicates, f"identical files (share them through steps/ or rlhf/, or a symlink): {duplicates}"


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: str(p.relative_to(REPO)))
def test_recipe_help_lists_stages_0_to_4_and_its_options(recipe):
    result = subprocess.run([str(recipe), "--help"], cwd=recipe.parent, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    assert result.returncode == 0, result.stdout
    stages = re.findall(r"^  (\d+)  ", result.stdout, flags=re.M)
    assert stages[:5] == ["0", "1", "2", "3", "4"], result.stdout
    assert "--stop-stage" in result.stdout and "--force" in result.stdout


def _step_calls(recipe: Path) -> list[tuple[str, str]]:
    """(step name, the whole command with its continuation lines) of every steps/<step>.sh a recipe runs."""
    text = recipe.read_text().replace("\\\n", " ")
    return [(m.group(1), m.group(0)) for m in re.finditer(r'steps/(\w+)\.sh"[^\n]*', text)]


def _takes_force(step: str) -> bool:
    """Whether steps/<step>.sh runs a program with the stage options (--force)."""
    module = re.search(r"rlhf\.bin\.(\w+)", (REPO / "steps" / f"{step}.sh").read_text()).group(1)
    return "add_stage_options" in (REPO / "rlhf" / "bin" / f"{module}.py").read_text()


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: str(p.relative_to(REPO)))
def test_recipe_passes_force_to_every_step_that_takes_it(recipe):
    """``./run.sh --stage 4 --force true`` must redo decoding and bundling, not only HLG (issue 17, item 4)."""
    calls = _step_calls(recipe)
    assert {"decode", "bundle_model"} <= {step for step, _ in calls}
    missing = [step for step, command in calls if _takes_force(step) and '--force "$force"' not in command]
    assert not missing, f"{recipe.relative_to(REPO)} does not pass --force to {missing}"
