"""Decoding with a CTC model: greedy, and k2 lattice search over the CTC topology or HLG, with
n-best lists, oracle WER and the Kaldi-style result files; stage 7's dev WER (DevEvaluator).
"""

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import k2
import torch
from lhotse import CutSet

from rlhf import distributed
from rlhf.checkpoint import average_checkpoints, averaged_checkpoints, load_model
from rlhf.ctc import dense_fsa_vec, greedy_search
from rlhf.data import batch_inputs, load_cuts, make_dataloader
from rlhf.graphs import ctc_topo_graph, load_graph, read_symbols
from rlhf.lang.tokenizer import Tokenizer
from rlhf.manifests import manifest_path
from rlhf.model import CtcModel, pick_device
from rlhf.scoring import (Utterance, WerStats, compute_wer, oracle_hypothesis, write_errs, write_recogs,
                           write_wer_summary)
from rlhf.stage import StageMarker, atomic_output, record_timings

METHODS = ("ctc-greedy", "ctc-1best", "hlg-1best")


# Weight of HLG's graph scores against the acoustic log-probabilities: tuned on the default
# corpus's dev set (RESULTS.md); every program and recipe decodes with it unless told otherwise.
LM_SCALE = 0.5


@dataclass
class LatticeConfig:
    search_beam: float = field(default=20.0, metadata={
        "help": "beam of the lattice search (k2.intersect_dense_pruned), in log-probability units"})
    output_beam: float = field(default=8.0, metadata={
        "help": "beam of the output lattice, in log-probability units: arcs on paths within it of the best "
                "are kept (the lattice's size)"})
    min_active_states: int = field(default=30, metadata={"help": "fewest active states per frame in the search"})
    max_active_states: int = field(default=10000, metadata={
        "help": "most active states per frame in the search (bounds its time and memory)"})
    lm_scale: float = field(default=LM_SCALE, metadata={
        "help": "weight of HLG's graph scores (word LM and lexicon) against the acoustic log-probabilities"})
    num_paths: int = field(default=50, metadata={
        "help": "paths drawn from each lattice for its n-best list and the n-best oracle WER"})
    nbest_scale: float = field(default=0.5, metadata={
        "help": "factor on the lattice scores before the n-best paths are drawn (below 1: flatter, so more "
                "distinct paths)"})

    def check(self) -> None:
        """Refuse values that would decode without a word of warning but make no sense."""
        if not math.isfinite(self.lm_scale) or self.lm_scale < 0:
            raise ValueError(f"--lm-scale must be a finite number >= 0 (the weight of the LM and lexicon scores; "
                             f"{LM_SCALE} by default, 0 ignores them), got {self.lm_scale}")


@dataclass
class MethodResult:
    """Hypotheses and statistics of one decoding method on one split."""
    utts: list[Utterance] = field(default_factory=list)
    nbest: dict[str, list[tuple[float, list[str]]]] = field(default_factory=dict)
    oracle_utts: list[Utterance] = field(default_factory=list)
    num_arcs: int = 0
    num_frames: int = 0
    num_empty: int = 0
    seconds: float = 0.0          # search time, network forward excluded


def arc_labels(fsa: k2.Fsa) -> k2.RaggedTensor:
    """Each arc's output labels as a ragged [arc][label] tensor, epsilons and -1 removed.

    HLG's aux_labels are ragged (an arc may output several words), the CTC topology's a
    plain tensor (one token per arc); this reads both the same way.
    """
    aux = fsa.aux_labels
    ragged = aux if isinstance(aux, k2.RaggedTensor) else k2.RaggedTensor(aux.unsqueeze(1))
    return ragged.remove_values_leq(0)


def get_texts(best_paths: k2.Fsa) -> list[list[int]]:
    """Output label sequences of an FsaVec of paths, one per FSA."""
    labels = arc_labels(best_paths)
    shape = best_paths.arcs.shape().compose(labels.shape).remove_axis(1).remove_axis(1)
    return k2.RaggedTensor(shape, labels.values).tolist()


def search_graph(tokenizer: Tokenizer, device: torch.device, hlg: Optional[k2.Fsa] = None,
                 lm_scale: float = 1.0) -> k2.Fsa:
    """The graph a lattice search runs against: HLG with its scores times ``lm_scale`` (a copy:
    the caller's graph keeps its scores), or without HLG the CTC topology over the tokens."""
    if hlg is None:
        return ctc_topo_graph(tokenizer.vocab_size - 1).to(device)
    scaled = hlg.to(device).clone()
    scaled.scores = scaled.scores * lm_scale
    return scaled


