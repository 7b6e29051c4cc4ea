"""tools/install.sh finds Python 3.10 or says what to install (no environment is built here)."""

import os
import subprocess

from conftest import REPO


def install(venv, **env) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(REPO / "tools" / "install.sh"), str(venv)], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)


def test_without_python_3_10_it_says_what_to_install(tmp_path):
    """No python3.10 on PATH, no pyenv, an empty pyenv root: a clear error and no venv."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "cat", "sha256sum", "cut", "date", "ls", "sort", "rm", "dirname"):
        path = subprocess.run(["bash", "-c", f"command -v {tool}"], stdout=subprocess.PIPE, text=True).stdout.strip()
        os.symlink(path, bin_dir / tool)
    os.symlink("/bin/false", bin_dir / "python3.10")  # a broken interpreter does not count
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path), "PYENV_ROOT": str(tmp_path / "pyenv")}
    result = install(tmp_path / "venv", **env)
    assert result.returncode == 1, result.stdout
    assert "Python 3.10 is required" in result.stdout
    assert "pyenv install 3.10" in result.stdout and "apt install python3.10" in result.stdout
    assert f"none under {tmp_path / 'pyenv'}/versions/3.10.*" in result.stdout
    assert not (tmp_path / "venv").exists()


def test_python_variable_must_name_python_3_10(tmp_path):
    other = subprocess.run(["bash", "-c", "command -v python3.11 || command -v python3"], stdout=subprocess.PIPE,
                           text=True).stdout.strip()
    result = install(tmp_path / "venv", PATH=os.environ["PATH"], HOME=str(tmp_path), PYTHON=other)
    assert result.returncode == 1, result.stdout
    assert f"PYTHON={other} is not a working Python 3.10" in result.stdout
    assert not (tmp_path / "venv").exists()
