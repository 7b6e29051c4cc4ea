"""Stage 7 on the tiny recipe: Hessian-free fine-tuning, its determinism and resume, the controls."""

import json
import logging
from types import SimpleNamespace

import k2
import pytest
import torch

from rlhf import distributed
from rlhf.checkpoint import average_checkpoints, model_digest
from rlhf.compare import compare
from rlhf.ctc import CtcGraphCompiler, ctc_loss
from rlhf.decode import LatticeConfig
from rlhf.finetune import FinetuneConfig, finetune, trainable_parameters
from rlhf.hf import HessianFreeConfig
from rlhf.lang.tokenizer import Tokenizer
from rlhf.lattice_batches import LatticeBatch, load_split_lattices, time_masked
from rlhf.regenerate_lattices import LatticeRegenerator
from rlhf.rl.sequence_objective import SequenceObjective, mmi_loss, numerator_lattice
from rlhf.scoring import Utterance, write_recogs
from rlhf.significance import read_recogs
from rlhf.stage import file_digest

LATTICE = LatticeConfig(max_active_states=1000, lm_scale=0.5)


def _run(recipe, out_dir, hf=HessianFreeConfig(cg_max_iters=8), **options):
    config = FinetuneConfig(**{"max_iters": 2, "heldout_utts": 4, "curvature_fraction": 0.5, **options})
    return finetune(recipe.data_dir / "lang_bpe_50", recipe.data_dir / "fbank", recipe.model_dir, "synth", 2, 2,
                    config, hf, LATTICE, out_dir=out_dir, max_duration=40.0, device_name="cpu")


def _double_model_and_train_lattices(recipe):
    """(lang dir, the stage-7 baseline in float64, its training lattices) of the tiny recipe."""
    lang_dir = recipe.data_dir / "lang_bpe_50"
    model = average_checkpoints(recipe.model_dir, 2, 2)
    data = load_split_lattices(recipe.model_dir / "lattices", "train", "frame",
                               recipe.data_dir / "fbank" / "synth_cuts_train.jsonl.gz", model_digest(model),
                               file_digest(lang_dir / "tokens.txt"))
    return lang_dir, model.double(), data


def _state(out_dir):
    return torch.load(out_dir / "state.pt")


def test_stage7_fine_tunes_and_reports_baseline_against_fine_tuned(tiny_recipe):
    out = tiny_recipe.model_dir / "finetune" / "rl-hf-frame"
    assert "Stage 7 done" in tiny_recipe.output
    progress = json.loads((out / "progress.json").read_text())
    assert progress["iteration"] == 2 and len(progress["steps"]) == 2
    assert progress["history"][0]["iteration"] == 0  # the baseline's dev WER comes first
    # HF never keeps a step that makes the held-out objective worse, and these steps improve it (J rises)
    for step in progress["steps"]:
        assert step["heldout_after"] <= step["heldout_before"]
        parts = step["breakdown"]  # one gradient, a curvature product per CG step, held-out values
        assert parts["gradient"]["calls"] == 1 and parts["curvature"]["calls"] >= step["cg_iters"] >= 1
        assert parts["heldout"]["calls"] >= 2 and parts["setup"]["calls"] == 1
        assert 0 < sum(p["seconds"] for p in parts.values()) <= step["seconds"] + parts["setup"]["seconds"] + 1e-6
    assert progress["steps"][-1]["heldout_after"] < progress["steps"][0]["heldout_before"]
    assert (out / "best.pt").is_file() and (out / "comparison.png").stat().st_size > 0
    table = (out / "comparison.md").read_text()
    assert "| baseline |" in table and "| rl-hf-frame |" in table and "test hlg-1best" in table
    results = json.loads((out / "results-best.json").read_text())
    assert set(results["rows"]) == {"ctc-greedy", "ctc-1best", "hlg-1best"}


