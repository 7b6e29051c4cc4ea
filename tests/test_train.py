"""Stage 3: the k2 CTC loss, training steps, checkpoints and exact resume."""

import json
import shutil

import pytest
import torch

from batches import make_batch, make_word_lang
from conftest import TINY_OPTIONS, run_recipe
from rlhf import distributed
from rlhf.checkpoint import average_checkpoints, checkpoint_path, load_checkpoint, load_model, save_checkpoint
from rlhf.ctc import CtcGraphCompiler, ctc_loss, greedy_search
from rlhf.data import batch_inputs, load_cuts, make_dataloader
from rlhf.lang.tokenizer import Tokenizer
from rlhf.model import CtcModel, ModelConfig
from rlhf.train import (EpochStats, TrainConfig, Trainer, check_resumable, cosine_factor, epoch_factor,
                        learning_rate_factor, select_epoch, train)

TINY_MODEL = dict(hidden_dim=32, num_layers=2, subsampling_channels=8)


@pytest.fixture
def word_tokenizer(tmp_path):
    return Tokenizer(make_word_lang(tmp_path / "lang"))


def test_k2_ctc_loss_equals_torch_ctc_loss(word_tokenizer):
    torch.manual_seed(0)
    texts = ["A B B C", "C", "A A"]
    lengths = torch.tensor([12, 5, 9])
    log_probs = torch.randn(3, 12, word_tokenizer.vocab_size).log_softmax(-1)  # k2 wants float32
    ours = ctc_loss(log_probs, lengths, texts, CtcGraphCompiler(word_tokenizer))
    targets = word_tokenizer.encode(texts)
    reference = torch.nn.functional.ctc_loss(
        log_probs.transpose(0, 1), torch.tensor([t for seq in targets for t in seq]), lengths,
        torch.tensor([len(t) for t in targets]), blank=0, reduction="none")
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-4)


def test_impossible_transcript_batch_is_skipped_and_weights_stay(word_tokenizer):
    torch.manual_seed(0)
    model = CtcModel(ModelConfig(vocab_size=word_tokenizer.vocab_size, **TINY_MODEL))
    trainer = Trainer(model, word_tokenizer, TrainConfig(), torch.device("cpu"))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    # 40 input frames give 9 output frames: too few for 12 words.
    batch = make_batch([40, 40], ["A B C A B C A B C A B C", "A"])
    assert trainer.train_step(batch) is None
    assert trainer.step == 0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert trainer.train_step(make_batch([40, 40], ["A B", "C"])) is not None
    assert trainer.step == 1


def test_a_few_steps_lower_the_loss(word_tokenizer):
    torch.manual_seed(0)
    model = CtcModel(ModelConfig(vocab_size=word_tokenizer.vocab_size, **TINY_MODEL, dropout=0.0))
    trainer = Trainer(model, word_tokenizer, TrainConfig(lr=3e-3, warmup_steps=1), torch.device("cpu"))
    batch = make_batch([120, 100, 80], ["A B C", "C A", "B"])
    losses = [trainer.train_step(batch) for _ in range(30)]
    assert losses[-1] < 0.5 * losses[0], losses


def test_checkpoint_reloads_and_decodes_identically(tmp_path, word_tokenizer):
    torch.manual_seed(0)
    model = CtcModel(ModelConfig(vocab_size=word_tokenizer.vocab_size, **TINY_MODEL)).eval()
    save_checkpoint(tmp_path / "epoch-1.pt", model)
    reloaded = load_model(tmp_path / "epoch-1.pt").eval()
    features, num_frames, _, _ = batch_inputs(make_batch([90, 60], ["A", "B"]), torch.device("cpu"))
    with torch.no_grad():
        out1, len1 = model(features, num_frames)
        out2, len2 = reloaded(features, num_frames)
    assert torch.equal(out1, out2) and torch.equal(len1, len2)
    assert greedy_search(out1, len1) == greedy_search(out2, len2)


def test_checkpoint_of_another_configuration_names_the_mismatch(tmp_path, word_tokenizer):
    config = ModelConfig(vocab_size=word_tokenizer.vocab_size, **TINY_MODEL)
    save_checkpoint(tmp_path / "epoch-1.pt", CtcModel(config))
    other = ModelConfig(vocab_size=word_tokenizer.vocab_size, **{**TINY_MODEL, "hidden_dim": 48})
    with pytest.raises(ValueError, match=r"hidden_dim: checkpoint has 32, options say 48"):
        load_checkpoint(tmp_path / "epoch-1.pt", expected=other)


