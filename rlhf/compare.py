"""Compare fine-tuning runs with their baseline: a WER table and a plot of dev WER against time.

Reads the baseline's stage-4 results (``results-epoch-N-avg-K.json``) and, for every run
directory, its ``progress.json`` (dev WER during optimization) and ``results-best.json``
(the best model decoded like stage 4). Writes ``<out>.md`` and ``<out>.png``. With a recogs
directory it also gathers every system's test hypotheses there (so the comparison can be
re-scored without re-running it) and adds, for runs named ``<method>-seed<k>``, each method's
mean and spread over the seeds and a paired bootstrap on test against the baseline and
against a reference method (rlhf/significance.py).
"""

import json
import re
import shutil
import statistics
from collections import Counter
from pathlib import Path
from typing import Optional, Sequence

from rlhf.significance import paired_bootstrap, read_recogs
from rlhf.stage import atomic_output

_SEED = re.compile(r"-seed(?P<seed>[0-9]+)$")
# The decodings whose test hypotheses are gathered: (stage-4 output directory, file-name suffix).
RECOGS_KINDS = (("hlg-1best", ""), ("ctc-greedy", "-greedy"))


def _load(path: Path, made_by: str) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {made_by}")
    return json.loads(path.read_text())


def comparison_table(baseline: dict, runs: dict[str, tuple[dict, dict]], splits: Sequence[str]) -> str:
    """Markdown: WER per method and split for the baseline and each run, with the run's budget."""
    methods = list(baseline["rows"])
    header = ["model", "optimization s", "iterations", "best dev WER (HLG, during)"] + \
        [f"{s} {m}" for s in splits for m in methods]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]

    def cells(rows: dict) -> list[str]:
        return [f"{rows[m][s]['wer']:.2f}" if m in rows and s in rows[m] else "-" for s in splits for m in methods]

    lines.append("| " + " | ".join(["baseline", "0", "0", "-"] + cells(baseline["rows"])) + " |")
    for name, (progress, results) in runs.items():
        lines.append("| " + " | ".join([name, f"{progress['seconds']:.0f}", str(progress["iteration"]),
                                        f"{progress['best_wer']:.2f} (iter {progress['best_iteration']})"]
                                       + cells(results["rows"])) + " |")
    return "\n".join(lines) + "\n"


