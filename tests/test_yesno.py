"""egs/yesno end to end on the real yesno corpus (Kaldi's and icefall's CI data)."""

import json
import os
import re
from pathlib import Path

import pytest

from conftest import REPO, run_recipe

YESNO = Path(os.environ.get("RLHF_YESNO_DIR", REPO.parent / "shared" / "corpora" / "waves_yesno"))


@pytest.mark.slow
@pytest.mark.skipif(not YESNO.is_dir(), reason=f"no yesno corpus at {YESNO} (set RLHF_YESNO_DIR to a waves_yesno copy)")
def test_yesno_recipe_reaches_icefall_wer(tmp_path):
    result = run_recipe(tmp_path, "--corpus-dir", str(YESNO), script=REPO / "egs" / "yesno" / "run.sh")
    assert result.returncode == 0, result.stdout
    exp = tmp_path / "exp" / "ctc_tdnn"
    history = json.loads((exp / "metrics.json").read_text())
    assert [h["epoch"] for h in history] == list(range(1, 81))  # every epoch trained ...
    assert sum(h["num_skipped"] for h in history) == 0  # ... on every batch
    summary = (exp / "hlg-1best" / "errs-test-epoch-80-avg-10.txt").read_text().splitlines()[0]
    errors, words = map(int, re.match(r"%WER [\d.]+ \[ (\d+) / (\d+),", summary).groups())
    assert words == 240
    assert errors <= 1, summary  # icefall's published yesno result: 0.42%, 1 error in 240 words
    assert (tmp_path / "data" / "manifests" / "yesno_recordings_train.jsonl.gz").is_file()
    table = (exp / "finetune" / "rl-hf-frame" / "comparison.md").read_text()  # stage 7 ran
    assert "| baseline |" in table and "| rl-hf-frame |" in table


def test_yesno_recipe_rejects_a_wrong_corpus_dir(tmp_path):
    (tmp_path / "not_yesno").mkdir()
    result = run_recipe(tmp_path, "--corpus-dir", str(tmp_path / "not_yesno"), "--stop-stage", "0",
                        script=REPO / "egs" / "yesno" / "run.sh")
    assert result.returncode != 0
    assert "has 0 .wav files; waves_yesno has 60" in result.stdout
