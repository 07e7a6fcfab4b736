"""``firereg train`` and ``firereg make-patches``: train a registration network, cut patches for it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from firereg.pipelines.cli.errors import user_errors
from firereg.pipelines.cli.options import (
    DataOption,
    IncludeP37Option,
    check_output_folder,
)

if TYPE_CHECKING:
    from firereg.pipelines.training import TrainConfig

__all__ = ["make_patches_command", "train_command"]

# the options of generated training pairs (firereg.transforms.generated_pairs)
TrainPairsOption = Annotated[
    str | None,
    typer.Option("--train-pairs", help="folder (the --data training split) or generated (a fresh generated pair "
                                       "every step; validation stays on the --data validation split) (default: folder)."),
]
GeneratedRetinasOption = Annotated[
    str | None,
    typer.Option("--generated-retinas", help="Generated pairs: procedural, photograph (skimage's retina) or mixed "
                                             "(default: procedural)."),
]
PhotographShareOption = Annotated[
    float | None,
    typer.Option("--photograph-share", help="Generated pairs, mixed: share of pairs from the photograph, in (0, 1)."),
]
PairsPerEpochOption = Annotated[
    int | None, typer.Option("--pairs-per-epoch", help="Generated pairs per epoch (default: 256).")
]
GeneratedPointsOption = Annotated[
    int | None, typer.Option("--generated-points", help="Generated pairs: control points per pair (default: 10).")
]
PrealignOption = Annotated[
    float | None,
    typer.Option("--generated-prealign", help="Generated pairs: pre-align each moving image by a quadratic fitted to "
                                              "matches with this noise (px at 1024 px), as the hybrid's keypoint stage "
                                              "leaves it (default: raw pairs)."),
]
PointWeightOption = Annotated[
    float | None, typer.Option("--point-weight", help="VoxelMorph: weight of the control-point distance term (default: 0).")
]
FeaturesOption = Annotated[
    str | None, typer.Option("--features", help="VoxelMorph: six BasicUNet features, e.g. 8,16,32,32,32,8 (default: 16,32,32,32,32,16).")
]


@user_errors
def make_patches_command(
    out: Annotated[Path, typer.Option("--out", help="Folder for the patch files (.npz).")],
    data: DataOption = None,
    per_pair: Annotated[int, typer.Option("--per-pair", help="Patch pairs per image pair.")] = 16,
    patch_size: Annotated[int, typer.Option("--patch-size", help="Patch side, px of the working size.")] = 128,
    size: Annotated[
        int,
        typer.Option("--size", help="Working size the pairs are resized to before patches are cut (square, px; "
                                    "not the benchmark size)."),
    ] = 512,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
    split_file: Annotated[Path | None, typer.Option("--split", help="Split CSV (firereg split): use its train pairs.")] = None,
    include_p37: IncludeP37Option = False,
) -> None:
    """Cut random patch pairs with a known residual affine from the training pairs (affine patch mode)."""
    from firereg.pipelines.default_data import resolve_data
    from firereg.pipelines.training.patches import make_patches
    from firereg.transforms.fire_reader import read_fire
    from firereg.transforms.splits import read_split, select_split

    check_output_folder(out, "--out")
    manifest = read_fire(resolve_data(data), exclude_known_bad=not include_p37)
    if split_file is not None:
        manifest = select_split(manifest, read_split(split_file), "train")
    files = make_patches(manifest, out, n_per_pair=per_pair, patch_size=patch_size, size=size, seed=seed)
    which = f"train pairs of {split_file}" if split_file is not None else "all pairs"
    typer.echo(f"wrote {len(files)} patch pairs ({patch_size} px at working size {size}) from {len(manifest)} "
               f"{which} to {out}")


def _resumed(out: Path, data: Path | None, budget_minutes: float | None) -> tuple[TrainConfig, Path | None]:
    """The settings of the run in ``out`` and its data folder, for ``train --resume``.

    Args:
        out: the run folder (holds ``last.pt``).
        data: ``--data`` as given; ``None`` takes the folder the run was trained on, if it still exists.
        budget_minutes: ``--budget-minutes`` as given; ``None`` drops the stored budget (a budget is per invocation).

    Returns:
        The run's :class:`firereg.pipelines.training.TrainConfig` and the data folder.
    """
    from firereg.pipelines.checkpoints import load_checkpoint
    from firereg.pipelines.training import run_config

    base = run_config(out)  # the run's own settings; options given on the command line override them
    if data is None:
        stored = load_checkpoint(out / "last.pt").get("data")
        if stored and Path(stored).is_dir():
            data = Path(stored)
    if budget_minutes is None:
        base.budget_minutes = None
    return base, data


def _print_result(model: str, result: dict, out: Path) -> None:
    """The two lines ``firereg train`` ends with: steps, stop reason, best validation; files."""
    best = result["best_mauc"]
    typer.echo(
        f"{model}: {result['epochs']} epochs, {result['steps']} steps in {result['seconds']:.0f} s "
        f"({result['stopped']}); best validation mAUC "
        + (f"{best:.3f} (mean error {result['best_mean_error']:.2f} px)" if best > float("-inf") else "n/a")
    )
    typer.echo(f"checkpoints: {result['best'] or '(no best.pt yet)'}, {result['last']}; logs: {out / 'log.csv'}, {out / 'tb'}")


def _features(text: str | None) -> tuple[int, ...] | None:
    """``--features 8,16,32,32,32,8`` as integers; ``ValueError`` naming the bad text."""
    if text is None:
        return None
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise ValueError(f"--features {text!r}: need six comma-separated integers, e.g. 8,16,32,32,32,8") from None


@user_errors
def train_command(
    out: Annotated[Path, typer.Option("--out", help="Run folder: best.pt, last.pt, log.csv, train_steps.csv, split.csv, tb/.")],
    data: DataOption = None,
    model: Annotated[str | None, typer.Option(help="voxelmorph, affine or cascade (default: cascade).")] = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs in total (a resumed run continues up to this) (default: 50).")] = None,
    lr: Annotated[float | None, typer.Option(help="Adam learning rate (default: 1e-4).")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", help="Pairs per step (default: 1).")] = None,
    size: Annotated[
        int | None,
        typer.Option(help="Network size: side of the square images the network is trained on, px (default: 256)."),
    ] = None,
    benchmark_size: Annotated[
        int | None,
        typer.Option("--benchmark-size", help="Benchmark size at which validation registers the pairs, longest side px, "
                                              "as `firereg benchmark --size` (default: 512)."),
    ] = None,
    channel: Annotated[str | None, typer.Option(help="Image channel: green, luminance, red, blue (default: green).")] = None,
    lam: Annotated[float | None, typer.Option("--lambda", help="Smoothness weight (default: 0.01).")] = None,
    similarity: Annotated[str | None, typer.Option(help="lncc, mse or mi (default: lncc).")] = None,
    smoothness: Annotated[str | None, typer.Option(help="diffusion or bending (default: diffusion).")] = None,
    affine_supervision: Annotated[
        str | None, typer.Option("--affine-supervision", help="points (control-point affines) or similarity (default: points).")
    ] = None,
    augment: Annotated[bool | None, typer.Option("--augment/--no-augment", help="Random augmentation (default: on).")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of split, initialisation, order, augmentation (default: 0).")] = None,
    checkpoint_every: Annotated[int | None, typer.Option("--checkpoint-every", help="Save last.pt every N steps (default: 25).")] = None,
    budget_minutes: Annotated[
        float | None, typer.Option("--budget-minutes", help="Stop cleanly after this wall-clock time (saves, validates).")
    ] = None,
    budget_steps: Annotated[
        int | None,
        typer.Option("--budget-steps", help="Stop cleanly after this many optimiser steps in total, over all resumed "
                                            "sessions (the same model on any machine; with --threads 1)."),
    ] = None,
    integration_steps: Annotated[
        int | None, typer.Option("--integration-steps", help="VoxelMorph: scaling-and-squaring steps (0 = plain DDF).")
    ] = None,
    patches: Annotated[Path | None, typer.Option("--patches", help="Train the affine model on this folder of .npz patches.")] = None,
    estimator: Annotated[
        str | None, typer.Option(help="Affine stage: matching (feature matches + robust fit) or regression (heads) (default: matching).")
    ] = None,
    self_pairs: Annotated[
        float | None, typer.Option("--self-pairs", help="Share of self-supervised pairs (an image vs a large random affine of it) (default: 0.5).")
    ] = None,
    repeats: Annotated[int | None, typer.Option(help="Times each training pair appears per epoch (default: 1).")] = None,
    affine_warmup: Annotated[
        float | None, typer.Option("--affine-warmup", help="Cascade: share of the budget (or epochs) training only the affine stage (default: 0).")
    ] = None,
    train_pairs: TrainPairsOption = None,
    generated_retinas: GeneratedRetinasOption = None,
    photograph_share: PhotographShareOption = None,
    pairs_per_epoch: PairsPerEpochOption = None,
    generated_points: GeneratedPointsOption = None,
    generated_prealign: PrealignOption = None,
    point_weight: PointWeightOption = None,
    features: FeaturesOption = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out from last.pt (its settings unless given).")] = False,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show progress bars.")] = True,
    threads: Annotated[
        int | None, typer.Option("--threads", help="CPU threads for torch (default: all cores; 1 is faster on a busy machine).")
    ] = None,
) -> None:
    """Train a registration network; validate on the FIRE protocol every epoch (best.pt = best mAUC)."""
    import dataclasses

    from firereg.pipelines.default_data import resolve_data
    from firereg.pipelines.training import TrainConfig, train

    given = {
        "model": model, "epochs": epochs, "lr": lr, "batch_size": batch_size, "size": size,
        "benchmark_size": benchmark_size, "channel": channel,
        "lam": lam, "similarity": similarity, "smoothness": smoothness, "affine_supervision": affine_supervision,
        "augment": augment, "seed": seed, "checkpoint_every": checkpoint_every, "budget_minutes": budget_minutes,
        "budget_steps": budget_steps, "integration_steps": integration_steps, "patches": str(patches) if patches is not None else None,
        "estimator": estimator, "self_pairs": self_pairs, "repeats": repeats, "affine_warmup": affine_warmup,
        "train_pairs": train_pairs, "generated_retinas": generated_retinas, "photograph_share": photograph_share,
        "pairs_per_epoch": pairs_per_epoch, "generated_points": generated_points,
        "generated_prealign_px": generated_prealign, "point_weight": point_weight, "features": _features(features),
    }
    given = {k: v for k, v in given.items() if v is not None}
    check_output_folder(out, "--out")
    base = TrainConfig()
    if resume:
        base, data = _resumed(out, data, budget_minutes)
    config = dataclasses.replace(base, **given)
    result = train(config, resolve_data(data), out, resume=resume, progress=progress, num_threads=threads)
    _print_result(config.model, result, out)