@pytest.mark.slow
def test_hf_run_is_deterministic_and_resume_equals_an_uninterrupted_run(tiny_recipe, tmp_path):
    _run(tiny_recipe, tmp_path / "a")
    _run(tiny_recipe, tmp_path / "b")
    a, b = _state(tmp_path / "a"), _state(tmp_path / "b")
    for name, value in a["model"].items():
        assert torch.equal(value, b["model"][name]), name
    _run(tiny_recipe, tmp_path / "c", max_iters=1)
    assert _state(tmp_path / "c")["progress"]["iteration"] == 1
    _run(tiny_recipe, tmp_path / "c")  # resumes at iteration 1
    c = _state(tmp_path / "c")
    assert c["progress"]["iteration"] == 2
    for name, value in a["model"].items():
        assert torch.equal(value, c["model"][name]), name
    assert a["optimizer"]["damping"] == c["optimizer"]["damping"]
    assert torch.equal(a["optimizer"]["direction"], c["optimizer"]["direction"])


def test_time_masks_follow_stage_3s_rule_and_leave_the_rest_alone():
    torch.manual_seed(0)
    features = torch.randn(3, 700, 5)
    lengths = torch.tensor([700, 300, 5])
    features[1, 300:] = 0.0
    features[2, 5:] = 0.0
    batch = LatticeBatch([0, 1, 2], features, lengths, [], None, None, None, None, [], [], [])
    masked = time_masked(batch, torch.Generator().manual_seed(1)).features
    assert torch.equal(batch.features, features), "the batch itself is not changed"
    assert torch.equal(masked, time_masked(batch, torch.Generator().manual_seed(1)).features)
    changed = (masked != features).any(-1)  # frames masked, per utterance
    assert changed[0].any() and changed[1].any(), "700- and 300-frame utterances get masks"
    assert changed[0].sum() <= 0.15 * 700 and changed[1].sum() <= 0.15 * 300
    assert not changed[1, 300:].any() and not changed[2].any(), "no mask on padding or a 5-frame utterance"
    for i in (0, 1):
        assert torch.allclose(masked[i][changed[i]], features[i, :lengths[i]].mean().expand(int(changed[i].sum()), 5))
    counts = [int((time_masked(batch, torch.Generator().manual_seed(s)).features[1] != features[1]).any(-1).sum())
              for s in range(50)]
    assert max(counts) > 30 and len(set(counts)) > 10, "widths vary, up to 15% of 300 frames"


def test_hf_with_time_masks_is_deterministic_and_differs(tiny_recipe, tmp_path):
    _run(tiny_recipe, tmp_path / "a", time_masks=True, max_iters=1)
    _run(tiny_recipe, tmp_path / "b", time_masks=True, max_iters=1)
    _run(tiny_recipe, tmp_path / "c", max_iters=1)
    a, b, c = (_state(tmp_path / d)["model"] for d in "abc")
    assert all(torch.equal(v, b[k]) for k, v in a.items())
    assert any(not torch.equal(v, c[k]) for k, v in a.items())


def test_fisher_preconditioner_rows_are_the_curvature_utterances_gradients(tiny_recipe, tmp_path):
    lang_dir, model, data = _double_model_and_train_lattices(tiny_recipe)
    model.eval()  # as stage 7 runs it: no dropout
    objective = SequenceObjective(model, trainable_parameters(model, "top-2"), FinetuneConfig(),
                                  CtcGraphCompiler(Tokenizer(lang_dir)), torch.device("cpu"))

    def batch(utts):
        b = data.batch(utts)
        b.features = b.features.double()
        return b

    rows = objective.example_gradients([(k, batch([u])) for k, u in enumerate((0, 0, 1))], 3).double()
    # each row is one utterance's gradient over its normalizer (a padded batch changes the model's
    # outputs near an utterance's end, so the sum is checked on a batch of one utterance twice)
    torch.testing.assert_close(rows[0], rows[1], rtol=0, atol=0)
    assert not torch.allclose(rows[0], rows[2])
    twice = objective.batch_gradient(batch([0, 0]), 0)[1] / objective.normalizer([batch([0, 0])])
    torch.testing.assert_close(twice.double(), rows[0], rtol=1e-6, atol=1e-9)
    single = objective.batch_gradient(batch([1]), 0)[1] / objective.normalizer([batch([1])])
    torch.testing.assert_close(single.double(), rows[2], rtol=1e-6, atol=1e-9)

    _run(tiny_recipe, tmp_path / "fisher", hf=HessianFreeConfig(cg_max_iters=8, preconditioner="fisher"), max_iters=1)
    step = json.loads((tmp_path / "fisher" / "progress.json").read_text())["steps"][0]
    assert step["breakdown"]["example_gradients"]["calls"] == 1 and step["curvature_utts"] >= 1
    _run(tiny_recipe, tmp_path / "diagonal", max_iters=1)
    fisher, diagonal = (_state(tmp_path / d)["model"] for d in ("fisher", "diagonal"))
    assert any(not torch.equal(v, diagonal[k]) for k, v in fisher.items())


