"""Stage 4: lattices, their posteriors, empty lattices, and the recipe's decoding outputs."""

import json
import subprocess

import k2
import pytest
import torch

from batches import WORDS, make_batch, make_word_lang
from conftest import REPO
from rlhf.decode import (Decoder, LatticeConfig, MethodResult, decode, get_lattice, get_texts, nbest_lists,
                         sweep_lm_scales)
from rlhf.graphs import ctc_topo_graph
from rlhf.lang.tokenizer import Tokenizer
from rlhf.model import CtcModel, ModelConfig
from rlhf.scoring import compute_wer


def random_log_probs(lengths: list[int], vocab_size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    log_probs = (2 * torch.randn(len(lengths), max(lengths), vocab_size, generator=g)).log_softmax(-1)
    return log_probs, torch.tensor(lengths)


def test_arc_posteriors_sum_to_one_at_every_frame():
    lengths = [15, 9, 12]
    log_probs, lengths_t = random_log_probs(lengths, vocab_size=6)
    lattice, order = get_lattice(ctc_topo_graph(5), log_probs, lengths_t, LatticeConfig(output_beam=6.0))
    post = lattice.get_arc_post(use_double_scores=True, log_semiring=True).exp()
    shape = lattice.arcs.shape()
    fsa_of_arc = shape.row_ids(1)[shape.row_ids(2).long()].long()
    frame = lattice.frame_idx.long()
    for i in range(lattice.shape[0]):
        n = lengths[order[i]]
        mine = fsa_of_arc == i
        # Frames 0..n-1 consume the network's outputs; frame n holds the arcs into the final state.
        sums = torch.zeros(n + 1, dtype=post.dtype).index_add_(0, frame[mine], post[mine])
        torch.testing.assert_close(sums, torch.ones(n + 1, dtype=post.dtype), rtol=0, atol=1e-6)


def test_one_best_is_the_best_entry_of_a_wide_nbest_list():
    log_probs, lengths = random_log_probs([10, 8], vocab_size=4, seed=3)
    lattice, _ = get_lattice(ctc_topo_graph(3), log_probs, lengths, LatticeConfig(output_beam=20.0))
    best = get_texts(k2.shortest_path(lattice, use_double_scores=True))
    best_scores = k2.shortest_path(lattice, use_double_scores=True).get_tot_scores(True, False).tolist()
    for seq, score, entries in zip(best, best_scores, nbest_lists(lattice, num_paths=500, nbest_scale=1.0)):
        scores = [s for s, _ in entries]
        assert scores == sorted(scores, reverse=True)
        assert len({tuple(e) for _, e in entries}) == len(entries), "n-best entries must be distinct"
        assert entries[0][1] == seq and abs(entries[0][0] - score) < 1e-6


def test_empty_lattice_is_counted_and_scored_as_deletions(tmp_path):
    tokenizer = Tokenizer(make_word_lang(tmp_path / "lang"))
    model = CtcModel(ModelConfig(vocab_size=tokenizer.vocab_size, hidden_dim=16, num_layers=1,
                                 subsampling_channels=4))
    # A "graph" that only accepts 40 alternating words: no path fits the 9 output frames.
    graph = k2.arc_sort(k2.ctc_graph([[3, 4] * 20]))
    words = {"<eps>": 0, **{w: i + 3 for i, w in enumerate(WORDS)}}
    decoder = Decoder(model, tokenizer, ["hlg-1best"], LatticeConfig(), torch.device("cpu"), graph, words)
    results = {"hlg-1best": MethodResult()}
    decoder.decode_batch(make_batch([40, 40], ["A B", "C A C"]), results)
    result = results["hlg-1best"]
    assert result.num_empty == 2
    assert [u.hyp for u in result.utts] == [[], []]
    stats = compute_wer(result.utts)
    assert (stats.num_del, stats.num_errors, stats.num_ref_words) == (5, 5, 5)


def test_recipe_writes_kaldi_style_outputs(tiny_recipe):
    model_dir = tiny_recipe.model_dir
    for method in ("ctc-greedy", "ctc-1best", "hlg-1best"):
        for split in ("dev", "test"):
            suffix = f"{split}-epoch-2-avg-2"
            errs = (model_dir / method / f"errs-{suffix}.txt").read_text()
            assert errs.startswith("%WER ")
            recogs = (model_dir / method / f"recogs-{suffix}.txt").read_text().splitlines()
            assert len(recogs) == 2 * 4  # ref and hyp lines of the 4 utterances
            assert (model_dir / method / f"wer-summary-{suffix}.txt").is_file()
    assert (model_dir / "hlg-1best" / "nbest-test-epoch-2-avg-2.txt").is_file()
    table = (model_dir / "results-epoch-2-avg-2.md").read_text()
    assert "| hlg-1best |" in table
    assert table in (tiny_recipe.workdir / "RESULTS.md").read_text()
    assert "| hlg-1best |" in tiny_recipe.output  # run.sh prints the table
    assert (model_dir / "training-curve.png").is_file()


def test_lm_scale_sweep_reproduces_stage_4_at_its_scale(tiny_recipe):
    """The sweep that chooses --lm-scale on dev decodes exactly as stage 4 does."""
    data, model_dir = tiny_recipe.data_dir, tiny_recipe.model_dir
    stats = sweep_lm_scales(data / "lang_bpe_50", data / "fbank", model_dir, "synth", "dev", 2, 2, [0.5, 2.0],
                            LatticeConfig(max_active_states=1000), max_duration=200.0, device_name="cpu")
    stage4 = json.loads((model_dir / "results-epoch-2-avg-2.json").read_text())["rows"]["hlg-1best"]["dev"]
    assert stats[0.5].summary_line() == stage4["summary"]
    assert set(stats) == {0.5, 2.0}
    # one checkpoint file (stage 7's best.pt, say) instead of --epoch/--avg: epoch 2 alone here
    alone = sweep_lm_scales(data / "lang_bpe_50", data / "fbank", model_dir, "synth", "dev", 2, 1, [0.5],
                            LatticeConfig(max_active_states=1000), max_duration=200.0, device_name="cpu")
    from_file = sweep_lm_scales(data / "lang_bpe_50", data / "fbank", model_dir, "synth", "dev", None, None, [0.5],
                                LatticeConfig(max_active_states=1000), max_duration=200.0, device_name="cpu",
                                checkpoint=model_dir / "epoch-2.pt")
    assert from_file[0.5].summary_line() == alone[0.5].summary_line()
    # a blank penalty makes the blank dearer: fewer deletions (the tiny model deletes nearly every word)
    penalized = sweep_lm_scales(data / "lang_bpe_50", data / "fbank", model_dir, "synth", "dev", 2, 1, [0.5],
                                LatticeConfig(max_active_states=1000), max_duration=200.0, device_name="cpu",
                                blank_penalty=5.0)[0.5]
    assert penalized.num_del < alone[0.5].num_del


def test_negative_lm_scale_is_refused_in_one_line(tmp_path):
    with pytest.raises(ValueError, match="--lm-scale must be a finite number >= 0.*got -1"):
        decode(tmp_path, tmp_path, tmp_path, "synth", ["dev"], 1, 1, ["hlg-1best"], LatticeConfig(lm_scale=-1.0), 10.0)
    for step in ("decode", "make_lattices"):
        result = subprocess.run([str(REPO / "steps" / f"{step}.sh"), "--epoch", "1", "--lm-scale", "-1", str(tmp_path),
                                 str(tmp_path), str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
        assert result.returncode == 1 and "--lm-scale must be a finite number >= 0" in result.stdout, result.stdout
        assert "Traceback" not in result.stdout
