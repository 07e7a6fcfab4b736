"""Which image should ``sift-quadratic``'s SIFT keypoints look at? Each representation, scored on two data kinds.

    OMP_NUM_THREADS=1 python benchmarks/keypoint_inputs.py --out DIR \\
        --data photograph=/tmp/h_cd/full/score-data --data procedural=/tmp/h_cd/full/train-data \\
        [--representations green clahe-green ...] [--size 512] [--n-features N] [--speed-data FIRE2912] \
        [--doc docs/keypoint_inputs.md]

For every ``--data KIND=FOLDER`` (a FIRE-format folder) and every representation of
:data:`firereg.evaluation.baselines.sift.REPRESENTATIONS` (or those given), ``sift-quadratic``
(:class:`~firereg.evaluation.baselines.sift.SiftQuadraticMethod`, its other settings at their
defaults but ``--n-features``) registers ALL pairs through :func:`firereg.evaluation.benchmark.run_benchmark` at the
benchmark size ``--size`` (longest side, px; FIRE protocol, errors in full-resolution px). The
benchmark of each kind lives in ``DIR/<KIND>/`` (a re-run reuses its records whose fingerprint
still holds). With ``--speed-data`` (a FIRE folder of 2912 x 2912 px pairs) each representation
is also timed as ``benchmarks/speed.py`` times ``default``: decoded before timing, resized
to ``--size`` inside the timing, one untimed warm-up, median seconds per pair.

Prints one Markdown table per data kind (AUC S/P/A, mAUC, mean and median error, failed, seconds
per pair) and writes them, with the command and the load average, to ``--doc``.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from firereg.evaluation.baselines.sift import (
    REPRESENTATIONS,
    SiftQuadraticMethod,
    check_representation,
)
from firereg.evaluation.benchmark import BenchmarkConfig, load_pair, run_benchmark
from firereg.evaluation.fire_protocol import summarize
from firereg.evaluation.report.tables import markdown_table
from firereg.evaluation.results import ResizedMethod
from firereg.transforms.fire_reader import read_fire
from firereg.transforms.io import atomic_write_text

#: the method spec of one representation (also its label in the tables and records)
PREFIX = "sift-quadratic:"


def make_representation_method(spec: str, n_features: int | None = None) -> SiftQuadraticMethod:
    """``sift-quadratic`` looking at the representation named after :data:`PREFIX` in ``spec``
    (``n_features``: SIFT keypoints kept per image; None: the method's default).

    Raises:
        ValueError: for a spec without the prefix or an unknown representation (naming it).
    """
    if not spec.startswith(PREFIX):
        raise ValueError(f"method spec {spec!r}: expected {PREFIX}REPRESENTATION")
    method = SiftQuadraticMethod(name=spec, representation=spec[len(PREFIX):])
    return method if n_features is None else replace(method, n_features=n_features)


def score_kind(data: Path, out: Path, representations: list[str], size: int, n_features: int | None) -> pd.DataFrame:
    """Benchmark every representation on the FIRE folder ``data`` into ``out``; one summary row each.

    Returns:
        Columns representation, pairs, AUC S/P/A, mAUC, mean error (px, over pairs that did not fail),
        median error (px, failed as inf), failed, s/pair (mean seconds of ``register``).
    """
    manifest = read_fire(data)
    specs = [PREFIX + r for r in representations]
    pairs = run_benchmark(manifest, BenchmarkConfig(methods=specs, benchmark_size=size, overlay_pairs=0), out,
                          factory=partial(make_representation_method, n_features=n_features), progress=False)
    summary = summarize(pairs).set_index("method")
    rows = []
    for spec, rep in zip(specs, representations):
        sub = pairs[pairs["method"] == spec]
        ok = sub[sub["status"] == "ok"]
        s = summary.loc[spec]
        rows.append({
            "representation": rep, "pairs": int(s["n_pairs"]), "AUC S": s["auc_S"], "AUC P": s["auc_P"],
            "AUC A": s["auc_A"], "mAUC": s["mAUC"], "mean error (px)": float(ok["mean_error"].mean()),
            "median error (px)": s["median_error"], "failed": int(s["failed"]),
            "s/pair": float(sub["seconds"].astype(np.float64).mean()),
        })
    return pd.DataFrame(rows)


def time_2912(data: Path, representations: list[str], size: int, n_pairs: int,
              n_features: int | None) -> dict[str, float]:
    """Median seconds per pair of each representation on the first ``n_pairs`` pairs of ``data``
    (decode excluded, resize to ``size`` included, one untimed warm-up), as ``benchmarks/speed.py``."""
    pairs = [load_pair(row) for row in read_fire(data).head(n_pairs).to_dict("records")]
    seconds = {}
    for rep in representations:
        method = ResizedMethod(make_representation_method(PREFIX + rep, n_features), size)
        method.register(*pairs[0])
        times = []
        for pair in pairs:
            start = time.perf_counter()
            method.register(*pair)
            times.append(time.perf_counter() - start)
        seconds[rep] = statistics.median(times)
    return seconds


def main() -> None:
    """Run the benchmark of the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="output folder (one benchmark per data kind)")
    parser.add_argument("--data", action="append", required=True, metavar="KIND=FOLDER",
                        help="a data kind and its FIRE folder; repeatable")
    parser.add_argument("--representations", nargs="+", default=list(REPRESENTATIONS),
                        help=f"representations to score (default all: {', '.join(REPRESENTATIONS)})")
    parser.add_argument("--size", type=int, default=512, help="benchmark size (longest side, px)")
    parser.add_argument("--n-features", type=int, help="SIFT keypoints kept per image (default: the method's)")
    parser.add_argument("--speed-data", type=Path, help="FIRE folder of 2912 px pairs to time each representation")
    parser.add_argument("--speed-pairs", type=int, default=4, help="pairs of --speed-data to time")
    parser.add_argument("--threads", type=int, default=1, help="OpenCV threads")
    parser.add_argument("--doc", type=Path, default=Path("docs/keypoint_inputs.md"), help="Markdown report")
    args = parser.parse_args()
    kinds = {}
    for item in args.data:
        kind, sep, folder = item.partition("=")
        if not sep or not kind or not Path(folder).is_dir():
            parser.error(f"--data {item!r}: expected KIND=FOLDER with an existing FIRE folder")
        try:
            read_fire(folder)
        except (OSError, ValueError) as err:
            parser.error(f"--data {item!r}: {err}")
        kinds[kind] = Path(folder)
    for rep in args.representations:
        try:
            check_representation(rep)
        except ValueError as err:
            parser.error(str(err))
    cv2.setNumThreads(args.threads)
    command = shlex.join([Path(sys.executable).name, *sys.argv])
    load_before, start = os.getloadavg(), time.perf_counter()
    lines = ["# SIFT input representation of `sift-quadratic`", "",
             "Produced by `benchmarks/keypoint_inputs.py`. `sift-quadratic` with each input representation of "
             "its SIFT keypoints (`SiftQuadraticMethod.representation`), every other setting at its default"
             + (f" but n_features = {args.n_features}" if args.n_features else "") + "; "
             f"benchmark size {args.size} px; FIRE protocol, errors in full-resolution px; mean error over "
             "the pairs that did not fail; s/pair: mean seconds of `register` at the benchmark size.", ""]
    for rep in args.representations:
        lines.append(f"- `{rep}`: {REPRESENTATIONS[rep]}")
    for kind, folder in kinds.items():
        table = score_kind(folder, args.out / kind, args.representations, args.size, args.n_features)
        block = [f"## {kind}: `{folder}`", "", *markdown_table(table), ""]
        print("\n".join(block))
        lines += ["", *block]
    if args.speed_data is not None:
        seconds = time_2912(args.speed_data, args.representations, args.size, args.speed_pairs, args.n_features)
        block = [f"## seconds per 2912 px pair: `{args.speed_data}`", "",
                 f"First {args.speed_pairs} pairs, decoded before timing, resized to {args.size} px inside it, "
                 f"one untimed warm-up, median; {args.threads} OpenCV thread(s).", "",
                 *markdown_table(pd.DataFrame({"representation": list(seconds), "s/pair": list(seconds.values())})),
                 ""]
        print("\n".join(block))
        lines += ["", *block]
    load_after = os.getloadavg()
    lines += ["", f"Command: `{command}`", "",
              f"Wall time {(time.perf_counter() - start) / 60:.1f} min; load average (1, 5, 15 min) at start "
              f"{', '.join(f'{v:.2f}' for v in load_before)}, at end {', '.join(f'{v:.2f}' for v in load_after)} "
              f"({os.cpu_count()} CPUs)."]
    atomic_write_text(args.doc, "\n".join(lines) + "\n")
    print(f"wrote {args.doc}")


if __name__ == "__main__":
    main()
