"""``firereg demo``: the main job in one command — data, training, benchmark and report.

On the embedded default dataset (generated on first use) or a real FIRE folder, the demo

1. reads the data (FIRE's P37, whose ground truth is known to be wrong, is excluded);
2. splits it into train and validation pairs (seeded, stratified by category);
3. trains the cascade (affine network, then VoxelMorph) within a budget of optimiser steps
   (default :data:`DEFAULT_BUDGET_STEPS`, about ten minutes on 2 CPU cores; the same model on
   any machine) or of wall-clock minutes (:func:`demo_train_config` holds the recipe);
4. benchmarks it — without and with test-time refinement — against identity, the elastix
   baselines and SIFT + RANSAC on the validation pairs with the FIRE protocol;
5. writes a report folder with the tables, figures and a short reading of the results.

Everything lives in one output folder ``OUT`` (default ``demo-out``):

- ``split.csv``: the train/validation split (made once, then reused);
- ``run/``: the training run of :func:`firereg.pipelines.training.train` (``best.pt``, ``last.pt``,
  ``log.csv``, ``tb/`` ...) and ``demo_training.json`` once training has finished;
- ``benchmark/``: :func:`firereg.evaluation.benchmark.run_benchmark` outputs (``records/`` holds one
  file per finished (method, pair));
- ``report/``: ``report.md``, ``success_rate.png``, ``error_boxplot.png``,
  ``gallery/<method>.png``, ``deformation/<method>.png``, and copies of ``summary.csv``,
  ``summary.md``, ``pairs.csv``, ``points.csv``, ``split.csv`` and ``training_log.csv``.

Re-running into the same ``OUT`` reuses what is finished: the data, the split, a finished
training run (``run/demo_training.json``; an interrupted run is resumed from
``run/last.pt`` with the rest of the budget), every benchmarked (method, pair) whose record
still matches (the benchmark's fingerprints, :mod:`firereg.evaluation.fingerprints`: a
retrained checkpoint or another benchmark size is benchmarked anew), and the gallery
pictures whose pairs did not change.

All errors are mean control-point distances in full-resolution pixels (FIRE protocol).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from firereg.evaluation.baselines import METHODS
from firereg.pipelines.default_data import resolve_data
from firereg.pipelines.demo.report import DemoRun, category_counts, write_report
from firereg.pipelines.method_specs import parse_method_spec
from firereg.pipelines.training import TrainConfig
from firereg.transforms.fire_reader import read_fire
from firereg.transforms.io import atomic_write_text
from firereg.transforms.splits import read_split, select_split, split_or_reuse

__all__ = [
    "BASELINES",
    "DEFAULT_BUDGET_STEPS",
    "budget_text",
    "DemoConfig",
    "DemoPaths",
    "demo_train_config",
    "train_model",
    "deep_specs",
    "run_demo",
]

#: the classical methods the demo compares against
BASELINES = ("identity", "elastix-rigid", "elastix-affine", "elastix-bspline", "sift")
#: written into the run folder when training has finished (its presence = reuse the run)
TRAINING_FILE = "demo_training.json"
#: the demo's default training budget, optimiser steps: about ten minutes, validation included,
#: on a 2-core CPU machine with the demo's one training thread, on the default data. Measured
#: (issue #15) on a shared 2-core machine (load average ~4): 0.12 s per affine warm-up step,
#: 0.27 s per full cascade step (half the steps each), ~1 s per validation (every 128 steps):
#: 3000 steps ~ 10 min. Two threads on that busy machine took 1.6 s per step (threads waiting
#: for a core spin).
DEFAULT_BUDGET_STEPS = 3000


def demo_train_config(budget_steps: int | None = DEFAULT_BUDGET_STEPS,
                      budget_minutes: float | None = None) -> TrainConfig:
    """The demo's training recipe: the cascade, trained until its budget is spent.

    The one place the recipe lives; the rest of the demo only reads ``model``, ``size``
    (the network size), ``seed`` and ``val_fraction`` of what it returns.

    Args:
        budget_steps: optimiser steps in total (independent of the machine's speed); None: no step budget.
        budget_minutes: wall-clock training budget, minutes (validation included); None: no time budget.
    """
    # lr 1e-3 (not the seed setting 1e-4): with a budget of minutes the faster rate wins;
    # each pair 8 times per epoch so validation is not most of the time; the first half
    # trains only the (cheaper) affine stage, so VoxelMorph then learns on aligned pairs
    return TrainConfig(model="cascade", budget_steps=budget_steps, budget_minutes=budget_minutes, epochs=100_000,
                       lr=1e-3, repeats=8, affine_warmup=0.5)


@dataclass
class DemoConfig:
    """Settings of one demo.

    Attributes:
        budget_steps: training budget, optimiser steps in total (the same model on any machine, at
            the same ``num_threads``).
        budget_minutes: wall-clock training budget, minutes (over all resumed sessions). With
            neither budget given the demo trains :data:`DEFAULT_BUDGET_STEPS` steps; with both,
            training stops at whichever is spent first.
        benchmark_size: longest side, pixels, of the images every method registers in the
            benchmark (the CLI's ``--size``; the networks resize further to their network size).
        train: training settings; None = :func:`demo_train_config` (the demo's budgets
            always replace the ones given here).
        baselines: classical methods benchmarked with the model.
        workers: benchmark worker processes.
        num_threads: torch CPU threads for training (None: all cores). Default 1: the thread
            count changes how sums are split, and so the last bits of the trained weights; one
            thread gives the same model for the same step budget on any machine with the same
            PyTorch build and CPU type, and is the fastest on a machine busy with other work.
        gallery_side: longest side of each picture in the gallery figures, pixels.
    """

    budget_steps: int | None = None
    budget_minutes: float | None = None
    benchmark_size: int = 512
    train: TrainConfig | None = None
    baselines: tuple[str, ...] = BASELINES
    workers: int = 1
    num_threads: int | None = 1
    gallery_side: int = 384

    def validate(self) -> None:
        """Raise ``ValueError`` naming the bad setting and its value."""
        minutes = self.budget_minutes
        if minutes is not None and (isinstance(minutes, bool) or not isinstance(minutes, (int, float))
                                    or not (minutes > 0 and math.isfinite(minutes))):
            raise ValueError(f"DemoConfig.budget_minutes = {minutes!r}: need a number > 0 (minutes) or None")
        steps = self.budget_steps
        if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
            raise ValueError(f"DemoConfig.budget_steps = {steps!r}: need an integer >= 1 (optimiser steps) or None")
        if not isinstance(self.benchmark_size, int) or self.benchmark_size < 16:
            raise ValueError(f"DemoConfig.benchmark_size = {self.benchmark_size!r}: need an integer >= 16 (pixels)")
        if not isinstance(self.workers, int) or self.workers < 1:
            raise ValueError(f"DemoConfig.workers = {self.workers!r}: need an integer >= 1")
        if self.num_threads is not None and (not isinstance(self.num_threads, int) or self.num_threads < 1):
            raise ValueError(f"DemoConfig.num_threads = {self.num_threads!r}: need an integer >= 1 or None")
        if not isinstance(self.gallery_side, int) or self.gallery_side < 32:
            raise ValueError(f"DemoConfig.gallery_side = {self.gallery_side!r}: need an integer >= 32 (pixels)")
        bad = [b for b in self.baselines if b not in METHODS]
        if bad or len(set(self.baselines)) != len(self.baselines):
            raise ValueError(f"DemoConfig.baselines = {list(self.baselines)!r}: need distinct names of {sorted(METHODS)}")
        self.train_config().validate()

    def budgets(self) -> tuple[int | None, float | None]:
        """The budgets that apply: (steps, minutes); :data:`DEFAULT_BUDGET_STEPS` steps when none is given."""
        if self.budget_steps is None and self.budget_minutes is None:
            return DEFAULT_BUDGET_STEPS, None
        minutes = float(self.budget_minutes) if self.budget_minutes is not None else None
        return self.budget_steps, minutes

    def budget_text(self) -> str:
        """The budgets in words: ``3000 steps``, ``10 min``, ``3000 steps or 10 min (whichever first)``."""
        return budget_text(*self.budgets())

    def train_config(self) -> TrainConfig:
        """The training settings with this demo's budgets; validation scores at the demo's benchmark size,
        so the training log and the benchmark report the same numbers."""
        steps, minutes = self.budgets()
        base = self.train if self.train is not None else demo_train_config(steps, minutes)
        return dataclasses.replace(base, budget_steps=steps, budget_minutes=minutes,
                                   benchmark_size=self.benchmark_size)


def budget_text(steps: int | None, minutes: float | None) -> str:
    """A training budget in words (``3000 steps``, ``10 min``, both: ``... or ... (whichever first)``)."""
    parts = ([f"{steps} steps"] if steps is not None else []) + ([f"{minutes:g} min"] if minutes is not None else [])
    return " or ".join(parts) + (" (whichever first)" if len(parts) == 2 else "") if parts else "none"


@dataclass(frozen=True)
class DemoPaths:
    """Where the demo keeps everything (see the module docstring)."""

    out: Path

    @property
    def split(self) -> Path:
        return self.out / "split.csv"

    @property
    def run(self) -> Path:
        return self.out / "run"

    @property
    def training(self) -> Path:
        return self.out / "run" / TRAINING_FILE

    @property
    def benchmark(self) -> Path:
        return self.out / "benchmark"

    @property
    def report(self) -> Path:
        return self.out / "report"


# ----------------------------------------------------------------------------- stages


class _Stages:
    """Stage messages (``[demo 3/5] training: ...``) and their wall time, seconds."""

    def __init__(self, total: int, progress: bool) -> None:
        self.total, self.progress, self.count = total, progress, 0
        self.seconds: dict[str, float] = {}
        self.notes: dict[str, str] = {}

    def say(self, message: str) -> None:
        if self.progress:
            tqdm.write(message)

    @contextmanager
    def stage(self, name: str, message: str) -> Iterator[None]:
        self.count += 1
        self.say(f"[demo {self.count}/{self.total}] {name}: {message}")
        start = time.monotonic()
        yield
        self.seconds[name] = time.monotonic() - start


# ----------------------------------------------------------------------------- steps


def _elapsed_seconds(run: Path) -> float:
    """Wall time (s) an interrupted run has used so far, from its ``last.pt`` (0 if unknown)."""
    from firereg.pipelines.checkpoints import load_checkpoint

    try:
        return float(load_checkpoint(run / "last.pt").get("elapsed", 0.0))
    except (OSError, ValueError):
        return 0.0


def train_model(config: TrainConfig, data: Path, paths: DemoPaths, progress: bool, num_threads: int | None) -> dict:
    """Train the model into ``paths.run``, or reuse / resume what is there.

    - ``run/demo_training.json`` present: training is finished; it is reused.
    - ``run/last.pt`` present without it: the run was interrupted; it is resumed with its
      own settings up to ``config.budget_steps`` steps in total and for the rest of
      ``config.budget_minutes`` (at least one more step).
    - otherwise a new run starts.

    Returns:
        The contents of ``demo_training.json``: ``result`` (the dict of
        :func:`firereg.pipelines.training.train` of the last session), ``config`` (the run's
        settings, with the demo's budgets), ``data``, ``budget_steps`` and ``budget_minutes``
        (the budgets that applied, None for none), ``total_seconds`` (wall time over all
        sessions, validation included), ``resumed`` (whether the last session continued an
        interrupted run); plus ``reused`` (not stored).

    Raises:
        ValueError: if the finished run in ``paths.run`` was trained on other data.
    """
    from firereg.pipelines.training import run_config, train

    if paths.training.is_file():
        info = json.loads(paths.training.read_text())
        if Path(info.get("data", "")).resolve() != data.resolve():
            raise ValueError(
                f"{paths.run} was trained on {info.get('data')}, not on {data}; use another --out or delete {paths.out}"
            )
        return {**info, "reused": True}
    budget = config.budget_minutes
    resume = (paths.run / "last.pt").is_file()
    before = 0.0
    session = config
    if resume:
        before = _elapsed_seconds(paths.run)
        remaining = budget - before / 60.0 if budget is not None else None
        # the run's own settings (a resume must match them), up to the same step budget (it
        # counts all sessions) and for the rest of the time budget (at least a few seconds:
        # the session saves, validates and stops cleanly)
        session = dataclasses.replace(run_config(paths.run), budget_steps=config.budget_steps,
                                      budget_minutes=max(remaining, 0.05) if remaining is not None else None)
    result = train(session, data, paths.run, resume=resume, progress=progress, num_threads=num_threads)
    info = {
        "result": result,
        "config": dataclasses.asdict(dataclasses.replace(session, budget_minutes=budget)),
        "data": str(data),
        "budget_steps": config.budget_steps,
        "budget_minutes": budget,
        "total_seconds": before + float(result["seconds"]),
        "resumed": resume,
    }
    atomic_write_text(paths.training, json.dumps(info, indent=1))
    return {**info, "reused": False}


def deep_specs(model: str, run: Path) -> dict[str, str]:
    """Label → benchmark spec of the trained model, without and with test-time refinement."""
    specs = [f"{model}:{run}", f"{model}+tto:{run}"]
    return {parse_method_spec(s).label: s for s in specs}


def _check_same_validation(split: pd.DataFrame, paths: DemoPaths) -> None:
    """The model must not have trained on the pairs it is benchmarked on."""
    run_split_path = paths.run / "split.csv"
    if not run_split_path.is_file():
        raise RuntimeError(f"the training run has no split file {run_split_path}")
    run_split = read_split(run_split_path)
    ours = set(split.loc[split["split"] == "validation", "name"])
    theirs = set(run_split.loc[run_split["split"] == "validation", "name"])
    if ours != theirs:
        raise RuntimeError(
            f"the training run validated on {sorted(theirs)} ({run_split_path}) but the demo benchmarks "
            f"{sorted(ours)} ({paths.split}); delete {paths.out} and run the demo again"
        )


def run_demo(
    config: DemoConfig | None = None,
    data: str | Path | None = None,
    out: str | Path = "demo-out",
    progress: bool = True,
) -> Path:
    """Data, split, training, benchmark and report in ``out`` (see the module docstring).

    Args:
        config: demo settings (default :class:`DemoConfig`).
        data: FIRE folder (real or generated); None = the embedded default dataset
            (:func:`firereg.pipelines.default_data.resolve_data`, generated if absent).
        out: output folder; re-running into it reuses what is finished.
        progress: print stage messages and show progress bars.

    Returns:
        The path of ``OUT/report/report.md``.

    Raises:
        ValueError: for bad settings or an ``out`` holding a demo of other data.
        FileNotFoundError: naming a missing ``data`` folder.
    """
    from firereg.evaluation.benchmark import BenchmarkConfig, run_benchmark
    from firereg.pipelines.method_specs import make_any_method

    config = config or DemoConfig()
    config.validate()
    train_cfg = config.train_config()
    paths = DemoPaths(Path(out))
    stages = _Stages(5, progress)

    with stages.stage("data", "the embedded generated dataset (made on first use)" if data is None else str(data)):
        root = resolve_data(Path(data) if data is not None else None, progress=progress)
        manifest = read_fire(root)  # P37 excluded
        stages.say(f"  {root}: {len(manifest)} pairs ({category_counts(manifest)})")
    with stages.stage("split", str(paths.split)):
        # made once, then reused; one made for other data is refused, naming the file
        split = split_or_reuse(manifest, paths.split, val_fraction=train_cfg.val_fraction, seed=train_cfg.seed)
        val_manifest = select_split(manifest, split, "validation")
        stages.say(f"  validation pairs: {len(val_manifest)} ({category_counts(val_manifest)})")
    if len(val_manifest) == 0:
        raise ValueError(f"the split {paths.split} leaves no validation pairs")
    model = train_cfg.model
    specs = {**{b: b for b in config.baselines}, **deep_specs(model, paths.run)}
    with stages.stage("training", f"{model}, budget {config.budget_text()}, into {paths.run}"):
        training = train_model(train_cfg, root, paths, progress, config.num_threads)
        if training["reused"]:
            stages.notes["training"] = "finished run reused"
            stages.say(f"  reusing the finished run in {paths.run} ({paths.training.name})")
            trained = budget_text(training.get("budget_steps"), training.get("budget_minutes"))
            if trained != config.budget_text():
                stages.say(f"  note: it was trained with a budget of {trained}; "
                           f"delete {paths.run} to train with {config.budget_text()}")
        _check_same_validation(split, paths)
    names = list(val_manifest["name"])
    # records whose fingerprint still matches (same data, pair, size, method, checkpoint) are reused
    with stages.stage("benchmark", f"{len(specs)} methods x {len(names)} validation pairs at {config.benchmark_size} px "
                                   f"into {paths.benchmark}"):
        bench = BenchmarkConfig(methods=list(specs.values()), benchmark_size=config.benchmark_size,
                                workers=config.workers,
                                notes=[f"subset: validation pairs of {paths.split}",
                                       f"{model}: trained by firereg demo in {paths.run}"])
        pairs = run_benchmark(val_manifest, bench, paths.benchmark, factory=make_any_method, progress=progress)
        counts = pairs.attrs["records"]
        reused, fresh = int(counts["reused"]), int(counts["new"]) + int(counts["recomputed"])
    with stages.stage("report", str(paths.report)):
        run = DemoRun(config, paths, root, manifest, split, val_manifest, training, specs, model,
                      stage_seconds=stages.seconds, stage_notes=stages.notes, fresh=fresh, reused=reused)
        report = write_report(run, progress)
    return report
