"""``firereg demo``: the main job in one command — data, training, benchmark and report.

On the embedded default dataset (generated on first use) or a real FIRE folder, the demo

1. reads the data (FIRE's P37, whose ground truth is known to be wrong, is excluded);
2. splits it into train and validation pairs (seeded, stratified by category);
3. trains the cascade (affine network, then VoxelMorph) within a wall-clock budget
   (:func:`demo_train_config` holds the recipe);
4. benchmarks it — without and with test-time refinement — against identity, the elastix
   baselines and SIFT + RANSAC on the validation pairs with the FIRE protocol;
5. writes a report folder with the tables, figures and a short reading of the results.

Everything lives in one output folder ``OUT`` (default ``demo-out``):

- ``split.csv``: the train/validation split (made once, then reused);
- ``run/``: the training run of :func:`firereg.pipelines.training.engine.train` (``best.pt``, ``last.pt``,
  ``log.csv``, ``tb/`` ...) and ``demo_training.json`` once training has finished;
- ``benchmark/``: :func:`firereg.evaluation.benchmark.run_benchmark` outputs (``records/`` holds one
  file per finished (method, pair));
- ``report/``: ``report.md``, ``success_rate.png``, ``error_boxplot.png``,
  ``gallery/<method>.png``, ``deformation/<method>.png``, and copies of ``summary.csv``,
  ``summary.md``, ``pairs.csv``, ``points.csv``, ``split.csv`` and ``training_log.csv``.

Re-running into the same ``OUT`` reuses what is finished: the data, the split, a finished
training run (``run/demo_training.json``; an interrupted run is resumed from
``run/last.pt`` with the rest of the budget), every benchmarked (method, pair), and the
gallery pictures whose pairs did not change. Training in a call drops the deep models'
benchmark records, so the tables always describe the checkpoint in ``run/``.

All errors are mean control-point distances in full-resolution pixels (FIRE protocol).
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from firereg.evaluation.baselines import METHODS
from firereg.pipelines.default_data import resolve_data
from firereg.pipelines.inference.refine import (
    FUNDUS_REFINEMENT,
    FUNDUS_REFINEMENT_LAMBDA,
)
from firereg.pipelines.method_specs import DEFAULT_TTO_STEPS, parse_method_spec
from firereg.pipelines.training.engine import TrainConfig
from firereg.transforms.fire_generator import read_generator_metadata
from firereg.transforms.fire_reader import CATEGORIES, KNOWN_BAD_PAIRS, read_fire
from firereg.transforms.io import atomic_write_text
from firereg.transforms.splits import make_split, read_split, select_split, write_split
from tqdm.auto import tqdm

__all__ = [
    "BASELINES",
    "REFERENCE",
    "DemoConfig",
    "DemoPaths",
    "demo_train_config",
    "prepare_split",
    "train_model",
    "deep_specs",
    "markdown_table",
    "format_value",
    "reading",
    "run_demo",
]

#: the classical methods the demo compares against
BASELINES = ("identity", "elastix-rigid", "elastix-affine", "elastix-bspline", "sift")
#: the baseline the reading of the results measures the deep model against
REFERENCE = "elastix-bspline"
#: written into the run folder when training has finished (its presence = reuse the run)
TRAINING_FILE = "demo_training.json"


def demo_train_config(budget_minutes: float) -> TrainConfig:
    """The demo's training recipe: the cascade, trained until ``budget_minutes`` run out.

    The one place the recipe lives; the rest of the demo only reads ``model``, ``size``
    and ``seed`` of what it returns.

    Args:
        budget_minutes: wall-clock training budget, minutes (validation included).
    """
    # lr 1e-3 (not the seed setting 1e-4): with a budget of minutes the faster rate wins;
    # each pair 8 times per epoch so validation is not most of the time; the first half
    # trains only the (cheaper) affine stage, so VoxelMorph then learns on aligned pairs
    return TrainConfig(model="cascade", budget_minutes=budget_minutes, epochs=100_000, lr=1e-3, repeats=8,
                       affine_warmup=0.5)


@dataclass
class DemoConfig:
    """Settings of one demo.

    Attributes:
        budget_minutes: wall-clock training budget, minutes (over all resumed sessions).
        size: working size of the benchmark, pixels (longest side): every method
            registers images resized to it (the networks resize further to their own
            training size).
        train: training settings; None = :func:`demo_train_config` (``budget_minutes``
            always replaces the budget given here).
        baselines: classical methods benchmarked with the model.
        workers: benchmark worker processes.
        num_threads: torch CPU threads for training (None: all cores).
        gallery_side: longest side of each picture in the gallery figures, pixels.
    """

    budget_minutes: float = 10.0
    size: int = 512
    train: TrainConfig | None = None
    baselines: tuple[str, ...] = BASELINES
    workers: int = 1
    num_threads: int | None = None
    gallery_side: int = 384

    def validate(self) -> None:
        """Raise ``ValueError`` naming the bad setting and its value."""
        if isinstance(self.budget_minutes, bool) or not isinstance(self.budget_minutes, (int, float)) or not (
            self.budget_minutes > 0 and math.isfinite(self.budget_minutes)
        ):
            raise ValueError(f"DemoConfig.budget_minutes = {self.budget_minutes!r}: need a number > 0 (minutes)")
        if not isinstance(self.size, int) or self.size < 16:
            raise ValueError(f"DemoConfig.size = {self.size!r}: need an integer >= 16 (pixels)")
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

    def train_config(self) -> TrainConfig:
        """The training settings with this demo's budget."""
        base = self.train if self.train is not None else demo_train_config(self.budget_minutes)
        return dataclasses.replace(base, budget_minutes=float(self.budget_minutes))


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


