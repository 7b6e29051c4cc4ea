"""Bad options and unwritable output directories: one log line saying what is wrong, exit status 1,
no traceback (issue 17, item 9)."""

import errno
import logging
import subprocess

import pytest
import torch

from conftest import REPO
from rlhf.cli import run_step
from rlhf.model import pick_device


def run_step_script(step: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(REPO / "steps" / f"{step}.sh"), *args], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)


def assert_one_error_line(result: subprocess.CompletedProcess, message: str) -> None:
    assert result.returncode == 1, result.stdout
    assert "Traceback" not in result.stdout, result.stdout
    errors = [line for line in result.stdout.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and message in errors[0], result.stdout


def no_gpu_here() -> str:
    """A CUDA device this machine does not have (cuda:0 without a GPU)."""
    return f"cuda:{torch.cuda.device_count() if torch.cuda.is_available() else 0}"


def test_pick_device_refuses_devices_that_are_not_here():
    with pytest.raises(ValueError, match=f"--device {no_gpu_here()}: this machine has"):
        pick_device(no_gpu_here())
    with pytest.raises(ValueError, match="--device gpu0: not a torch device"):
        pick_device("gpu0")
    assert pick_device("cpu") == torch.device("cpu")


def _model_args(recipe) -> list[str]:
    return [str(recipe.data_dir / "lang_bpe_50"), str(recipe.data_dir / "fbank"), str(recipe.model_dir)]


def test_decode_options_out_of_range_are_one_line(tiny_recipe, tmp_path):
    # --epoch 1 --avg 1 was never decoded: nothing of the fixture is complete for it, nothing is rewritten
    log = ["--log-dir", str(tmp_path / "log")]
    result = run_step_script("decode", "--epoch", "1", "--avg", "1", "--device", no_gpu_here(), *log,
                             *_model_args(tiny_recipe))
    assert_one_error_line(result, f"--device {no_gpu_here()}: this machine has")
    result = run_step_script("decode", "--epoch", "1", "--avg", "1", "--max-duration", "0", *log,
                             *_model_args(tiny_recipe))
    assert_one_error_line(result, "--max-duration must be above 0, got 0.0")
    result = run_step_script("decode", "--epoch", "2", "--avg", "5", *log, *_model_args(tiny_recipe))
    assert_one_error_line(result, "--avg must be between 1 and --epoch (2), got 5")
    assert "epoch--" not in result.stdout


def test_training_and_feature_options_out_of_range_are_one_line(tiny_recipe, tmp_path):
    data = tiny_recipe.data_dir
    result = run_step_script("train_ctc", "--num-epochs", "-1", str(data / "lang_bpe_50"), str(data / "fbank"),
                             str(tmp_path / "exp"))
    assert_one_error_line(result, "--num-epochs must be above 0, got -1")
    assert "--start-epoch" not in result.stdout
    result = run_step_script("compute_fbank", "--nj", "0", str(data / "manifests"), str(tmp_path / "fbank"))
    assert_one_error_line(result, "--nj must be above 0, got 0")


def test_unwritable_output_directory_is_one_line(tiny_recipe, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = run_step_script("decode", "--epoch", "2", "--avg", "2", "--log-dir", str(blocker / "log"),
                             *_model_args(tiny_recipe))
    assert_one_error_line(result, f"{blocker / 'log'}: Not a directory: a file is in the way")


def test_run_step_reports_a_permission_error_in_one_line(caplog):
    """Root may write anywhere, so the permission error is raised by hand here."""
    def step():
        raise PermissionError(errno.EACCES, "Permission denied", "/read-only/exp/epoch-1.pt")

    with caplog.at_level(logging.ERROR), pytest.raises(SystemExit) as exit_info:
        run_step(step)
    assert exit_info.value.code == 1
    assert [r.getMessage() for r in caplog.records] == [
        "/read-only/exp/epoch-1.pt: Permission denied: cannot write there; choose a directory you can write to, "
        "or fix its permissions"]
