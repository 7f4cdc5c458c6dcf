"""Training throughput of our distillation steps against a conventional HF ``Trainer`` KD recipe, in one run.

Usage (from the repository root)::

    python benchmarks/throughput.py --dataset ../shared/data/sst2 --batch-size 32 --rounds 5 --steps 100 --threads 2

**Interleaved rounds.** Every configuration (an *arm*: a step loop, the cache build, a framework run) is built first
and warmed up once (``--warmup`` untimed steps each); then ``--rounds`` rounds each run every arm once, in the same
order (A B C … A B C …), ``--round-warmup`` untimed steps and then ``--steps`` timed steps on the *same* batches. On a
machine whose speed drifts over minutes (a shared virtual machine, other jobs), configurations timed one after the
other compare the machine's state as much as the code; within a round they run seconds apart. Every figure is the
median over the rounds with its min–max, and every tracked ratio is computed *inside* each round and reported as
the median of those per-round ratios, with their min–max and how many rounds met the floor; a floor PASSes only
when the median meets it (:mod:`benchmarks.interleave`). Threads are fixed (``--threads``) and enforced again
inside the framework loops; the load average at the start and end is printed, since other jobs on the cores make
every row slower (and noisier) alike. On such a machine ``--timer cpu`` times with the process's CPU time instead of
the wall clock (with ``--threads 1`` it is the single thread's compute time, without the time other processes held
the core; CPU runs only). The HF ``Trainer`` arm needs ``accelerate`` (left out, with a note, when it is
missing). ``--skip-e2e`` leaves out both framework arms.

Teacher: ``--teacher`` (default the packaged MiniLM, ``minilm``: 6 layers, a new 2-class head; the weights do not
matter for speed). Student: its layers ``--student-layers`` (default 0 and 5). ``BaseDistiller`` weighs LogitKD by
its adaptor weight (1) where the recipe uses ``1 - alpha``; the cost of a step is the same.

**Step rows** all run the identical pre-collated batches, already on the device: the first
``max(warmup, round_warmup) + steps`` length-grouped training batches of :class:`~data.data_module.ClfDataModule`
(seeded), the leading ones untimed, the last ``steps`` timed in every round, in a plain Python loop (no Lightning or
HF ``Trainer`` overhead). A training step is forward(s) + loss + backward + AdamW step + ``zero_grad``; every arm
has its own fresh student and AdamW with the project's parameter groups (:func:`helper.training.adamw_with_warmup`),
kept across the rounds:

* ``teacher forward``: ``teacher(**inputs)`` in eval mode under ``torch.inference_mode`` (no step).
* ``student step (CE)``: the student alone with cross-entropy.
* ``recipe step``: the conventional KD recipe's loss (:func:`benchmarks.hf_recipe.recipe_loss`, the same function
  :class:`~benchmarks.hf_recipe.KDRecipeTrainer` uses), teacher under ``no_grad``.
* ``logit KD``: ``BaseDistiller(teacher, student, ["LogitKD"], alpha, temperature)`` through its own
  ``distill`` + ``total_loss``, without the teacher-logit cache (teacher forward every step) and with it (batches carry
  ``teacher_logits`` from :meth:`ClfDataModule.add_teacher_logits`). The one-time cache build (all splits, into a
  fresh temporary cache folder so nothing is read from disk) is timed once before the rounds (with
  ``--cache-every-round``, an arm of its own, rebuilt afresh in every round), and amortised over 1 and 3 epochs of
  the training data with each round's cached speed: ``k·N / (cache_time + k·N / cached_speed)``.
* ``mix-step (hooks)``: AttnMiniLM + ValMiniLM + HidnTinyBERT + LogitKD, taps captured by the distiller's forward
  hooks (models keep SDPA attention).
* ``mix-step (attention capture)``: the same, with queries/keys/values recorded inside the models' attention
  function (:class:`helper.taps.ModelTaps` with ``capture="attention"``: a function registered in transformers'
  ``AttentionInterface`` that records the mapped layers' inputs and runs SDPA for every layer).
* ``mix-step (eager outputs)``: the same adaptors and layer maps fed the conventional way: models switched to
  ``attn_implementation="eager"``, ``output_attentions=True, output_hidden_states=True``, and the q/k/v of each
  needed layer recomputed by its own ``nn.Linear`` on the layer input (:func:`benchmarks.eager_taps.eager_distill`).

**End-to-end rows** include data loading and each framework's loop; every round runs a whole loop with a fresh student
(timed from the end of step ``warmup`` to the end of step ``warmup + steps``; setup, warm-up and teardown excluded):

* ``Lightning fit, logit KD + cache``: ``pl.Trainer.fit`` of the cached logit-KD distiller on the data module's
  length-grouped batches (no logger, checkpointing or validation), plus its amortisation over 3 epochs.
* ``HF Trainer.train, recipe``: :class:`~benchmarks.hf_recipe.KDRecipeTrainer` (a ``transformers.Trainer``
  subclass whose ``compute_loss`` is ``alpha·CE + (1-alpha)·T²·KL(softmax(t/T) ‖ softmax(s/T))``) with ``max_steps``,
  on its default random batches (``DataCollatorWithPadding``), its default optimizer (fused AdamW) and gradient
  clipping, no logging, saving or evaluation.

Memory: on CUDA, ``torch.cuda.max_memory_allocated`` during each segment of an arm (its warm-up, each round) and the
segment's excess over the allocation at its start (Δ); the table shows the highest of each over the segments. On
CPU, the process's peak resident set size during the segment (Linux ``VmHWM`` after resetting it via
``/proc/self/clear_refs``; elsewhere the lifetime ``ru_maxrss``) and its excess over the RSS at the segment's start;
freed heap is returned to the OS first (``malloc_trim``) so the segments do not inherit each other's peaks. Δ is the
memory the arm's steps needed on top of what was already loaded (activations, gradients; the optimizer state,
allocated in the warm-up). All arms' models stay loaded for the whole run, so peaks include them.

Prints a header, a Markdown table (median and min–max over rounds) and the tracked ratios with PASS/FAIL against
their floors.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import torch

from benchmarks.interleave import Arm, run_rounds, stderr_progress
from benchmarks.memory_meter import MemoryMeter
from benchmarks.throughput_arms import (
    Bench,
    build_teacher_cache,
    cache_arm,
    cache_row,
    derived_rows,
    end_to_end_arms,
    header,
    setup_bench,
    step_arms,
    tracked_ratios,
)
from benchmarks.throughput_report import Row, format_report, json_payload

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="../shared/data/sst2", help="data source (folder, file, 'demo', Hub name)")
    p.add_argument("--teacher", default="minilm", help="teacher: alias, folder or Hub name (a new head if needed)")
    p.add_argument("--tokenizer", help="tokenizer (default: the teacher's)")
    p.add_argument("--student-layers", nargs="+", type=int, default=[0, 5], help="teacher layers kept in the student")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument(
        "--rounds", type=int, default=5, help="interleaved rounds: every configuration is timed once per round"
    )
    p.add_argument("--steps", type=int, default=100, help="timed steps per configuration per round")
    p.add_argument("--warmup", type=int, default=10, help="untimed steps per configuration, once before round 1")
    p.add_argument(
        "--round-warmup", type=int, default=1, help="untimed steps per configuration at the start of every round"
    )
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads value (fixed for all rows)")
    p.add_argument("--max-train-samples", type=int, help="seeded subset of the training data (N)")
    p.add_argument("--max-length", type=int, default=128, help="truncation length in tokens")
    p.add_argument("--alpha", type=float, default=0.5)
    p.add_argument("--temperature", type=float, default=4.0)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32", help="bf16: autocast for every row")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument(
        "--timer",
        choices=("wall", "cpu"),
        default="wall",
        help="wall: elapsed time; cpu: this process's CPU time (a machine shared with other jobs; CPU runs only)",
    )
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--skip-e2e", action="store_true", help="leave out the Lightning and HF Trainer runs")
    p.add_argument(
        "--cache-every-round",
        action="store_true",
        help="rebuild (and time) the teacher-logit cache in every round instead of once before the rounds",
    )
    p.add_argument("--json", type=Path, help="also write the results to this JSON file")
    args = p.parse_args(argv)
    problems = [
        f"--{name.replace('_', '-')}={getattr(args, name)}: expected {want}"
        for name, want, ok in (
            ("rounds", "an integer >= 1", args.rounds >= 1),
            ("steps", "an integer >= 1", args.steps >= 1),
            ("warmup", "an integer >= 0", args.warmup >= 0),
            ("round_warmup", "an integer >= 0", args.round_warmup >= 0),
            ("threads", "an integer >= 1", args.threads >= 1),
            ("batch_size", "an integer >= 1", args.batch_size >= 1),
        )
        if not ok
    ]
    if args.device == "cuda" and not torch.cuda.is_available():
        problems.append("--device=cuda: no CUDA device is available")
    if args.timer == "cpu" and (args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())):
        problems.append(f"--timer=cpu with --device={args.device}: CPU time misses GPU work; expected --timer wall")
    if problems:
        p.error("; ".join(problems))
    return args


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Build every arm, measure them in interleaved rounds, derive the amortised rows and the ratios.

    Returns:
        ``{"header": {...}, "rows": [Row, ...], "floors": [Floor, ...], "memory": str}``.
    """
    bench = setup_bench(args)
    stderr_progress("building the teacher-logit cache (timed once; the cached batches need it)")
    first = build_teacher_cache(bench)
    arms = step_arms(bench)
    if args.cache_every_round:
        arms.insert(0, cache_arm(bench))
    else:
        row = cache_row(bench)
        row.samples = [first]
        row.note = "built once before the rounds (--cache-every-round rebuilds it in each round)"
    if not args.skip_e2e:
        arms += end_to_end_arms(bench)
    run_rounds_into(bench, arms)
    derived_rows(bench)
    memory = MemoryMeter(bench.settings.device).kind
    return {
        "header": header(bench),
        "rows": list(bench.rows.values()),
        "floors": tracked_ratios(bench),
        "memory": memory,
    }


def run_rounds_into(bench: Bench, arms: list[Arm]) -> None:
    """Run the interleaved rounds and store each arm's samples in its row."""
    torch.set_num_threads(bench.args.threads)
    samples = run_rounds(arms, bench.args.rounds, progress=stderr_progress)
    for arm in arms:
        bench.rows.setdefault(arm.key, Row(arm.key, arm.label)).samples = samples[arm.key]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print the report, optionally write JSON (atomically); returns the report."""
    args = parse_args(argv)
    report = run(args)
    print(format_report(report))
    print(f"\ncommand: python {' '.join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])])}")
    if args.json is not None:
        payload = json_payload(report)
        args.json.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.json.with_name(args.json.name + ".tmp")
        tmp.write_text(json.dumps(payload, indent=2, default=str))
        os.replace(tmp, args.json)
    return report


if __name__ == "__main__":
    main()
