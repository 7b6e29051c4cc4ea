"""egs/kaldi_datadir stages 0-4 on synthesized Kaldi data directories (with and without ``segments``)."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from lhotse import load_manifest

from conftest import REPO, TINY_MODEL_OPTIONS, run_recipe
from speech import utterances

RECIPE = REPO / "egs" / "kaldi_datadir" / "run.sh"
GAP = np.zeros(4000, np.float32)  # 0.25 s of silence between segments


def write_data_dir(d: Path, audio_dir: Path, seed: int, num_recordings: int, utts_per_recording: int,
                   rate: int = 16000) -> dict[str, str]:
    """A Kaldi data dir; with more than one utterance per recording it gets a ``segments`` file.

    Returns the transcripts by utterance id.
    """
    d.mkdir(parents=True)
    audio_dir.mkdir(parents=True, exist_ok=True)
    wav_scp, text, utt2spk, segments = [], [], [], []
    for r in range(num_recordings):
        speaker = f"spk{r % 2}"
        reco = f"{speaker}-{d.name}-r{r}"
        audio, start = [], 0.0
        for i, utt in enumerate(utterances(utts_per_recording, seed=seed * 100 + r, speaker=r % 2, rate=rate)):
            utt_id = f"{reco}-{i}" if utts_per_recording > 1 else reco
            end = start + len(utt.audio) / rate
            segments.append(f"{utt_id} {reco} {start:.3f} {end:.3f}\n")
            text.append(f"{utt_id} {utt.text}\n")
            utt2spk.append(f"{utt_id} {speaker}\n")
            audio += [utt.audio, GAP]
            start = end + len(GAP) / rate
        sf.write(audio_dir / f"{reco}.wav", np.concatenate(audio), rate, subtype="PCM_16")
        wav_scp.append(f"{reco} {audio_dir / reco}.wav\n")
    files = {"wav.scp": wav_scp, "text": text, "utt2spk": utt2spk}
    if utts_per_recording > 1:
        files["segments"] = segments
    for name, lines in files.items():
        (d / name).write_text("".join(sorted(lines)))
    return {line.split(" ", 1)[0]: line.split(" ", 1)[1].strip() for line in text}


@pytest.fixture(scope="module")
def kaldi_recipe(tmp_path_factory):
    root = tmp_path_factory.mktemp("kaldi")
    texts = {"train": write_data_dir(root / "data" / "train", root / "audio", 1, num_recordings=6, utts_per_recording=4),
             "dev": write_data_dir(root / "data" / "dev", root / "audio", 2, num_recordings=3, utts_per_recording=1),
             "test": write_data_dir(root / "data" / "test", root / "audio", 3, num_recordings=2, utts_per_recording=2)}
    work = root / "work"
    work.mkdir()
    dirs = [arg for split in texts for arg in (f"--{split}-dir", str(root / "data" / split))]
    result = run_recipe(work, *dirs, "--corpus", "mycorpus", "--nj", "2", "--bpe-vocab-size", "50",
                        *TINY_MODEL_OPTIONS, script=RECIPE)
    assert result.returncode == 0, result.stdout
    return root, work, texts, result.stdout


@pytest.mark.slow
def test_segments_become_one_utterance_each(kaldi_recipe):
    root, work, texts, _ = kaldi_recipe
    for split in ("train", "dev", "test"):
        sups = load_manifest(work / "data" / "manifests" / f"mycorpus_supervisions_{split}.jsonl.gz")
        assert {s.id: s.text for s in sups} == texts[split]
        cuts = load_manifest(work / "data" / "fbank" / f"mycorpus_cuts_{split}.jsonl.gz")
        assert sorted(cuts.ids) == sorted(texts[split])
        for cut in cuts:  # each cut is its own segment, not the whole recording
            (sup,) = cut.supervisions
            assert sup.start == 0 and abs(sup.duration - cut.duration) < 0.02
            assert cut.load_features().shape[0] == pytest.approx(cut.duration * 100, abs=2)
    recs = load_manifest(work / "data" / "manifests" / "mycorpus_recordings_train.jsonl.gz")
    assert len(recs) == 6


@pytest.mark.slow
def test_stages_1_to_4_decode_dev_and_test(kaldi_recipe):
    root, work, texts, output = kaldi_recipe
    exp = work / "exp" / "ctc_tdnn"
    for split in ("dev", "test"):
        assert (exp / "hlg-1best" / f"errs-{split}-epoch-2-avg-2.txt").read_text().startswith("%WER")
    assert (exp / "lang" / "HLG.pt").is_file()
    assert "| hlg-1best |" in output


@pytest.mark.parametrize("remove, message", [
    ("text", "text not found: a Kaldi data directory needs wav.scp, text, utt2spk"),
    ("wav.scp", "wav.scp not found"),
])
@pytest.mark.slow
def test_missing_kaldi_file_is_named(kaldi_recipe, tmp_path, remove, message):
    root, *_ = kaldi_recipe
    broken = tmp_path / "train"
    broken.mkdir()
    for name in ("wav.scp", "text", "utt2spk", "segments"):
        if name != remove:
            (broken / name).write_text((root / "data" / "train" / name).read_text())
    result = run_recipe(tmp_path, "--train-dir", str(broken), "--test-dir", str(root / "data" / "test"),
                        "--stop-stage", "0", script=RECIPE)
    assert result.returncode != 0
    assert f"{broken / remove}" in result.stdout and message in result.stdout


@pytest.mark.slow
def test_wrong_sampling_rate_and_missing_transcript_are_named(kaldi_recipe, tmp_path):
    root, *_ = kaldi_recipe
    result = run_recipe(tmp_path, "--train-dir", str(root / "data" / "train"), "--test-dir",
                        str(root / "data" / "test"), "--sampling-rate", "8000", "--stop-stage", "0", script=RECIPE)
    assert result.returncode != 0
    assert "is 16000 Hz, not --sampling-rate 8000" in result.stdout

    broken = tmp_path / "train"
    broken.mkdir()
    for name in ("wav.scp", "utt2spk", "segments"):
        (broken / name).write_text((root / "data" / "train" / name).read_text())
    (broken / "text").write_text("".join((root / "data" / "train" / "text").read_text().splitlines(True)[1:]))
    result = run_recipe(tmp_path, "--train-dir", str(broken), "--test-dir", str(root / "data" / "test"),
                        "--stop-stage", "0", script=RECIPE)
    assert result.returncode != 0
    assert f"{broken / 'text'} has no entry for 1 utterance(s)" in result.stdout


def test_train_dir_is_required(tmp_path):
    result = run_recipe(tmp_path, "--test-dir", str(tmp_path), "--stop-stage", "0", script=RECIPE)
    assert result.returncode != 0
    assert "give --train-dir and at least one of --dev-dir and --test-dir" in result.stdout
