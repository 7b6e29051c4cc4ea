"""Stage 2: fbank features and cut manifests."""

from lhotse import load_manifest


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
