"""egs/an4 on the real CMU AN4 corpus: its checks of the tree, its dev split, and stages 0-7 on a subset."""

import os
import shutil
from pathlib import Path

import pytest
from lhotse import load_manifest

from conftest import REPO, TINY_MODEL_OPTIONS, run_recipe

AN4 = Path(os.environ.get("RLHF_AN4_DIR", REPO.parent / "shared" / "corpora" / "an4"))
RECIPE = REPO / "egs" / "an4" / "run.sh"
DEV_SPEAKERS = ["ffmm", "fmjd", "mblw", "mdmc", "mjbh", "mmaf", "mrab", "msmn"]  # the documented rule's choice

pytestmark = pytest.mark.skipif(not (AN4 / "etc").is_dir(),
                                reason=f"no AN4 corpus at {AN4} (set RLHF_AN4_DIR to a copy of the an4 tree)")


def an4_subset(dest: Path, train_speakers: int, test_speakers: int) -> Path:
    """An AN4 tree of the first speakers of each set: etc/ lists filtered, audio linked to the real files."""
    (dest / "etc").mkdir(parents=True)
    shutil.copy(AN4 / "LICENSE", dest / "LICENSE")
    for name, keep in (("an4_train", train_speakers), ("an4_test", test_speakers)):
        fileids = (AN4 / "etc" / f"{name}.fileids").read_text().splitlines()
        speakers = sorted({Path(f).parent.name for f in fileids})[:keep]
        kept = [f for f in fileids if Path(f).parent.name in speakers]
        utts = {Path(f).name for f in kept}
        lines = [line for line in (AN4 / "etc" / f"{name}.transcription").read_text().splitlines()
                 if line.rsplit("(", 1)[-1].rstrip(") ") in utts]
        (dest / "etc" / f"{name}.fileids").write_text("".join(f + "\n" for f in kept))
        (dest / "etc" / f"{name}.transcription").write_text("".join(line + "\n" for line in lines))
        for f in kept:
            (dest / "wav" / f).parent.mkdir(parents=True, exist_ok=True)
            os.symlink(AN4 / "wav" / f"{f}.wav", dest / "wav" / f"{f}.wav")
    return dest


def prepare(workdir: Path, corpus: Path):
    workdir.mkdir(parents=True, exist_ok=True)
    return run_recipe(workdir, "--corpus-dir", str(corpus), "--stop-stage", "0", script=RECIPE)


def test_dev_split_is_speaker_disjoint_and_the_same_every_time(tmp_path):
    runs = []
    for name in ("first", "second"):
        result = prepare(tmp_path / name, AN4)
        assert result.returncode == 0, result.stdout
        runs.append({split: load_manifest(tmp_path / name / "data" / "manifests" / f"an4_supervisions_{split}.jsonl.gz")
                     for split in ("train", "dev", "test")})
    first, second = runs
    for split in ("train", "dev", "test"):
        assert list(first[split].ids) == list(second[split].ids)
    speakers = {split: {s.speaker for s in sups} for split, sups in first.items()}
    assert sorted(speakers["dev"]) == DEV_SPEAKERS
    assert not speakers["dev"] & speakers["train"] and not speakers["test"] & (speakers["train"] | speakers["dev"])
    assert (len(first["train"]), len(first["dev"]), len(first["test"])) == (848, 100, 130)
    assert len(speakers["train"]) == 66 and len(speakers["test"]) == 10
    # Transcripts lose the training lines' sentence markers.
    assert all("<s>" not in s.text and s.text.strip() == s.text for s in first["train"])


