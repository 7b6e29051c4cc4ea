"""egs/kaldi_datadir stages 0-4 on synthesized Kaldi data directories (with and without ``segments``), and the
import's answer to each bad table (rlhf/kaldi_datadir.py)."""

import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from lhotse import load_manifest

from conftest import REPO, TINY_MODEL_OPTIONS, run_recipe
from rlhf.kaldi_datadir import import_data_dirs
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


# Quick checks of the import itself (stage 0) on tiny data directories of noise.


def tone_dir(d: Path, audio_dir: Path, n: int, prefix: str, seconds: float = 0.5, rate: int = 16000,
             tab: bool = False) -> Path:
    """A data dir of ``n`` recordings of noise (one utterance each), speakers alternating."""
    d.mkdir(parents=True)
    audio_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(prefix) + n)
    sep = "\t" if tab else " "
    wav_scp, text, utt2spk = [], [], []
    for i in range(n):
        utt = f"{prefix}{i}"
        sf.write(audio_dir / f"{utt}.wav", 0.1 * rng.standard_normal(int(seconds * rate)).astype(np.float32), rate,
                 subtype="PCM_16")
        wav_scp.append(f"{utt} {audio_dir / utt}.wav\n")
        text.append(f"{utt}{sep}HELLO WORLD {i}\n")
        utt2spk.append(f"{utt} spk{i % 2}\n")
    for name, lines in (("wav.scp", wav_scp), ("text", text), ("utt2spk", utt2spk)):
        (d / name).write_text("".join(lines))
    return d


@pytest.fixture
def dirs(tmp_path):
    return {"train": tone_dir(tmp_path / "train", tmp_path / "audio", 4, "tr"),
            "test": tone_dir(tmp_path / "test", tmp_path / "audio", 2, "te")}


def manifests(out: Path, split: str = "train"):
    return (load_manifest(out / f"kaldi_recordings_{split}.jsonl.gz"),
            load_manifest(out / f"kaldi_supervisions_{split}.jsonl.gz"))


def test_empty_transcript_is_dropped_with_a_warning_and_tab_separated_text_is_read(dirs, tmp_path, caplog):
    train = dirs["train"]
    (train / "text").write_text("tr0\ttab separated\ntr1\ntr2 HELLO   THERE\ntr3 \n")
    out = tmp_path / "manifests"
    import_data_dirs(dirs, out, "kaldi", 16000)
    recordings, sups = manifests(out)
    assert {s.id: s.text for s in sups} == {"tr0": "tab separated", "tr2": "HELLO THERE"}
    assert sorted(recordings.ids) == ["tr0", "tr2"]
    assert "dropping 2 utterance(s) with an empty transcript: tr1 (line 2), tr3 (line 4)" in caplog.text


@pytest.mark.parametrize("name, content, message", [
    ("utt2spk", "tr0 spk0\ntr1 spk1\ntr2 spk0\ntr3 spk1\nghost spk0\n",
     "utt2spk:5: utterance ghost is not in {d}/wav.scp"),
    ("text", b"tr0 HELLO\ntr1 caf\xe9\ntr2 A\ntr3 B\n", "text:2: not UTF-8 (byte 0xe9 at column 8)"),
    ("segments", "tr0-a tr0 0.0 0.2\ntr0-b tr0 0.3\n", "segments:2: expected 4 fields"),
    ("segments", "tr0-a tr0 0.3 0.2\n", "segments:1: tr0-a ends at 0.2 s, not after its start 0.3 s"),
    ("segments", "tr0-a tr0 0.1 3.0\n", "segments:1: tr0-a ends at 3.0 s, but recording tr0 is 0.500 s long"),
    ("wav.scp", "tr0 false |\ntr1 {audio}/tr1.wav\ntr2 {audio}/tr2.wav\ntr3 {audio}/tr3.wav\n",
     "wav.scp:1: tr0: the command 'false |' failed or wrote no WAV audio"),
])
def test_bad_tables_are_named_with_file_and_line(dirs, tmp_path, name, content, message):
    train = dirs["train"]
    if name == "segments":  # utterances of the segments need their transcript and speaker
        utts = [line.split()[0] for line in content.splitlines()]
        (train / "text").write_text("".join(f"{u} A B\n" for u in utts))
        (train / "utt2spk").write_text("".join(f"{u} spk0\n" for u in utts))
    if isinstance(content, str):
        (train / name).write_text(content.format(audio=tmp_path / "audio"))
    else:
        (train / name).write_bytes(content)
    with pytest.raises(ValueError) as e:
        import_data_dirs(dirs, tmp_path / "manifests", "kaldi", 16000)
    assert f"{train / name}:" in str(e.value) and message.format(d=train) in str(e.value), str(e.value)
    assert not (tmp_path / "manifests" / "kaldi_supervisions_train.jsonl.gz").exists()


