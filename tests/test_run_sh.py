"""The recipe's shell interface: --help, option errors, stage checks, re-runs."""

import os
import shutil

import pytest
from conftest import TINY_DATA_OPTIONS, TINY_OPTIONS, run_recipe


def test_help_lists_stages_and_options(tmp_path):
    result = run_recipe(tmp_path, "--help")
    assert result.returncode == 0
    for line in ("0  synthesize the corpus", "1  BPE lang dir", "2  80-dim fbank"):
        assert line in result.stdout
    assert "--stop-stage" in result.stdout and "(default: 2)" in result.stdout
    assert "--bpe-vocab-size" in result.stdout


def test_unknown_option_fails(tmp_path):
    result = run_recipe(tmp_path, "--no-such-option", "1")
    assert result.returncode != 0
    assert "unknown option --no-such-option" in result.stdout


def test_bad_boolean_and_missing_value_fail(tmp_path):
    assert "takes true or false" in run_recipe(tmp_path, "--force", "yes").stdout
    assert "needs a value" in run_recipe(tmp_path, "--nj").stdout


def test_unknown_stage_fails(tmp_path):
    result = run_recipe(tmp_path, "--stage", "42", "--stop-stage", "42")
    assert result.returncode != 0
    assert "no stage '42'" in result.stdout
    assert not (tmp_path / "data").exists()


def test_missing_input_names_file_and_stage(tmp_path):
    result = run_recipe(tmp_path, "--stage", "1", "--stop-stage", "1")
    assert result.returncode != 0
    assert "synth_supervisions_train.jsonl.gz is missing; stage 0 makes it" in result.stdout
    result = run_recipe(tmp_path, "--stage", "2", "--stop-stage", "2")
    assert "synth_recordings_train.jsonl.gz is missing; stage 0 makes it" in result.stdout
    # Stages 4-7 take the epoch that stage 3 selected, and say so when there is none.
    result = run_recipe(tmp_path, "--stage", "4", "--stop-stage", "4")
    assert result.returncode != 0
    assert "exp/ctc_tdnn/selected.json is missing; stage 3 makes it" in result.stdout


def _mtimes(root):
    return {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file() and "log" not in p.parts}


@pytest.mark.slow
def test_rerun_does_no_work_and_changed_option_redoes(tiny_recipe, tmp_path):
    # Work on a copy so other tests keep their fixture untouched.
    work = tmp_path / "copy"
    shutil.copytree(tiny_recipe.workdir, work, symlinks=True)
    # The copied cuts point at the original feature files; that does not matter here.
    before = _mtimes(work)
    result = run_recipe(work, *TINY_OPTIONS)
    assert result.returncode == 0, result.stdout
    for step in ("synthesize", "prepare_manifests", "prepare_lang", "train_lm_3gram", "compute_fbank", "train",
                 "compile_hlg", "decode-epoch-2-avg-2", "make-lattices", "finetune", "decode-best"):
        assert f"{step}: already complete" in result.stdout, step
    assert _mtimes(work) == before

    # A changed option redoes exactly the stage it affects.
    result = run_recipe(work, *TINY_DATA_OPTIONS[:-4], "--bpe-vocab-size", "40", "--stage", "1", "--stop-stage", "1")
    assert result.returncode == 0, result.stdout
    assert "prepare_lang: already complete" not in result.stdout
    assert (work / "data" / "lang_bpe_40" / "bpe.model").is_file()

    # --force true redoes a complete stage.
    result = run_recipe(work, *TINY_OPTIONS, "--stage", "1", "--stop-stage", "1", "--force", "true")
    assert result.returncode == 0
    assert "already complete" not in result.stdout
    assert os.path.getmtime(work / "data" / "lang_bpe_50" / "bpe.model") > before[work / "data" / "lang_bpe_50" / "bpe.model"] / 1e9

    # ... stage 4 included: decoding and bundling too, not only HLG (issue 17, item 4).
    result = run_recipe(work, *TINY_OPTIONS, "--stage", "4", "--stop-stage", "4", "--force", "true")
    assert result.returncode == 0, result.stdout
    assert "already complete" not in result.stdout


def test_stage_after_a_failed_stage_refuses_its_stale_outputs(tiny_recipe, tmp_path):
    work = tmp_path / "copy"
    shutil.copytree(tiny_recipe.workdir, work, symlinks=True)
    # A stage-3 run that fails or is interrupted has removed its marker first; the earlier run's
    # checkpoints are still there. Stage 4 must not decode them (and report them in RESULTS.md).
    # (It removes selected.json too, so stage 4 has no epoch to take; with --epoch named, the
    # marker check refuses the checkpoint.)
    (work / "exp" / "ctc_tdnn" / ".train.done.json").unlink()
    (work / "exp" / "ctc_tdnn" / "selected.json").unlink()
    results = (work / "RESULTS.md").read_text()
    result = run_recipe(work, *TINY_OPTIONS, "--stage", "4", "--stop-stage", "4")
    assert result.returncode == 1
    assert "selected.json is missing; stage 3 makes it" in result.stdout
    result = run_recipe(work, *TINY_OPTIONS, "--stage", "4", "--stop-stage", "4", "--epoch", "2")
    assert result.returncode == 1
    assert "stage 3 did not complete" in result.stdout and "epoch-2.pt is there" in result.stdout
    assert (work / "RESULTS.md").read_text() == results
