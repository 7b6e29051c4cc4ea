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