def plot_dev_wer(runs: dict[str, dict], path: Path) -> None:
    """Dev WER against seconds of optimization, one line per run: a colour per method, a line
    style per seed."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 5))
    methods = list(dict.fromkeys(method_and_seed(name)[0] for name in runs))
    colours = plt.get_cmap("tab10")
    styles = ["-", "--", ":", "-."]
    for name, progress in runs.items():
        method, seed = method_and_seed(name)
        history = progress["history"]
        ax.plot([h["seconds"] for h in history], [h["dev_wer"] for h in history], marker="o", markersize=3,
                color=colours(methods.index(method) % 10), linestyle=styles[(seed or 0) % len(styles)], label=name)
    ax.set_xlabel("optimization time (s, evaluation excluded)")
    ax.set_ylabel("dev WER (%), HLG 1-best")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", ncol=2)
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def method_and_seed(run_name: str) -> tuple[str, Optional[int]]:
    """``rl-hf-frame-seed2`` -> (``rl-hf-frame``, 2); a name without the suffix has no seed."""
    m = _SEED.search(run_name)
    return (run_name[:m.start()], int(m["seed"])) if m else (run_name, None)


def gather_recogs(baseline_results: Path, run_dirs: Sequence[Path], recogs_dir: Path) -> dict[str, str]:
    """Copy the test recogs of the baseline and every run into ``recogs_dir`` as
    ``recogs-test-<system>[-greedy].txt``; a method run with one seed only loses the -seed suffix.
    Other recogs-test files there (systems not in this comparison) are removed, so the directory
    holds this comparison only. Returns run directory name -> system name."""
    method_of = {d.name: method_and_seed(d.name)[0] for d in run_dirs}
    runs_of = Counter(method_of.values())
    systems = {name: method if runs_of[method] == 1 else name for name, method in method_of.items()}
    suffix = baseline_results.stem[len("results-"):]  # epoch-N-avg-K
    sources = [(baseline_results.parent / kind / f"recogs-test-{suffix}.txt", f"baseline{tag}")
               for kind, tag in RECOGS_KINDS]
    sources += [(d / kind / "recogs-test-best.txt", systems[d.name] + tag) for d in run_dirs for kind, tag in RECOGS_KINDS]
    for source, _ in sources:
        if not source.is_file():
            raise FileNotFoundError(f"{source} not found: decode the test set first (stage 4, or stage 7's decoding)")
    recogs_dir.mkdir(parents=True, exist_ok=True)
    written = {recogs_dir / f"recogs-test-{system}.txt" for _, system in sources}
    for stale in set(recogs_dir.glob("recogs-test-*.txt")) - written:  # e.g. a method since run with more seeds
        stale.unlink()
    for source, system in sources:
        with atomic_output(recogs_dir / f"recogs-test-{system}.txt") as tmp:
            shutil.copyfile(source, tmp)
    return systems


def _mean_spread(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def seed_table(runs: dict[str, tuple[dict, dict]]) -> str:
    """Markdown: per method, over its seeds, the mean ± standard deviation (min-max) of best dev
    WER and test WER (HLG and ctc-greedy), and the updates made."""
    methods: dict[str, list[tuple[dict, dict]]] = {}
    for name, run in runs.items():
        methods.setdefault(method_and_seed(name)[0], []).append(run)
    lines = ["| method | seeds | updates | best dev WER (HLG) | test HLG | test ctc-greedy |", "|---|---|---|---|---|---|"]
    for method, method_runs in methods.items():
        updates = [p["iteration"] for p, _ in method_runs]
        lines.append("| " + " | ".join([
            method, str(len(method_runs)), f"{min(updates)}-{max(updates)}" if len(set(updates)) > 1 else str(updates[0]),
            _mean_spread([p["best_wer"] for p, _ in method_runs]),
            _mean_spread([r["rows"]["hlg-1best"]["test"]["wer"] for _, r in method_runs]),
            _mean_spread([r["rows"]["ctc-greedy"]["test"]["wer"] for _, r in method_runs])]) + " |")
    return "\n".join(lines) + "\n"


def significance_table(recogs_dir: Path, systems: dict[str, str], reference_method: str,
                       num_samples: int = 10000) -> str:
    """Markdown: every run's test WER difference (absolute points, 95% interval) against the
    baseline, HLG and ctc-greedy, and against ``reference_method``'s run of the same seed (HLG)."""
    read: dict[str, dict] = {}  # the baseline's and the reference's files serve many cells

    def recogs(system: str) -> dict:
        if system not in read:
            read[system] = read_recogs(recogs_dir / f"recogs-test-{system}.txt")
        return read[system]

    def cell(a: str, b: str) -> str:
        r = paired_bootstrap(recogs(a), recogs(b), num_samples)
        rel = 100 * r.difference / r.wer_a if r.wer_a else float("nan")
        return (f"{r.difference:+.2f} ({rel:+.1f}%) [{r.low:+.2f}, {r.high:+.2f}]"
                + (" **significant**" if r.significant else ""))

    reference_of_seed = {method_and_seed(name)[1]: system for name, system in systems.items()
                         if method_and_seed(name)[0] == reference_method}
    lines = [f"| run | test HLG vs baseline | test greedy vs baseline | test HLG vs {reference_method} |",
             "|---|---|---|---|"]
    for name, system in systems.items():
        method, seed = method_and_seed(name)
        ref = reference_of_seed.get(seed)
        against_ref = cell(ref, system) if ref is not None and method != reference_method else "-"
        lines.append(f"| {system} | {cell('baseline', system)} | {cell('baseline-greedy', system + '-greedy')} | "
                     f"{against_ref} |")
    return "\n".join(lines) + "\n"


