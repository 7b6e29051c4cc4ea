"""rlhf-transcribe: a trained model directory, moved away from its data, transcribes audio files."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import k2
import numpy as np
import pytest
import soundfile as sf
import torch
from lhotse import load_manifest

from conftest import REPO
from rlhf.bundle import FeatureConfig
from rlhf.checkpoint import average_checkpoints, load_model
from rlhf.corpus.acoustics import resample
from rlhf.decode import LatticeConfig, get_texts
from rlhf.graphs import read_symbols
from rlhf.transcribe import Transcriber, audio_chunks, load_model_for_decoding


def transcribe(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(REPO / "steps" / "transcribe.sh"), *args], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def moved_model(tiny_recipe, tmp_path_factory) -> Path:
    """The tiny recipe's model, bundled with a copy of its lang dir that is then deleted, and moved."""
    root = tmp_path_factory.mktemp("transcribe")
    lang, model = root / "data" / "lang_bpe_50", root / "exp" / "ctc_tdnn"
    shutil.copytree(tiny_recipe.data_dir / "lang_bpe_50", lang)
    shutil.copytree(tiny_recipe.model_dir, model)
    result = subprocess.run([str(REPO / "steps" / "bundle_model.sh"), str(lang), str(tiny_recipe.data_dir / "fbank"),
                             str(model)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert result.returncode == 0, result.stdout
    shutil.rmtree(root / "data")
    moved = root / "elsewhere" / "model"
    shutil.move(model, moved)
    return moved


@pytest.fixture(scope="module")
def audio_files(tiny_recipe, tmp_path_factory) -> dict[str, Path]:
    """Two test utterances at 16 kHz, one of them again at 8 kHz (FLAC), and a corrupt file."""
    d = tmp_path_factory.mktemp("audio")
    wavs = sorted((tiny_recipe.corpus_dir / "test" / "wav").rglob("*.wav"))[:2]
    samples, rate = sf.read(wavs[1], dtype="float32")
    sf.write(d / "eight_khz.flac", resample(samples, rate, 8000), 8000)
    (d / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt " + bytes(range(64)))
    return {"a": wavs[0], "b": wavs[1], "b8k": d / "eight_khz.flac", "corrupt": d / "corrupt.wav"}


def test_transcribes_every_readable_file_and_names_the_corrupt_one(moved_model, audio_files):
    files = [audio_files[k] for k in ("a", "corrupt", "b8k", "b")]
    result = transcribe("--model-dir", str(moved_model), *map(str, files))
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split(" ", 1)[0] for line in lines] == [str(audio_files[k]) for k in ("a", "b8k", "b")]
    assert f"{audio_files['corrupt']}: cannot read audio" in result.stderr
    assert "1 of 4 file(s) could not be transcribed" in result.stderr
    assert "resampling from 8000 Hz to the model's 16000 Hz" in result.stderr
    assert "--method auto: hlg-1best" in result.stderr  # the bundled model directory carries HLG.pt


def test_lattice_out_writes_loadable_lattices_of_the_printed_transcripts(moved_model, audio_files, tmp_path):
    files = [audio_files[k] for k in ("a", "b", "b8k")]
    result = transcribe("--model-dir", str(moved_model), "--method", "hlg-1best", "--lattice-out", str(tmp_path),
                        *map(str, files))
    assert result.returncode == 0, result.stderr
    transcripts = dict(line.partition(" ")[::2] for line in result.stdout.splitlines())
    scp = [line.split(" ", 1) for line in (tmp_path / "lattices.scp").read_text().splitlines()]
    assert [path for _, path in scp] == list(map(str, files))
    words = {i: w for w, i in read_symbols(moved_model / "lang" / "words.txt").items()}
    for name, path in scp:
        lattice = k2.Fsa.from_dict(torch.load(tmp_path / f"{name}.pt"))
        assert lattice.num_arcs > 0 and hasattr(lattice, "frame_idx")
        best = get_texts(k2.shortest_path(k2.create_fsa_vec([lattice]), use_double_scores=True))[0]
        assert " ".join(words[i] for i in best) == transcripts[path]


def test_features_match_the_training_features(tiny_recipe, moved_model):
    """The command's fbank equals what stage 2 stored (up to lilcom's compression)."""
    transcriber = Transcriber(load_model_for_decoding(moved_model, None, None, 1), moved_model / "lang",
                              FeatureConfig.load(moved_model), "ctc-greedy", LatticeConfig(), torch.device("cpu"))
    cut = next(iter(load_manifest(tiny_recipe.data_dir / "fbank" / "synth_cuts_test.jsonl.gz")))
    samples = cut.load_audio()[0]
    ours = transcriber.fbank.extract(samples, 16000)
    stored = cut.load_features()
    assert ours.shape == stored.shape
    assert np.abs(ours - stored).max() < 0.1


def test_model_dir_without_lang_copy_is_explained(moved_model, audio_files, tmp_path):
    bare = tmp_path / "bare"
    shutil.copytree(moved_model, bare, ignore=shutil.ignore_patterns("lang"))
    result = transcribe("--model-dir", str(bare), str(audio_files["a"]))
    assert result.returncode == 1
    assert "lang/tokens.txt not found: copy the lang files into the model directory with steps/bundle_model.sh" \
        in result.stderr


def test_lattice_out_needs_a_lattice_method(moved_model, audio_files, tmp_path):
    result = transcribe("--model-dir", str(moved_model), "--method", "ctc-greedy", "--lattice-out", str(tmp_path),
                        str(audio_files["a"]))
    assert result.returncode == 1
    assert "--lattice-out needs a lattice method" in result.stderr


def test_directory_is_named_as_a_directory(moved_model, audio_files, tmp_path):
    """A directory given as audio is reported as one (not "no such file"); the other files are transcribed."""
    result = transcribe("--model-dir", str(moved_model), str(tmp_path), str(audio_files["a"]))
    assert result.returncode == 1
    assert f"{tmp_path} is a directory, not an audio file" in result.stderr
    assert "no such file" not in result.stderr
    assert [line.split(" ", 1)[0] for line in result.stdout.splitlines()] == [str(audio_files["a"])]


def test_lattice_scp_keys_have_no_whitespace(moved_model, audio_files, tmp_path):
    """Audio names with spaces give valid scp keys (Kaldi: the key ends at the first whitespace)."""
    spaced = tmp_path / "audio" / "two  words\there.wav"
    spaced.parent.mkdir()
    shutil.copyfile(audio_files["a"], spaced)
    out = tmp_path / "lats"
    result = transcribe("--model-dir", str(moved_model), "--method", "ctc-1best", "--lattice-out", str(out),
                        str(spaced), str(audio_files["a"]))
    assert result.returncode == 0, result.stderr
    lines = (out / "lattices.scp").read_text().splitlines()
    keys = [line.split(maxsplit=1)[0] for line in lines]
    assert keys[0] == "two_words_here"
    assert [line.split(maxsplit=1)[1] for line in lines] == [str(spaced), str(audio_files["a"])]
    for key in keys:
        assert k2.Fsa.from_dict(torch.load(out / f"{key}.pt")).num_arcs > 0


def test_chunks_cover_the_file_and_end_in_its_quietest_stretch(tmp_path):
    """Chunks of at most --chunk-seconds (+1 s for the last) that together are the file, sample for
    sample, each cut inside a pause when there is one near its end; resampled chunks join smoothly."""
    rate, rng = 16000, np.random.default_rng(0)
    audio = (0.1 * rng.standard_normal(47 * rate)).astype(np.float32)
    pauses = [(8.2, 8.5), (16.4, 16.6), (25.0, 25.3)]  # one in the last 2.5 s of every 10 s chunk
    for lo, hi in pauses:
        audio[int(lo * rate):int(hi * rate)] = 0.0
    sf.write(tmp_path / "long.wav", audio, rate)
    audio = sf.read(tmp_path / "long.wav", dtype="float32")[0]  # as 16-bit PCM keeps it
    chunks = list(audio_chunks(tmp_path / "long.wav", rate, 10.0))
    assert np.array_equal(np.concatenate(chunks), audio)
    ends = np.cumsum([len(c) for c in chunks])[:-1] / rate
    for end, (lo, hi) in zip(ends, pauses):  # the first three chunks end in the pauses
        assert lo <= end < hi
    assert all(7.5 * rate <= len(c) <= 10 * rate for c in chunks[:-1]) and len(chunks[-1]) <= 11 * rate
    assert list(audio_chunks(tmp_path / "long.wav", rate, 0.0))[0].shape == audio.shape

    sf.write(tmp_path / "long-22k.wav", resample(audio, rate, 22050), 22050)
    whole = resample(sf.read(tmp_path / "long-22k.wav", dtype="float32")[0], 22050, rate)
    joined = np.concatenate(list(audio_chunks(tmp_path / "long-22k.wav", rate, 10.0)))
    assert abs(len(joined) - len(whole)) <= 1
    n = min(len(joined), len(whole))
    assert np.abs(joined[:n] - whole[:n])[rate:-rate].max() < 1e-3


def test_long_file_lattice_joins_its_chunks(moved_model, audio_files, tmp_path):
    """Two utterances with a pause between, decoded as two chunks: the file's lattice is one FSA whose
    best path is the printed transcript, the chunks' transcripts in order."""
    a, rate = sf.read(audio_files["a"], dtype="float32")
    b, _ = sf.read(audio_files["b"], dtype="float32")
    chunk = max(4.0, len(a) / rate + 3.0)
    pause = np.zeros(int((chunk - len(a) / rate + 1.0) * rate), dtype=np.float32)
    sf.write(tmp_path / "two.wav", np.concatenate([a, pause, b]), rate)
    transcriber = Transcriber(load_model_for_decoding(moved_model, None, None, 1), moved_model / "lang",
                              FeatureConfig.load(moved_model), "hlg-1best", LatticeConfig(), torch.device("cpu"),
                              chunk_seconds=chunk)
    chunks = list(audio_chunks(tmp_path / "two.wav", rate, chunk))
    assert len(chunks) >= 2
    result = transcriber.transcribe(tmp_path / "two.wav")
    expected = [w for c in chunks for w in transcriber.decode_chunk(tmp_path / "two.wav", c)[0]]
    assert result.words == expected
    words = {i: w for w, i in read_symbols(moved_model / "lang" / "words.txt").items()}
    best = get_texts(k2.shortest_path(k2.create_fsa_vec([result.lattice]), use_double_scores=True))[0]
    assert [words[i] for i in best] == result.words
    assert int(result.lattice.frame_idx.max()) == sum(transcriber.decode_chunk(tmp_path / "two.wav", c)[2]
                                                      for c in chunks)


def _peak_rss_mb(*args: str) -> float:
    """Peak resident memory of a transcription (the largest process of a fresh parent's children)."""
    probe = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL); "
             "print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", probe, str(REPO / "steps" / "transcribe.sh"), *args],
                         stdout=subprocess.PIPE, text=True, check=True).stdout.split()
    assert out[0] == "0"
    return int(out[1]) / 1024


