"""egs/librispeech stages 0-4 on a synthesized LibriSpeech-layout fixture (nothing is downloaded)."""

import gzip
import json
import math
from pathlib import Path

import pytest
import soundfile as sf
from lhotse import load_manifest

from conftest import REPO, TINY_MODEL_OPTIONS, run_recipe
from rlhf.graphs import load_g
from rlhf.lang.train_lm import train_lm
from speech import utterances

RECIPE = REPO / "egs" / "librispeech" / "run.sh"
# Mini LibriSpeech's parts: speakers -> chapters -> utterances per chapter.
LAYOUT = {"train-clean-5": {"103": ["1240", "1241"], "1034": ["121119"], "1040": ["133433"]},
          "dev-clean-2": {"1272": ["135031"], "1462": ["170142"]}}
UTTS_PER_CHAPTER = {"train-clean-5": 7, "dev-clean-2": 3}
# The recipe's default encoder (torchaudio's Conformer), at test size.
TINY_CONFORMER = ["--num-heads", "4", "--ffn-dim", "64", "--conv-kernel-size", "7"]


def write_librispeech(root: Path) -> dict[str, dict[str, str]]:
    """``<root>/LibriSpeech/<part>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac`` and ``.trans.txt``.

    Returns the transcripts per part, by utterance id (upper case, as LibriSpeech writes them).
    """
    texts: dict[str, dict[str, str]] = {}
    for part, speakers in LAYOUT.items():
        texts[part] = {}
        for k, (speaker, chapters) in enumerate(speakers.items()):
            for chapter in chapters:
                d = root / "LibriSpeech" / part / speaker / chapter
                d.mkdir(parents=True)
                lines = []
                for i, utt in enumerate(utterances(UTTS_PER_CHAPTER[part], seed=int(chapter), speaker=k)):
                    utt_id = f"{speaker}-{chapter}-{i:04d}"
                    sf.write(d / f"{utt_id}.flac", utt.audio, 16000)
                    texts[part][utt_id] = utt.text.upper()
                    lines.append(f"{utt_id} {utt.text.upper()}\n")
                (d / f"{speaker}-{chapter}.trans.txt").write_text("".join(lines))
    return texts


@pytest.fixture(scope="module")
def librispeech(tmp_path_factory):
    root = tmp_path_factory.mktemp("librispeech")
    texts = write_librispeech(root / "corpus")
    work = root / "work"
    # --lm published finds "the published LM" already downloaded: a unigram over the fixture's words.
    write_unigram_arpa(work / "download" / "lm" / "3-gram.pruned.1e-7.arpa.gz",
                       {w for part in texts.values() for t in part.values() for w in t.split()})
    result = run_recipe(work, "--mini", "true", "--corpus-dir", str(root / "corpus" / "LibriSpeech"), "--nj", "2",
                        "--bpe-vocab-size", "50", "--lm", "published", *TINY_MODEL_OPTIONS, *TINY_CONFORMER,
                        script=RECIPE)
    assert result.returncode == 0, result.stdout
    return work, texts, result.stdout


def write_unigram_arpa(path: Path, words: set[str]) -> None:
    path.parent.mkdir(parents=True)
    logprob = -math.log10(len(words) + 1)
    with gzip.open(path, "wt") as f:
        f.write(f"\\data\\\nngram 1={len(words) + 2}\n\n\\1-grams:\n-99 <s>\n{logprob:.4f} </s>\n")
        f.write("".join(f"{logprob:.4f} {w}\n" for w in sorted(words)) + "\n\\end\\\n")


@pytest.mark.slow
def test_manifests_map_parts_to_splits_and_keep_transcripts(librispeech):
    work, texts, _ = librispeech
    manifests = work / "data" / "manifests"
    for split, part in (("train", "train-clean-5"), ("dev-clean-2", "dev-clean-2")):
        sups = load_manifest(manifests / f"librispeech_supervisions_{split}.jsonl.gz")
        assert {s.id: s.text for s in sups} == texts[part]
        recs = load_manifest(manifests / f"librispeech_recordings_{split}.jsonl.gz")
        assert sorted(recs.ids) == sorted(texts[part])
        assert {s.speaker for s in sups} == set(LAYOUT[part])