def get_lattice(graph: k2.Fsa, log_probs: torch.Tensor, lengths: torch.Tensor,
                config: LatticeConfig) -> tuple[k2.Fsa, torch.Tensor]:
    """Pruned lattices of a batch, with each arc's frame index (``frame_idx``).

    Returns the lattice FsaVec and ``order``: its i-th lattice is utterance ``order[i]``.
    """
    dense, order = dense_fsa_vec(log_probs, lengths)
    lattice = k2.intersect_dense_pruned(graph, dense, search_beam=config.search_beam,
                                        output_beam=config.output_beam,
                                        min_active_states=config.min_active_states,
                                        max_active_states=config.max_active_states, frame_idx_name="frame_idx")
    return lattice, order


def lattice_num_arcs(lattice: k2.Fsa) -> list[int]:
    """Arcs per lattice of an FsaVec; 0 means the search found no path."""
    row_splits = lattice.arcs.shape().row_splits(2)[lattice.arcs.shape().row_splits(1).long()]
    return (row_splits[1:] - row_splits[:-1]).tolist()


def nbest_lists(lattice: k2.Fsa, num_paths: int, nbest_scale: float) -> list[list[tuple[float, list[int]]]]:
    """Distinct output sequences sampled from each lattice, best first.

    Paths are drawn with k2.random_paths from the lattice with its scores scaled by
    ``nbest_scale`` (flatter, so more distinct paths); a sequence's score is the best
    unscaled score of the paths that produce it.
    """
    flattened = lattice.clone()
    flattened.scores = lattice.scores * nbest_scale
    paths = k2.random_paths(flattened, use_double_scores=True, num_paths=num_paths).tolist()
    scores = lattice.scores.double().tolist()
    outputs = arc_labels(lattice).tolist()
    lists = []
    for utt_paths in paths:
        best: dict[tuple[int, ...], float] = {}
        for arcs in utt_paths:
            seq = tuple(label for a in arcs for label in outputs[a])
            score = sum(scores[a] for a in arcs)
            best[seq] = max(score, best.get(seq, float("-inf")))
        lists.append(sorted(((score, list(seq)) for seq, score in best.items()), key=lambda e: -e[0]))
    return lists


