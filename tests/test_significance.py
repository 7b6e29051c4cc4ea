"""The paired bootstrap over utterances (rlhf/significance.py) and its program."""

import random

import pytest

from rlhf.bin.compare_wer import main as compare_wer
from rlhf.scoring import Utterance, compute_wer, write_recogs
from rlhf.significance import paired_bootstrap, read_recogs, speakers_by_pattern

WORDS = "YES NO ONE TWO THREE FOUR FIVE".split()


def _system(num_utts: int, error_prob: float, seed: int) -> dict[str, Utterance]:
    """Utterances whose hypotheses substitute each word with ``error_prob`` (references fixed by index)."""
    refs, hyps = random.Random(1), random.Random(seed)
    utts = {}
    for i in range(num_utts):
        ref = [refs.choice(WORDS) for _ in range(refs.randint(1, 6))]
        hyp = [("SIX" if hyps.random() < error_prob else w) for w in ref]
        utts[f"utt{i:03d}"] = Utterance(f"utt{i:03d}", ref, hyp)
    return utts


def test_identical_systems_differ_by_nothing():
    a = _system(50, 0.2, seed=3)
    result = paired_bootstrap(a, a, num_samples=500)
    assert result.difference == 0 and result.low == result.high == 0
    assert not result.significant and result.prob_b_better == 0


def test_wer_matches_scoring_and_a_real_gain_is_significant():
    a, b = _system(300, 0.3, seed=3), _system(300, 0.1, seed=4)
    result = paired_bootstrap(a, b, num_samples=2000)
    assert result.wer_a == pytest.approx(compute_wer(list(a.values())).wer)
    assert result.wer_b == pytest.approx(compute_wer(list(b.values())).wer)
    assert result.low <= result.difference <= result.high < 0
    assert result.significant and result.prob_b_better > 0.99
    # The other way round: the interval mirrors.
    back = paired_bootstrap(b, a, num_samples=2000)
    assert back.low > 0 and back.prob_b_better < 0.01


def test_a_small_difference_on_few_utterances_is_not_significant():
    a, b = _system(20, 0.2, seed=3), _system(20, 0.2, seed=5)
    result = paired_bootstrap(a, b, num_samples=2000)
    assert result.low < 0 < result.high and not result.significant


def test_recogs_round_trip_and_mismatches_are_named(tmp_path):
    a = _system(10, 0.2, seed=3)
    write_recogs(tmp_path / "a.txt", list(a.values()))
    assert read_recogs(tmp_path / "a.txt") == a
    other = dict(a)
    del other["utt004"]
    with pytest.raises(ValueError, match="utt004"):
        paired_bootstrap(a, other)
    (tmp_path / "bad.txt").write_text("utt1:\tref=['A']\nutt1 hyp A\n")
    with pytest.raises(ValueError, match=r"bad.txt:2"):
        read_recogs(tmp_path / "bad.txt")


def test_program_prints_the_comparison(tmp_path, capsys):
    write_recogs(tmp_path / "a.txt", list(_system(40, 0.3, seed=3).values()))
    write_recogs(tmp_path / "b.txt", list(_system(40, 0.1, seed=4).values()))
    compare_wer([str(tmp_path / "a.txt"), str(tmp_path / "b.txt"), "--name-a", "baseline", "--name-b", "tuned",
                 "--num-samples", "500"])
    out = capsys.readouterr().out
    assert out.startswith("tuned vs baseline: WER ") and "95% interval" in out
    with pytest.raises(SystemExit):
        compare_wer([str(tmp_path / "a.txt"), str(tmp_path / "missing.txt")])


def _speakers(num_speakers: int, per_speaker: int, error_prob: float, seed: int, fixed: set) -> dict[str, Utterance]:
    """Utterances <spk>-<n>; hypotheses of the speakers in ``fixed`` are all right."""
    utts = _system(num_speakers * per_speaker, error_prob, seed)
    out = {}
    for i, u in enumerate(utts.values()):
        spk = f"s{i // per_speaker}"
        cut = f"{spk}-{i:03d}"
        out[cut] = Utterance(cut, u.ref, list(u.ref) if spk in fixed else u.hyp)
    return out


def test_a_gain_on_one_speaker_is_significant_over_utterances_not_over_speakers():
    a = _speakers(10, 30, 0.3, seed=3, fixed=set())
    one = _speakers(10, 30, 0.3, seed=3, fixed={"s0"})
    speakers = speakers_by_pattern(sorted(a), r"^([^-]+)-")
    assert set(speakers.values()) == {f"s{i}" for i in range(10)}
    assert paired_bootstrap(a, one, num_samples=2000).significant
    by_speaker = paired_bootstrap(a, one, num_samples=2000, speakers=speakers)
    assert by_speaker.num_speakers == 10 and by_speaker.difference < 0 and not by_speaker.significant
    assert "of 10 speakers" in by_speaker.summary()
    # A gain on every speaker holds for new speakers too.
    every = _speakers(10, 30, 0.3, seed=3, fixed={f"s{i}" for i in range(10)})
    assert paired_bootstrap(a, every, num_samples=2000, speakers=speakers).significant


def test_speaker_pattern_must_name_a_speaker(tmp_path, capsys):
    with pytest.raises(ValueError, match="no group"):
        speakers_by_pattern(["s0-1"], r"^[^-]+-")
    with pytest.raises(ValueError, match="finds no speaker in cut id 'utt1'"):
        speakers_by_pattern(["utt1"], r"^([^-]+)-")
    a = _speakers(4, 5, 0.3, seed=3, fixed=set())
    write_recogs(tmp_path / "a.txt", list(a.values()))
    compare_wer([str(tmp_path / "a.txt"), str(tmp_path / "a.txt"), "--speaker-pattern", "^([^-]+)-",
                 "--num-samples", "200"])
    assert "of 4 speakers" in capsys.readouterr().out