@pytest.mark.slow
def test_stages_1_to_4_run_on_the_shared_steps(librispeech):
    work, texts, output = librispeech
    assert (work / "data" / "lang_bpe_50" / "bpe.model").is_file()
    assert (work / "data" / "lm" / "G_3_gram.fst.txt").is_file()
    assert "3-gram.pruned.1e-7.arpa.gz is already downloaded" in output
    assert (work / "data" / "lm" / "lm_3gram.arpa").read_text().startswith("\\data\\\nngram 1=")
    cuts = load_manifest(work / "data" / "fbank" / "librispeech_cuts_dev-clean-2.jsonl.gz")
    assert sorted(cuts.ids) == sorted(texts["dev-clean-2"])
    exp = work / "exp" / "conformer_ctc"
    errs = (exp / "hlg-1best" / "errs-dev-clean-2-epoch-2-avg-2.txt").read_text()
    assert errs.startswith("%WER")
    assert "| hlg-1best |" in output
    # Stage 4 bundled the model directory, HLG included.
    assert {p.name for p in (exp / "lang").iterdir()} >= {"tokens.txt", "words.txt", "bpe.model", "HLG.pt"}
    assert json.loads((exp / "features.json").read_text())["num_mel_bins"] == 80


def test_missing_part_is_named(tmp_path):
    (tmp_path / "LibriSpeech" / "train-clean-5").mkdir(parents=True)
    result = run_recipe(tmp_path, "--mini", "true", "--corpus-dir", str(tmp_path), "--stop-stage", "0",
                        script=RECIPE)
    assert result.returncode != 0
    assert "has no part train-clean-5, dev-clean-2" in result.stdout


def test_train_lm_compiles_a_given_arpa_and_drops_oov_ngrams(tmp_path):
    lang = tmp_path / "lang"
    lang.mkdir()
    (lang / "words.txt").write_text("<eps> 0\n<UNK> 1\nA 2\nB 3\n#0 4\n<s> 5\n</s> 6\n")
    arpa = tmp_path / "lm.arpa.gz"
    with gzip.open(arpa, "wt") as f:
        f.write("\\data\\\nngram 1=5\nngram 2=2\n\n\\1-grams:\n-1.0 <s> -0.3\n-1.0 </s>\n-0.5 A -0.2\n"
                "-0.5 B -0.2\n-0.7 ZZZ -0.2\n\n\\2-grams:\n-0.3 <s> A\n-0.3 A ZZZ\n\n\\end\\\n")
    train_lm(lang, tmp_path / "lm", order=2, arpa=arpa)
    assert "ZZZ" in (tmp_path / "lm" / "lm_2gram.arpa").read_text()
    G = load_g(tmp_path / "lm" / "G_2_gram.fst.txt")
    assert set(G.aux_labels.tolist()) <= {0, 2, 3, 4, -1}  # no word outside words.txt


@pytest.mark.slow
def test_rerun_of_training_and_decoding_keeps_the_bundled_model(librispeech):
    """Stage 3 bundles lang/ without HLG.pt and stage 4 adds it; a re-run redoes neither."""
    work, _, _ = librispeech
    exp = work / "exp" / "conformer_ctc"
    before = {p: p.stat().st_mtime_ns for p in (exp / "lang").iterdir()}
    result = run_recipe(work, "--mini", "true", "--bpe-vocab-size", "50", *TINY_MODEL_OPTIONS, *TINY_CONFORMER, "--stage", "3",
                        script=RECIPE)
    assert result.returncode == 0, result.stdout
    for step in ("bundle_lang", "train", "compile_hlg", "decode-epoch-2-avg-2", "bundle_hlg"):
        assert f"{step}: already complete" in result.stdout, step
    assert {p: p.stat().st_mtime_ns for p in (exp / "lang").iterdir()} == before