class Decoder:
    """Runs the decoding methods on batches and collects their results."""

    def __init__(self, model: CtcModel, tokenizer: Tokenizer, methods: Sequence[str], lattice_config: LatticeConfig,
                 device: torch.device, hlg: Optional[k2.Fsa] = None, word_table: Optional[dict[str, int]] = None):
        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.methods = list(methods)
        self.config = lattice_config
        self.device = device
        self.graphs: dict[str, k2.Fsa] = {}
        self.nnet_seconds = 0.0  # network forward time, shared by every method
        if "ctc-1best" in methods:
            self.graphs["ctc-1best"] = search_graph(tokenizer, device)
        if "hlg-1best" in methods:
            if hlg is None or word_table is None:
                raise ValueError("hlg-1best needs HLG.pt and words.txt")
            self.graphs["hlg-1best"] = search_graph(tokenizer, device, hlg, lattice_config.lm_scale)
            self.id_to_word = {i: w for w, i in word_table.items()}

    def words(self, method: str, ids: list[int]) -> list[str]:
        if method == "hlg-1best":
            return [self.id_to_word[i] for i in ids]
        return self.tokenizer.decode(ids).split()

    @torch.no_grad()
    def decode_batch(self, batch: dict, results: dict[str, MethodResult]) -> None:
        features, num_frames, texts, cut_ids = batch_inputs(batch, self.device)
        start = time.time()
        log_probs, lengths = self.model(features, num_frames)
        self.nnet_seconds += time.time() - start
        refs = [t.split() for t in texts]
        for method in self.methods:
            if method == "ctc-greedy":
                start = time.time()
                hyps = [self.words(method, h) for h in greedy_search(log_probs, lengths)]
                results[method].seconds += time.time() - start
                results[method].utts += [Utterance(c, r, h) for c, r, h in zip(cut_ids, refs, hyps)]
            else:
                self.decode_lattices(method, log_probs, lengths, cut_ids, refs, results[method])

    def decode_lattices(self, method: str, log_probs: torch.Tensor, lengths: torch.Tensor, cut_ids: list[str],
                        refs: list[list[str]], result: MethodResult) -> None:
        """1-best, n-best list, oracle and lattice size of every utterance of a batch.

        Only the search and the n-best sampling count as decoding time, not the oracle's scoring.
        """
        start = time.time()
        lattice, order = get_lattice(self.graphs[method], log_probs, lengths, self.config)
        hyps = [self.words(method, h) for h in get_texts(k2.shortest_path(lattice, use_double_scores=True))]
        num_arcs = lattice_num_arcs(lattice)
        nbest = self.nbest_words(method, lattice, num_arcs)
        result.seconds += time.time() - start
        for i, u in enumerate(order.tolist()):
            if num_arcs[i] == 0:
                logging.warning("%s: %s: empty lattice (beams too narrow?); scored as all deletions",
                                method, cut_ids[u])
                result.num_empty += 1
            result.utts.append(Utterance(cut_ids[u], refs[u], hyps[i]))
            result.nbest[cut_ids[u]] = nbest[i]
            oracle = oracle_hypothesis(refs[u], [hyps[i]] + [words for _, words in nbest[i]])
            result.oracle_utts.append(Utterance(cut_ids[u], refs[u], oracle))
        result.num_arcs += sum(num_arcs)
        result.num_frames += lengths.sum().item()

    def nbest_words(self, method: str, lattice: k2.Fsa, num_arcs: list[int]) -> list[list[tuple[float, list[str]]]]:
        """N-best lists of the non-empty lattices (k2 cannot sample from an empty one)."""
        lists: list[list[tuple[float, list[str]]]] = [[] for _ in num_arcs]
        keep = [i for i, n in enumerate(num_arcs) if n > 0]
        if keep:
            sub = k2.index_fsa(lattice, torch.tensor(keep, dtype=torch.int32, device=lattice.device))
            for i, entries in zip(keep, nbest_lists(sub, self.config.num_paths, self.config.nbest_scale)):
                lists[i] = [(score, self.words(method, ids)) for score, ids in entries]
        return lists


def decode_split(decoder: Decoder, loader, split: str) -> tuple[dict[str, MethodResult], float, float]:
    """All methods on one split; returns the results, seconds of audio and network seconds."""
    results = {m: MethodResult() for m in decoder.methods}
    audio_seconds, nnet_start = 0.0, decoder.nnet_seconds
    for batch in distributed.progress_bar(loader, desc=f"decode {split}", unit="batch"):
        audio_seconds += sum(c.duration for c in batch["supervisions"]["cut"])
        decoder.decode_batch(batch, results)
    return results, audio_seconds, decoder.nnet_seconds - nnet_start


class DevEvaluator:
    """Dev WER of HLG 1-best decoding, exactly as stage 4 decodes (each rank decodes every
    world_size-th cut; the WER is over all of them)."""

    def __init__(self, model: CtcModel, tokenizer: Tokenizer, lang_dir: Path, cuts_path: Path,
                 lattice_config: LatticeConfig, max_duration: float, device: torch.device):
        hlg, words = load_graph(lang_dir / "HLG.pt", device), read_symbols(lang_dir / "words.txt")
        self.decoder = Decoder(model, tokenizer, ["hlg-1best"], lattice_config, device, hlg, words)
        self.cuts = CutSet.from_cuts(distributed.context().shard(list(load_cuts(cuts_path))))
        self.max_duration = max_duration

    def wer(self) -> float:
        training = self.decoder.model.training
        results, _, _ = decode_split(self.decoder, make_dataloader(self.cuts, self.max_duration, shuffle=False), "dev")
        self.decoder.model.train(training)
        return compute_wer([u for utts in distributed.gather_objects(results["hlg-1best"].utts) for u in utts]).wer


