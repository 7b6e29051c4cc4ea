"""Compare fine-tuning runs with their baseline: a WER table and a plot of dev WER against time.

Reads the baseline's stage-4 results (``results-epoch-N-avg-K.json``) and, for every run
directory, its ``progress.json`` (dev WER during optimization) and ``results-best.json``
(the best model decoded like stage 4). Writes ``<out>.md`` and ``<out>.png``.
"""

import json
from pathlib import Path
from typing import Sequence

from rlhf.stage import atomic_output


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
    """Dev WER against seconds of optimization, one line per run."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, progress in runs.items():
        history = progress["history"]
        ax.plot([h["seconds"] for h in history], [h["dev_wer"] for h in history], marker="o", markersize=3,
                label=name)
    ax.set_xlabel("optimization time (s, evaluation excluded)")
    ax.set_ylabel("dev WER (%), HLG 1-best")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def compare(baseline_results: Path, run_dirs: Sequence[Path], out: Path, splits: Sequence[str]) -> str:
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
    md, png = out.with_suffix(".md"), out.with_suffix(".png")
    if md.is_file() and png.is_file() and md.read_text() == text:
        return text  # unchanged: a re-run leaves the files (and the results log) alone
    with atomic_output(md) as tmp:
        tmp.write_text(text)
    plot_dev_wer({name: p for name, (p, _) in runs.items()}, png)
    return text