def test_error_is_one_line_without_traceback(dirs, tmp_path):
    (dirs["train"] / "utt2spk").write_text("tr0 spk0\ntr1 spk1\ntr2 spk0\ntr3 spk1\nghost spk0\n")
    result = subprocess.run([str(REPO / "egs" / "kaldi_datadir" / "local" / "import_kaldi_datadir.sh"),
                             "--train-dir", str(dirs["train"]), "--test-dir", str(dirs["test"]),
                             str(tmp_path / "manifests")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert result.returncode == 1
    assert "Traceback" not in result.stdout and "AssertionError" not in result.stdout
    assert f"{dirs['train'] / 'utt2spk'}:5: utterance ghost is not in" in result.stdout


def test_wav_scp_command_is_read(dirs, tmp_path):
    train, audio = dirs["train"], tmp_path / "audio"
    (train / "wav.scp").write_text(f"tr0 cat {audio}/tr0.wav |\n" +
                                   "".join(f"tr{i} {audio}/tr{i}.wav\n" for i in range(1, 4)))
    out = tmp_path / "manifests"
    import_data_dirs(dirs, out, "kaldi", 16000)
    recordings, _ = manifests(out)
    rec = recordings["tr0"]
    assert rec.sources[0].type == "command" and rec.num_samples == 8000 and rec.duration == 0.5
    assert rec.load_audio().shape == (1, 8000)


def test_replaced_audio_redoes_the_import(dirs, tmp_path):
    out = tmp_path / "manifests"
    import_data_dirs(dirs, out, "kaldi", 16000)
    assert manifests(out)[0]["tr1"].duration == 0.5
    sf.write(tmp_path / "audio" / "tr1.wav", np.zeros(12000, np.float32), 16000, subtype="PCM_16")
    import_data_dirs(dirs, out, "kaldi", 16000)
    assert manifests(out)[0]["tr1"].duration == 0.75


def test_held_out_split_must_not_repeat_training(dirs, tmp_path):
    with pytest.raises(ValueError, match="--test-dir .* is the same directory as --train-dir"):
        import_data_dirs({"train": dirs["train"], "test": dirs["train"]}, tmp_path / "m", "kaldi", 16000)
    other = tone_dir(tmp_path / "dev", tmp_path / "audio2", 2, "tr")  # other directory, training's ids tr0, tr1
    with pytest.raises(ValueError, match="splits train and dev share 2 utterance id"):
        import_data_dirs({"train": dirs["train"], "dev": other}, tmp_path / "m", "kaldi", 16000)
    assert not (tmp_path / "m" / "kaldi_supervisions_train.jsonl.gz").exists()


def test_stage_1_refuses_the_manifests_of_a_failed_stage_0(dirs, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    args = ["--train-dir", str(dirs["train"]), "--test-dir", str(dirs["test"]), "--bpe-vocab-size", "20"]
    assert run_recipe(work, *args, "--stop-stage", "0", script=RECIPE).returncode == 0
    (dirs["train"] / "utt2spk").write_text("tr0 spk0\n")  # the next import fails, after the first one's manifests
    assert run_recipe(work, *args, "--stop-stage", "0", script=RECIPE).returncode == 1
    assert (work / "data" / "manifests" / "kaldi_supervisions_train.jsonl.gz").is_file()
    result = run_recipe(work, *args, "--stage", "1", "--stop-stage", "1", script=RECIPE)
    assert result.returncode == 1
    assert "stage 0 did not complete" in result.stdout
    assert not (work / "data" / "lang_bpe_20").exists()
