"""Cross-domain benchmark: train on procedural retinas only, score on a retina the training never saw.

    python benchmarks/cross_domain.py --out DIR [--budget-steps N] [--size 512] [--with-photograph-model]

Everything lives in ``DIR``:

1. ``train-data/``: procedural retinas only (``GeneratorConfig(retina="procedural")``: a
   synthetic eye of its own per pair, :mod:`firereg.transforms.synthetic_retina`), with
   FIRE-calibrated motions (:mod:`firereg.transforms.fire_motions`);
2. ``score-data/``: pairs rendered from the skimage photograph (``skimage.data.retina()``)
   with the same FIRE-calibrated motions, another seed: a retina the procedural training never saw;
3. ``run-procedural/``: the demo's cascade recipe
   (:func:`firereg.pipelines.demo.run.demo_train_config`, a budget of optimiser steps, one
   thread, seeded) trained on ``train-data``; with ``--with-photograph-model`` also
   ``train-photograph-data/`` (the default ``firereg make-data`` dataset: the same photograph,
   seed 0) and ``run-photograph/``, the same recipe trained on it;
4. ``benchmark/``: :func:`firereg.evaluation.benchmark.run_benchmark` of every method of
   :data:`BASELINES` and :data:`DEEP_FORMS` on ALL pairs of ``score-data`` (FIRE protocol);
5. ``cross_domain.md`` (the table, which retinas trained and scored each model, budget,
   command, wall time, load average) and ``cross_domain.png`` (success rate vs threshold).

Re-running into the same ``DIR`` reuses finished steps: the datasets (the generator reuses a
complete folder of the same settings), a finished training run (its ``demo_training.json``;
an interrupted one is resumed), every benchmark record whose fingerprint still matches.
``DIR/timings.json`` keeps the wall time and load average of each step when it was computed,
so the report gives the end-to-end time of all steps even after a partial re-run.

Errors are mean control-point distances in full-resolution pixels (FIRE protocol).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from firereg.evaluation.benchmark import BenchmarkConfig, run_benchmark
from firereg.evaluation.fire_protocol import summarize
from firereg.evaluation.report.tables import markdown_table
from firereg.pipelines.demo.run import (
    DEFAULT_BUDGET_STEPS,
    TRAINING_FILE,
    DemoPaths,
    budget_text,
    demo_train_config,
    train_model,
)
from firereg.pipelines.method_specs import (
    DEFAULT_WEIGHTS,
    make_any_method,
    parse_method_spec,
)
from firereg.pipelines.training import TrainConfig
from firereg.transforms.fire_generator import (
    DEFAULT_PAIRS,
    GeneratorConfig,
    make_fire_dataset,
)
from firereg.transforms.fire_reader import read_fire
from firereg.transforms.io import atomic_output, atomic_write_text

__all__ = ["BASELINES", "DEEP_FORMS", "CrossDomainConfig", "available_deep_forms", "run_cross_domain", "main"]

#: refinement steps per level of the shipped default's refined row (``hybrid+ttoN`` with the shipped weights)
DEFAULT_REFINE_STEPS = 10
#: classical methods and the shipped default (with and without refinement) scored next to the trained models
BASELINES: tuple[str, ...] = (
    "identity", "elastix-affine", "elastix-bspline", "sift", "sift-quadratic", "default",
    f"default+tto{DEFAULT_REFINE_STEPS}=hybrid+tto{DEFAULT_REFINE_STEPS}:{DEFAULT_WEIGHTS}",
)
#: what trained the shipped weights (``benchmarks/train_default.py``), for the table's "trained on"
SHIPPED = "procedural (shipped weights)"
#: the forms of a trained run benchmarked, each as ``FORM:RUN`` (those the installed
#: firereg does not know are left out, with a note; see :func:`available_deep_forms`)
DEEP_FORMS: tuple[str, ...] = ("cascade", "cascade+tto", "hybrid")
#: the retina of each training data set, in words, keyed by model name
PROCEDURAL, PHOTOGRAPH = "procedural", "photograph"


@dataclass
class CrossDomainConfig:
    """Settings of one cross-domain benchmark (sizes in pixels).

    Attributes:
        out: output folder (``DIR``); re-running into it reuses finished steps.
        budget_steps: training budget of each model, optimiser steps (the same model on any machine).
        benchmark_size: longest side the benchmark resizes every pair to (``--size``).
        train_pairs / train_size / train_seed: the procedural training data (one eye per pair).
        score_pairs / score_size / score_seed: the scoring data (the skimage photograph).
        photograph_model: also train the recipe on photograph data (``firereg make-data``'s
            default dataset: :class:`GeneratorConfig` defaults) for the comparison.
        photograph_pairs / photograph_size / photograph_seed: that photograph training data.
        baselines: classical methods scored.
        deep_forms: forms of each trained run scored (``cascade``, ``cascade+tto``, ``hybrid`` ...).
        train: the training recipe; None = :func:`demo_train_config` (``budget_steps`` always applies).
        num_threads: torch threads of the training (1: the demo's setting).
        workers: benchmark worker processes.
        progress: print stage messages and progress bars.
        command: the command line written into the report (None: this process's ``sys.argv``).
    """

    out: Path
    budget_steps: int = DEFAULT_BUDGET_STEPS
    benchmark_size: int = 512
    train_pairs: dict[str, int] = field(default_factory=lambda: {"S": 48, "P": 32, "A": 16})
    train_size: int = 768
    train_seed: int = 0
    score_pairs: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_PAIRS))
    score_size: int = 1024
    score_seed: int = 1
    photograph_model: bool = False
    photograph_pairs: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_PAIRS))
    photograph_size: int = 1024
    photograph_seed: int = 0
    baselines: tuple[str, ...] = BASELINES
    deep_forms: tuple[str, ...] = DEEP_FORMS
    train: TrainConfig | None = None
    num_threads: int | None = 1
    workers: int = 1
    progress: bool = True
    command: str | None = None

    def __post_init__(self) -> None:
        self.out = Path(self.out)

    def validate(self) -> None:
        """Raise ``ValueError`` naming the bad setting and its value."""
        if isinstance(self.budget_steps, bool) or not isinstance(self.budget_steps, int) or self.budget_steps < 1:
            raise ValueError(f"CrossDomainConfig.budget_steps = {self.budget_steps!r}: need an integer >= 1 (steps)")
        if not isinstance(self.benchmark_size, int) or self.benchmark_size < 16:
            raise ValueError(f"CrossDomainConfig.benchmark_size = {self.benchmark_size!r}: need an integer >= 16 (px)")
        if self.photograph_model and self.photograph_seed == self.score_seed:
            raise ValueError(f"CrossDomainConfig.score_seed = {self.score_seed} equals photograph_seed: the "
                             "photograph-trained model would be scored on its own training pairs; choose another")
        for spec in self.baselines:
            parse_method_spec(spec)  # names the bad one
        if not self.baselines and not self.deep_forms:
            raise ValueError("CrossDomainConfig: no methods (baselines and deep_forms both empty)")
        for generator in self.generators().values():
            generator.validate()
        self.train_config().validate()

    def generators(self) -> dict[str, GeneratorConfig]:
        """Folder name → generator settings of every dataset this benchmark writes."""
        data = {
            "train-data": GeneratorConfig(size=self.train_size, pairs=dict(self.train_pairs), seed=self.train_seed,
                                          retina="procedural"),
            "score-data": GeneratorConfig(size=self.score_size, pairs=dict(self.score_pairs), seed=self.score_seed,
                                          retina="photograph"),
        }
        if self.photograph_model:
            data["train-photograph-data"] = GeneratorConfig(size=self.photograph_size, pairs=dict(self.photograph_pairs),
                                                            seed=self.photograph_seed, retina="photograph")
        return data

    def models(self) -> dict[str, str]:
        """Model name (``procedural``, ``photograph``) → the data folder name it trains on."""
        models = {PROCEDURAL: "train-data"}
        if self.photograph_model:
            models[PHOTOGRAPH] = "train-photograph-data"
        return models

    def train_config(self) -> TrainConfig:
        """The recipe with this benchmark's step budget and benchmark size (validation = benchmark numbers)."""
        base = self.train if self.train is not None else demo_train_config(self.budget_steps, None)
        return replace(base, budget_steps=self.budget_steps, budget_minutes=None, benchmark_size=self.benchmark_size)


@dataclass(frozen=True)
class _RunPaths(DemoPaths):
    """:class:`DemoPaths` with the run in ``out/name`` (so :func:`train_model` reuses or resumes it)."""

    name: str = "run"

    @property
    def run(self) -> Path:
        return self.out / self.name

    @property
    def training(self) -> Path:
        return self.out / self.name / TRAINING_FILE


def available_deep_forms(forms: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """Split ``forms`` into those the installed firereg parses (as ``FORM:RUN``) and those it does not."""
    known, unknown = [], []
    for form in forms:
        try:
            parse_method_spec(f"{form}:run")
            known.append(form)
        except ValueError:
            unknown.append(form)
    return known, unknown


class _Log:
    """Stage messages and ``DIR/timings.json``: seconds and load average of each step when computed."""

    def __init__(self, out: Path, progress: bool) -> None:
        self.path, self.progress = out / "timings.json", progress
        self.steps: dict[str, dict] = json.loads(self.path.read_text()) if self.path.is_file() else {}

    def say(self, message: str) -> None:
        if self.progress:
            print(message, flush=True)

    def done(self, step: str, seconds: float, fresh: bool, methods: list[str] | None = None) -> None:
        """Record a step's time if it was computed now (a reused step keeps the time it took then).

        ``methods``: the benchmark's method specs; a fresh benchmark of more methods than the
        recorded one (a re-run with ``--with-photograph-model``) adds its time to the recorded one.
        """
        if fresh or step not in self.steps:
            before = self.steps.get(step, {})
            if fresh and methods is not None and before.get("methods") not in (None, methods):
                seconds += float(before.get("seconds", 0.0))
            self.steps[step] = {"seconds": round(seconds, 1), "load_average": [round(v, 2) for v in os.getloadavg()],
                                "fresh": fresh, **({"methods": methods} if methods is not None else {})}
            atomic_write_text(self.path, json.dumps(self.steps, indent=1))


def _make_data(config: CrossDomainConfig, log: _Log) -> dict[str, Path]:
    """Write (or reuse) every dataset; folder name → path."""
    roots = {}
    for name, generator in config.generators().items():
        start = time.monotonic()
        fresh = not (config.out / name / "generator.json").is_file()
        roots[name] = make_fire_dataset(config.out / name, generator, overwrite=False, progress=config.progress)
        log.done(f"data {name}", time.monotonic() - start, fresh)
    return roots


def _train(config: CrossDomainConfig, roots: dict[str, Path], log: _Log) -> dict[str, dict]:
    """Train (or reuse / resume) every model; name → the run's ``demo_training.json`` contents."""
    infos = {}
    for model, data in config.models().items():
        paths = _RunPaths(config.out, name=f"run-{model}")
        log.say(f"[cross-domain] training the {model} model on {roots[data]} into {paths.run} "
                f"({config.budget_steps} steps)")
        start = time.monotonic()
        info = train_model(config.train_config(), roots[data], paths, config.progress, config.num_threads)
        trained = budget_text(info.get("budget_steps"), info.get("budget_minutes"))
        if info["reused"] and info.get("budget_steps") != config.budget_steps:
            log.say(f"  note: reusing {paths.run}, trained with {trained}; delete it to train {config.budget_steps} steps")
        log.done(f"training {model}", float(info.get("total_seconds", time.monotonic() - start)), not info["reused"])
        infos[model] = {**info, "run": str(paths.run)}
    return infos


def _specs(config: CrossDomainConfig, forms: list[str]) -> dict[str, tuple[str, str]]:
    """Spec → (label, trained on) for every method benchmarked."""
    specs = {}
    for spec in config.baselines:
        parsed = parse_method_spec(spec)
        shipped = parsed.path is not None and Path(parsed.path).resolve() == DEFAULT_WEIGHTS.resolve()
        specs[spec] = (parsed.label, SHIPPED if shipped else "–")
    for model in config.models():
        run = config.out / f"run-{model}"
        for form in forms:
            label = f"{model}-{form}"
            specs[f"{label}={form}:{run}"] = (label, model)
    return specs


def _table(pairs: pd.DataFrame, specs: dict[str, tuple[str, str]]) -> pd.DataFrame:
    """The report's table: one row per method, errors in full-resolution px."""
    summary = summarize(pairs).set_index("method")
    rows = []
    for label, trained in specs.values():
        sub = pairs[pairs["method"] == label]
        ok = sub[sub["status"] == "ok"]["mean_error"].astype(np.float64)
        s = summary.loc[label]
        rows.append({"method": label, "trained on": trained, "AUC S": s["auc_S"], "AUC P": s["auc_P"],
                     "AUC A": s["auc_A"], "mAUC": s["mAUC"],
                     "mean error (px)": float(ok.mean()) if len(ok) else float("nan"),
                     "median error (px)": s["median_error"], "failed": int(s["failed"]),
                     "s/pair": float(sub["seconds"].astype(np.float64).mean())})
    return pd.DataFrame(rows)


def _counts(pairs: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in pairs.items()) + f" ({sum(pairs.values())} pairs)"


def _split_counts(run: Path) -> str:
    split = pd.read_csv(run / "split.csv")
    return ", ".join(f"{k} {v}" for k, v in split["split"].value_counts().sort_index(ascending=True).items())


def _header(config: CrossDomainConfig, infos: dict[str, dict], skipped: list[str]) -> list[str]:
    """The report's opening lines: which retinas trained each model, which scored it, the budget."""
    gens = config.generators()
    score = gens["score-data"]
    lines = [
        "# Cross-domain benchmark: trained on procedural retinas, scored on a photographed retina", "",
        f"- Folders below are in `DIR` = `{config.out}` (the `--out`).",
        "- **Scored on** `DIR/score-data`: `skimage.data.retina()` (one real fundus photograph) "
        f"rendered with FIRE-calibrated motions (`firereg.transforms.fire_motions`), {score.size} px, "
        f"seed {score.seed}, {_counts(score.pairs)}; every method scores ALL of them at a benchmark size of "
        f"{config.benchmark_size} px (FIRE protocol, errors in full-resolution px).",
    ]
    for model, info in infos.items():
        gen = gens[config.models()[model]]
        what = ("procedural retinas only (`retina=\"procedural\"`: a different synthetic eye per pair, "
                "`firereg.transforms.synthetic_retina`); it never saw the photographed retina"
                if model == PROCEDURAL else
                "the same photograph `skimage.data.retina()` (the default `firereg make-data` dataset): it saw "
                "the same eye, in other views and motions (another seed) — not an unseen retina")
        lines.append(f"- **`{model}-*` trained on** `DIR/{config.models()[model]}`: {what}; {gen.size} px, "
                     f"seed {gen.seed}, {_counts(gen.pairs)}, of which {_split_counts(Path(info['run']))} "
                     f"(the run's split). Run `DIR/{Path(info['run']).name}`, trained "
                     f"{budget_text(info.get('budget_steps'), info.get('budget_minutes'))}"
                     f" ({float(info.get('total_seconds', 0)) / 60:.1f} min).")
    recipe = config.train_config()
    lines += [
        f"- **Recipe** (`firereg.pipelines.demo.run.demo_train_config`): {recipe.model}, Adam lr {recipe.lr:g}, "
        f"{recipe.size} px network, repeats {recipe.repeats}, affine warm-up {recipe.affine_warmup:g}, "
        f"seed {recipe.seed}, budget {config.budget_steps} optimiser steps, {config.num_threads} torch thread(s).",
        "- **`default` rows**: the shipped method (`hybrid:` + `firereg/pipelines/weights/default_voxelmorph.pt`, "
        "trained on procedural retinas only by `benchmarks/train_default.py`, see its `TRAINING_LOG.md`); "
        f"`default+tto{DEFAULT_REFINE_STEPS}`: with test-time refinement of its deformable field.",
        "- `MODEL-FORM` rows: `FORM:RUN` of `firereg benchmark` (cascade: the network alone; cascade+tto: "
        "with test-time refinement; hybrid: sift-quadratic, then the network's deformable stage).",
        "- AUC: mean success rate over thresholds 1..25 px; mAUC: mean of the S, P, A AUCs; mean error: over "
        "the pairs that did not fail; failed: no transform (infinite error); s/pair: mean seconds per pair.",
    ]
    if skipped:
        lines.append(f"- left out (this firereg does not know the form): {', '.join(skipped)}.")
    return lines


def _timing_lines(config: CrossDomainConfig, log: _Log, wall: float, load: tuple) -> list[str]:
    steps = log.steps
    total = sum(float(s["seconds"]) for s in steps.values())
    parts = ", ".join(f"{k} {float(v['seconds']) / 60:.1f} min (load {v['load_average'][0]:.1f})"
                      for k, v in steps.items())
    return [
        "", f"Command: `{config.command or shlex.join([sys.executable, *sys.argv])}`", "",
        f"- End-to-end wall time of all steps, each when it was computed: {total / 60:.1f} min ({parts}).",
        f"- This invocation: {wall / 60:.1f} min; load average (1, 5, 15 min) at its start "
        f"{load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f}, at its end "
        + ", ".join(f"{v:.2f}" for v in os.getloadavg()) + f"; {os.cpu_count()} CPU cores.",
    ]


def run_cross_domain(config: CrossDomainConfig) -> pd.DataFrame:
    """Data, training, benchmark and report in ``config.out`` (see the module docstring).

    Returns:
        The report's table: one row per method (``method``, ``trained on``, ``AUC S``, ``AUC P``,
        ``AUC A``, ``mAUC``, ``mean error (px)``, ``median error (px)``, ``failed``, ``s/pair``).

    Raises:
        ValueError: for bad settings, or a run folder in ``out`` trained on other data.
        FileExistsError: if a data folder in ``out`` holds a dataset of other settings.
    """
    start, load = time.monotonic(), os.getloadavg()
    config.validate()
    config.out.mkdir(parents=True, exist_ok=True)
    log = _Log(config.out, config.progress)
    forms, skipped = available_deep_forms(config.deep_forms)
    if skipped:
        log.say(f"[cross-domain] left out (unknown to this firereg): {', '.join(skipped)}")
    log.say(f"[cross-domain] data into {config.out}")
    roots = _make_data(config, log)
    infos = _train(config, roots, log)
    specs = _specs(config, forms)
    manifest = read_fire(roots["score-data"])
    log.say(f"[cross-domain] benchmark: {len(specs)} methods x {len(manifest)} pairs into {config.out / 'benchmark'}")
    bench_start = time.monotonic()
    notes = [f"{m}-*: trained on {config.out / config.models()[m]} ({m} retinas)" for m in config.models()]
    pairs = run_benchmark(manifest, BenchmarkConfig(methods=list(specs), benchmark_size=config.benchmark_size,
                                                    workers=config.workers, notes=notes),
                          config.out / "benchmark", factory=make_any_method, progress=config.progress)
    counts = pairs.attrs["records"]
    log.done("benchmark", time.monotonic() - bench_start, int(counts["new"]) + int(counts["recomputed"]) > 0,
             methods=list(specs))
    table = _table(pairs, specs)
    with atomic_output(config.out / "cross_domain.png") as tmp:
        shutil.copyfile(config.out / "benchmark" / "success_rate.png", tmp)
    lines = _header(config, infos, skipped) + ["", *markdown_table(table), "", "![success rate](cross_domain.png)"]
    lines += _timing_lines(config, log, time.monotonic() - start, load)
    atomic_write_text(config.out / "cross_domain.md", "\n".join(lines) + "\n")
    log.say(f"[cross-domain] report: {config.out / 'cross_domain.md'}")
    return table


def main(argv: list[str] | None = None) -> None:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="output folder (re-running reuses finished steps)")
    parser.add_argument("--budget-steps", type=int, default=DEFAULT_BUDGET_STEPS,
                        help=f"training budget of each model, optimiser steps (default {DEFAULT_BUDGET_STEPS})")
    parser.add_argument("--size", type=int, default=512, help="benchmark size: longest side, px (default 512)")
    parser.add_argument("--with-photograph-model", action="store_true",
                        help="also train the recipe on photograph data (the same eye) for the comparison")
    parser.add_argument("--workers", type=int, default=1, help="benchmark worker processes (default 1)")
    args = parser.parse_args(argv)
    config = CrossDomainConfig(out=args.out, budget_steps=args.budget_steps, benchmark_size=args.size,
                               photograph_model=args.with_photograph_model, workers=args.workers,
                               command=shlex.join(["python", "benchmarks/cross_domain.py", *(argv or sys.argv[1:])]))
    try:
        table = run_cross_domain(config)
    except (ValueError, FileExistsError, FileNotFoundError) as err:
        sys.exit(f"error: {err}")
    print("\n".join(markdown_table(table)))


if __name__ == "__main__":
    main()
