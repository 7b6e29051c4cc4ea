"""Stage 2: fbank features and cut manifests."""

import pytest
from lhotse import load_manifest

from rlhf.data import is_speed_perturbed, original_cuts
from rlhf.features import compute_fbank


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