def test_average_of_one_checkpoint_is_the_checkpoint(tmp_path, word_tokenizer):
    model = CtcModel(ModelConfig(vocab_size=word_tokenizer.vocab_size, **TINY_MODEL))
    save_checkpoint(checkpoint_path(tmp_path, 1), model)
    save_checkpoint(checkpoint_path(tmp_path, 2), model)
    averaged = average_checkpoints(tmp_path, epoch=2, avg=2)
    assert all(torch.allclose(averaged.state_dict()[k], v) for k, v in model.state_dict().items())
    with pytest.raises(ValueError, match="--avg"):
        average_checkpoints(tmp_path, epoch=2, avg=3)


def test_resume_equals_uninterrupted_training(tiny_recipe, tmp_path):
    lang, fbank = tiny_recipe.data_dir / "lang_bpe_50", tiny_recipe.data_dir / "fbank"
    model_config = ModelConfig(vocab_size=50, **TINY_MODEL)
    # With the Eden epoch factor: the learning rate then also changes at the epoch boundary.
    config = TrainConfig(num_epochs=2, max_duration=20, warmup_steps=5, lr=3e-3, lr_epochs=1.0)
    exp = tmp_path / "exp"
    train(lang, fbank, exp, "synth", model_config, config, device_name="cpu")
    uninterrupted = torch.load(checkpoint_path(exp, 2))
    assert (exp / "training-curve.png").stat().st_size > 0
    assert list((exp / "tensorboard").glob("events.out.tfevents.*"))

    # An interruption during epoch 2 leaves epoch-1.pt; resuming from it must give the same epoch 2.
    checkpoint_path(exp, 2).unlink()
    train(lang, fbank, exp, "synth", model_config, config, start_epoch=2, device_name="cpu")
    resumed = torch.load(checkpoint_path(exp, 2))
    for k, v in uninterrupted["model"].items():
        assert torch.equal(v, resumed["model"][k]), k
    assert uninterrupted["history"][1]["train_loss"] == resumed["history"][1]["train_loss"]


def test_resume_with_other_model_options_fails(tiny_recipe, tmp_path):
    lang, fbank = tiny_recipe.data_dir / "lang_bpe_50", tiny_recipe.data_dir / "fbank"
    exp = tmp_path / "exp"
    shutil.copytree(tiny_recipe.model_dir, exp)
    other = ModelConfig(vocab_size=50, hidden_dim=48, num_layers=2)
    with pytest.raises(ValueError, match="hidden_dim"):
        train(lang, fbank, exp, "synth", other, TrainConfig(num_epochs=2), start_epoch=2, device_name="cpu")


def test_batches_carry_texts_and_frames_of_their_own_cuts(tiny_recipe):
    cuts = load_cuts(tiny_recipe.data_dir / "fbank" / "synth_cuts_dev.jsonl.gz")
    by_id = {c.id: c for c in cuts}
    for batch in make_dataloader(cuts, max_duration=10, shuffle=False):
        features, num_frames, texts, cut_ids = batch_inputs(batch, torch.device("cpu"))
        for i, cut_id in enumerate(cut_ids):
            assert texts[i] == by_id[cut_id].supervisions[0].text
            assert num_frames[i] == by_id[cut_id].num_frames


def test_time_warp_and_feature_masks_reach_spec_augment(tiny_recipe):
    cuts = load_cuts(tiny_recipe.data_dir / "fbank" / "synth_cuts_dev.jsonl.gz")
    for factor, masks in ((0, 0), (10, 1), (80, 2)):
        (augment,) = make_dataloader(cuts, 10, shuffle=True, num_buckets=2, spec_augment=True, time_warp_factor=factor,
                                     num_feature_masks=masks).dataset.input_transforms
        assert (augment.time_warp_factor, augment.num_feature_masks) == (factor, masks)
    assert not make_dataloader(cuts, 10, shuffle=True, num_buckets=2, spec_augment=False).dataset.input_transforms


@pytest.mark.slow
def test_training_is_deterministic_across_processes(tiny_recipe, tmp_path):
    """The same seed gives the same weights in a fresh process (SpecAugment and dropout included)."""
    work = tmp_path / "copy"
    shutil.copytree(tiny_recipe.workdir, work, symlinks=True)
    result = run_recipe(work, *TINY_OPTIONS, "--stage", "3", "--stop-stage", "3", "--force", "true")
    assert result.returncode == 0, result.stdout
    first = torch.load(checkpoint_path(tiny_recipe.model_dir, 2))["model"]
    again = torch.load(checkpoint_path(work / "exp" / "ctc_tdnn", 2))["model"]
    for k, v in first.items():
        assert torch.equal(v, again[k]), k


