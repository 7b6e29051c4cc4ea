"""Lattices for sequence training: each utterance's pruned lattice with frame indices and graph
scores, its reference and forced alignment, written in shards (rlhf.lattice_shards).
"""

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence

import k2
import torch
from lhotse import CutSet

from rlhf import distributed
from rlhf.checkpoint import average_checkpoints, averaged_checkpoints, model_digest
from rlhf.ctc import CtcGraphCompiler, forced_alignments
from rlhf.data import batch_inputs, load_cuts, make_dataloader, original_cuts
from rlhf.decode import LatticeConfig, get_lattice, get_texts, lattice_num_arcs, search_graph
from rlhf.graphs import load_graph, read_symbols
from rlhf.lang.compile_hlg import HLG_NAME
from rlhf.lang.tokenizer import Tokenizer
from rlhf.lattice_shards import LatticeShard, merge_shards, shard_path
from rlhf.manifests import manifest_path
from rlhf.model import CtcModel
from rlhf.rl.rewards import edit_distance
from rlhf.rl.values import oracle_errors
from rlhf.stage import StageMarker, atomic_output, file_digest, record_timings

GRAPHS = ("hlg", "ctc")


@dataclass
class LatticeStats:
    """Counts over a shard or a split."""
    num_utts: int = 0
    num_frames: int = 0
    num_arcs: int = 0
    ref_words: int = 0
    onebest_errors: int = 0
    oracle_errors: int = 0
    num_empty: int = 0           # the search found no path (beams too narrow)
    num_unaligned: int = 0       # the reference cannot be aligned to the audio
    num_oov_words: int = 0       # reference words outside words.txt: no path outputs them, always errors
    seconds: float = 0.0         # wall time, network forward included

    def add(self, other: "LatticeStats") -> None:
        for name, value in asdict(other).items():
            setattr(self, name, getattr(self, name) + value)

    def summary(self) -> dict:
        """The counts and rates of stats.json (no timing: see ``timing``)."""
        counts = {k: v for k, v in asdict(self).items() if k != "seconds"}
        return {**counts,
                "arcs_per_frame": self.num_arcs / max(self.num_frames, 1),
                "onebest_wer": 100.0 * self.onebest_errors / max(self.ref_words, 1),
                "oracle_wer": 100.0 * self.oracle_errors / max(self.ref_words, 1)}

    def timing(self) -> dict:
        """What timings.json keeps of it."""
        return {"seconds": self.seconds, "frames_per_second": self.num_frames / max(self.seconds, 1e-9)}

    def log_line(self) -> str:
        s = self.summary()
        return (f"{s['num_utts']} lattices, {s['arcs_per_frame']:.1f} arcs/frame, 1-best WER {s['onebest_wer']:.2f}%, "
                f"oracle WER {s['oracle_wer']:.2f}%, {self.num_empty} empty, {self.num_unaligned} unaligned, "
                f"{self.num_oov_words} OOV words, "
                f"{self.timing()['frames_per_second']:.0f} frames/s")


