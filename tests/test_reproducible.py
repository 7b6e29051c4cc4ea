"""Two runs of the tiny recipe with the same seeds, at the same path, write the same bytes
(issue 17, item 13): every file but those below, which hold what differs from run to run (time).

The second run starts in the directory the first ran in (the first is moved aside), so paths
recorded in the outputs (the feature archives' in the cut manifests, the markers' options) are
the same: they are facts of where a run is, not of the run.
"""

import fnmatch
import json
import shutil

import pytest
import torch

from conftest import TINY_OPTIONS, run_recipe

# Files named after the time they were written (and the host and pid): compared by count only.
TIME_NAMED = {
    "*/log/*.log": "a step's log, named and stamped with the time",
    "*/tensorboard/events.out.tfevents.*": "TensorBoard's event file: named after the time, host and pid; "
                                           "holds wall times",
}

# Files whose bytes must differ, and why; each is compared with what is measured taken out (the
# function), or not at all (None).
TIMING_KEYS = {"seconds", "seconds_total"}
MUST_DIFFER = {
    "*timings.json": ("measured seconds, real-time factors and throughput: the one place they are kept", None),
    "RESULTS.md": ("the tables the recipe appends, with their date and measured RTF", None),
    "*/results-*.md": ("the decoding report's RTF column (measured)", lambda text: _drop_column(text, "RTF")),
    "*/qlearn-*.md": ("the Q-learning report's throughput column (measured)",
                      lambda text: _drop_column(text, "arcs/s (all values)")),
    "*/finetune/*/comparison.md": ("stage 7's seconds of optimization (its --time-budget clock)",
                                   lambda text: _drop_column(text, "optimization s")),
    "*/finetune/*/comparison.png": ("dev WER plotted against seconds of optimization", None),
    "*/finetune/*/progress.json": ("seconds of optimization: the clock of --time-budget, which a resumed "
                                   "run continues", lambda text: _without_timing(json.loads(text))),
    "*/finetune/*/state.pt": ("the same progress, for resuming", "torch"),
}


def _drop_column(markdown: str, name: str) -> str:
    """The markdown with the table column headed ``name`` removed."""
    lines, index = [], None
    for line in markdown.splitlines():
        cells = line.split("|")
        if line.startswith("|") and index is None and f" {name} " in cells:
            index = cells.index(f" {name} ")
        if line.startswith("|") and index is not None and len(cells) > index:
            del cells[index]
        lines.append("|".join(cells))
    assert index is not None, f"no column {name!r}"
    return "\n".join(lines)


def _without_timing(value):
    if isinstance(value, dict):
        return {k: _without_timing(v) for k, v in value.items() if k not in TIMING_KEYS}
    if isinstance(value, list):
        return [_without_timing(v) for v in value]
    return value


def _same_torch(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same_torch(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same_torch(x, y) for x, y in zip(a, b))
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    return a == b


def _files(root):
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def _match(name: str, patterns) -> str:
    return next((p for p in patterns if fnmatch.fnmatch(name, p)), "")


@pytest.mark.slow
def test_two_runs_with_the_same_seed_write_the_same_bytes(tmp_path):
    work = tmp_path / "work"
    for run in ("a", "b"):
        work.mkdir()
        result = run_recipe(work, *TINY_OPTIONS)
        assert result.returncode == 0, result.stdout
        work.rename(tmp_path / run)
    a, b = tmp_path / "a", tmp_path / "b"
    files_a, files_b = _files(a), _files(b)
    for pattern in TIME_NAMED:
        named_a = {f for f in files_a if fnmatch.fnmatch(f, pattern)}
        named_b = {f for f in files_b if fnmatch.fnmatch(f, pattern)}
        assert len(named_a) == len(named_b) > 0, pattern
        files_a, files_b = files_a - named_a, files_b - named_b
    assert files_a == files_b
    assert len(files_a) > 150  # corpus, manifests, lang, features, model, lattices, values, fine-tuning

    differing = []
    for name in sorted(files_a):
        data_a, data_b = (a / name).read_bytes(), (b / name).read_bytes()
        if data_a == data_b:
            continue
        pattern = _match(name, MUST_DIFFER)
        if not pattern:
            differing.append(name)
            continue
        _, compare = MUST_DIFFER[pattern]
        if compare == "torch":
            state_a, state_b = torch.load(a / name), torch.load(b / name)
            state_a["progress"], state_b["progress"] = (_without_timing(s["progress"]) for s in (state_a, state_b))
            assert _same_torch(state_a, state_b), f"{name} differs beyond its timing"
        elif compare is not None:
            assert compare(data_a.decode()) == compare(data_b.decode()), f"{name} differs beyond its timing"
    assert not differing, f"these files differ between two runs with the same seed: {differing}"
    # the timings are kept, where they belong
    timings = json.loads((a / "exp" / "ctc_tdnn" / "timings.json").read_text())
    assert timings["train-epoch-1"]["seconds"] > 0 and timings["decode-epoch-2-avg-2"]["hlg-1best"]["test"]["rtf"] > 0
    shutil.rmtree(tmp_path)  # about 100 MB