def test_resume_with_other_training_options_names_them(tiny_recipe, tmp_path):
    lang, fbank = tiny_recipe.data_dir / "lang_bpe_50", tiny_recipe.data_dir / "fbank"
    exp = tmp_path / "exp"
    shutil.copytree(tiny_recipe.model_dir, exp)
    saved = torch.load(checkpoint_path(exp, 1))
    model_config = ModelConfig.from_dict(saved["model_config"])
    config = TrainConfig(**{**saved["train_config"], "lr": 0.5, "num_epochs": 3})
    with pytest.raises(ValueError, match=r"--lr: checkpoint has .*, options say 0.5"):
        train(lang, fbank, exp, "synth", model_config, config, start_epoch=2, device_name="cpu")


def _judged(epoch: int, wer: float, loss: float) -> EpochStats:
    return EpochStats(epoch=epoch, train_loss=1.0, dev_loss=loss, dev_wer=wer, seconds=1.0, num_batches=1,
                      num_skipped=0, lr=1e-3, judged_dev_loss=loss, judged_dev_wer=wer)


def test_convergence_rule_waits_out_the_plateau_and_selects_the_lowest_wer():
    # On the CTC plateau the WER does not fall but the loss does: that is progress.
    plateau = [_judged(1, 99.0, 0.9), _judged(2, 99.5, 0.8), _judged(3, 99.2, 0.7), _judged(4, 99.8, 0.6)]
    assert not select_epoch(plateau, patience=2).converged
    history = plateau + [_judged(5, 20.0, 0.30), _judged(6, 15.0, 0.35), _judged(7, 15.0, 0.32),
                         _judged(8, 16.0, 0.31)]
    selection = select_epoch(history, patience=2)
    assert selection.converged and selection.last_progress == 6
    assert selection.epoch == 7  # the WER ties with epoch 6; the loss is lower
    assert not select_epoch(history, patience=3).converged
    assert not select_epoch(history, patience=0).converged
    # Epochs before --avg are not judged: nothing to select yet.
    unjudged = EpochStats(epoch=1, train_loss=1.0, dev_loss=0.5, dev_wer=50.0, seconds=1.0, num_batches=1,
                          num_skipped=0, lr=1e-3)
    assert select_epoch([unjudged], patience=1).epoch is None


def test_patience_stops_training_and_selected_epoch_is_judged_as_decoded(tiny_recipe, tmp_path):
    lang, fbank = tiny_recipe.data_dir / "lang_bpe_50", tiny_recipe.data_dir / "fbank"
    model_config = ModelConfig(vocab_size=50, **TINY_MODEL)
    # lr 0: the weights never change, so no epoch after the first judged one makes progress.
    frozen = tmp_path / "frozen"
    train(lang, fbank, frozen, "synth", model_config,
          TrainConfig(num_epochs=5, patience=1, avg=2, lr=0.0, max_duration=20), device_name="cpu")
    assert checkpoint_path(frozen, 3).is_file() and not checkpoint_path(frozen, 4).exists()
    selected = json.loads((frozen / "selected.json").read_text())
    assert selected["epoch"] == 2 and selected["converged"] and selected["epochs_trained"] == 3

    # A learning run: the judged dev loss of epoch 2 is that of the model that --epoch 2 --avg 2 decodes.
    exp = tmp_path / "exp"
    train(lang, fbank, exp, "synth", model_config,
          TrainConfig(num_epochs=2, avg=2, max_duration=20, warmup_steps=5, lr=3e-3), device_name="cpu")
    history = json.loads((exp / "metrics.json").read_text())
    assert history[0]["judged_dev_wer"] is None
    averaged = average_checkpoints(exp, epoch=2, avg=2)
    trainer = Trainer(averaged, Tokenizer(lang), TrainConfig(), torch.device("cpu"))
    dev = make_dataloader(load_cuts(fbank / "synth_cuts_dev.jsonl.gz"), max_duration=20, shuffle=False)
    assert trainer.evaluate(dev) == (history[1]["judged_dev_loss"], history[1]["judged_dev_wer"])
    assert history[1]["judged_dev_loss"] != history[1]["dev_loss"]
    assert json.loads((exp / "selected.json").read_text())["epoch"] == 2


