"""Read a FIRE folder (real or generated) into a manifest: one row per image pair.

FIRE layout::

    ROOT/Images/<pair>_1.jpg, <pair>_2.jpg      (pair = category letter S/P/A + number)
    ROOT/Ground Truth/control_points_<pair>_1_2.txt
    ROOT/Masks/mask.png                          (optional field-of-view mask)

Each control-point line is ``x_fixed y_fixed x_moving y_moving`` in full-resolution
pixels (see :mod:`firereg.transforms.coords`); ``<pair>_1`` is the fixed image.
:func:`read_control_points` is the one point-file parser (it also reads the 2-column
fixed-point files of ``firereg register --points``).
FIRE's ``control_points_P37_1_2.txt`` is known to be wrong and is excluded by default.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from firereg.transforms.io import PHOTO_EXTENSIONS, image_size

__all__ = [
    "CATEGORIES",
    "FIRE_PAIRS",
    "IMAGE_NAME_RE",
    "truth_path",
    "KNOWN_BAD_PAIRS",
    "FireFormatError",
    "read_control_points",
    "is_fire_file_set",
    "read_fire",
]

CATEGORIES = ("S", "P", "A")
#: pairs whose ground truth the community excludes (see DESIGN.md)
KNOWN_BAD_PAIRS = ("P37",)

#: ``<pair>_<1|2>.<photo extension>``: the name of a FIRE image (groups ``pair``, ``index``, ``ext``)
IMAGE_NAME_RE = re.compile(
    r"^(?P<pair>[A-Za-z]+\d+)_(?P<index>[12])(?P<ext>"
    + "|".join(re.escape(ext) for ext in PHOTO_EXTENSIONS)
    + ")$",
    re.IGNORECASE,
)


#: FIRE's pairs: S01-S71, P01-P49, A01-A14 (134 control-point files, two images each)
FIRE_PAIRS = frozenset(
    f"{category}{number:02d}" for category, count in (("S", 71), ("P", 49), ("A", 14)) for number in range(1, count + 1)
)


def is_fire_file_set(root: str | Path) -> bool:
    """Whether ``root`` holds FIRE's file set: exactly FIRE's 134 control-point files, and both
    JPEG images of each of those pairs (no other ``<pair>_1/_2`` images)."""
    root = Path(root)
    if not ((root / "Ground Truth").is_dir() and (root / "Images").is_dir()):
        return False
    truth = {p.name for p in (root / "Ground Truth").glob("control_points_*_1_2.txt")}
    if truth != {truth_path(root, name).name for name in FIRE_PAIRS}:
        return False
    images = {p.name for p in (root / "Images").iterdir() if re.match(r"^[A-Za-z]+\d+_[12]\.", p.name)}
    return images == {f"{name}_{i}.jpg" for name in FIRE_PAIRS for i in (1, 2)}


class FireFormatError(ValueError):
    """A FIRE folder or one of its files does not follow the FIRE layout."""


def _parse_point_line(path: Path, line_no: int, line: str, columns: int) -> list[float]:
    """The numbers of one point line, checked; errors name the file and line."""
    fields = line.split()
    if len(fields) != columns:
        what = "x_fixed y_fixed x_moving y_moving" if columns == 4 else "x y"
        raise FireFormatError(
            f"{path}, line {line_no}: expected {columns} columns ({what}), got {len(fields)}: {line!r}"
        )
    try:
        values = [float(v) for v in fields]
    except ValueError:
        raise FireFormatError(f"{path}, line {line_no}: not a number in {line!r}") from None
    if not np.all(np.isfinite(values)):
        raise FireFormatError(f"{path}, line {line_no}: non-finite value in {line!r}")
    return values


def truth_path(root: str | Path, pair: str) -> Path:
    """The control-point file of ``pair`` in the FIRE folder ``root``: ``root/Ground Truth/control_points_<pair>_1_2.txt``."""
    return Path(root) / "Ground Truth" / f"control_points_{pair}_1_2.txt"


def read_control_points(
    path: str | Path,
    image_sizes: tuple[tuple[int, int], tuple[int, int]] | None = None,
    allow_fixed_only: bool = False,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Read a control-point file: FIRE's 4 columns, or (when allowed) 2 columns of fixed points.

    Args:
        path: ``control_points_<pair>_1_2.txt``; one point per line, whitespace-separated,
            ``x_fixed y_fixed x_moving y_moving`` in full-resolution pixels (``x y`` for a file
            of fixed points); blank lines are skipped (and counted in line numbers).
        image_sizes: ``((W_fixed, H_fixed), (W_moving, H_moving))``; when given, every
            point must lie inside its image (``-0.5 <= x < W - 0.5``).
        allow_fixed_only: also read a 2-column file of fixed points (``firereg register --points``);
            the first point line decides which kind the file is.

    Returns:
        ``(fixed_points, moving_points)``, each (N, 2) float64 ``(x, y)`` pixels;
        ``moving_points`` is None for a 2-column file.

    Raises:
        FileNotFoundError: naming the file if it does not exist.
        FireFormatError: naming the file and line for a wrong number of columns, a
            non-number, a point outside its image, or a file without points.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"control-point file not found: {path}")
    with path.open("r", encoding="utf-8", errors="replace") as handle:
        lines = [(n, line.strip()) for n, line in enumerate(handle, start=1) if line.strip()]
    if not lines:
        raise FireFormatError(f"{path}: no control points in the file")
    columns = 4
    if allow_fixed_only and len(lines[0][1].split()) != 4:
        columns = len(lines[0][1].split())
        if columns != 2:
            raise FireFormatError(
                f"{path}, line {lines[0][0]}: expected 4 columns (x_fixed y_fixed x_moving y_moving) "
                f"or 2 columns (x y of fixed points), got {columns}"
            )
    roles = ("fixed", "moving")[: columns // 2]
    rows = []
    for line_no, line in lines:
        values = _parse_point_line(path, line_no, line, columns)
        for side, role in enumerate(roles if image_sizes is not None else ()):
            (x, y), (w, h) = values[2 * side : 2 * side + 2], image_sizes[side]
            if not (-0.5 <= x < w - 0.5 and -0.5 <= y < h - 0.5):
                raise FireFormatError(
                    f"{path}, line {line_no}: {role} point ({x:g}, {y:g}) lies outside "
                    f"the {role} image of size {w}x{h} (width x height)"
                )
        rows.append(values)
    arr = np.asarray(rows, dtype=np.float64)
    return arr[:, :2].copy(), (arr[:, 2:].copy() if columns == 4 else None)


def _image_size(path: Path) -> tuple[int, int]:
    try:
        return image_size(path)
    except ValueError as err:
        raise FireFormatError(str(err)) from None


def _pair_images(images_dir: Path) -> dict[str, dict[str, Path]]:
    """``{pair: {"1": fixed image, "2": moving image}}`` of FIRE's ``Images/`` folder, checked.

    Raises:
        FireFormatError: naming the folder without images, an image without its partner, two
            files for one image (``S01_1.jpg`` and ``S01_1.png``: both named), or one whose pair
            name does not start with S, P or A.
    """
    images: dict[str, dict[str, Path]] = {}
    for path in sorted(images_dir.iterdir()):
        match = IMAGE_NAME_RE.match(path.name)
        if match is None:
            continue
        parts = images.setdefault(match["pair"].upper(), {})
        other = parts.get(match["index"])
        if other is not None:
            raise FireFormatError(
                f"two files for image {match['pair'].upper()}_{match['index']} in {images_dir}: {other.name} and "
                f"{path.name}; keep one"
            )
        parts[match["index"]] = path
    if not images:
        raise FireFormatError(f"no FIRE images (<pair>_1.jpg, <pair>_2.jpg) in {images_dir}")
    for name in sorted(images):
        parts = images[name]
        for index, partner in (("1", "2"), ("2", "1")):
            if index in parts and partner not in parts:
                raise FireFormatError(f"image {parts[index]} has no partner {name}_{partner} in {images_dir}")
        if name[0] not in CATEGORIES:
            raise FireFormatError(f"image {parts['1']}: pair name {name!r} does not start with S, P or A")
    return images


def read_fire(
    root: str | Path,
    exclude_known_bad: bool = True,
    categories: str | tuple[str, ...] | None = None,
) -> pd.DataFrame:
    """Read a FIRE folder into a manifest DataFrame, one row per pair, sorted by name.

    Args:
        root: the FIRE folder (holding ``Images/`` and ``Ground Truth/``).
        exclude_known_bad: drop pairs in :data:`KNOWN_BAD_PAIRS` (P37) — on by default.
        categories: keep only these categories, e.g. ``"SA"`` or ``("P",)``.

    Returns:
        Columns ``name`` (``A01``), ``category`` (S/P/A), ``fixed`` and ``moving`` (image
        paths as str, ``<pair>_1`` is fixed), ``fixed_points`` and ``moving_points``
        ((N, 2) float64 ``(x, y)`` full-resolution pixels), ``mask`` (path of
        ``Masks/mask.png`` or None), ``width``, ``height`` (of the fixed image, px).
        ``manifest.attrs`` records ``root``, ``excluded`` (names dropped as known bad) and ``exclude_known_bad``.

    Raises:
        FileNotFoundError: naming the missing folder or file.
        FireFormatError: naming the offending file (and line).
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"FIRE folder not found: {root}")
    images_dir = root / "Images"
    truth_dir = root / "Ground Truth"
    for folder in (images_dir, truth_dir):
        if not folder.is_dir():
            raise FileNotFoundError(f"FIRE folder {root} has no {folder.name}/ folder (expected {folder})")
    wanted = None
    if categories is not None:
        wanted = {c.upper() for c in categories}
        unknown = wanted - set(CATEGORIES)
        if unknown:
            raise ValueError(f"unknown categories {sorted(unknown)}; FIRE has {list(CATEGORIES)}")

    images = _pair_images(images_dir)
    mask_path = root / "Masks" / "mask.png"
    mask = str(mask_path) if mask_path.is_file() else None
    rows = []
    excluded = []
    for name in sorted(images):
        parts = images[name]
        category = name[0]
        if exclude_known_bad and name in KNOWN_BAD_PAIRS:
            excluded.append(name)
            continue
        if wanted is not None and category not in wanted:
            continue
        size_fixed = _image_size(parts["1"])
        size_moving = _image_size(parts["2"])
        fixed_points, moving_points = read_control_points(
            truth_path(root, name), (size_fixed, size_moving)
        )
        rows.append(
            {
                "name": name,
                "category": category,
                "fixed": str(parts["1"]),
                "moving": str(parts["2"]),
                "fixed_points": fixed_points,
                "moving_points": moving_points,
                "mask": mask,
                "width": size_fixed[0],
                "height": size_fixed[1],
            }
        )
    if not rows:
        raise FireFormatError(
            f"no pairs left in {root} (categories={categories!r}, excluded as known bad: {excluded})"
        )
    manifest = pd.DataFrame(
        rows,
        columns=["name", "category", "fixed", "moving", "fixed_points", "moving_points", "mask", "width", "height"],
    )
    manifest.attrs["root"] = str(root)
    manifest.attrs["excluded"] = excluded
    manifest.attrs["exclude_known_bad"] = exclude_known_bad
    return manifest
