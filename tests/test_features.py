"""Stage 2: fbank features and cut manifests."""

import k2
import numpy as np
import pytest
import soundfile as sf
import torch
from lhotse import Recording, RecordingSet, SupervisionSegment, SupervisionSet, load_manifest

from rlhf.ctc import dense_fsa_vec
from rlhf.data import is_speed_perturbed, original_cuts
from rlhf.features import compute_fbank
from rlhf.manifests import write_split_manifests
from rlhf.model import MIN_INPUT_FRAMES, CtcModel, ModelConfig


def test_cuts_have_80_dim_fbank_for_their_whole_duration(tiny_recipe):
    fbank = tiny_recipe.data_dir / "fbank"
    for split in ("train", "dev", "test"):
        cuts = load_manifest(fbank / f"synth_cuts_{split}.jsonl.gz")
        assert len(cuts) > 0
        for cut in cuts:
            feats = cut.load_features()
            assert feats.shape == (cut.num_frames, 80)
            assert abs(cut.num_frames - round(cut.duration * 100)) <= 2  # 10 ms frame shift
            assert feats.std() > 0.5
            assert len(cut.supervisions) == 1 and cut.supervisions[0].text
            assert cut.features.storage_path.startswith(str(fbank.resolve() / f"synth_feats_{split}"))


def test_cut_ids_are_utterance_ids_in_manifest_order(tiny_recipe):
    for split in ("train", "dev", "test"):
        cuts = load_manifest(tiny_recipe.data_dir / "fbank" / f"synth_cuts_{split}.jsonl.gz")
        sups = load_manifest(tiny_recipe.data_dir / "manifests" / f"synth_supervisions_{split}.jsonl.gz")
        assert [c.id for c in cuts] == [s.id for s in sups]


def test_speed_perturbation_adds_two_copies_of_each_training_cut(tiny_recipe, tmp_path):
    fbank = tmp_path / "fbank"
    compute_fbank(tiny_recipe.data_dir / "manifests", fbank, "synth", ["train", "dev"], num_jobs=2,
                  speed_perturb=True)
    train = load_manifest(fbank / "synth_cuts_train.jsonl.gz")
    plain = {c.id: c for c in load_manifest(tiny_recipe.data_dir / "fbank" / "synth_cuts_train.jsonl.gz")}
    assert len(train) == 3 * len(plain)
    for cut in train:
        base, _, factor = cut.id.partition("_sp")
        expected = plain[base].duration / (float(factor) if factor else 1.0)
        assert cut.duration == pytest.approx(expected, abs=1e-3), cut.id
        assert cut.load_features().shape == (cut.num_frames, 80)
        assert abs(cut.num_frames - round(cut.duration * 100)) <= 2
        assert cut.supervisions[0].text == plain[base].supervisions[0].text
        assert is_speed_perturbed(cut) == bool(factor)
    assert sorted(c.id for c in train if c.id.endswith("_sp0.9")) == sorted(f"{i}_sp0.9" for i in plain)
    assert [c.id for c in original_cuts(train)] == list(plain)  # what stage 5 makes lattices of
    # Only the training split is perturbed.
    dev = load_manifest(fbank / "synth_cuts_dev.jsonl.gz")
    assert [c.id for c in dev] == [c.id for c in load_manifest(tiny_recipe.data_dir / "fbank" / "synth_cuts_dev.jsonl.gz")]


def write_tone_manifests(manifest_dir, audio_dir, split, ms_by_id, rate=16000):
    """A split of noise recordings with the given lengths in milliseconds (each a valid WAV), one utterance each."""
    audio_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    recordings, supervisions = [], []
    for utt, ms in ms_by_id.items():
        path = audio_dir / f"{utt}.wav"
        sf.write(path, 0.1 * rng.standard_normal(round(ms * rate / 1000)).astype(np.float32), rate, subtype="PCM_16")
        rec = Recording.from_file(path, recording_id=utt)
        recordings.append(rec)
        supervisions.append(SupervisionSegment(id=utt, recording_id=utt, start=0, duration=rec.duration,
                                               text="A B", speaker="s"))
    write_split_manifests(manifest_dir, "t", split, RecordingSet.from_recordings(recordings),
                          SupervisionSet.from_segments(supervisions))


def test_audio_too_short_for_the_model_is_skipped_and_named(tmp_path, caplog):
    # 64 ms is 6 fbank frames at a 10 ms shift: the 4x front end makes 0 frames of it; 65 ms is 7 frames, 1 frame.
    manifests = tmp_path / "manifests"
    write_tone_manifests(manifests, tmp_path / "audio", "train", {"long": 500, "short": 64, "edge": 65, "sp": 70})
    write_tone_manifests(manifests, tmp_path / "audio", "dev", {"dlong": 400, "dshort": 30})
    compute_fbank(manifests, tmp_path / "fbank", "t", ["train", "dev"], num_jobs=1, speed_perturb=True)
    train = load_manifest(tmp_path / "fbank" / "t_cuts_train.jsonl.gz")
    # Each cut is judged by its own length: 70 ms at speed 1.1 is 64 ms (that copy goes), 64 ms at 0.9 is 71 ms.
    assert sorted(train.ids) == sorted(["long", "edge", "sp", "long_sp0.9", "short_sp0.9", "edge_sp0.9", "sp_sp0.9",
                                        "long_sp1.1"])
    assert all(c.num_frames >= MIN_INPUT_FRAMES for c in train)
    assert list(load_manifest(tmp_path / "fbank" / "t_cuts_dev.jsonl.gz").ids) == ["dlong"]
    for utt in ("short", "edge_sp1.1", "sp_sp1.1", "dshort"):
        assert f"skipping utterance {utt} (" in caplog.text, utt
    assert "t train: 4 of 12 utterance(s) skipped as too short" in caplog.text
    assert "t dev: 1 of 2 utterance(s) skipped" in caplog.text


def test_min_input_frames_is_where_k2_ctc_stops_failing():
    model = CtcModel(ModelConfig(num_features=80, vocab_size=5, hidden_dim=16, num_layers=1)).eval()
    graphs = k2.ctc_graph([[1], [2]], modified=False)
    for frames in (MIN_INPUT_FRAMES, MIN_INPUT_FRAMES - 1):
        with torch.no_grad():
            log_probs, lengths = model(torch.randn(2, 20, 80), torch.tensor([20, frames]))
        if frames == MIN_INPUT_FRAMES:
            dense, _ = dense_fsa_vec(log_probs, lengths)
            assert torch.isfinite(k2.ctc_loss(graphs, dense, output_beam=10, reduction="none")).all()
        else:
            assert int(lengths[1]) == 0
            with pytest.raises(AssertionError):  # what stage 3 died of, naming no utterance
                dense_fsa_vec(log_probs, lengths)


def test_splits_sharing_utterances_with_training_are_refused(tmp_path):
    manifests = tmp_path / "manifests"
    write_tone_manifests(manifests, tmp_path / "audio", "train", {"a": 300, "b": 300})
    write_tone_manifests(manifests, tmp_path / "audio", "dev", {"b": 300, "c": 300})
    with pytest.raises(ValueError, match="splits train and dev share 1 utterance id.*e.g. b"):
        compute_fbank(manifests, tmp_path / "fbank", "t", ["train", "dev"], num_jobs=1)