class LatticeMaker:
    """Lattices, references and forced alignments of batches, with empty or unalignable utterances dropped."""

    def __init__(self, model: CtcModel, tokenizer: Tokenizer, graph_kind: str, config: LatticeConfig,
                 device: torch.device, lang_dir: Path, hlg: Optional[Path] = None):
        if graph_kind not in GRAPHS:
            raise ValueError(f"unknown --graph {graph_kind!r}; choose from {', '.join(GRAPHS)}")
        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.config = config
        self.device = device
        self.compiler = CtcGraphCompiler(tokenizer, device)
        if graph_kind == "hlg":
            graph = search_graph(tokenizer, device, load_graph(hlg or lang_dir / HLG_NAME, device),
                                 config.lm_scale)
            self.word_ids = read_symbols(lang_dir / "words.txt")
            self.oov_id = max(self.word_ids.values()) + 1  # no arc outputs it: always an error
        else:
            graph = search_graph(tokenizer, device)
            self.word_ids = None
            self.oov_id = tokenizer.vocab_size
        graph.graph_scores = graph.scores.clone()
        self.graph = graph

    def references(self, texts: list[str]) -> list[list[int]]:
        """Output-label ids of each transcript: word ids (HLG) or token ids (CTC topology)."""
        if self.word_ids is None:
            return self.tokenizer.encode(texts)
        return [[self.word_ids.get(w, self.oov_id) for w in t.split()] for t in texts]

    @torch.no_grad()
    def lattices(self, features: torch.Tensor, num_frames: torch.Tensor, texts: list[str], cut_ids: list[str]
                 ) -> tuple[LatticeShard, LatticeStats]:
        """The lattices of one batch of utterances; the shard keeps those with a non-empty lattice and
        an alignable reference, in the decoder's order (``cut_ids`` say which). The stats count the
        utterances dropped, nothing else."""
        log_probs, lengths = self.model(features, num_frames)
        lattice, order = get_lattice(self.graph, log_probs, lengths, self.config)
        # The pruned search leaves arcs off every complete path (most of them): drop those.
        lattice = k2.connect(lattice)
        alignments = forced_alignments(log_probs, lengths, texts, self.compiler)
        num_arcs = lattice_num_arcs(lattice)
        stats = LatticeStats()
        keep_lattices, keep_utts = [], []
        for i, u in enumerate(order.tolist()):
            if num_arcs[i] == 0:
                logging.warning("%s: empty lattice (beams too narrow?); skipped", cut_ids[u])
                stats.num_empty += 1
            elif alignments[u] is None:
                logging.warning("%s: the reference cannot be aligned to the audio (too long?); skipped", cut_ids[u])
                stats.num_unaligned += 1
            else:
                keep_lattices.append(i)
                keep_utts.append(u)
        lattice = k2.index_fsa(lattice, torch.tensor(keep_lattices, dtype=torch.int32, device=lattice.device))
        lattice.scores = lattice.scores.detach()  # index_fsa keeps autograd history; shards store values only
        refs = self.references([texts[u] for u in keep_utts])
        shard = LatticeShard(lattice, [cut_ids[u] for u in keep_utts], [texts[u] for u in keep_utts], refs,
                             [alignments[u] for u in keep_utts], [int(lengths[u]) for u in keep_utts], {})
        return shard, stats

    @torch.no_grad()
    def make(self, batch: dict) -> tuple[LatticeShard, LatticeStats]:
        """Stage 5's lattices of a data-loader batch, on the CPU, with their oracle and 1-best errors."""
        start = time.time()
        shard, stats = self.lattices(*batch_inputs(batch, self.device))
        shard.lattice = shard.lattice.to("cpu")
        shard.alignments = [a.cpu() for a in shard.alignments]
        refs = shard.references
        if refs:
            hyps = get_texts(k2.shortest_path(shard.lattice, use_double_scores=True))
            stats.onebest_errors = sum(edit_distance(h, r) for h, r in zip(hyps, refs))
            stats.oracle_errors = int(oracle_errors(shard.lattice, refs).sum())
        stats.num_utts = len(refs)
        stats.num_frames = sum(shard.num_frames)
        stats.num_arcs = shard.lattice.num_arcs
        stats.ref_words = sum(len(r) for r in refs)
        stats.num_oov_words = sum(w == self.oov_id for r in refs for w in r)
        stats.seconds = time.time() - start
        return shard, stats


def cut_chunks(cuts: CutSet, chunk_size: int, max_utts: Optional[int], ctx: distributed.Context
               ) -> Iterator[tuple[int, CutSet]]:
    """(shard index, cuts) of this rank's shards: consecutive runs of ``chunk_size`` cuts in manifest
    order (the first ``max_utts`` cuts only), every world_size-th one. A shard's lattices thus do
    not depend on the number of ranks: the same cuts, in the same batches."""
    chunk: list = []
    index = 0
    for n, cut in enumerate(cuts):
        if max_utts is not None and n >= max_utts:
            break
        chunk.append(cut)
        if len(chunk) == chunk_size:
            if index % ctx.world_size == ctx.rank:
                yield index, CutSet.from_cuts(chunk)
            chunk, index = [], index + 1
    if chunk and index % ctx.world_size == ctx.rank:
        yield index, CutSet.from_cuts(chunk)


def make_split_lattices(maker: LatticeMaker, cuts: CutSet, out_dir: Path, shard_size: int, max_duration: float,
                        meta: dict, max_utts: Optional[int]) -> LatticeStats:
    """This rank's shards of a split (``shard_size`` cuts each) under ``out_dir``; returns the
    split's stats over every rank's shards."""
    ctx = distributed.context()
    mine: dict[int, LatticeStats] = {}
    bar = distributed.progress_bar(desc=f"lattices {meta['split']}", unit="cut")
    for index, chunk in cut_chunks(cuts, shard_size, max_utts, ctx):
        parts, stats = [], LatticeStats()
        for batch in make_dataloader(chunk, max_duration, shuffle=False):
            shard, batch_stats = maker.make(batch)
            parts.append(shard)
            stats.add(batch_stats)
            bar.update(len(batch["supervisions"]["cut"]))
            bar.set_postfix(oracle=f"{stats.summary()['oracle_wer']:.1f}%")
        merge_shards(parts, meta).save(shard_path(out_dir, index))
        logging.info("%s: %s", shard_path(out_dir, index), stats.log_line())
        mine[index] = stats
    bar.close()
    total = LatticeStats()
    for _, stats in sorted(item for rank_stats in distributed.gather_objects(mine) for item in rank_stats.items()):
        total.add(stats)
    return total


