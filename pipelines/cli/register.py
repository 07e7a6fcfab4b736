"""``firereg register``: register one image pair with a trained network and write the results."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from firereg.pipelines.cli.errors import user_errors

__all__ = ["register"]


@user_errors
def register(
    fixed: Annotated[Path, typer.Argument(help="Fixed image (.jpg .jpeg .png .tif .tiff, or .nii/.nii.gz with a NIfTI MOVING).")],
    moving: Annotated[Path, typer.Argument(help="Moving image, the same size as FIXED.")],
    model: Annotated[Path, typer.Option("--model", help="Run folder (best.pt, else last.pt) or checkpoint .pt file.")],
    out: Annotated[Path, typer.Option("--out", help="Output folder.")],
    points: Annotated[
        Path | None,
        typer.Option("--points", help="FIRE control points (x_fixed y_fixed x_moving y_moving) or fixed points (x y)."),
    ] = None,
    refine_steps: Annotated[int, typer.Option("--refine-steps", help="Test-time refinement steps per pyramid level (0 = off; 50 is the benchmark's +tto).")] = 0,
    model_type: Annotated[
        str | None, typer.Option("--model-type", help="Refuse a checkpoint of another type (voxelmorph, affine, cascade).")
    ] = None,
) -> None:
    """Register MOVING onto FIXED with a trained network; write the warped image, field and overlays.

    The field is fixed -> moving in full-resolution pixels: fixed pixel p = (x, y) lies at
    p + u(p) in the moving image (field.npy: (2, H, W), channel 0 = dx; field.nii.gz: vector image).
    """
    import pandas as pd

    from firereg.pipelines.register import register_pair

    written = register_pair(fixed, moving, model, out, points_path=points, refine_steps=refine_steps,
                            expected_type=model_type)
    typer.echo(f"registered {moving} onto {fixed}; wrote:")
    for path in written.values():
        typer.echo(f"  {path}")
    if "points" in written:
        table = pd.read_csv(written["points"])
        if "error_moving" in table:
            typer.echo(f"landmark error (moving image, px): mean {table['error_moving'].mean():.3f}, "
                       f"max {table['error_moving'].max():.3f} over {len(table)} points")
        if "error_fixed" in table:
            typer.echo(f"landmark error (fixed image, px): mean {table['error_fixed'].mean():.3f}")
