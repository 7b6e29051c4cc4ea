"""Stages 5 and 6 of the tiny recipe: lattice shards, their statistics, and the stored Q-values."""

import json

import k2
import pytest
import torch
from rlhf.checkpoint import average_checkpoints, model_digest
from rlhf.lattice_shards import LatticeShard, shard_paths
from rlhf.qlearn import onebest_arcs
from rlhf.rl import frame_rewards
from rlhf.rl.mdp import first_arcs
from rlhf.rl.rewards import edit_distance


def test_lattice_shards_carry_what_rescoring_and_rewards_need(tiny_recipe):
    lattice_dir = tiny_recipe.model_dir / "lattices"
    stats = json.loads((lattice_dir / "stats.json").read_text())
    assert set(stats["splits"]) == {"train", "dev"}
    train = stats["splits"]["train"]
    assert train["num_utts"] + train["num_empty"] + train["num_unaligned"] == 24
    assert train["oracle_wer"] <= train["onebest_wer"]
    assert train["arcs_per_frame"] >= 1
    timings = json.loads((lattice_dir / "timings.json").read_text())["make-lattices"]
    assert timings["splits"]["train"]["frames_per_second"] > 0 and "seconds" not in train
    model = average_checkpoints(tiny_recipe.model_dir, 2, 2)
    for path in shard_paths(lattice_dir / "train"):
        shard = LatticeShard.load(path)
        lattice = shard.lattice
        assert shard.meta["model_digest"] == model_digest(model)
        assert lattice.shape[0] == len(shard.cut_ids) == len(shard.alignments) == len(shard.references)
        assert [len(a) for a in shard.alignments] == shard.num_frames
        assert lattice.properties & k2.fsa_properties.COACCESSIBLE  # connected: every arc on a complete path
        assert hasattr(lattice, "graph_scores") and hasattr(lattice, "frame_idx")
        starts = first_arcs(lattice).tolist()
        for i, frames in enumerate(shard.num_frames):
            arc_frames = lattice.frame_idx[starts[i]:starts[i + 1]]
            labels = lattice.labels[starts[i]:starts[i + 1]]
            assert arc_frames[labels >= 0].max() < frames and (arc_frames[labels == -1] == frames).all()
        shard.check_made_with(path, shard.meta["model_digest"], shard.meta["lang_digest"])
        with pytest.raises(ValueError, match="another model"):
            shard.check_made_with(path, "0" * 64, shard.meta["lang_digest"])


def test_stored_values_match_the_lattices(tiny_recipe):
    lattice_dir = tiny_recipe.model_dir / "lattices"
    for path in shard_paths(lattice_dir / "train"):
        shard = LatticeShard.load(path)
        stored = torch.load(lattice_dir / "train" / "q-frame" / path.name)
        assert stored["q"].shape == (shard.lattice.num_arcs,) and stored["sweeps"] == 1
        assert stored["valid"].all() and torch.isfinite(stored["q"]).all()
        rewards = frame_rewards(shard.lattice, shard.alignments).tolist()
        starts = first_arcs(shard.lattice).tolist()
        advantage = stored["advantage"].double().tolist()
        for i, best in enumerate(onebest_arcs(shard.lattice)):
            along = sum(advantage[starts[i] + a] for a in best)
            ret = sum(rewards[starts[i] + a] for a in best)
            assert along == pytest.approx(ret - stored["start_value"][i].item(), abs=1e-4)
    table = (tiny_recipe.model_dir / "qlearn-frame.md").read_text()
    assert "| train | " in table and "| dev | " in table
    assert table in (tiny_recipe.workdir / "RESULTS.md").read_text()


@pytest.mark.slow
def test_edit_reward_stage_and_exact_oracle(edit_recipe):
    assert "make-lattices: already complete" in edit_recipe.output  # stage 5 is not redone
    lattice_dir = edit_recipe.model_dir / "lattices"
    stats = json.loads((lattice_dir / "stats.json").read_text())["splits"]["dev"]
    errors = words = 0
    for path in shard_paths(lattice_dir / "dev"):
        shard = LatticeShard.load(path)
        stored = torch.load(lattice_dir / "dev" / "q-edit" / path.name)
        errors -= int(stored["start_value"].sum())
        words += sum(len(r) for r in shard.references)
        assert (stored["advantage"] <= 0).all()  # edit mode: 0 exactly on oracle paths
    assert 100.0 * errors / words == pytest.approx(stats["oracle_wer"])
    assert stats["oracle_wer"] <= stats["onebest_wer"]


def test_one_best_arcs_give_the_one_best_words(tiny_recipe):
    shard = LatticeShard.load(shard_paths(tiny_recipe.model_dir / "lattices" / "dev")[0])
    from rlhf.decode import arc_labels, get_texts
    texts = get_texts(k2.shortest_path(shard.lattice, use_double_scores=True))
    outputs = arc_labels(shard.lattice).tolist()
    starts = first_arcs(shard.lattice).tolist()
    for i, best in enumerate(onebest_arcs(shard.lattice)):
        assert [w for a in best for w in outputs[starts[i] + a]] == texts[i]
        assert edit_distance(texts[i], shard.references[i]) >= 0


def test_oov_reference_words_get_an_id_no_arc_outputs(tiny_recipe):
    from rlhf.decode import LatticeConfig
    from rlhf.graphs import read_symbols
    from rlhf.lang.tokenizer import Tokenizer
    from rlhf.make_lattices import LatticeMaker
    lang = tiny_recipe.data_dir / "lang_bpe_50"
    maker = LatticeMaker(average_checkpoints(tiny_recipe.model_dir, 2, 2), Tokenizer(lang), "hlg", LatticeConfig(),
                         torch.device("cpu"), lang)
    words = read_symbols(lang / "words.txt")
    known = (lang / "lexicon.txt").read_text().split()[0]
    refs = maker.references([f"{known} NOSUCHWORDXYZ"])
    assert refs == [[words[known], maker.oov_id]] and maker.oov_id > max(words.values())