def test_long_audio_is_decoded_in_bounded_memory(moved_model, tmp_path):
    """Memory does not grow with the file's length (issue 17, item 7: 10 min of silence took 10.5 GB):
    3 minutes of silence peak at about what 20 seconds do, with 20-second chunks."""
    rate = 16000
    sf.write(tmp_path / "short.wav", np.zeros(20 * rate, dtype=np.float32), rate)
    sf.write(tmp_path / "long.wav", np.zeros(180 * rate, dtype=np.float32), rate)
    options = ["--model-dir", str(moved_model), "--chunk-seconds", "20"]
    short = _peak_rss_mb(*options, str(tmp_path / "short.wav"))
    long = _peak_rss_mb(*options, str(tmp_path / "long.wav"))
    assert long < 1.5 * short, (short, long)  # whole files: 634 and 3496 MB here


def test_default_model_is_the_epoch_training_selected(tiny_recipe, tmp_path):
    """Without --epoch, the model stage 3 selected (selected.json: epoch and --avg), not the last epoch."""
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_recipe.model_dir, model_dir, ignore=shutil.ignore_patterns("lattices", "finetune"))
    chosen = json.loads((model_dir / "selected.json").read_text())
    default = load_model_for_decoding(model_dir, None, None, None).state_dict()
    expected = average_checkpoints(model_dir, chosen["epoch"], chosen["avg"]).state_dict()
    assert all(torch.equal(default[k], v) for k, v in expected.items())
    (model_dir / "selected.json").write_text(json.dumps({**chosen, "epoch": 1, "avg": 1}))
    first = load_model(model_dir / "epoch-1.pt").state_dict()
    default = load_model_for_decoding(model_dir, None, None, None).state_dict()
    assert all(torch.equal(default[k], v) for k, v in first.items())
    (model_dir / "selected.json").unlink()  # a directory without it: the last epoch, alone
    last = load_model(model_dir / "epoch-2.pt").state_dict()
    default = load_model_for_decoding(model_dir, None, None, None).state_dict()
    assert all(torch.equal(default[k], v) for k, v in last.items())
