"""``firereg register``: register one image pair, or every pair of a FIRE folder, with any benchmark method.

A registration that fails (the method gives no usable transform) prints ``failed: <reason>``
and exits with code 1, writing nothing for that pair; bad input prints ``error: <message>``
and exits with code 2 (:mod:`firereg.pipelines.cli.errors`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from firereg.pipelines.cli.errors import user_errors
from firereg.pipelines.cli.options import IncludeP37Option, check_output_folder

__all__ = ["register"]


def _spec(method: str | None, model: Path | None, model_type: str | None, refine_steps: int) -> str:
    """The method spec of the command line: ``--method SPEC``, ``--model RUN`` as ``TYPE[+ttoN]:RUN``, or
    neither: ``default`` (the shipped method, :data:`firereg.pipelines.method_specs.DEFAULT`)."""
    from firereg.pipelines.method_specs import DEFAULT, parse_method_spec
    from firereg.pipelines.register import model_spec

    if method is not None and model is not None:
        raise ValueError("give --method SPEC or --model RUN, not both (--model RUN is short for --method TYPE:RUN)")
    if method is None and model is None:
        if model_type is not None or refine_steps:
            raise ValueError("--model-type and --refine-steps go with --model; with --method write TYPE+ttoN:RUN")
        return DEFAULT
    if method is not None:
        if model_type is not None or refine_steps:
            raise ValueError("--model-type and --refine-steps go with --model; with --method write TYPE+ttoN:RUN")
        return parse_method_spec(method).text
    return model_spec(model, model_type, refine_steps)


def _echo_points(path: Path) -> None:
    import pandas as pd

    table = pd.read_csv(path)
    if "error_moving" in table:
        typer.echo(f"landmark error (moving image, px): mean {table['error_moving'].mean():.3f}, "
                   f"max {table['error_moving'].max():.3f} over {len(table)} points")
    if "error_fixed" in table:
        typer.echo(f"landmark error (fixed image, px): mean {table['error_fixed'].mean():.3f}")


def _register_folder(pairs: Path, spec: str, out: Path, size: int, include_p37: bool, field: bool) -> None:
    from firereg.pipelines.register import register_fire_folder
    from firereg.transforms.fire_reader import read_fire

    manifest = read_fire(pairs, exclude_known_bad=not include_p37)
    table = register_fire_folder(manifest, spec, out, size, field=field)
    ok = table[table["status"] == "ok"]
    typer.echo(f"registered {len(ok)} of {len(table)} pairs of {pairs} into {out}/<pair>/ ({spec}, working size "
               f"{size} px); table: {out / 'pairs.csv'}")
    if len(ok):
        typer.echo(f"mean landmark error (px): median over pairs {ok['mean_error'].median():.3f}")
    failed = table[table["status"] == "failed"]
    for row in failed.itertuples():
        typer.echo(f"failed: {row.pair}: {row.reason}", err=True)
    if len(failed):
        raise typer.Exit(code=1)


@user_errors
def register(
    fixed: Annotated[Path | None, typer.Argument(help="Fixed image (.jpg .jpeg .png .tif .tiff, or .nii/.nii.gz with a NIfTI MOVING).")] = None,
    moving: Annotated[Path | None, typer.Argument(help="Moving image, the same size as FIXED.")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Output folder (with --pairs: one folder per pair in it).")] = None,
    method: Annotated[
        str | None,
        typer.Option("--method", help="Method spec as in `firereg benchmark --methods`: default (the shipped method, "
                                      "used without --method/--model), identity, elastix-rigid, elastix-affine, "
                                      "elastix-bspline, sift, sift-quadratic, TYPE:RUN, TYPE+tto:RUN, TYPE+ttoN:RUN."),
    ] = None,
    model: Annotated[Path | None, typer.Option("--model", help="Run folder (best.pt, else last.pt) or checkpoint .pt file; "
                                                              "short for --method TYPE:RUN.")] = None,
    pairs: Annotated[Path | None, typer.Option("--pairs", help="FIRE folder: register every pair into OUT/<pair>/.")] = None,
    points: Annotated[
        Path | None,
        typer.Option("--points", help="FIRE control points (x_fixed y_fixed x_moving y_moving) or fixed points (x y)."),
    ] = None,
    size: Annotated[
        int | None,
        typer.Option("--size", help="Benchmark size (longest side, px): the images are resized to it before the "
                                    "method registers, as by `firereg benchmark --size` (default 512; a network then "
                                    "resizes to its network size). Outputs are full resolution."),
    ] = None,
    refine_steps: Annotated[int, typer.Option("--refine-steps", help="With --model: test-time refinement steps per pyramid level (0 = off; 50 is the benchmark's +tto).")] = 0,
    model_type: Annotated[
        str | None, typer.Option("--model-type", help="With --model: refuse a checkpoint of another type (voxelmorph, affine, cascade).")
    ] = None,
    include_p37: IncludeP37Option = False,
    field: Annotated[
        bool, typer.Option("--field/--no-field", help="Write field.nii.gz and field.npy (float32: ~68 MB each for a "
                                                      "2912 px pair); --no-field skips them.")
    ] = True,
) -> None:
    """Register MOVING onto FIXED (or every pair of --pairs) with any method; write the warped image, field,
    overlays, mapped points and transform.json.

    The field is fixed -> moving in full-resolution pixels: fixed pixel p = (x, y) lies at
    p + u(p) in the moving image (field.npy: (2, H, W), channel 0 = dx; field.nii.gz: vector image).
    """
    from firereg.pipelines.register import (
        DEFAULT_SIZE,
        RegistrationFailed,
        register_images,
    )

    if out is None:
        raise ValueError("missing --out DIR (the output folder)")
    if pairs is not None and (fixed is not None or moving is not None or points is not None):
        raise ValueError("--pairs registers the pairs of a FIRE folder: give no FIXED, MOVING or --points with it")
    if pairs is None and (fixed is None or moving is None):
        raise ValueError("give FIXED and MOVING images, or --pairs FIRE_DIR")
    spec = _spec(method, model, model_type, refine_steps)
    size = DEFAULT_SIZE if size is None else size
    check_output_folder(out, "--out")
    if pairs is not None:
        return _register_folder(pairs, spec, out, size, include_p37, field)
    try:
        written = register_images(fixed, moving, spec, out, points_path=points, size=size, field=field)
    except RegistrationFailed as err:
        typer.echo(f"failed: {err}", err=True)
        raise typer.Exit(code=1) from None
    at = f" (working size {size} px)" if "transform" in written else ""  # NIfTI pairs: the network's own shape
    typer.echo(f"registered {moving} onto {fixed} with {spec}{at}; wrote:")
    for path in written.values():
        typer.echo(f"  {path}")
    if "points" in written:
        _echo_points(written["points"])