def make_lattices(lang_dir: Path, fbank_dir: Path, exp_dir: Path, corpus: str, splits: Sequence[str], epoch: int,
                  avg: int, graph_kind: str, config: LatticeConfig, shard_size: int = 500,
                  max_duration: float = 200.0, max_utts: Optional[int] = None, device_name: str = "auto",
                  force: bool = False, hlg: Optional[Path] = None) -> Path:
    """Stage 5 for every split; returns ``<exp_dir>/lattices``.

    ``hlg`` is the decoding graph of ``graph_kind`` hlg (default ``<lang_dir>/HLG.pt``, stage 4's): a
    graph from a weaker LM gives lattices with more errors for the sequence objectives to remove.

    In a job of several processes each rank decodes every world_size-th shard; rank 0 writes the
    statistics and the completion marker.
    """
    ctx = distributed.context()
    config.check()
    lattice_dir = exp_dir / "lattices"
    cut_paths = [manifest_path(fbank_dir, corpus, "cuts", split) for split in splits]
    hlg = Path(hlg) if hlg is not None else lang_dir / HLG_NAME
    lang_files = [lang_dir / "tokens.txt"] + ([hlg, lang_dir / "words.txt"] if graph_kind == "hlg" else [])
    inputs = averaged_checkpoints(exp_dir, epoch, avg) + cut_paths + lang_files
    for path in inputs:
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found (checkpoints come from stage 3, HLG.pt from stage 4, "
                                    f"cuts from stage 2)")
    if shard_size < 1:
        raise ValueError(f"--shard-size must be >= 1, got {shard_size}")
    hlg_used = str(hlg) if graph_kind == "hlg" else None
    options = {"splits": list(splits), "epoch": epoch, "avg": avg, "graph": graph_kind, "hlg": hlg_used,
               "lattice": asdict(config), "shard_size": shard_size, "max_duration": max_duration, "max_utts": max_utts}
    marker = StageMarker(lattice_dir, "make-lattices", options, inputs,
                         outputs=[lattice_dir / split for split in splits] + [lattice_dir / "stats.json"])
    if distributed.main_decides(lambda: marker.skip_if_complete(force)):
        return lattice_dir
    start = time.time()
    device = ctx.device(device_name)
    tokenizer = Tokenizer(lang_dir)
    model = average_checkpoints(exp_dir, epoch, avg)
    tokenizer.check_model_outputs(model.config.vocab_size)
    meta = {"model_digest": model_digest(model), "lang_digest": file_digest(lang_dir / "tokens.txt"),
            "made_with": f"{exp_dir} epoch {epoch} avg {avg}, {lang_dir}", "graph": graph_kind, "hlg": hlg_used,
            "lattice_config": asdict(config), "model_config": model.config.to_dict()}
    maker = LatticeMaker(model, tokenizer, graph_kind, config, device, lang_dir, hlg)
    summary, timings = {}, {}
    for split, cuts_path in zip(splits, cut_paths):
        with distributed.shared_output(lattice_dir / split) as tmp:
            stats = make_split_lattices(maker, original_cuts(load_cuts(cuts_path)), tmp, shard_size, max_duration,
                                        {**meta, "split": split}, max_utts)
            summary[split], timings[split] = stats.summary(), stats.timing()
            if ctx.is_main:
                (tmp / "stats.json").write_text(json.dumps(summary[split], indent=2) + "\n")
        logging.info("lattices %s: %s", split, stats.log_line())
    if ctx.is_main:
        with atomic_output(lattice_dir / "stats.json") as tmp:
            tmp.write_text(json.dumps({"meta": meta, "splits": summary, "world_size": ctx.world_size}, indent=2)
                           + "\n")
        record_timings(lattice_dir, "make-lattices", {"splits": timings, "wall_seconds": time.time() - start})
        marker.write()
    distributed.barrier()
    return lattice_dir