def cost_table(runs: dict[str, tuple[dict, dict]]) -> str:
    """Markdown: what an HF iteration costs, in seconds and in Adam updates (the mean seconds per
    update of the Adam runs, whose batches are the same size), broken down into its parts
    (setup: the curvature operators' forward passes; gradient; example_gradients: the
    per-utterance gradients of --hf-preconditioner fisher; curvature products; held-out
    evaluations; gradient_value: the objective on the gradient's batches for rho, with
    --hf-rho-data gradient), with the calls of each. Empty without both kinds of run."""
    adam = [p["seconds"] / p["iteration"] for p, _ in runs.values() if p["options"].get("optimizer") == "adam"
            and p["iteration"] > 0]
    hf = {name: [s for s in p["steps"] if "breakdown" in s] for name, (p, _) in runs.items()
          if p["options"].get("optimizer") == "hf"}
    hf = {name: steps for name, steps in hf.items() if steps}
    if not adam or not hf:
        return ""
    update = statistics.mean(adam)
    parts = ("setup", "gradient", "example_gradients", "curvature", "heldout", "gradient_value")

    def timing(step: dict, part: str) -> dict:  # a part older runs did not time counts as none
        return step["breakdown"].get(part, {"seconds": 0.0, "calls": 0})

    lines = [f"One Adam update: {update:.2f} s (mean over {len(adam)} Adam run(s)).", "",
             "| HF run | iterations | s per iteration | Adam updates per iteration | "
             + " | ".join(f"{part} s (calls)" for part in parts) + " |", "|" + "---|" * (4 + len(parts))]
    for name, steps in hf.items():
        seconds = statistics.mean(sum(timing(s, part)["seconds"] for part in parts) for s in steps)
        cells = [f"{statistics.mean(timing(s, part)['seconds'] for s in steps):.2f} "
                 f"({statistics.mean(timing(s, part)['calls'] for s in steps):.1f})" for part in parts]
        lines.append(f"| {name} | {len(steps)} | {seconds:.2f} | {seconds / update:.1f} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def compare(baseline_results: Path, run_dirs: Sequence[Path], out: Path, splits: Sequence[str],
            recogs_dir: Optional[Path] = None, reference_method: str = "rl-hf-frame") -> str:
    baseline = _load(baseline_results, "decode the baseline first (stage 4)")
    runs = {}
    for d in run_dirs:
        progress = _load(d / "progress.json", "run steps/finetune.sh (stage 7) into it first")
        results = _load(d / "results-best.json", "decode its best.pt first (steps/decode.sh --checkpoint)")
        runs[d.name] = (progress, results)
    table = comparison_table(baseline, runs, splits)
    budgets = sorted({round(p["options"]["time_budget"]) for p, _ in runs.values()})
    budget = "no time budget" if budgets == [0] else f"time budget(s) {budgets} s of optimization each"
    text = (f"Fine-tuning from the baseline on the same lattices; {budget}. "
            f"WER (%) of the model with the best dev WER; plot: {out.with_suffix('.png').name}.\n\n" + table)
    if any(method_and_seed(name)[1] is not None for name in runs):
        text += "\nPer method over its seeds: mean ± standard deviation (min-max).\n\n" + seed_table(runs)
    cost = cost_table(runs)
    if cost:
        text += "\nThe cost of an HF iteration (mean over its iterations).\n\n" + cost
    if recogs_dir is not None:
        systems = gather_recogs(baseline_results, run_dirs, recogs_dir)
        text += (f"\nPaired bootstrap over the test utterances (10000 resamples): WER difference, points "
                 f"(relative), 95% interval; recogs in {recogs_dir.name}/.\n\n"
                 + significance_table(recogs_dir, systems, reference_method))
    md, png = out.with_suffix(".md"), out.with_suffix(".png")
    if md.is_file() and png.is_file() and md.read_text() == text:
        return text  # unchanged: a re-run leaves the files (and the results log) alone
    with atomic_output(md) as tmp:
        tmp.write_text(text)
    plot_dev_wer({name: p for name, (p, _) in runs.items()}, png)
    return text
