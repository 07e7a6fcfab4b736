"""``firereg mnist`` and ``firereg brain``: the examples beyond fundus photographs (digit atlas, brain MRI)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from firereg.pipelines.cli.errors import user_errors

__all__ = ["brain_command", "mnist_command"]


@user_errors
def mnist_command(
    out: Annotated[Path, typer.Option("--out", help="Output folder (figure, summary.json, model.pt).")],
    digit: Annotated[int, typer.Option("--digit", help="Digit class kept (0-9).")] = 3,
    steps: Annotated[int, typer.Option("--steps", help="Training steps.")] = 600,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Images per step.")] = 16,
    mnist: Annotated[
        Path | None,
        typer.Option("--mnist", help="Folder with MNIST IDX files (train-images-idx3-ubyte[.gz], "
                                     "train-labels-idx1-ubyte[.gz]); default: scikit-learn's bundled 8x8 digits."),
    ] = None,
    similarity: Annotated[str, typer.Option("--similarity", help="ncc (local NCC) or mse.")] = "ncc",
    lam: Annotated[float | None, typer.Option("--lambda", help="Smoothness weight; default 1.0 (ncc), 0.05 (mse).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
) -> None:
    """Atlas registration of one digit class: VoxelMorph warps every image of the class onto one atlas image."""
    from firereg.pipelines.examples.mnist_atlas import AtlasConfig, run_mnist

    config = AtlasConfig(digit=digit, steps=steps, batch_size=batch_size, similarity=similarity, lam=lam, seed=seed)
    s = run_mnist(out, config, mnist_dir=mnist, progress=True)
    m = s["metrics"]
    typer.echo(f"data: {s['data_source']}")
    typer.echo(f"digit {s['digit']}: {s['n_train']} training images, {s['n_eval']} held-out images, "
               f"{s['steps']} steps ({s['train_seconds']} s), similarity {s['similarity']}, lambda {s['lambda']}")
    typer.echo(f"mean NCC to the atlas: {m['ncc_before']:.3f} before -> {m['ncc_after']:.3f} after")
    typer.echo(f"Dice of thresholded digits: {m['dice_before']:.3f} before -> {m['dice_after']:.3f} after")
    typer.echo(f"folding (det J <= 0): {100 * m['folding_fraction']:.3f} % of pixels "
               f"(max {100 * m['folding_fraction_max']:.3f} % in one image)")
    typer.echo(f"wrote {out / 'atlas_grid.png'}, {out / 'summary.json'}, {out / 'model.pt'}")


@user_errors
def brain_command(
    out: Annotated[Path, typer.Option("--out", help="Output folder (NIfTI files, brain.png, summary.json, model.pt).")],
    dims: Annotated[int, typer.Option("--dims", help="2 (axial slice) or 3 (volume).")] = 2,
    modality: Annotated[str, typer.Option("--modality", help="mono (T1->T1, local NCC) or multi (T2-like->T1, mutual information).")] = "mono",
    steps: Annotated[int | None, typer.Option("--steps", help="Training steps (default 2D 500, 3D 100).")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", help="Pairs per step (default 2D 4, 3D 2).")] = None,
    spacing: Annotated[int | None, typer.Option("--spacing", help="Voxel size in whole mm (default 2D 3, 3D 4).")] = None,
    amplitude: Annotated[float, typer.Option("--amplitude", help="Largest displacement of each random field, mm.")] = 10.0,
    lam: Annotated[float | None, typer.Option("--lambda", help="Smoothness weight; default 1.0 (mono), 3.0 (multi).")] = None,
    refine_steps: Annotated[
        int | None, typer.Option("--refine-steps", help="Test-time refinement steps per pair (default 100; 0 = network only).")
    ] = None,
    n_eval: Annotated[int | None, typer.Option("--n-eval", help="Held-out pairs scored (default 2D 16, 3D 3).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
) -> None:
    """Brain MRI (MNI152 template, bundled with nilearn) under known synthetic deformations: train, score, write NIfTI."""
    from firereg.pipelines.examples.brain_mri import BrainConfig, run_brain

    config = BrainConfig(dims=dims, modality=modality, steps=steps, batch_size=batch_size, spacing_mm=spacing,
                         amplitude_mm=amplitude, lam=lam, refine_steps=refine_steps, n_eval=n_eval, seed=seed)
    s = run_brain(out, config, progress=True)
    m = s["metrics"]
    typer.echo(f"data: {s['data_source']}")
    typer.echo(f"{dims}D {modality}-modal ({s['fixed_image']} fixed, {s['moving_image']} moving, {s['similarity']}), "
               f"grid {'x'.join(map(str, s['shape']))} at {s['spacing_mm'][0]:g} mm; "
               f"{s['training']['steps']} steps ({s['training']['seconds']} s), refinement {m['refine_steps']} steps")
    typer.echo(f"field error (mm, mean in head, {m['n_pairs']} held-out pairs): {m['field_error_mm_before']:.2f} before "
               f"-> {m['field_error_mm_after']:.2f} after ({100 * m['field_error_ratio']:.0f} %)")
    typer.echo(f"tissue Dice (CSF/GM/WM mean): {m['dice_before']:.3f} before -> {m['dice_after']:.3f} after")
    typer.echo(f"folding (det J <= 0): {100 * m['folding_fraction']:.3f} % of voxels "
               f"({100 * m['folding_fraction_in_head']:.3f} % in the head)")
    if "network_only" in m:
        n = m["network_only"]
        typer.echo(f"network only (no refinement): field error {n['field_error_mm_after']:.2f} mm "
                   f"({100 * n['field_error_ratio']:.0f} %), Dice {n['dice_after']:.3f}, "
                   f"folding {100 * n['folding_fraction']:.3f} %")
    typer.echo(f"wrote NIfTI files, brain.png, summary.json and model.pt to {out}")