def write_method_outputs(out_dir: Path, split: str, suffix: str, result: MethodResult) -> dict:
    """Kaldi-style files of one method on one split; returns its row of the results table (no timing:
    see method_timing)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stats = compute_wer(result.utts)
    write_recogs(out_dir / f"recogs-{split}-{suffix}.txt", result.utts)
    write_errs(out_dir / f"errs-{split}-{suffix}.txt", result.utts, stats)
    write_wer_summary(out_dir / f"wer-summary-{split}-{suffix}.txt", {out_dir.name: stats})
    row = {"wer": stats.wer, "summary": stats.summary_line()}
    if result.oracle_utts:
        oracle = compute_wer(result.oracle_utts)
        row.update(oracle_wer=oracle.wer, arcs_per_frame=result.num_arcs / max(result.num_frames, 1),
                   num_empty=result.num_empty, num_utts=len(result.utts))
        with atomic_output(out_dir / f"lattice-stats-{split}-{suffix}.json") as tmp:
            tmp.write_text(json.dumps({**row, "oracle_summary": oracle.summary_line()}, indent=2) + "\n")
        with atomic_output(out_dir / f"nbest-{split}-{suffix}.txt") as tmp:
            with open(tmp, "w", encoding="utf-8") as f:
                for cut_id in sorted(result.nbest):
                    for rank, (score, words) in enumerate(result.nbest[cut_id], 1):
                        f.write(f"{cut_id}-{rank}\t{score:.3f}\t{' '.join(words)}\n")
    logging.info("%s %s: %s%s", out_dir.name, split, stats.summary_line(),
                 f"; oracle {row['oracle_wer']:.2f}%, {row['arcs_per_frame']:.1f} arcs/frame, "
                 f"{row['num_empty']} empty lattices" if "oracle_wer" in row else "")
    return row


def method_timing(result: MethodResult, audio_seconds: float, nnet_seconds: float) -> dict:
    """The real-time factor of one method on one split (search and network forward over audio seconds)."""
    return {"rtf": (result.seconds + nnet_seconds) / max(audio_seconds, 1e-9), "search_seconds": result.seconds,
            "nnet_seconds": nnet_seconds, "audio_seconds": audio_seconds}


def results_table(rows: dict[str, dict[str, dict]], splits: Sequence[str], suffix: str,
                  timings: dict[str, dict[str, dict]]) -> str:
    """Markdown table: one row per method, WER / oracle / arcs per frame per split, and the RTF
    (measured: ``timings``, as in timings.json) of the last split."""
    header = ["method"] + [f"{s} {col}" for s in splits for col in ("WER", "oracle WER")] + ["arcs/frame", "RTF"]
    lines = [f"Decoding results ({suffix}); oracle = best of the 1-best and the lattice's n-best list.", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method, by_split in rows.items():
        cells = [method]
        for s in splits:
            r = by_split[s]
            cells += [f"{r['wer']:.2f}", f"{r['oracle_wer']:.2f}" if "oracle_wer" in r else "-"]
        last = by_split[splits[-1]]
        cells += [f"{last['arcs_per_frame']:.1f}" if "arcs_per_frame" in last else "-",
                  f"{timings[method][splits[-1]]['rtf']:.4f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def decoding_model(exp_dir: Path, epoch: int, avg: int, checkpoint: Optional[Path] = None) -> CtcModel:
    """The model to decode: one ``checkpoint`` file (a fine-tuned best.pt), else ``--epoch``/``--avg``
    of ``exp_dir``."""
    return load_model(checkpoint) if checkpoint else average_checkpoints(exp_dir, epoch, avg)


def decode(lang_dir: Path, fbank_dir: Path, exp_dir: Path, corpus: str, splits: Sequence[str], epoch: int, avg: int,
           methods: Sequence[str], config: LatticeConfig, max_duration: float, device_name: str = "auto",
           force: bool = False, checkpoint: Optional[Path] = None) -> Path:
    """Decode and score every split with every method; returns the results table's path.

    The model is ``--epoch``/``--avg`` of ``exp_dir``, or one ``checkpoint`` file (e.g. a
    fine-tuned best.pt; results are then named after its stem and written to ``exp_dir``).
    """
    config.check()
    unknown = set(methods) - set(METHODS)
    if unknown:
        raise ValueError(f"unknown decoding method(s) {sorted(unknown)}; choose from {', '.join(METHODS)}")
    suffix = Path(checkpoint).stem if checkpoint else f"epoch-{epoch}-avg-{avg}"
    table_path = exp_dir / f"results-{suffix}.md"
    cut_paths = [manifest_path(fbank_dir, corpus, "cuts", split) for split in splits]
    models = [Path(checkpoint)] if checkpoint else averaged_checkpoints(exp_dir, epoch, avg)
    inputs = models + cut_paths + \
        [lang_dir / "tokens.txt"] + ([lang_dir / "HLG.pt"] if "hlg-1best" in methods else [])
    for path in inputs:
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found (checkpoints come from training, HLG.pt from "
                                    f"steps/compile_hlg.sh, cuts from steps/compute_fbank.sh)")
    marker = StageMarker(exp_dir, f"decode-{suffix}", {"splits": list(splits), "methods": list(methods),
                                                      "lattice": asdict(config), "max_duration": max_duration},
                         inputs)
    if marker.skip_if_complete(force):
        return table_path
    device = pick_device(device_name)
    tokenizer = Tokenizer(lang_dir)
    model = decoding_model(exp_dir, epoch, avg, checkpoint)
    tokenizer.check_model_outputs(model.config.vocab_size)
    hlg = word_table = None
    if "hlg-1best" in methods:
        hlg, word_table = load_graph(lang_dir / "HLG.pt", device), read_symbols(lang_dir / "words.txt")
    decoder = Decoder(model, tokenizer, methods, config, device, hlg, word_table)
    rows: dict[str, dict[str, dict]] = {m: {} for m in methods}
    timings: dict[str, dict[str, dict]] = {m: {} for m in methods}
    for split, cuts_path in zip(splits, cut_paths):
        cuts = load_cuts(cuts_path)
        loader = make_dataloader(cuts, max_duration, shuffle=False)
        results, audio_seconds, nnet_seconds = decode_split(decoder, loader, split)
        for method in methods:
            rows[method][split] = write_method_outputs(exp_dir / method, split, suffix, results[method])
            timings[method][split] = method_timing(results[method], audio_seconds, nnet_seconds)
    record_timings(exp_dir, f"decode-{suffix}", timings)
    with atomic_output(exp_dir / f"results-{suffix}.json") as tmp:
        tmp.write_text(json.dumps({"lattice_config": asdict(config), "rows": rows}, indent=2) + "\n")
    with atomic_output(table_path) as tmp:
        tmp.write_text(results_table(rows, splits, suffix, timings))
    marker.write()
    return table_path


def sweep_lm_scales(lang_dir: Path, fbank_dir: Path, exp_dir: Path, corpus: str, split: str, epoch: int, avg: int,
                    lm_scales: Sequence[float], config: LatticeConfig, max_duration: float,
                    device_name: str = "auto", checkpoint: Optional[Path] = None,
                    blank_penalty: float = 0.0) -> dict[float, WerStats]:
    """HLG 1-best WER of one split at each LM scale (the network runs once; each scale is its own
    lattice search, since the scale also decides what the beams prune). For choosing --lm-scale
    on dev, as Kaldi's scoring scripts sweep the LM weight per system. The model is ``--epoch``/
    ``--avg`` of ``exp_dir`` or one ``checkpoint`` file (a fine-tuned best.pt, whose sharper
    outputs may want another scale than the baseline's). ``blank_penalty`` is subtracted from
    the blank's log-probability first (icefall's --blank-penalty): a calibration of deletions
    against insertions that no LM scale gives."""
    device = pick_device(device_name)
    tokenizer = Tokenizer(lang_dir)
    model = decoding_model(exp_dir, epoch, avg, checkpoint).to(device).eval()
    tokenizer.check_model_outputs(model.config.vocab_size)
    hlg, word_table = load_graph(lang_dir / "HLG.pt", device), read_symbols(lang_dir / "words.txt")
    id_to_word = {i: w for w, i in word_table.items()}
    outputs = []
    with torch.no_grad():
        for batch in make_dataloader(load_cuts(manifest_path(fbank_dir, corpus, "cuts", split)), max_duration,
                                     shuffle=False):
            features, num_frames, texts, cut_ids = batch_inputs(batch, device)
            log_probs, lengths = model(features, num_frames)
            log_probs[..., 0] -= blank_penalty
            outputs.append((log_probs, lengths, texts, cut_ids))
    stats = {}
    for scale in distributed.progress_bar(lm_scales, desc="LM scales", unit="scale"):
        graph = search_graph(tokenizer, device, hlg, scale)
        utts = []
        for log_probs, lengths, texts, cut_ids in outputs:
            lattice, order = get_lattice(graph, log_probs, lengths, config)
            hyps = get_texts(k2.shortest_path(lattice, use_double_scores=True))
            utts += [Utterance(cut_ids[u], texts[u].split(), [id_to_word[w] for w in hyps[i]])
                     for i, u in enumerate(order.tolist())]
        stats[scale] = compute_wer(utts)
        logging.info("%s, LM scale %g: %s", split, scale, stats[scale].summary_line())
    return stats
