"""What produced a benchmark record: a fingerprint, so a re-run reuses a record only when it still holds.

A record of ``OUT/records/<method>/<pair>.json`` carries ``fingerprint = {"parts": ..., "sha256": ...}``:

- ``data``: the data folder's resolved path;
- ``pair``: the pair's name and files (fixed, moving, mask, control-point file: resolved path,
  size in bytes, ``mtime_ns``) and a sha256 of its control points;
- ``benchmark_size``: longest side, px, of the images every method registered;
- ``decoding``: how the pair's images were decoded (:data:`DECODING`);
- ``checks``: the honest-failure thresholds (:func:`firereg.evaluation.sanity.check_settings`);
- ``method``: the method spec and its settings (:func:`method_parts`; a method built by
  :func:`firereg.pipelines.method_specs.make_any_method` carries its own, with the checkpoint's
  content hash: :func:`firereg.pipelines.method_specs.method_fingerprint`);
- ``firereg``: ``firereg.__version__``.

:func:`stale_reason` says why a stored record cannot be reused (no fingerprint, damaged, or which
parts changed), or None when it can.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

import firereg
from firereg.evaluation.sanity import check_settings
from firereg.transforms.fire_reader import truth_path

__all__ = [
    "file_sha256",
    "file_stat",
    "jsonable",
    "method_parts",
    "pair_parts",
    "record_fingerprint",
    "stale_reason",
]

#: how the benchmark decodes a pair's images (:func:`firereg.evaluation.benchmark.load_pair`): at a
#: reduced size (JPEG draft / PIL reduce by 2, 4 or 8) where the benchmark size allows; records
#: computed from full-size decoding carry no such part and are recomputed
DECODING = "reduced to the benchmark size (JPEG draft / PIL reduce by 2, 4, 8)"

#: (resolved path, size, mtime_ns) → sha256, so one run hashes a checkpoint once
_SHA_CACHE: dict[tuple[str, int, int], str] = {}


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON types (keys sorted; paths and other objects as ``str``)."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def file_sha256(path: str | Path) -> str:
    """The sha256 (hex) of a file's content, cached per resolved path, size and ``mtime_ns``.

    Raises:
        FileNotFoundError: naming a missing file.
    """
    path = Path(path).resolve()
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _SHA_CACHE:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        _SHA_CACHE[key] = digest.hexdigest()
    return _SHA_CACHE[key]


def file_stat(path: str | Path | None) -> dict | None:
    """``{"path", "size", "mtime_ns"}`` of a file (resolved path; ``size`` bytes), ``{"path", "missing"}``
    when it is not there, None for no path."""
    if not isinstance(path, (str, Path)):
        return None
    path = Path(path).resolve()
    try:
        stat = path.stat()
    except OSError:
        return {"path": str(path), "missing": True}
    return {"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def pair_parts(row: Mapping, root: str | Path | None) -> dict:
    """The fingerprint parts of one manifest pair: its files and a hash of its control points.

    Args:
        row: a manifest row (``name``, ``fixed``, ``moving``, ``mask``, ``fixed_points``, ``moving_points``).
        root: the data folder (``manifest.attrs["root"]``); its ``Ground Truth/control_points_<name>_1_2.txt``
            is the pair's control-point file.

    Returns:
        A JSON-able dict.
    """
    points = hashlib.sha256()
    for key in ("fixed_points", "moving_points"):
        value = row.get(key)
        if value is not None:
            points.update(np.ascontiguousarray(np.asarray(value, dtype=np.float64)).tobytes())
        points.update(b"|")
    truth = truth_path(root, row["name"]) if root else None
    return {
        "name": row["name"],
        "fixed": file_stat(row.get("fixed")),
        "moving": file_stat(row.get("moving")),
        "mask": file_stat(row.get("mask")),
        "control_points": file_stat(truth),
        "points_sha256": points.hexdigest(),
    }


def method_parts(spec: str, method: object) -> dict:
    """The fingerprint parts of a method: its own ``fingerprint`` dict if it carries one, else
    the spec, its class and (for a dataclass, e.g. the baselines) its settings.

    Args:
        spec: the method spec it was built from.
        method: the method object.

    Returns:
        A JSON-able dict.
    """
    own = getattr(method, "fingerprint", None)
    if isinstance(own, Mapping):
        return jsonable({"spec": spec, **own})
    cls = type(method)
    settings = dataclasses.asdict(method) if dataclasses.is_dataclass(method) else None
    return jsonable({"spec": spec, "class": f"{cls.__module__}.{cls.__qualname__}", "settings": settings})


def record_fingerprint(method: dict, row: Mapping, root: str | Path | None, benchmark_size: int) -> dict:
    """The fingerprint a record of ``method`` on ``row`` at ``benchmark_size`` px must carry.

    Args:
        method: :func:`method_parts` of the method.
        row: the manifest row.
        root: the data folder.
        benchmark_size: longest side, px.

    Returns:
        ``{"parts": {...}, "sha256": hex digest of the parts as sorted JSON}``.
    """
    parts = jsonable({
        "data": str(Path(root).resolve()) if root else None,
        "pair": pair_parts(row, root),
        "benchmark_size": int(benchmark_size),
        "decoding": DECODING,
        "checks": check_settings(),
        "method": method,
        "firereg": firereg.__version__,
    })
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
    return {"parts": parts, "sha256": digest}


def stale_reason(path: Path, expected: dict) -> str | None:
    """Why the record in ``path`` cannot be reused for ``expected`` (:func:`record_fingerprint`), or None.

    Returns:
        None (reuse it); ``"damaged"`` with the file and the parser's reason; ``"no fingerprint"``
        (written before records had one); or ``"changed: <parts>"`` naming what differs
        (``data``, ``pair``, ``benchmark_size``, ``method``, ``firereg``).
    """
    try:
        record = json.loads(path.read_text())
        if not isinstance(record, dict):
            raise TypeError(f"expected a JSON object, got {type(record).__name__}")
    except (OSError, ValueError, TypeError) as err:
        return f"damaged: {path}: {err}"
    stored = record.get("fingerprint")
    if not isinstance(stored, dict) or "sha256" not in stored:
        return "no fingerprint"
    if stored["sha256"] == expected["sha256"]:
        return None
    old = stored.get("parts") if isinstance(stored.get("parts"), dict) else {}
    changed = [key for key, value in expected["parts"].items() if old.get(key) != value]
    return f"changed: {', '.join(changed) or 'fingerprint'}"
