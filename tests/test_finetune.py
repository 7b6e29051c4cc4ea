"""Stage 7 on the tiny recipe: Hessian-free fine-tuning, its determinism and resume, the controls."""

import json

import pytest
import torch

from rlhf import distributed
from rlhf.checkpoint import average_checkpoints, model_digest
from rlhf.compare import compare
from rlhf.ctc import CtcGraphCompiler
from rlhf.decode import LatticeConfig
from rlhf.finetune import FinetuneConfig, finetune, trainable_parameters
from rlhf.hf import HessianFreeConfig
from rlhf.lang.tokenizer import Tokenizer
from rlhf.lattice_batches import load_split_lattices
from rlhf.rl.sequence_objective import SequenceObjective
from rlhf.stage import file_digest

LATTICE = LatticeConfig(max_active_states=1000, lm_scale=0.5)


def _run(recipe, out_dir, **options):
    config = FinetuneConfig(**{"max_iters": 2, "heldout_utts": 4, "curvature_fraction": 0.5, **options})
    hf = HessianFreeConfig(cg_max_iters=8)
    return finetune(recipe.data_dir / "lang_bpe_50", recipe.data_dir / "fbank", recipe.model_dir, "synth", 2, 2,
                    config, hf, LATTICE, out_dir=out_dir, max_duration=40.0, device_name="cpu")


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


@pytest.mark.parametrize("objective,optimizer,reward", [
    ("rl", "hf", "edit"), ("rl", "adam", "frame"), ("mwer", "adam", "frame"), ("ctc", "adam", "frame")])
@pytest.mark.slow
def test_every_method_runs_and_moves_the_model(request, tmp_path, objective, optimizer, reward):
    recipe = request.getfixturevalue("edit_recipe" if reward == "edit" else "tiny_recipe")
    out = _run(recipe, tmp_path / "run", objective=objective, optimizer=optimizer, reward=reward)
    state = _state(out)
    baseline = average_checkpoints(recipe.model_dir, 2, 2).state_dict()
    assert any(not torch.equal(v, baseline[k]) for k, v in state["model"].items())
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert len(json.loads((out / "progress.json").read_text())["history"]) >= 2


@pytest.mark.parametrize("curvature", ["softmax", "occupancy"])
def test_curvature_products_are_positive_semidefinite_on_the_real_objective(tiny_recipe, curvature):
    lang_dir = tiny_recipe.data_dir / "lang_bpe_50"
    model = average_checkpoints(tiny_recipe.model_dir, 2, 2).double()
    data = load_split_lattices(tiny_recipe.model_dir / "lattices", "train", "frame",
                               tiny_recipe.data_dir / "fbank" / "synth_cuts_train.jsonl.gz",
                               model_digest(average_checkpoints(tiny_recipe.model_dir, 2, 2)),
                               file_digest(lang_dir / "tokens.txt"))
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
    with pytest.raises(ValueError, match="--optimizer hf"):
        FinetuneConfig(objective="mwer", optimizer="hf").check()
    with pytest.raises(ValueError, match="--trainable"):
        FinetuneConfig(trainable="bottom-2").check()
    with pytest.raises(ValueError, match="--reward"):
        FinetuneConfig(reward="bleu").check()


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