@pytest.mark.parametrize("damage, message", [
    ("missing_wav", "an4_clstk/fash/an253-fash-b.wav (or .sph) not found: listed in the fileids, no audio"),
    ("line_without_audio", "an4_train.transcription: utterance an999-fash-b is not in"),
    ("empty_transcript", "an4_train.transcription:2: utterance an253-fash-b has an empty transcript"),
    ("audio_without_transcript", "an999-fash-b.wav: audio without a transcript"),
    ("unreadable_wav", "an253-fash-b.wav: cannot read the audio"),
    ("too_few_speakers", "the training set has 1 speakers; the dev rule"),
])
def test_a_damaged_copy_is_refused_naming_the_file(tmp_path, damage, message):
    corpus = an4_subset(tmp_path / "an4", train_speakers=1 if damage == "too_few_speakers" else 6, test_speakers=1)
    etc, wav = corpus / "etc", corpus / "wav" / "an4_clstk" / "fash"
    text = etc / "an4_train.transcription"
    if damage == "missing_wav":
        (wav / "an253-fash-b.wav").unlink()
    elif damage == "line_without_audio":
        text.write_text(text.read_text() + "<s> YES </s> (an999-fash-b)\n")
    elif damage == "empty_transcript":
        lines = text.read_text().splitlines()
        lines[1] = "<s> </s> (an253-fash-b)"
        text.write_text("\n".join(lines) + "\n")
    elif damage == "audio_without_transcript":
        os.symlink(AN4 / "wav" / "an4_clstk" / "fash" / "an251-fash-b.wav", wav / "an999-fash-b.wav")
    elif damage == "unreadable_wav":
        (wav / "an253-fash-b.wav").unlink()
        (wav / "an253-fash-b.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt " + bytes(40))
    result = prepare(tmp_path / "work", corpus)
    assert result.returncode != 0
    assert message in result.stdout, result.stdout
    assert not (tmp_path / "work" / "data" / "manifests" / "an4_recordings_train.jsonl.gz").exists()


def test_sphere_copy_is_converted_with_the_licence(tmp_path):
    """CMU's own distribution ships NIST SPHERE files: read them without sph2pipe, as WAV beside AN4's LICENSE."""
    import soundfile as sf

    corpus = an4_subset(tmp_path / "an4", train_speakers=5, test_speakers=1)
    originals = {}
    for wav in sorted((corpus / "wav").rglob("*.wav")):
        samples, rate = sf.read(wav, dtype="int16")
        originals[wav.stem] = samples
        wav.unlink()
        sf.write(wav.with_suffix(".sph"), samples, rate, format="NIST", subtype="PCM_16")
    result = prepare(tmp_path / "work", corpus)
    assert result.returncode == 0, result.stdout
    converted = tmp_path / "work" / "download" / "an4_wav"
    assert (converted / "LICENSE").read_text() == (AN4 / "LICENSE").read_text()
    recordings = load_manifest(tmp_path / "work" / "data" / "manifests" / "an4_recordings_test.jsonl.gz")
    for rec in recordings:
        assert rec.sources[0].source.startswith(str(converted))
        assert (rec.load_audio()[0] * 32768).round().astype("int16").tolist() == originals[rec.id].tolist()


@pytest.mark.slow
def test_recipe_runs_stages_0_to_7_on_a_few_speakers(tmp_path):
    corpus = an4_subset(tmp_path / "an4", train_speakers=6, test_speakers=2)
    work = tmp_path / "work"
    work.mkdir()
    result = run_recipe(work, "--corpus-dir", str(corpus), "--bpe-vocab-size", "40", *TINY_MODEL_OPTIONS,
                        script=RECIPE)
    assert result.returncode == 0, result.stdout
    exp = work / "exp" / "ctc_tdnn"
    table = (exp / "results-epoch-2-avg-2.md").read_text()
    assert "| ctc-greedy |" in table and "| hlg-1best |" in table
    for split in ("dev", "test"):
        assert (exp / "hlg-1best" / f"errs-{split}-epoch-2-avg-2.txt").read_text().startswith("%WER")
    # Speed perturbation tripled the training cuts; lattices were made of the originals only.
    train = load_manifest(work / "data" / "fbank" / "an4_cuts_train.jsonl.gz")
    originals = [c for c in train if "_sp" not in c.id]
    assert len(train) == 3 * len(originals)
    comparison = (exp / "finetune" / "rl-hf-frame" / "comparison.md").read_text()
    assert "| baseline |" in comparison and "| rl-hf-frame |" in comparison
    assert "test hlg-1best" in comparison and "test ctc-greedy" in comparison
