"""rlhf-transcribe: a trained model directory, moved away from its data, transcribes audio files."""

import shutil
import subprocess
from pathlib import Path

import k2
import numpy as np
import pytest
import soundfile as sf
import torch
from lhotse import load_manifest

from conftest import REPO
from rlhf.bundle import FeatureConfig
from rlhf.corpus.acoustics import resample
from rlhf.decode import LatticeConfig, get_texts
from rlhf.graphs import read_symbols
from rlhf.transcribe import Transcriber, load_model_for_decoding


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
