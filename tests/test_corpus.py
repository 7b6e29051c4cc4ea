"""Stage 0: the synthesized corpus and its manifests."""

import filecmp
import json
import random
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
from lhotse import load_manifest
from lhotse.qa import validate_recordings_and_supervisions

from rlhf.corpus.grammar import SentenceGrammar
from rlhf.corpus.prepare import CorpusError, prepare_manifests
from rlhf.corpus.synthesize import CorpusConfig, make_speakers, synthesize_corpus

SPLITS = ("train", "dev", "test")
TINY = dict(num_train=8, num_dev=3, num_test=3, num_speakers={"train": 3, "dev": 1, "test": 1})


def load(data_dir, kind, split):
    return load_manifest(data_dir / "manifests" / f"synth_{kind}_{split}.jsonl.gz")


def test_grammar_vocabulary_and_lengths():
    grammar = SentenceGrammar()
    assert len(grammar.vocabulary()) >= 300
    rng = random.Random(0)
    sentences = [grammar.sentence(rng) for _ in range(3000)]
    lengths = [len(s.split()) for s in sentences]
    assert min(lengths) == 3 and max(lengths) == 15
    assert len(set(lengths)) == 13  # every length from 3 to 15 occurs
    used = {w for s in sentences for w in s.split()}
    assert used <= grammar.vocabulary() and len(used) >= 300


def test_default_speakers_are_many_distinct_and_disjoint():
    speakers = make_speakers(CorpusConfig())
    assert len(speakers) >= 30
    assert len({s.voice for s in speakers}) == len(speakers)
    assert len({s.voice.name for s in speakers}) == len(speakers)
    by_split = {split: {s.voice.name for s in speakers if s.split == split} for split in SPLITS}
    assert not by_split["test"] & (by_split["train"] | by_split["dev"])
    assert len({s.voice.rate for s in speakers}) > 10 and len({s.voice.pitch for s in speakers}) > 10


def test_manifests_validate_and_match_audio(tiny_recipe):
    for split in SPLITS:
        recordings = load(tiny_recipe.data_dir, "recordings", split)
        supervisions = load(tiny_recipe.data_dir, "supervisions", split)
        validate_recordings_and_supervisions(recordings, supervisions)
        for rec in recordings:
            info = sf.info(rec.sources[0].source)
            assert info.samplerate == rec.sampling_rate == 16000
            assert info.frames == rec.num_samples
            assert rec.duration == pytest.approx(info.frames / info.samplerate)
            audio = rec.load_audio()
            assert audio.shape == (1, info.frames) and np.abs(audio).max() > 0.1
        assert all(s.text.strip() and 3 <= len(s.text.split()) <= 15 for s in supervisions)


def test_heldout_sentences_and_speakers_are_disjoint_from_training(tiny_recipe):
    sups = {split: load(tiny_recipe.data_dir, "supervisions", split) for split in SPLITS}
    train_texts = {s.text for s in sups["train"]}
    train_speakers = {s.speaker for s in sups["train"]}
    for split in ("dev", "test"):
        assert not {s.text for s in sups[split]} & train_texts
        assert not {s.speaker for s in sups[split]} & train_speakers
    assert not {s.speaker for s in sups["test"]} & {s.speaker for s in sups["dev"]}


def test_summary_counts_the_manifests(tiny_recipe):
    summary = json.loads((tiny_recipe.data_dir / "manifests" / "summary.json").read_text())
    for split in SPLITS:
        sups, s = load(tiny_recipe.data_dir, "supervisions", split), summary["splits"][split]
        assert s["utterances"] == len(sups) and s["speakers"] == len({x.speaker for x in sups})
        assert s["words"] == sum(len(x.text.split()) for x in sups)
    assert summary["splits"]["train"]["utterances"] == 24 and summary["splits"]["test"]["speakers"] == 2


def _same_tree(a, b) -> bool:
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    return files_a == files_b and all(filecmp.cmp(a / f, b / f, shallow=False) for f in files_a)


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    synthesize_corpus(CorpusConfig(seed=7, **TINY), tmp_path / "a", num_jobs=2)
    synthesize_corpus(CorpusConfig(seed=7, **TINY), tmp_path / "b", num_jobs=1)
    synthesize_corpus(CorpusConfig(seed=8, **TINY), tmp_path / "c", num_jobs=2)
    assert _same_tree(tmp_path / "a", tmp_path / "b")
    assert (tmp_path / "a" / "train" / "text").read_text() != (tmp_path / "c" / "train" / "text").read_text()
    wav = next((tmp_path / "a" / "train" / "wav").rglob("*.wav"))
    other = next((tmp_path / "c" / "train" / "wav").rglob("*.wav"))
    assert wav.read_bytes() != other.read_bytes()


def test_synthesizer_processes_do_not_import_torch():
    """Stage 0 forks a process per utterance from a forkserver that preloads the synthesizer, and
    each child re-imports the program: with torch loaded, a fork costs 0.2 s on Python 3.10."""
    code = ("import sys, rlhf.bin.synthesize_corpus, rlhf.corpus.synthesize; "
            "print(sorted(m for m in ('torch', 'lhotse', 'k2') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_refuses_to_overwrite_a_foreign_directory(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="was not made by local/synthesize_corpus.sh"):
        synthesize_corpus(CorpusConfig(**TINY), tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


@pytest.fixture()
def corpus_copy(tiny_recipe, tmp_path):
    corpus = tmp_path / "corpus"
    shutil.copytree(tiny_recipe.corpus_dir, corpus)
    return corpus


def _first_wav(corpus, split="dev"):
    line = (corpus / split / "wav.scp").read_text().splitlines()[0]
    utt, rel = line.split(" ", 1)
    return utt, corpus / rel


def _assert_fails_cleanly(corpus, out, pattern):
    with pytest.raises(CorpusError, match=pattern):
        prepare_manifests(corpus, out, "synth")
    assert not out.exists() or not any(out.glob("*.jsonl.gz")), "no partial manifest may be left behind"


def test_missing_audio_is_named(corpus_copy, tmp_path):
    _, wav = _first_wav(corpus_copy)
    wav.unlink()
    _assert_fails_cleanly(corpus_copy, tmp_path / "m", f"{wav}: audio file missing")


def test_unreadable_audio_is_named(corpus_copy, tmp_path):
    _, wav = _first_wav(corpus_copy, "test")
    wav.write_bytes(b"not a wave file")
    _assert_fails_cleanly(corpus_copy, tmp_path / "m", f"{wav}: unreadable audio")


def test_wrong_sample_rate_is_named(corpus_copy, tmp_path):
    _, wav = _first_wav(corpus_copy, "train")
    audio, _ = sf.read(wav)
    sf.write(wav, audio[::2], 8000)
    _assert_fails_cleanly(corpus_copy, tmp_path / "m", f"{wav}: sample rate 8000 Hz, expected 16000 Hz")


def test_empty_transcript_is_named(corpus_copy, tmp_path):
    text = corpus_copy / "dev" / "text"
    lines = text.read_text().splitlines()
    utt = lines[1].split()[0]
    lines[1] = utt
    text.write_text("\n".join(lines) + "\n")
    _assert_fails_cleanly(corpus_copy, tmp_path / "m", f"empty transcript for {utt}")


@pytest.mark.parametrize("bad", [dict(num_dev=0), dict(snr_min=40.0), dict(reverb_prob=1.5),
                                 dict(num_speakers={"train": 200, "dev": 1, "test": 1})])
def test_bad_corpus_options_are_refused(bad):
    with pytest.raises(ValueError):
        CorpusConfig(**bad)