def test_options_the_optimizer_ignores_do_not_redo_a_finished_run(tiny_recipe, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    out = _run(tiny_recipe, tmp_path / "ctc-adam", objective="ctc", optimizer="adam")
    marker = json.loads((out / ".finetune.done.json").read_text())["options"]
    assert "hf" not in marker and "grad_fraction" not in marker["finetune"] and "lr" in marker["finetune"]
    written = (out / "best.pt").stat().st_mtime_ns
    # Hessian-free's options (its config, the gradient and curvature samples) are not Adam's.
    caplog.clear()
    _run(tiny_recipe, out, objective="ctc", optimizer="adam", grad_fraction=0.5, curvature="occupancy")
    assert "already complete" in caplog.text and (out / "best.pt").stat().st_mtime_ns == written
    # A marker written before the options were narrowed (it records them all) is still complete.
    old = json.loads((out / ".finetune.done.json").read_text())
    old["options"]["hf"] = {"cg_max_iters": 8}
    old["options"]["finetune"]["grad_fraction"] = 0.9
    (out / ".finetune.done.json").write_text(json.dumps(old))
    caplog.clear()
    _run(tiny_recipe, out, objective="ctc", optimizer="adam")
    assert "already complete" in caplog.text
    # Adam's own learning rate redoes it.
    caplog.clear()
    _run(tiny_recipe, out, objective="ctc", optimizer="adam", lr=3e-4)
    assert "already complete" not in caplog.text and (out / "best.pt").stat().st_mtime_ns != written


@pytest.mark.parametrize("objective,optimizer,reward", [
    ("rl", "hf", "edit"), ("rl", "adam", "frame"), ("mwer", "adam", "frame"), ("mmi", "adam", "frame"),
    ("mmi", "hf", "frame"), ("ctc", "adam", "frame")])
@pytest.mark.slow
def test_every_method_runs_and_moves_the_model(request, tmp_path, objective, optimizer, reward):
    recipe = request.getfixturevalue("edit_recipe" if reward == "edit" else "tiny_recipe")
    out = _run(recipe, tmp_path / "run", objective=objective, optimizer=optimizer, reward=reward)
    state = _state(out)
    baseline = average_checkpoints(recipe.model_dir, 2, 2).state_dict()
    # The tiny model's lattices hold no reference (its oracle WER is over 50%): MMI has no numerator
    # anywhere, so it must leave the model as it was.
    moved = objective != "mmi"
    assert any(not torch.equal(v, baseline[k]) for k, v in state["model"].items()) == moved
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert len(json.loads((out / "progress.json").read_text())["history"]) >= 2


@pytest.mark.parametrize("curvature", ["softmax", "occupancy"])
def test_curvature_products_are_positive_semidefinite_on_the_real_objective(tiny_recipe, curvature):
    lang_dir, model, data = _double_model_and_train_lattices(tiny_recipe)
    params = trainable_parameters(model, "top-2")
    assert 0 < sum(p.numel() for p in params) < sum(p.numel() for p in model.parameters())
    config = FinetuneConfig(ctc_weight=0.1, curvature=curvature)
    objective = SequenceObjective(model, params, config, CtcGraphCompiler(Tokenizer(lang_dir)), torch.device("cpu"))
    batch = data.batch(range(min(6, data.num_utts)))
    batch.features = batch.features.double()
    product = objective.curvature_operator(batch)
    rng = torch.Generator().manual_seed(0)
    size = sum(p.numel() for p in params)
    for _ in range(5):
        v = torch.randn(size, dtype=torch.float64, generator=rng)
        assert float(v @ product(v)) >= 0.0
    # linear in v
    u, v = torch.randn(size, dtype=torch.float64, generator=rng), torch.randn(size, dtype=torch.float64, generator=rng)
    torch.testing.assert_close(product(2 * u + v), 2 * product(u) + product(v))


@pytest.mark.parametrize("objective", ["rl", "mmi", "mwer"])
def test_ctc_weight_adds_the_ctc_loss_to_every_lattice_objective(tiny_recipe, objective):
    lang_dir = tiny_recipe.data_dir / "lang_bpe_50"
    model = average_checkpoints(tiny_recipe.model_dir, 2, 2)
    data = load_split_lattices(tiny_recipe.model_dir / "lattices", "train", "frame",
                               tiny_recipe.data_dir / "fbank" / "synth_cuts_train.jsonl.gz", model_digest(model),
                               file_digest(lang_dir / "tokens.txt"))
    compiler = CtcGraphCompiler(Tokenizer(lang_dir))
    batch = data.batch(range(min(6, data.num_utts)))

    def loss(ctc_weight):
        torch.manual_seed(0)  # mwer_loss samples its paths
        config = FinetuneConfig(objective=objective, optimizer="adam", ctc_weight=ctc_weight)
        return float(SequenceObjective(model, list(model.parameters()), config, compiler,
                                       torch.device("cpu")).batch_loss(batch, 0))

    log_probs, lengths = model.eval()(batch.features, batch.num_input_frames)  # as the objective runs it
    ctc = float(ctc_loss(log_probs, lengths, batch.texts, compiler).sum())
    assert ctc > 0
    assert loss(0.5) - loss(0.0) == pytest.approx(0.5 * ctc, rel=1e-4)


def collapsed_labels(path: k2.Fsa) -> list[int]:
    """The CTC-collapsed token sequence of a linear path (repeats merged, blanks and -1 dropped)."""
    labels = path.labels.tolist()
    return [t for j, t in enumerate(labels) if t > 0 and (j == 0 or labels[j - 1] != t)]


class TokenCompiler:
    """CTC graphs of texts written as token ids ("1 2")."""

    def compile(self, texts: list[str]) -> k2.Fsa:
        return k2.ctc_graph([[int(t) for t in text.split()] for text in texts])


def lattice_of(sequences: list[list[int]], log_probs: torch.Tensor) -> k2.Fsa:
    """The lattice of one utterance's frames (T, V) holding every CTC alignment of the token sequences."""
    graph = k2.arc_sort(k2.create_fsa_vec([k2.union(k2.ctc_graph(sequences))]))
    dense = k2.DenseFsaVec(log_probs.unsqueeze(0), torch.tensor([[0, 0, log_probs.shape[0]]], dtype=torch.int32))
    return k2.intersect_dense(graph, dense, output_beam=1000.0)[0]


def test_mmi_numerator_is_the_lattices_paths_of_the_reference():
    torch.manual_seed(0)
    log_probs = torch.randn(8, 5).log_softmax(-1)
    with_reference = lattice_of([[1, 2], [1, 3], [4]], log_probs)
    without = lattice_of([[1, 3], [4]], log_probs)
    lattice = k2.create_fsa_vec([with_reference, without])
    batch = SimpleNamespace(lattice=lattice, texts=["1 2", "1 2"])
    num = numerator_lattice(batch, TokenCompiler())
    in_lattice = num.arcs.row_splits(1)[1:] > num.arcs.row_splits(1)[:-1]
    assert in_lattice.tolist() == [True, False]
    assert collapsed_labels(k2.shortest_path(num, use_double_scores=True)[0]) == [1, 2]

    weights = lattice.scores.clone().requires_grad_(True)
    loss = mmi_loss(batch, weights, TokenCompiler())
    reference_only = lattice_of([[1, 2]], log_probs)
    expected = (k2.create_fsa_vec([with_reference]).get_tot_scores(True, True)
                - k2.create_fsa_vec([reference_only]).get_tot_scores(True, True))
    assert float(expected) > 0.1
    torch.testing.assert_close(loss, torch.cat([expected, torch.zeros(1, dtype=torch.float64)]), rtol=1e-5, atol=1e-5)
    grad, = torch.autograd.grad(loss.sum(), weights)
    second = slice(int(lattice.arcs.row_splits(2)[lattice.arcs.row_splits(1)[1]]), None)
    assert grad[:second.start].abs().max() > 1e-3 and (grad[second] == 0).all(), "no reference: no gradient"
    with torch.no_grad():  # a small step against the gradient makes the reference more likely (the sign)
        assert float(mmi_loss(batch, weights - 0.1 * grad, TokenCompiler())[0]) < float(loss[0])


@pytest.mark.parametrize("reward", ["frame", "edit"])
def test_lattices_regenerated_by_the_baseline_are_those_of_stages_5_and_6(request, reward):
    recipe = request.getfixturevalue("edit_recipe" if reward == "edit" else "tiny_recipe")
    lang_dir = recipe.data_dir / "lang_bpe_50"
    model = average_checkpoints(recipe.model_dir, 2, 2)
    data = load_split_lattices(recipe.model_dir / "lattices", "train", reward,
                               recipe.data_dir / "fbank" / "synth_cuts_train.jsonl.gz", model_digest(model),
                               file_digest(lang_dir / "tokens.txt"))
    # stats.json records the graph relative to the recipe directory: found in the lang dir from here
    regenerator = LatticeRegenerator.like_stage5(model, Tokenizer(lang_dir), lang_dir, recipe.model_dir / "lattices",
                                                 reward, data.shard.cut_ids, torch.device("cpu"))
    stored = data.batch(range(min(6, data.num_utts)))
    fresh = regenerator(stored)
    assert fresh.utts == stored.utts and regenerator.num_dropped == 0 and regenerator.seconds > 0
    for name in ("labels", "frame_idx", "graph_scores"):
        assert torch.equal(getattr(fresh.lattice, name), getattr(stored.lattice, name)), name
    assert fresh.outputs == stored.outputs
    assert torch.equal(fresh.lattice.arcs.values()[:, :2], stored.lattice.arcs.values()[:, :2])
    torch.testing.assert_close(fresh.lattice.scores, stored.lattice.scores)
    torch.testing.assert_close(fresh.advantage, stored.advantage)
    torch.testing.assert_close(fresh.start_value, stored.start_value)
    assert fresh.references == stored.references and fresh.num_frames == stored.num_frames
    assert torch.equal(fresh.features, stored.features)
    # A model that has moved gets its own lattices: the regenerator decodes, it does not look up.
    with torch.no_grad():
        model.output.bias.add_(torch.randn(model.output.bias.shape, generator=torch.Generator().manual_seed(0)))
    moved = regenerator(stored)
    assert moved.lattice.num_arcs != stored.lattice.num_arcs or not torch.equal(moved.lattice.scores,
                                                                               stored.lattice.scores)


def test_regenerated_lattices_start_where_the_stored_ones_do_and_are_recorded(tiny_recipe, tmp_path):
    stored = _run(tiny_recipe, tmp_path / "stored", max_iters=1)
    fresh = _run(tiny_recipe, tmp_path / "fresh", max_iters=1, regenerate_lattices=True)
    # At the first iteration the model is the baseline, whose lattices the stored ones are.
    a, b = _state(stored)["model"], _state(fresh)["model"]
    assert all(torch.equal(v, b[k]) for k, v in a.items())
    assert json.loads((fresh / ".finetune.done.json").read_text())["options"]["finetune"]["regenerate_lattices"]
    # Off, the option is not recorded: runs made before it existed stay complete.
    assert "regenerate_lattices" not in json.loads((stored / ".finetune.done.json").read_text())["options"]["finetune"]
    out = _run(tiny_recipe, tmp_path / "adam", objective="mmi", optimizer="adam", max_iters=2, regenerate_lattices=True)
    assert json.loads((out / "progress.json").read_text())["iteration"] == 2


def test_lattices_of_another_model_are_refused(tiny_recipe, tmp_path):
    lang_dir = tiny_recipe.data_dir / "lang_bpe_50"
    other = average_checkpoints(tiny_recipe.model_dir, 1, 1)  # not the model (epoch 2, avg 2) that made them
    with pytest.raises(ValueError, match="another model"):
        load_split_lattices(tiny_recipe.model_dir / "lattices", "train", "frame",
                            tiny_recipe.data_dir / "fbank" / "synth_cuts_train.jsonl.gz", model_digest(other),
                            file_digest(lang_dir / "tokens.txt"))
    with pytest.raises(ValueError, match="lang dir"):
        load_split_lattices(tiny_recipe.model_dir / "lattices", "train", "frame",
                            tiny_recipe.data_dir / "fbank" / "synth_cuts_train.jsonl.gz",
                            model_digest(average_checkpoints(tiny_recipe.model_dir, 2, 2)), "0" * 64)


def test_bad_options_are_refused_with_the_option_named():
    for objective in ("mwer", "ctc"):
        with pytest.raises(ValueError, match="--optimizer hf runs the rl and mmi objectives"):
            FinetuneConfig(objective=objective, optimizer="hf").check()
    FinetuneConfig(objective="mmi", optimizer="hf").check()
    with pytest.raises(ValueError, match="--trainable"):
        FinetuneConfig(trainable="bottom-2").check()
    with pytest.raises(ValueError, match="--reward"):
        FinetuneConfig(reward="bleu").check()
    with pytest.raises(ValueError, match="--regenerate-lattices"):
        FinetuneConfig(objective="ctc", optimizer="adam", regenerate_lattices=True).check()


def test_comparison_table_and_plot(tmp_path):
    def rows(dev, test):
        return {"rows": {"ctc-greedy": {"dev": {"wer": dev + 10}, "test": {"wer": test + 10}},
                         "hlg-1best": {"dev": {"wer": dev}, "test": {"wer": test}}}}

    (tmp_path / "baseline.json").write_text(json.dumps(rows(8.0, 10.0)))
    runs = []
    for name, dev in (("rl-hf", 6.0), ("rl-adam", 6.5)):
        run = tmp_path / name
        run.mkdir()
        history = [{"iteration": 0, "seconds": 0.0, "dev_wer": 8.0}, {"iteration": 3, "seconds": 60.0, "dev_wer": dev}]
        (run / "progress.json").write_text(json.dumps({"options": {"time_budget": 60}, "iteration": 3,
                                                        "seconds": 61.5, "best_wer": dev, "best_iteration": 3,
                                                        "history": history}))
        (run / "results-best.json").write_text(json.dumps(rows(dev, dev + 1)))
        runs.append(run)
    text = compare(tmp_path / "baseline.json", runs, tmp_path / "comparison", ["dev", "test"])
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    assert lines[0].startswith("| model | optimization s | iterations | best dev WER")
    assert lines[1] == "| baseline | 0 | 0 | - | 18.00 | 8.00 | 20.00 | 10.00 |"
    assert lines[2] == "| rl-hf | 62 | 3 | 6.00 (iter 3) | 16.00 | 6.00 | 17.00 | 7.00 |"
    assert (tmp_path / "comparison.md").read_text() == text
    assert (tmp_path / "comparison.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(FileNotFoundError, match="results-best.json"):
        (runs[0] / "results-best.json").unlink()
        compare(tmp_path / "baseline.json", runs, tmp_path / "comparison", ["dev", "test"])


def test_bench_comparison_gathers_recogs_summarizes_seeds_and_tests_significance(tmp_path):
    refs = [["a", "b", "c", "d"]] * 40

    def write_system(directory, name, hyps, wer):
        for kind, extra in (("hlg-1best", 0), ("ctc-greedy", 1)):
            utts = [Utterance(f"cut{i}", r, h[:len(h) - extra]) for i, (r, h) in enumerate(zip(refs, hyps))]
            write_recogs(directory / kind / name, utts)
        return {"rows": {"hlg-1best": {"dev": {"wer": wer}, "test": {"wer": wer}},
                         "ctc-greedy": {"dev": {"wer": wer + 1}, "test": {"wer": wer + 1}}}}

    exp = tmp_path / "exp"
    (exp / "hlg-1best").mkdir(parents=True)
    (exp / "ctc-greedy").mkdir()
    wrong = [["a", "x", "y", "d"]] * 20 + refs[20:]  # the baseline gets 40 of 160 words wrong
    (exp / "results-epoch-9-avg-2.json").write_text(json.dumps(write_system(exp, "recogs-test-epoch-9-avg-2.txt",
                                                                             wrong, 25.0)))
    runs = []
    for method, seed, fixed in (("rl-hf-frame", 0, 10), ("rl-hf-frame", 1, 18), ("mmi-adam", 0, 0),
                                ("mmi-adam", 1, 2), ("ctc-adam", 0, 1)):
        run = tmp_path / f"{method}-seed{seed}"
        (run / "hlg-1best").mkdir(parents=True)
        (run / "ctc-greedy").mkdir()
        hyps = refs[:fixed] + wrong[fixed:]
        wer = 100 * 2 * (20 - fixed) / 160
        (run / "results-best.json").write_text(json.dumps(write_system(run, "recogs-test-best.txt", hyps, wer)))
        history = [{"iteration": 0, "seconds": 0.0, "dev_wer": 25.0}, {"iteration": 4, "seconds": 60.0, "dev_wer": wer}]
        optimizer = method.split("-")[1]
        # an Adam update takes 0.5 s (60 s / 120 updates); an HF iteration 10 s (1 + 2 + 6 + 1), seed 1's
        # 12 s with rho on the gradient's batches and the Fisher preconditioner's example gradients
        # (seed 0's breakdown is from before those parts were timed)
        parts = {"setup": {"seconds": 1.0, "calls": 1}, "gradient": {"seconds": 2.0, "calls": 1},
                 "heldout": {"seconds": 1.0, "calls": 3}}
        if seed == 1:
            parts["gradient_value"] = {"seconds": 1.0, "calls": 1}
            parts["example_gradients"] = {"seconds": 1.0, "calls": 1}
        steps = [{"breakdown": {**parts, "curvature": {"seconds": 6.0, "calls": 12 + k}}}
                 for k in range(2)] if optimizer == "hf" else []
        (run / "progress.json").write_text(json.dumps({
            "options": {"time_budget": 60, "optimizer": optimizer}, "iteration": 4 + seed if steps else 120,
            "seconds": 60.0, "best_wer": wer, "best_iteration": 4, "history": history, "steps": steps}))
        runs.append(run)
    recogs_dir = tmp_path / "results" / "finetune-bench-synth"
    recogs_dir.mkdir(parents=True)
    (recogs_dir / "recogs-test-mmi-adam.txt").write_text("")  # from an earlier one-seed run: stale now
    text = compare(exp / "results-epoch-9-avg-2.json", runs, tmp_path / "comparison", ["dev", "test"],
                   recogs_dir=recogs_dir, reference_method="rl-hf-frame")
    assert sorted(p.name for p in recogs_dir.iterdir()) == sorted(
        ["recogs-test-baseline.txt", "recogs-test-baseline-greedy.txt", "recogs-test-ctc-adam.txt",
         "recogs-test-ctc-adam-greedy.txt"]
        + [f"recogs-test-{m}-seed{k}{g}.txt" for m in ("rl-hf-frame", "mmi-adam") for k in (0, 1) for g in ("", "-greedy")])
    assert read_recogs(recogs_dir / "recogs-test-mmi-adam-seed1.txt")["cut5"].hyp == ["a", "x", "y", "d"]
    lines = text.splitlines()
    assert "One Adam update: 0.50 s (mean over 3 Adam run(s))." in lines
    assert ("| rl-hf-frame-seed0 | 2 | 10.00 | 20.0 | 1.00 (1.0) | 2.00 (1.0) | 0.00 (0.0) | 6.00 (12.5) | 1.00 (3.0) "
            "| 0.00 (0.0) |") in lines
    assert ("| rl-hf-frame-seed1 | 2 | 12.00 | 24.0 | 1.00 (1.0) | 2.00 (1.0) | 1.00 (1.0) | 6.00 (12.5) | 1.00 (3.0) "
            "| 1.00 (1.0) |") in lines
    assert "| rl-hf-frame | 2 | 4-5 | 7.50 ± 7.07 (2.50-12.50) | 7.50 ± 7.07 (2.50-12.50) | 8.50 ± 7.07 (3.50-13.50) |" \
        in lines
    assert "| ctc-adam | 1 | 120 | 23.75 | 23.75 | 24.75 |" in lines  # one seed: no -seed0 suffix
    cells = {line.split(" | ")[0][2:]: line.split(" | ")[1:] for line in lines if line.startswith("| ")}
    # rl-hf-frame seed 0 fixes 10 of the baseline's 20 wrong utterances: -12.50 points (-50%)
    assert cells["rl-hf-frame-seed0"][0].startswith("-12.50 (-50.0%) [") and "significant" in cells["rl-hf-frame-seed0"][0]
    assert cells["rl-hf-frame-seed0"][2] == "- |"  # the reference method is not compared with itself
    assert cells["mmi-adam-seed0"][0].startswith("+0.00 (+0.0%) [+0.00, +0.00]")  # the baseline's hypotheses
    assert "significant" not in cells["mmi-adam-seed0"][0]
    # against rl-hf-frame of the same seed: seed 0 +12.50 (12.5 -> 25), seed 1 +20.00 (2.5 -> 22.5)
    assert cells["mmi-adam-seed0"][2].startswith("+12.50 (+100.0%) [") and "significant" in cells["mmi-adam-seed0"][2]
    assert cells["mmi-adam-seed1"][2].startswith("+20.00 (+800.0%) [")
    assert cells["ctc-adam"][2].startswith("+11.25 (+90.0%) [")  # its seed 0 against rl-hf-frame-seed0
    (runs[0] / "hlg-1best" / "recogs-test-best.txt").unlink()
    with pytest.raises(FileNotFoundError, match="recogs-test-best.txt"):
        compare(exp / "results-epoch-9-avg-2.json", runs, tmp_path / "comparison", ["dev", "test"], recogs_dir=recogs_dir)


def test_time_budget_bar_counts_seconds_of_the_budget(tiny_recipe, tmp_path, monkeypatch):
    """With --time-budget the bar counts the budget's seconds, not --max-iters iterations (issue 17, item 14)."""
    bars, real = [], distributed.progress_bar
    monkeypatch.setattr(distributed, "progress_bar", lambda *a, **kw: bars.append(real(*a, **kw)) or bars[-1])
    out = _run(tiny_recipe, tmp_path / "budget", max_iters=1_000_000, time_budget=1.0, eval_every=1_000_000)
    progress = json.loads((out / "progress.json").read_text())
    (bar,) = [b for b in bars if b.desc == "rl-hf-frame"]
    assert bar.total == 1.0 and bar.unit == "s"
    assert bar.n == pytest.approx(min(progress["seconds"], 1.0))
    assert "s of the time budget" in str(bar)
    _run(tiny_recipe, tmp_path / "iters", max_iters=1)
    last = [b for b in bars if b.desc == "rl-hf-frame"][-1]
    assert (last.total, last.n, last.unit) == (1, 1, "iter")