def test_fresh_run_sets_aside_the_checkpoints_of_an_earlier_longer_run(tiny_recipe, tmp_path, caplog):
    from rlhf.transcribe import latest_epoch
    lang, fbank = tiny_recipe.data_dir / "lang_bpe_50", tiny_recipe.data_dir / "fbank"
    exp = tmp_path / "exp"
    exp.mkdir()
    for epoch in (1, 2, 3):  # an earlier run of 3 epochs
        shutil.copy(checkpoint_path(tiny_recipe.model_dir, min(epoch, 2)), checkpoint_path(exp, epoch))
    train(lang, fbank, exp, "synth", ModelConfig(vocab_size=50, **TINY_MODEL),
          TrainConfig(num_epochs=1, max_duration=20, warmup_steps=5), device_name="cpu")
    assert sorted(p.name for p in exp.glob("epoch-*.pt")) == ["epoch-1.pt"]
    assert latest_epoch(exp) == 1  # what rlhf-transcribe decodes by default
    assert load_checkpoint(checkpoint_path(exp, 1))["model_config"]["subsampling_channels"] == 8  # this run's
    assert sorted(p.name for p in (exp / "earlier-run").iterdir()) == ["epoch-1.pt", "epoch-2.pt", "epoch-3.pt"]
    assert f"moved them to {exp / 'earlier-run'}" in caplog.text


def recorded_progress_bars(monkeypatch) -> list:
    """Every bar rlhf.distributed.progress_bar makes from now on, kept for inspection."""
    bars, real = [], distributed.progress_bar

    def recording(*args, **kwargs):
        bars.append(real(*args, **kwargs))
        return bars[-1]

    monkeypatch.setattr(distributed, "progress_bar", recording)
    return bars


def test_epoch_progress_bar_counts_to_the_epochs_batches(tiny_recipe, tmp_path, monkeypatch):
    """The stage-3 bar has a total, the batches the sampler gives (issue 17, item 14)."""
    bars = recorded_progress_bars(monkeypatch)
    lang, fbank = tiny_recipe.data_dir / "lang_bpe_50", tiny_recipe.data_dir / "fbank"
    config = TrainConfig(num_epochs=2, max_duration=15, warmup_steps=5)
    train(lang, fbank, tmp_path / "exp", "synth", ModelConfig(vocab_size=50, **TINY_MODEL), config,
          device_name="cpu")
    history = json.loads((tmp_path / "exp" / "metrics.json").read_text())
    epoch_bars = [bar for bar in bars if bar.desc.startswith("epoch")]
    assert [(bar.total, bar.n) for bar in epoch_bars] == [(h["num_batches"], h["num_batches"]) for h in history]
    assert history[0]["num_batches"] > 1


def test_eden_epoch_factor_decays_the_rate_from_the_second_epoch():
    assert epoch_factor(1, 4.0) == 1.0 and epoch_factor(7, 0.0) == 1.0
    assert epoch_factor(5, 4.0) == pytest.approx(2 ** -0.25)  # 4 epochs done: ((16 + 16) / 16)^-1/4
    assert epoch_factor(30, 2.0) < epoch_factor(10, 2.0) < epoch_factor(10, 4.0) < 1
    # The warm-up and step decay are unchanged by it.
    assert learning_rate_factor(50, 100) == 0.5 and learning_rate_factor(400, 100) == 0.5


def test_cosine_factor_warms_up_then_anneals_to_zero_at_the_last_step():
    assert cosine_factor(50, 100, 1100) == 0.5 and cosine_factor(100, 100, 1100) == 1.0
    assert cosine_factor(600, 100, 1100) == pytest.approx(0.5)
    assert cosine_factor(1100, 100, 1100) == pytest.approx(0.0) and cosine_factor(5000, 100, 1100) == pytest.approx(0.0)


def test_cosine_run_ends_at_rate_zero_and_refuses_another_num_epochs(tiny_recipe, tmp_path):
    lang, fbank = tiny_recipe.data_dir / "lang_bpe_50", tiny_recipe.data_dir / "fbank"
    model_config = ModelConfig(vocab_size=50, **TINY_MODEL)
    config = TrainConfig(num_epochs=2, max_duration=20, warmup_steps=2, lr=3e-3, lr_schedule="cosine")
    exp = tmp_path / "exp"
    train(lang, fbank, exp, "synth", model_config, config, device_name="cpu")
    history = torch.load(checkpoint_path(exp, 2))["history"]
    assert history[0]["lr"] > 1e-3 and history[1]["lr"] < 1e-5
    # The schedule's end moves with --num-epochs, so resuming with another one would change epoch 2.
    longer = TrainConfig(**{**vars(config), "num_epochs": 3})
    with pytest.raises(ValueError, match=r"--num-epochs: checkpoint has 2, options say 3"):
        train(lang, fbank, exp, "synth", model_config, longer, start_epoch=2, device_name="cpu")
    # A checkpoint from before --lr-schedule existed was trained with inv-sqrt.
    with pytest.raises(ValueError, match=r"--lr-schedule: checkpoint has 'inv-sqrt', options say 'cosine'"):
        saved = {k: v for k, v in vars(TrainConfig()).items() if k != "lr_schedule"}
        check_resumable(checkpoint_path(exp, 1), saved, TrainConfig(lr_schedule="cosine"))
