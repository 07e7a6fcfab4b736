"""Check every file of a FIRE folder and list every problem at once (``firereg summary --check``).

:func:`firereg.transforms.fire_reader.read_fire` stops at the first problem and reads only image
headers; a truncated JPEG then fails hours later, in the middle of a benchmark or a training.
:func:`check_fire_folder` opens everything the pipeline will open, with the pipeline's own
readers:

- every image, fully decoded (:func:`firereg.transforms.io.read_rgb`): truncated, corrupt or
  unsupported files; a moving image ``<pair>_2`` of another size than its fixed image ``<pair>_1``;
- the layout of ``Images/``: an image without its partner, two files for one image, a pair name
  that does not start with S, P or A;
- ``Masks/mask.png`` if present (:func:`firereg.transforms.fov.read_mask`): unreadable, empty,
  or of another size than the images;
- every control-point file (:func:`firereg.transforms.fire_reader.read_control_points`, points
  checked against the sizes of their images): missing, malformed, points outside the image; and
  control-point files in ``Ground Truth/`` of a pair without images.

Each problem names its file and the reason (the reader's message, with its line number where
the reader gives one). Points are ``(x, y)`` full-resolution pixels (:mod:`firereg.transforms.coords`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from firereg.transforms.fire_reader import (
    CATEGORIES,
    IMAGE_NAME_RE,
    read_control_points,
    read_fire,
    truth_path,
)
from firereg.transforms.fov import read_mask
from firereg.transforms.io import read_rgb

__all__ = ["FolderProblem", "FolderCheck", "check_fire_folder"]

#: ``control_points_<pair>_1_2.txt``
_TRUTH_RE = re.compile(r"^control_points_(?P<pair>[A-Za-z]+\d+)_1_2\.txt$", re.IGNORECASE)


@dataclass(frozen=True)
class FolderProblem:
    """One problem of a FIRE folder.

    Attributes:
        file: the file (or folder) at fault.
        reason: what is wrong with it (a reader's message may name the file itself).
    """

    file: Path
    reason: str

    def __str__(self) -> str:
        return self.reason if str(self.file) in self.reason else f"{self.file}: {self.reason}"


@dataclass
class FolderCheck:
    """What :func:`check_fire_folder` found.

    Attributes:
        root: the FIRE folder.
        problems: every problem, in the order of the files (images, mask, ground truth).
        images: image files decoded.
        point_files: control-point files read.
        mask: whether ``Masks/mask.png`` was there.
    """

    root: Path
    problems: list[FolderProblem]
    images: int = 0
    point_files: int = 0
    mask: bool = False

    @property
    def ok(self) -> bool:
        """Whether the folder has no problem."""
        return not self.problems


def _reason(err: BaseException) -> str:
    return str(err) or type(err).__name__


def _scan_images(images_dir: Path, problems: list[FolderProblem]) -> dict[str, dict[str, Path]]:
    """``{pair: {"1": path, "2": path}}`` of the FIRE-named images; layout problems appended to ``problems``."""
    images: dict[str, dict[str, Path]] = {}
    for path in sorted(images_dir.iterdir()):
        match = IMAGE_NAME_RE.match(path.name)
        if match is None:
            continue
        pair, index = match["pair"].upper(), match["index"]
        parts = images.setdefault(pair, {})
        if index in parts:
            problems.append(FolderProblem(path, f"a second file for image {pair}_{index} (the other: "
                                                f"{parts[index].name}); keep one"))
            continue
        parts[index] = path
    if not images:
        problems.append(FolderProblem(images_dir, "no FIRE images (<pair>_1.jpg, <pair>_2.jpg)"))
    for pair, parts in sorted(images.items()):
        for index, partner in (("1", "2"), ("2", "1")):
            if index in parts and partner not in parts:
                problems.append(FolderProblem(parts[index], f"no partner image {pair}_{partner} in {images_dir}"))
        if pair[0] not in CATEGORIES:
            problems.append(FolderProblem(min(parts.values()), f"pair name {pair!r} does not start with S, P or A"))
    return images


def _decode_images(images: dict[str, dict[str, Path]], problems: list[FolderProblem],
                   progress: bool) -> dict[Path, tuple[int, int]]:
    """``{image: (width, height)}`` of the images that decode fully; the others appended to ``problems``."""
    sizes: dict[Path, tuple[int, int]] = {}
    paths = [path for pair in sorted(images) for _, path in sorted(images[pair].items())]
    for path in tqdm(paths, desc="decoding images", disable=not progress):
        try:
            rgb = read_rgb(path)
        except (ValueError, OSError) as err:
            problems.append(FolderProblem(path, _reason(err)))
            continue
        sizes[path] = (rgb.shape[1], rgb.shape[0])
    for pair, parts in sorted(images.items()):
        fixed, moving = parts.get("1"), parts.get("2")
        if fixed in sizes and moving in sizes and sizes[fixed] != sizes[moving]:
            (wf, hf), (wm, hm) = sizes[fixed], sizes[moving]
            problems.append(FolderProblem(moving, f"moving image is {wm}x{hm} px but its fixed image "
                                                  f"{fixed.name} is {wf}x{hf} px (width x height)"))
    return sizes


def _check_mask(mask_path: Path, sizes: dict[Path, tuple[int, int]], problems: list[FolderProblem]) -> None:
    """Read ``Masks/mask.png`` and compare its size with every decoded image's."""
    try:
        mask = read_mask(mask_path)
    except (ValueError, OSError) as err:
        problems.append(FolderProblem(mask_path, _reason(err)))
        return
    h, w = mask.shape
    others = sorted(path for path, size in sizes.items() if size != (w, h))
    if others:
        ow, oh = sizes[others[0]]
        problems.append(FolderProblem(mask_path, f"mask is {w}x{h} px but {len(others)} image(s) are not, "
                                                 f"e.g. {others[0].name} ({ow}x{oh} px, width x height)"))


def _check_truth(truth_dir: Path, images: dict[str, dict[str, Path]], sizes: dict[Path, tuple[int, int]],
                 problems: list[FolderProblem]) -> int:
    """Read the control-point file of every pair, flag files of pairs without images; returns files read."""
    read = 0
    for pair, parts in sorted(images.items()):
        if set(parts) != {"1", "2"}:
            continue  # reported by the layout check
        path = truth_path(truth_dir.parent, pair)
        if not path.is_file():
            problems.append(FolderProblem(path, f"no ground truth for pair {pair} ({parts['1'].name}, "
                                                f"{parts['2'].name}): control-point file not found"))
            continue
        known = parts["1"] in sizes and parts["2"] in sizes
        try:
            read_control_points(path, (sizes[parts["1"]], sizes[parts["2"]]) if known else None)
        except (ValueError, OSError) as err:
            problems.append(FolderProblem(path, _reason(err)))
        read += 1
    for path in sorted(truth_dir.iterdir()):
        match = _TRUTH_RE.match(path.name)
        if match is not None and match["pair"].upper() not in images:
            pair = match["pair"].upper()
            problems.append(FolderProblem(path, f"ground truth without images: no {pair}_1 or {pair}_2 in "
                                                f"{truth_dir.parent / 'Images'}"))
    return read


def check_fire_folder(root: str | Path, progress: bool = False) -> FolderCheck:
    """Open every file of a FIRE folder and list every problem (see the module docstring).

    Args:
        root: the FIRE folder (``Images/``, ``Ground Truth/``, optional ``Masks/mask.png``).
        progress: show a progress bar while decoding the images.

    Returns:
        A :class:`FolderCheck`; ``problems`` is empty when every file reads and
        :func:`firereg.transforms.fire_reader.read_fire` reads the folder (P37 included).
    """
    root = Path(root)
    check = FolderCheck(root=root, problems=[])
    if not root.is_dir():
        check.problems.append(FolderProblem(root, "FIRE folder not found"))
        return check
    images_dir, truth_dir, mask_path = root / "Images", root / "Ground Truth", root / "Masks" / "mask.png"
    for folder in (images_dir, truth_dir):
        if not folder.is_dir():
            check.problems.append(FolderProblem(folder, f"no {folder.name}/ folder in the FIRE folder"))
    if not images_dir.is_dir():
        return check
    images = _scan_images(images_dir, check.problems)
    sizes = _decode_images(images, check.problems, progress)
    check.images = sum(len(parts) for parts in images.values())
    check.mask = mask_path.is_file()
    if check.mask:
        _check_mask(mask_path, sizes, check.problems)
    if truth_dir.is_dir():
        check.point_files = _check_truth(truth_dir, images, sizes, check.problems)
    if not check.problems:  # what the checks above do not cover still surfaces, as read_fire says it
        try:
            read_fire(root, exclude_known_bad=False)
        except (ValueError, OSError) as err:
            check.problems.append(FolderProblem(root, _reason(err)))
    return check