def prepare_split(manifest: pd.DataFrame, path: Path, seed: int, val_fraction: float) -> pd.DataFrame:
    """The demo's split: read from ``path`` if it is there, else made and written there.

    Raises:
        ValueError: naming ``path`` if it lists other pairs than the data.
    """
    if path.is_file():
        split = read_split(path)
        if set(split["name"]) != set(manifest["name"]):
            extra = sorted(set(split["name"]) - set(manifest["name"]))
            missing = sorted(set(manifest["name"]) - set(split["name"]))
            raise ValueError(
                f"{path} was made for other data (pairs not in the data: {extra}; pairs it lacks: {missing}); "
                f"use another --out or delete {path.parent}"
            )
        return split
    split = make_split(manifest, val_fraction=val_fraction, seed=seed)
    write_split(split, path)
    return split


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
      own settings for the rest of ``config.budget_minutes`` (at least one more step).
    - otherwise a new run starts.

    Returns:
        The contents of ``demo_training.json``: ``result`` (the dict of
        :func:`firereg.pipelines.training.engine.train` of the last session), ``config`` (the run's
        settings, with the demo's budget), ``data``, ``budget_minutes``, ``total_seconds``
        (wall time over all sessions, validation included), ``resumed`` (whether the last
        session continued an interrupted run); plus ``reused`` (not stored).

    Raises:
        ValueError: if the finished run in ``paths.run`` was trained on other data.
    """
    from firereg.pipelines.training.engine import run_config, train

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
        # the run's own settings (a resume must match them), for the rest of the budget
        # (at least a few seconds: the session saves, validates and stops cleanly)
        session = dataclasses.replace(run_config(paths.run),
                                      budget_minutes=max(remaining, 0.05) if remaining is not None else None)
    result = train(session, data, paths.run, resume=resume, progress=progress, num_threads=num_threads)
    info = {
        "result": result,
        "config": dataclasses.asdict(dataclasses.replace(session, budget_minutes=budget)),
        "data": str(data),
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


def _drop_records(benchmark: Path, labels: Sequence[str]) -> None:
    """Forget the benchmark records of ``labels`` (their model was just (re)trained)."""
    from firereg.evaluation.benchmark import (
        record_name,  # the benchmark's own folder naming
    )

    for label in labels:
        shutil.rmtree(benchmark / "records" / record_name(label), ignore_errors=True)


def _check_benchmark_settings(benchmark: Path, size: int) -> None:
    """Records are reused by (method, pair) only: refuse to mix working sizes in one folder.

    Raises:
        ValueError: naming the folder and both sizes.
    """
    path = benchmark / "demo_benchmark.json"
    if path.is_file():
        stored = json.loads(path.read_text()).get("size")
        if stored != size:
            raise ValueError(
                f"{benchmark} holds a benchmark at working size {stored} px, not {size} px; "
                f"run again with --size {stored} or choose another --out"
            )
        return
    atomic_write_text(path, json.dumps({"size": size}))


def _count_records(benchmark: Path, labels: Sequence[str], names: Sequence[str]) -> int:
    from firereg.evaluation.benchmark import record_name

    return sum((benchmark / "records" / record_name(label) / f"{name}.json").is_file()
               for label in labels for name in names)


# ----------------------------------------------------------------------------- report text


def format_value(value: object) -> str:
    """A table cell: floats with 3 decimals, ``–`` for NaN, ``inf``; anything else as text."""
    if isinstance(value, (bool, np.bool_)):
        return str(value)
    if isinstance(value, (float, np.floating)):
        if np.isnan(value):
            return "–"
        if np.isinf(value):
            return "inf" if value > 0 else "-inf"
        return f"{value:.3f}"
    return str(value)


def markdown_table(frame: pd.DataFrame) -> list[str]:
    """A DataFrame as Markdown table lines (cells by :func:`format_value`)."""
    columns = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(format_value(v) for v in row) + " |")
    return lines


def _counts(frame: pd.DataFrame) -> str:
    counts = frame["category"].value_counts()
    return ", ".join(f"{c} {int(counts.get(c, 0))}" for c in CATEGORIES)


def _compare(a: float, b: float) -> str:
    if not (math.isfinite(a) and math.isfinite(b)):
        return "cannot be compared with"
    if round(a, 3) == round(b, 3):
        return "ties with"
    return "beats" if a > b else "does not beat"


def reading(summary: pd.DataFrame, model: str, tto_label: str, reference: str = REFERENCE) -> list[str]:
    """A short reading of the results, every number taken from ``summary`` (``summary.csv``).

    States the best method by mAUC, whether ``model`` (and ``tto_label``) beats
    ``reference`` overall and on P pairs, the effect of test-time refinement and failures.
    """
    table = summary.set_index("method")
    lines = []
    mauc = table["mAUC"].astype(float)
    if mauc.notna().any():
        best = mauc.max()
        winners = [m for m, v in mauc.items() if round(v, 3) == round(best, 3)]
        lines.append(f"Best method by mAUC: **{' and '.join(winners)}** (mAUC {format_value(best)}).")
    for label in (model, tto_label):
        if label not in table.index or reference not in table.index:
            continue
        a, b = table.loc[label], table.loc[reference]
        text = (f"**{label}** {_compare(a['mAUC'], b['mAUC'])} {reference} overall "
                f"(mAUC {format_value(a['mAUC'])} vs {format_value(b['mAUC'])})")
        if math.isfinite(a["auc_P"]) and math.isfinite(b["auc_P"]):
            text += (f" and {_compare(a['auc_P'], b['auc_P'])} it on the P pairs "
                     f"(AUC {format_value(a['auc_P'])} vs {format_value(b['auc_P'])}).")
        else:
            text += "; there are no P pairs in the validation split."
        lines.append(text)
    if model in table.index and tto_label in table.index:
        a, b = table.loc[model], table.loc[tto_label]
        delta = round(b["mAUC"], 3) - round(a["mAUC"], 3)
        if delta == 0 or not math.isfinite(delta):
            effect = f"leaves the {model}'s mAUC at {format_value(a['mAUC'])}"
        else:
            effect = (f"{'raises' if delta > 0 else 'lowers'} the {model}'s mAUC from {format_value(a['mAUC'])} "
                      f"to {format_value(b['mAUC'])}")
        lines.append(
            f"Test-time refinement ({DEFAULT_TTO_STEPS} steps per pyramid level) {effect} and moves its median error from "
            f"{format_value(a['median_error'])} px to "
            f"{format_value(b['median_error'])} px, at a median of {format_value(b['median_seconds'])} s per pair "
            f"instead of {format_value(a['median_seconds'])} s."
        )
    failed = table["failed"].astype(int)
    if failed.any():
        lines.append("Failed pairs (no transform, counted as infinite error): "
                     + ", ".join(f"{m} {int(n)}" for m, n in failed.items() if n) + ".")
    else:
        lines.append("No method failed on any pair.")
    return lines


def _noise_line(val_manifest: pd.DataFrame) -> str:
    """How much one pair weighs in each category's AUC (a pair moves it by up to 1/n)."""
    counts = val_manifest["category"].value_counts()
    weights = ", ".join(f"{c} 1/{int(counts[c])} = {1 / int(counts[c]):.3f}" for c in CATEGORIES if counts.get(c, 0))
    return (f"One validation pair moves its category's AUC by up to 1/n ({weights}); differences smaller than "
            "that can hinge on a single pair.")


def _data_lines(root: Path, manifest: pd.DataFrame, split: pd.DataFrame) -> list[str]:
    meta = read_generator_metadata(root)
    if meta is not None:
        cfg = meta.get("config", {})
        pairs = cfg.get("pairs", {})
        lines = [
            f"- Data: `{root}`, **generated** by `firereg make-data` (a FIRE-format dataset, not the real FIRE) "
            f"from the fundus photograph **{meta.get('source', '?')}**: {cfg.get('size', '?')} x {cfg.get('size', '?')} px, "
            f"seed {cfg.get('seed', '?')}, {cfg.get('n_points', '?')} control points per pair, "
            f"pairs asked for: " + ", ".join(f"{k} {v}" for k, v in pairs.items()) + "."
        ]
    else:
        lines = [f"- Data: `{root}`, the **real FIRE** dataset (no `generator.json`)."]
    excluded = manifest.attrs.get("excluded") or []
    bad = ", ".join(KNOWN_BAD_PAIRS)
    if excluded:
        p37 = f"{', '.join(excluded)} excluded: FIRE's ground truth for it is known to be wrong (community practice)."
    else:
        p37 = f"{bad} would be excluded (FIRE's ground truth for it is known to be wrong); it is not in this data."
    train, val = split[split["split"] == "train"], split[split["split"] == "validation"]
    lines += [
        f"- Pairs: {len(manifest)} ({_counts(manifest)}). {p37}",
        f"- Split (`split.csv`, seeded, stratified by category): train {len(train)} ({_counts(train)}), "
        f"validation {len(val)} ({_counts(val)}). The model trains on the train pairs; "
        f"**every number below is on the validation pairs**.",
    ]
    return lines


def _settings_lines(config: DemoConfig, training: dict, specs: dict[str, str], model: str) -> list[str]:
    train_cfg = training["config"]
    shown = {k: v for k, v in train_cfg.items() if v is not None}
    lines = [
        f"- Model: **{model}**, trained by `firereg.pipelines.training.engine.train` into `run/` "
        f"(best validation checkpoint `best.pt` is benchmarked).",
        f"- Working sizes: the network trains and registers at {train_cfg.get('size')} x {train_cfg.get('size')} px; "
        f"the benchmark gives every method images resized to {config.size} px (longest side); "
        f"errors are measured in full-resolution pixels.",
        f"- Training budget: {training['budget_minutes']:g} min of wall time (validation included)"
        + (", finished after resuming an interrupted run." if training.get("resumed") else "."),
        f"- Test-time refinement (`{model}+tto`): the predicted field plus a smooth correction on control points "
        f"{FUNDUS_REFINEMENT['grid']} px apart, optimised on each pair by Adam ({DEFAULT_TTO_STEPS} steps per level, "
        f"lr {FUNDUS_REFINEMENT['lr']}) on a {FUNDUS_REFINEMENT['levels']}-level image pyramid up to "
        f"{FUNDUS_REFINEMENT['size']} px, with local NCC + {FUNDUS_REFINEMENT_LAMBDA:g} x diffusion of the correction "
        f"inside the field of view "
        f"(`firereg.pipelines.inference.refine.fundus_refinement`).",
        "- Methods: " + ", ".join(f"`{s}`" if s == label else f"{label} = `{s}`" for label, s in specs.items()) + ".",
        "- Training settings: " + ", ".join(f"{k}={v}" for k, v in shown.items()) + ".",
    ]
    return lines


def _timing_lines(training: dict, pairs: pd.DataFrame, stages: _Stages, fresh: int, reused: int) -> list[str]:
    result = training["result"]
    steps = int(result.get("steps", 0))
    total = float(training["total_seconds"])
    lines = [
        f"- Training: {format_value(total)} s wall time over all sessions, {steps} steps in "
        f"{int(result.get('epochs', 0))} full epochs (stopped: {result.get('stopped')}), "
        + (f"{format_value(total / steps)} s per step including validation; " if steps else "")
        + f"best validation mAUC during training {format_value(float(result.get('best_mauc', float('nan'))))}.",
        "- This invocation: "
        + ", ".join(f"{name} {format_value(float(s))} s" + (f" ({stages.notes[name]})" if name in stages.notes else "")
                    for name, s in stages.seconds.items())
        + f"; {fresh} (method, pair) registrations run now, {reused} reused from earlier runs.",
        "",
        "Seconds per pair of each method (registration at the working size, from `pairs.csv`):",
        "",
    ]
    seconds = pairs.assign(seconds=pairs["seconds"].astype(float)).groupby("method", sort=False)["seconds"]
    table = pd.DataFrame({
        "method": list(seconds.groups),
        "pairs": seconds.size().to_numpy(),
        "median_seconds": seconds.median().to_numpy(),
        "mean_seconds": seconds.mean().to_numpy(),
        "total_seconds": seconds.sum().to_numpy(),
    })
    order = list(pd.unique(pairs["method"]))
    table = table.set_index("method").loc[order].reset_index()
    return lines + markdown_table(table)


def _copy_text(src: Path, dst: Path) -> Path:
    if not src.is_file():
        raise FileNotFoundError(f"expected output not found: {src}")
    return atomic_write_text(dst, src.read_text())


# ----------------------------------------------------------------------------- report


def _write_report(
    config: DemoConfig,
    paths: DemoPaths,
    root: Path,
    manifest: pd.DataFrame,
    split: pd.DataFrame,
    val_manifest: pd.DataFrame,
    training: dict,
    specs: dict[str, str],
    model: str,
    stages: _Stages,
    fresh: int,
    reused: int,
    progress: bool,
) -> Path:
    from firereg.evaluation.report.figures import plot_success_rate
    from firereg.evaluation.report.gallery import (
        file_label,
        make_gallery,
        plot_error_boxplot,
    )
    from firereg.evaluation.results import ResizedMethod
    from firereg.pipelines.method_specs import make_any_method

    report = paths.report
    for name in ("summary.csv", "summary.md", "pairs.csv", "points.csv"):
        _copy_text(paths.benchmark / name, report / name)
    _copy_text(paths.split, report / "split.csv")
    if (paths.run / "log.csv").is_file():
        _copy_text(paths.run / "log.csv", report / "training_log.csv")
    summary = pd.read_csv(report / "summary.csv")  # the numbers of report.md are the file's
    pairs = pd.read_csv(report / "pairs.csv", dtype={"pair": str, "method": str})
    plot_success_rate(pairs, report / "success_rate.png")
    plot_error_boxplot(pairs, report / "error_boxplot.png")
    tto_label = f"{model}+tto"
    deep = [label for label in specs if parse_method_spec(specs[label]).deep]
    methods = {label: ResizedMethod(make_any_method(spec), config.size) for label, spec in specs.items()}
    figures = make_gallery(pairs, val_manifest, methods, report, deformation_methods=deep,
                           max_side=config.gallery_side, progress=progress)

    lines = [
        "# firereg demo report",
        "",
        f"Made by `firereg demo` on {time.strftime('%Y-%m-%d %H:%M')}. The FIRE protocol: the error of a pair is the "
        "mean distance between its control points as mapped by the method and their true positions, in "
        "full-resolution pixels; AUC = mean success rate over thresholds 1..25 px; mAUC = mean of the S, P, A AUCs.",
        "",
        "## Data",
        "",
        *_data_lines(root, manifest, split),
        "",
        "## Settings",
        "",
        *_settings_lines(config, training, specs, model),
        "",
        f"## Results on the validation pairs ({len(val_manifest)}: {_counts(val_manifest)})",
        "",
        "From `summary.csv` (failed: no transform, error counted as infinite; inaccurate: max error > 50 px or "
        "median > 20 px; median_error in px; median_seconds per pair; folding_pct: share of the fixed field of "
        "view where the fixed → moving map folds):",
        "",
        *markdown_table(summary),
        "",
        "### Reading",
        "",
        *[f"- {line}" for line in reading(summary, model, tto_label)],
        f"- {_noise_line(val_manifest)}",
        "",
        "## Timings",
        "",
        *_timing_lines(training, pairs, stages, fresh, reused),
        "",
        "## Figures",
        "",
        "Success rate against threshold, per category (`success_rate.png`):",
        "",
        "![success rate](success_rate.png)",
        "",
        "Per-pair mean error per category and method (`error_boxplot.png`; log scale, failed pairs counted above):",
        "",
        "![error box plots](error_boxplot.png)",
        "",
        "Best, median and worst pair of each method, registered again exactly as in the benchmark "
        "(checkerboard of fixed and warped moving image; overlay: magenta = fixed, green = warped moving, "
        "aligned vessels look grey):",
        "",
    ]
    for path in figures["gallery"]:
        lines += [f"![{path.stem}](gallery/{path.name})", ""]
    lines += [
        "Deformation grids of the deep methods: a regular grid of the moving image pulled onto the fixed "
        "image by the fixed → moving map, drawn over the fixed image:",
        "",
    ]
    for path in figures["deformation"]:
        lines += [f"![{path.stem} deformation](deformation/{path.name})", ""]
    lines += [
        "## Files",
        "",
        "- here: `summary.csv`, `summary.md`, `pairs.csv` (one row per method and pair), `points.csv` (every "
        "control point as mapped), `split.csv`, `training_log.csv` (validation per epoch), the figures, "
        "`gallery/index.csv` (the pairs shown);",
        f"- `../run/`: the checkpoints (`best.pt`, `last.pt`), logs and TensorBoard scalars; register a pair with "
        f"`firereg register FIXED MOVING --model {paths.run} --out DIR`;",
        f"- `../benchmark/`: the benchmark's own outputs (`records/`, `overlays/` of the first pair per category, "
        f"per method: e.g. `overlays/{file_label(model)}/`).",
    ]
    return atomic_write_text(report / "report.md", "\n".join(lines) + "\n")


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
        stages.say(f"  {root}: {len(manifest)} pairs ({_counts(manifest)})")
    with stages.stage("split", str(paths.split)):
        split = prepare_split(manifest, paths.split, seed=train_cfg.seed, val_fraction=train_cfg.val_fraction)
        val_manifest = select_split(manifest, split, "validation")
        stages.say(f"  validation pairs: {len(val_manifest)} ({_counts(val_manifest)})")
    if len(val_manifest) == 0:
        raise ValueError(f"the split {paths.split} leaves no validation pairs")
    model = train_cfg.model
    specs = {**{b: b for b in config.baselines}, **deep_specs(model, paths.run)}
    deep = [label for label, spec in specs.items() if parse_method_spec(spec).deep]
    _check_benchmark_settings(paths.benchmark, config.size)  # before hours of training, not after
    with stages.stage("training", f"{model}, budget {config.budget_minutes:g} min, into {paths.run}"):
        training = train_model(train_cfg, root, paths, progress, config.num_threads)
        if training["reused"]:
            stages.notes["training"] = "finished run reused"
            stages.say(f"  reusing the finished run in {paths.run} ({paths.training.name})")
            if training.get("budget_minutes") != config.budget_minutes:
                stages.say(f"  note: it was trained with a {training.get('budget_minutes'):g}-minute budget; "
                           f"delete {paths.run} to train with {config.budget_minutes:g} minutes")
        else:
            _drop_records(paths.benchmark, deep)  # the benchmark must describe this checkpoint
        _check_same_validation(split, paths)
    names = list(val_manifest["name"])
    reused = _count_records(paths.benchmark, list(specs), names)
    fresh = len(specs) * len(names) - reused
    with stages.stage("benchmark", f"{len(specs)} methods x {len(names)} validation pairs at {config.size} px "
                                   f"({reused} already done) into {paths.benchmark}"):
        bench = BenchmarkConfig(methods=list(specs.values()), size=config.size, workers=config.workers,
                                notes=[f"subset: validation pairs of {paths.split}",
                                       f"{model}: trained by firereg demo in {paths.run}"])
        run_benchmark(val_manifest, bench, paths.benchmark, factory=make_any_method, progress=progress)
    with stages.stage("report", str(paths.report)):
        report = _write_report(config, paths, root, manifest, split, val_manifest, training, specs, model,
                               stages, fresh, reused, progress)
    return report