@pytest.mark.slow
def test_ctc_topology_lattices_compare_tokens(tiny_recipe, tmp_path):
    """--graph ctc: token lattices without an LM; references and the edit reward are in tokens."""
    import shutil

    from rlhf.decode import LatticeConfig
    from rlhf.lang.tokenizer import Tokenizer
    from rlhf.make_lattices import make_lattices
    from rlhf.rl import lattice_values
    exp = tmp_path / "exp"
    exp.mkdir()
    for checkpoint in tiny_recipe.model_dir.glob("epoch-*.pt"):
        shutil.copy(checkpoint, exp)
    lang = tiny_recipe.data_dir / "lang_bpe_50"
    out = make_lattices(lang, tiny_recipe.data_dir / "fbank", exp, "synth", ["dev"], 2, 2, "ctc",
                        LatticeConfig(output_beam=3, max_active_states=1000))
    stats = json.loads((out / "stats.json").read_text())["splits"]["dev"]
    assert stats["num_utts"] == 4 and stats["oracle_wer"] <= stats["onebest_wer"]
    shard = LatticeShard.load(shard_paths(out / "dev")[0])
    assert shard.references == Tokenizer(lang).encode(shard.texts)
    values = lattice_values(shard.lattice, "edit", references=shard.references)
    errors = -values.start_value.sum().item()
    assert errors == pytest.approx(stats["oracle_wer"] * stats["ref_words"] / 100.0)


def test_q_values_of_lattices_being_remade_are_not_complete(tiny_recipe, tmp_path):
    """Stage 5 redone and interrupted leaves its marker gone and lattices/train/q-frame replaced:
    stage 6 must neither report "already complete" nor run on half-made lattices."""
    import shutil

    from rlhf.qlearn import QLearningConfig, qlearn
    exp = tmp_path / "exp"
    shutil.copytree(tiny_recipe.model_dir / "lattices", exp / "lattices")
    marker = exp / "lattices" / ".make-lattices.done.json"
    recorded = marker.read_text()
    marker.unlink()
    shutil.rmtree(exp / "lattices" / "train" / "q-frame")
    with pytest.raises(FileNotFoundError, match="step make-lattices has not completed"):
        qlearn(exp, ["train", "dev"], "frame", QLearningConfig())
    # Stage 5 finishes (same options: the same marker); the values it replaced are made again.
    marker.write_text(recorded)
    qlearn(exp, ["train", "dev"], "frame", QLearningConfig())
    assert sorted(p.name for p in (exp / "lattices" / "train" / "q-frame").iterdir()) == \
        sorted(p.name for p in (tiny_recipe.model_dir / "lattices" / "train" / "q-frame").iterdir())


def test_a_missing_hlg_is_named(tiny_recipe, tmp_path):
    from rlhf.decode import LatticeConfig
    from rlhf.make_lattices import make_lattices
    with pytest.raises(FileNotFoundError, match="HLG_1gram.pt not found"):
        make_lattices(tiny_recipe.data_dir / "lang_bpe_50", tiny_recipe.data_dir / "fbank", tiny_recipe.model_dir,
                      "synth", ["dev"], 2, 2, "hlg", LatticeConfig(), hlg=tmp_path / "HLG_1gram.pt")


@pytest.mark.slow
def test_lattices_from_a_unigram_hlg(tiny_recipe, tmp_path):
    """--hlg: the lattices carry the unigram's graph scores (stage 5 with --lattice-lm-order 1)."""
    import shutil

    from rlhf.decode import LatticeConfig
    from rlhf.lang.compile_hlg import compile_hlg_step
    from rlhf.lang.train_lm import train_lm
    from rlhf.make_lattices import make_lattices
    lang = tmp_path / "lang"
    shutil.copytree(tiny_recipe.data_dir / "lang_bpe_50", lang)
    exp = tmp_path / "exp"
    exp.mkdir()
    for checkpoint in tiny_recipe.model_dir.glob("epoch-*.pt"):
        shutil.copy(checkpoint, exp)
    train_lm(lang, tmp_path / "lm", order=1)
    compile_hlg_step(lang, tmp_path / "lm" / "G_1_gram.fst.txt", out=lang / "HLG_1gram.pt")
    config = LatticeConfig(output_beam=3, max_active_states=1000)
    out = make_lattices(lang, tiny_recipe.data_dir / "fbank", exp, "synth", ["dev"], 2, 2, "hlg", config,
                        hlg=lang / "HLG_1gram.pt")
    assert json.loads((out / "stats.json").read_text())["meta"]["hlg"] == str(lang / "HLG_1gram.pt")
    unigram = LatticeShard.load(shard_paths(out / "dev")[0]).lattice
    shutil.rmtree(out)
    make_lattices(lang, tiny_recipe.data_dir / "fbank", exp, "synth", ["dev"], 2, 2, "hlg", config)
    trigram = LatticeShard.load(shard_paths(out / "dev")[0]).lattice
    # Both hold the same utterances; the word LM's scores on their paths differ.
    assert unigram.shape[0] == trigram.shape[0]
    assert not torch.allclose(k2.shortest_path(unigram, True).get_tot_scores(True, False),
                              k2.shortest_path(trigram, True).get_tot_scores(True, False))
