"""Write a FIRE-format dataset generated from a real fundus photograph or from procedural retinas.

FIRE cannot be downloaded here, so every command runs by default on a dataset this
module writes. The retina of a pair is either one photograph (``retina="photograph"``:
``skimage.data.retina()`` or ``source``) or a procedural retina of its own, a different
eye per pair (``retina="procedural"``, :mod:`firereg.transforms.synthetic_retina`). The
fixed image is a *view* of that retina (:class:`ViewTransform`: a similarity with a
little projective and smooth distortion); the moving image follows from the fixed one by
a motion drawn to match FIRE's statistics (:mod:`firereg.transforms.fire_motions`: a
homography, a quadratic curvature term and a small smooth field). Each image has a
circular field of view and its own photometry (illumination gradient, gamma, colour
balance, blur, noise). Ground truth is exact: control points on vessels are chosen in the
source retina, mapped into the fixed image by its view and into the moving image by the
motion.

Categories follow FIRE's definitions: S overlap > 75 % and no anatomical change;
P overlap < 75 %; A overlap > 75 % with simulated anatomical change (lesions, haze,
vessel contrast) in the second image. Overlap is the share of the fixed image's field of
view whose retina also lies inside the moving image's field of view.

Points are ``(x, y)`` pixels (:mod:`firereg.transforms.coords`) of a generated image or,
for source points, of the source photograph (:mod:`firereg.transforms.source_retina`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from firereg.transforms.fire_motions import (
    PairMotion,
    ViewTransform,
    random_view,
    sample_motion,
    sample_on_grid,
)
from firereg.transforms.fire_reader import CATEGORIES, read_control_points, truth_path
from firereg.transforms.residual_pairs import PrealignConfig, prealign_pair
from firereg.transforms.source_retina import (
    SourceRetina,
    anatomical_change,
    load_source,
    procedural_source,
)

__all__ = [
    "GeneratorConfig",
    "ViewTransform",  # re-exported from firereg.transforms.fire_motions
    "PairMotion",  # re-exported from firereg.transforms.fire_motions
    "GeneratedPair",
    "RETINAS",
    "SourceRetina",  # re-exported from firereg.transforms.source_retina
    "parse_pairs",
    "load_source",  # re-exported from firereg.transforms.source_retina
    "generate_pair",
    "make_fire_dataset",
    "DEFAULT_PAIRS",
    "fov_disk",
    "pair_overlap",
    "read_generator_metadata",
]

GENERATOR_VERSION = 3
#: where the retina of a pair comes from: one photograph, or a procedural retina per pair
RETINAS = ("photograph", "procedural")
#: the default dataset: small enough for CI
DEFAULT_PAIRS = {"S": 12, "P": 8, "A": 4}
#: field-of-view radius as a share of the image size (FIRE's circle nearly fills the frame)
FOV_RADIUS_FRACTION = 0.47
#: view radius in the source as a share of the source's field-of-view radius
VIEW_RADIUS_FRACTION = 0.6
#: overlap bounds with a margin around FIRE's 75 % (FIRE's P pairs overlap down to about 20 %)
HIGH_OVERLAP_MIN = 0.78
LOW_OVERLAP_MAX = 0.72
LOW_OVERLAP_MIN = 0.2
#: canvas of a procedural retina per image size: a view at VIEW_RADIUS_FRACTION is drawn 1:1
PROCEDURAL_CANVAS = 2 * FOV_RADIUS_FRACTION / VIEW_RADIUS_FRACTION


@dataclass
class GeneratorConfig:
    """Settings of one generated dataset (all sizes in pixels).

    Attributes:
        size: width = height of every generated image.
        pairs: number of pairs per category, e.g. ``{"S": 12, "P": 8, "A": 4}``.
        seed: the dataset is a deterministic function of the config.
        source: fundus photograph to generate from; None = ``skimage.data.retina()`` (only
            with ``retina="photograph"``).
        retina: ``"photograph"`` (every pair from the one photograph ``source``) or
            ``"procedural"`` (every pair from a synthetic retina of its own).
        n_points: control points per pair.
        jpeg_quality: quality of the written JPEG images.
        prealign_px: None (raw pairs), or every moving image is pre-aligned onto its fixed
            image by a quadratic fitted to matches with this noise (px of a 1024 px image), as
            the hybrid's keypoint stage does (:func:`firereg.transforms.residual_pairs.prealign_pair`):
            a dataset for validating a deformable stage; the control points follow.
    """

    size: int = 1024
    pairs: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_PAIRS))
    seed: int = 0
    source: str | None = None
    retina: str = "photograph"
    n_points: int = 10
    jpeg_quality: int = 95
    prealign_px: float | None = None

    def validate(self) -> None:
        """Raise ``ValueError`` naming the bad setting."""
        if self.size < 64:
            raise ValueError(f"size must be at least 64 px, got {self.size}")
        unknown = set(self.pairs) - set(CATEGORIES)
        if unknown:
            raise ValueError(f"unknown categories {sorted(unknown)} in pairs; use S, P, A")
        if any(n < 0 or n > 99 for n in self.pairs.values()) or sum(self.pairs.values()) == 0:
            raise ValueError(f"pairs per category must be 0..99 and not all 0, got {self.pairs}")
        if self.n_points < 3:
            raise ValueError(f"n_points must be at least 3, got {self.n_points}")
        if self.retina not in RETINAS:
            raise ValueError(f"retina must be one of {', '.join(RETINAS)}, got {self.retina!r}")
        if self.source is not None and self.retina != "photograph":
            raise ValueError(f"a source photograph ({self.source}) needs retina='photograph', got {self.retina!r}")
        if self.prealign_px is not None:
            PrealignConfig(noise_px=float(self.prealign_px)).validate()
        if self.source is not None and not Path(self.source).is_file():
            raise FileNotFoundError(f"source image not found: {self.source}")


def parse_pairs(text: str) -> dict[str, int]:
    """Parse ``"S:12,P:8,A:4"`` into ``{"S": 12, "P": 8, "A": 4}``.

    Raises:
        ValueError: quoting the bad item, or naming a category given twice.
    """
    pairs: dict[str, int] = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        key, sep, value = item.partition(":")
        key = key.strip().upper()
        if not sep or key not in CATEGORIES or not value.strip().isdigit():
            raise ValueError(f"bad pairs item {item!r}; expected CATEGORY:COUNT like 'S:12,P:8,A:4'")
        if key in pairs:
            raise ValueError(f"category {key} given twice in pairs {text!r}; give each category once")
        pairs[key] = int(value)
    if not pairs:
        raise ValueError(f"no pairs given in {text!r}; expected like 'S:12,P:8,A:4'")
    return pairs


@dataclass
class GeneratedPair:
    """One generated pair: images (H, W, 3) uint8 row-major, points (N, 2) ``(x, y)`` px.

    ``fixed_view`` maps fixed-image pixels to the source retina; ``motion`` maps fixed-image
    pixels to moving-image pixels.
    """

    name: str
    category: str
    fixed: np.ndarray
    moving: np.ndarray
    fixed_points: np.ndarray
    moving_points: np.ndarray
    fixed_view: ViewTransform
    motion: PairMotion
    overlap: float
    changes: dict
    retina_seed: int | None = None


def fov_disk(size: int) -> np.ndarray:
    """Boolean (size, size) disk of radius ``FOV_RADIUS_FRACTION * size`` — every image's FOV."""
    c = (size - 1) / 2.0
    yy, xx = np.mgrid[0:size, 0:size]
    return (xx - c) ** 2 + (yy - c) ** 2 <= (FOV_RADIUS_FRACTION * size) ** 2


def _inside_fov(size: int, points: np.ndarray, margin: float = 1.0) -> np.ndarray:
    d = np.linalg.norm(points - (size - 1) / 2.0, axis=-1)
    return d <= margin * FOV_RADIUS_FRACTION * size


def pair_overlap(motion: PairMotion, grid: int = 96) -> float:
    """Share of the fixed FOV whose retina lies inside the moving FOV (0..1)."""
    size = motion.size
    coords = (np.arange(grid) + 0.5) * size / grid - 0.5
    pts = np.stack(np.meshgrid(coords, coords), axis=-1).reshape(-1, 2)
    pts = pts[_inside_fov(size, pts)]
    return float(_inside_fov(size, motion.fixed_to_moving(pts)).mean())


def _sample_motion(rng: np.random.Generator, size: int, category: str) -> tuple[PairMotion, float]:
    """Draw a motion whose overlap satisfies the category (rejection sampling)."""
    for _ in range(200):
        motion = sample_motion(rng, category, size, FOV_RADIUS_FRACTION * size)
        overlap = pair_overlap(motion)
        ok = LOW_OVERLAP_MIN <= overlap <= LOW_OVERLAP_MAX if category == "P" else overlap >= HIGH_OVERLAP_MIN
        if ok:
            return motion, overlap
    raise RuntimeError(f"could not draw a motion for a {category} pair in 200 tries")


def _pair_outline(motion: PairMotion, n: int = 72) -> np.ndarray:
    """(2n, 2) fixed-image px on the rims of both fields of view (the moving one mapped back)."""
    size = motion.size
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    rim = (size - 1) / 2.0 + FOV_RADIUS_FRACTION * size * np.stack([np.cos(t), np.sin(t)], axis=1)
    back = motion.moving_to_fixed(rim)
    return np.concatenate([rim, back[np.all(np.isfinite(back), axis=1)]])


def _sample_fixed_view(rng: np.random.Generator, source: SourceRetina, motion: PairMotion) -> ViewTransform:
    """Place the fixed view in the source so that both images' fields of view lie on the retina."""
    size = motion.size
    outline = (_pair_outline(motion) - (size - 1) / 2.0) / (FOV_RADIUS_FRACTION * size)  # unit disk = fixed FOV
    mid = (outline.min(axis=0) + outline.max(axis=0)) / 2
    extent = float(np.max(np.linalg.norm(outline - mid, axis=1)))
    radius = min(VIEW_RADIUS_FRACTION, 0.9 / extent) * source.radius
    for _ in range(200):
        room = max(0.0, 0.95 * source.radius - 1.06 * radius * extent)
        spot = np.asarray(source.centre) + rng.uniform(0, room) * np.array(
            [np.cos(b := rng.uniform(0, 2 * np.pi)), np.sin(b)]
        )
        view = random_view(rng, size, FOV_RADIUS_FRACTION * size, spot, radius, max_angle=10.0)
        view.centre = tuple(float(v) for v in spot - view.radius * (view._rotation() @ mid))
        on_source = view.to_source(_pair_outline(motion))
        if np.all(np.linalg.norm(on_source - np.asarray(source.centre), axis=1) <= 0.985 * source.radius):
            return view
    raise RuntimeError("could not place the pair's views inside the source retina in 200 tries")


def _choose_points(
    rng: np.random.Generator, source: SourceRetina, fixed_view: ViewTransform, motion: PairMotion, n: int
) -> np.ndarray:
    """Pick ``n`` vessel points (source px) spread over the overlap (farthest-point sampling)."""
    size = motion.size
    candidates = source.vessel_points
    if len(candidates) > 5000:  # a random share keeps the inverse mapping below cheap
        candidates = candidates[rng.choice(len(candidates), 5000, replace=False)]
    # far outside a view the inverse may diverge to inf/NaN; those points are simply not inside
    with np.errstate(over="ignore", invalid="ignore"):
        fixed = fixed_view.from_source(candidates)
        in_both = _inside_fov(size, fixed, 0.9) & _inside_fov(size, motion.fixed_to_moving(fixed), 0.9)
    candidates = candidates[in_both]
    if len(candidates) < n:
        raise RuntimeError(f"only {len(candidates)} vessel points in the overlap, need {n}")
    chosen = [int(rng.integers(len(candidates)))]
    dist = np.linalg.norm(candidates - candidates[chosen[0]], axis=1)
    for _ in range(n - 1):
        nxt = int(np.argmax(dist))
        chosen.append(nxt)
        dist = np.minimum(dist, np.linalg.norm(candidates - candidates[nxt], axis=1))
    return candidates[chosen]


def _image_to_source(fixed_view: ViewTransform, motion: PairMotion, index: str) -> np.ndarray:
    """(size, size, 2) float32 source ``(x, y)`` px of every pixel of image ``index`` ("1" fixed,
    "2" moving), row-major ``[y, x]`` (:func:`firereg.transforms.fire_motions.sample_on_grid`)."""
    if index == "1":
        return sample_on_grid(fixed_view.to_source, motion.size)
    return sample_on_grid(lambda p: fixed_view.to_source(motion.moving_to_fixed(p)), motion.size)


@lru_cache(maxsize=2)
def _unit_grids(size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Normalised ``(ux, uy)`` of every pixel (unit disk = the FOV) and the FOV's 2-px soft rim."""
    c, fov_radius = (size - 1) / 2.0, FOV_RADIUS_FRACTION * size
    axis = (np.arange(size, dtype=np.float32) - np.float32(c)) / np.float32(fov_radius)
    ux, uy = np.meshgrid(axis, axis)
    edge = np.clip((1.0 - np.sqrt(ux * ux + uy * uy)) * np.float32(fov_radius / 2.0) + 0.5, 0, 1)
    for grid in (ux, uy, edge):
        grid.setflags(write=False)
    return ux, uy, edge


def _render(rng: np.random.Generator, rgb: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, dict]:
    """Sample ``rgb`` at source px ``q`` (size, size, 2) with its own photometry; (H, W, 3) uint8, settings."""
    ux, uy, edge = _unit_grids(q.shape[0])
    img = cv2.remap(rgb, q[..., 0], q[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    gradient = rng.uniform(-0.15, 0.15, 2)
    vignette = rng.uniform(-0.25, 0.0)
    gains = rng.uniform(0.9, 1.1, 3)
    gamma = rng.uniform(0.85, 1.2)
    blur = rng.uniform(0.0, 1.2) * q.shape[0] / 1024
    noise = rng.uniform(0.005, 0.02)
    illumination = 1.0 + np.float32(gradient[0]) * ux + np.float32(gradient[1]) * uy
    illumination += np.float32(vignette) * (ux * ux + uy * uy)
    img *= illumination[..., None] * gains.astype(np.float32)
    img = cv2.pow(np.clip(img, 0, 1, out=img), float(gamma))
    if blur > 0.05:
        img = cv2.GaussianBlur(img, (0, 0), sigmaX=blur)
    img += np.float32(noise) * rng.standard_normal(img.shape, dtype=np.float32)
    img *= edge[..., None]
    settings = {"gradient": gradient.tolist(), "vignette": float(vignette), "gains": gains.tolist(),
                "gamma": float(gamma), "blur_px": float(blur), "noise": float(noise)}
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8), settings


def _pair_rng(name: str, seed: int) -> np.random.Generator:
    digest = int(hashlib.sha256(name.encode()).hexdigest()[:8], 16)
    return np.random.default_rng([seed, digest])


def generate_pair(
    name: str, source: SourceRetina | None, size: int, seed: int, n_points: int = 10
) -> GeneratedPair:
    """Generate one pair of category ``name[0]`` deterministically from ``seed`` and ``name``.

    Args:
        name: pair name, e.g. ``"P03"``; its first letter is the FIRE category.
        source: the retina to view; None draws a procedural retina of the pair's own
            (:func:`firereg.transforms.source_retina.procedural_source`).
        size: width = height of both images, px.
        seed: the dataset's seed.
        n_points: control points of the pair.
    """
    category = name[0]
    rng = _pair_rng(name, seed)
    retina_seed = None
    if source is None:
        retina_seed = int(rng.integers(2**31))
        canvas = int(np.ceil(PROCEDURAL_CANVAS * size))
        source = procedural_source(retina_seed, canvas, FOV_RADIUS_FRACTION * size)
    for _ in range(20):
        motion, overlap = _sample_motion(rng, size, category)
        fixed_view = _sample_fixed_view(rng, source, motion)
        try:
            q = _choose_points(rng, source, fixed_view, motion, n_points)
        except RuntimeError:
            continue
        break
    else:
        raise RuntimeError(f"could not place {n_points} control points for pair {name}")
    changes: dict = {}
    moving_rgb = source.rgb
    if category == "A":
        moving_rgb, changes = anatomical_change(rng, source, q, unit=fixed_view.radius)
    fixed_img, fixed_photo = _render(rng, source.rgb, _image_to_source(fixed_view, motion, "1"))
    moving_img, moving_photo = _render(rng, moving_rgb, _image_to_source(fixed_view, motion, "2"))
    changes["photometry"] = {"fixed": fixed_photo, "moving": moving_photo}
    fixed_points = fixed_view.from_source(q)
    return GeneratedPair(
        name=name,
        category=category,
        fixed=fixed_img,
        moving=moving_img,
        fixed_points=fixed_points,
        moving_points=motion.fixed_to_moving(fixed_points),
        fixed_view=fixed_view,
        motion=motion,
        overlap=overlap,
        changes=changes,
        retina_seed=retina_seed,
    )


def _metadata_key(config: GeneratorConfig) -> dict:
    key = {"version": GENERATOR_VERSION, **asdict(config)}
    if key["prealign_px"] is None:  # raw datasets keep the key they had before pre-alignment existed
        del key["prealign_px"]
    return key


def _pair_names(config: GeneratorConfig) -> list[str]:
    return [f"{c}{i:02d}" for c in CATEGORIES for i in range(1, config.pairs.get(c, 0) + 1)]


def _readable_image(path: Path, size: int) -> bool:
    try:
        with Image.open(path) as im:
            if im.size != (size, size):
                return False
        if path.suffix == ".jpg":  # a JPEG cut short lacks its end-of-image marker
            with path.open("rb") as f:
                f.seek(-2, os.SEEK_END)
                return f.read(2) == b"\xff\xd9"
        return True
    except (OSError, ValueError):
        return False


def _damaged_file(out: Path, config: GeneratorConfig) -> Path | None:
    """The first missing or unreadable file of a dataset written with ``config``, or None."""
    if not _readable_image(out / "Masks" / "mask.png", config.size):
        return out / "Masks" / "mask.png"
    for name in _pair_names(config):
        for index in ("1", "2"):
            if not _readable_image(path := out / "Images" / f"{name}_{index}.jpg", config.size):
                return path
        path = truth_path(out, name)
        try:
            fixed_points, _ = read_control_points(path)
        except (OSError, ValueError):
            return path
        if len(fixed_points) != config.n_points:
            return path
    return None


def _write_pair(tmp: Path, pair: GeneratedPair, quality: int) -> dict:
    for index, img in (("1", pair.fixed), ("2", pair.moving)):
        Image.fromarray(img).save(tmp / "Images" / f"{pair.name}_{index}.jpg", quality=quality)
    lines = [
        f"{xf:.3f} {yf:.3f} {xm:.3f} {ym:.3f}"
        for (xf, yf), (xm, ym) in zip(pair.fixed_points, pair.moving_points)
    ]
    truth_path(tmp, pair.name).write_text("\n".join(lines) + "\n")
    return {
        "category": pair.category,
        "overlap": pair.overlap,
        "retina_seed": pair.retina_seed,
        "fixed_view": asdict(pair.fixed_view),
        "motion": asdict(pair.motion),
        "changes": pair.changes,
    }


def make_fire_dataset(
    out: str | Path, config: GeneratorConfig | None = None, overwrite: bool = False, progress: bool = True
) -> Path:
    """Write a FIRE-format dataset to ``out`` (``Images/``, ``Ground Truth/``, ``Masks/mask.png``).

    Also writes ``generator.json`` (settings, per-pair overlap, view and motion). The
    dataset is written to a temporary sibling folder and renamed into place at the end,
    so ``out`` is never left half-written; folders get the usual permissions (the umask's).
    If ``out`` already holds a complete dataset generated with the same settings it is
    reused as it is; one with a missing or unreadable file is regenerated when
    ``overwrite`` is True.

    Args:
        out: destination folder.
        config: generator settings; defaults to :class:`GeneratorConfig`.
        overwrite: replace an existing, different or damaged ``out``.
        progress: show a progress bar.

    Returns:
        ``out`` as a Path.

    Raises:
        FileExistsError: if ``out`` exists, is not empty and holds something else (or a
            damaged dataset, naming its first bad file), and ``overwrite`` is False.
    """
    config = config or GeneratorConfig()
    config.validate()
    out = Path(out)
    meta_path = out / "generator.json"
    if meta_path.is_file():
        try:
            previous = json.loads(meta_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            previous = {}
        if previous.get("config") == _metadata_key(config):
            damaged = _damaged_file(out, config)
            if damaged is None:
                return out
            if not overwrite:
                raise FileExistsError(f"{out} holds a damaged dataset ({damaged} is missing or unreadable); "
                                      "pass --overwrite (overwrite=True) to generate it again")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} exists and holds something else; choose another folder or pass --overwrite (overwrite=True)")
    source = load_source(config.source) if config.retina == "photograph" else None
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial-{uuid.uuid4().hex[:12]}"
    tmp.mkdir()  # unlike tempfile.mkdtemp (0700), the umask's permissions
    try:
        for sub in ("Images", "Ground Truth", "Masks"):
            (tmp / sub).mkdir()
        Image.fromarray((fov_disk(config.size) * 255).astype(np.uint8)).save(tmp / "Masks" / "mask.png")
        records = {}
        for name in tqdm(_pair_names(config), desc="generating FIRE-format pairs", disable=not progress):
            pair = generate_pair(name, source, config.size, config.seed, config.n_points)
            if config.prealign_px is not None:
                pair = prealign_pair(pair, _pair_rng(f"prealign-{name}", config.seed),
                                     PrealignConfig(noise_px=float(config.prealign_px)))
            records[name] = _write_pair(tmp, pair, config.jpeg_quality)
        source_name = source.name if source is not None else "procedural retinas (one per pair)"
        meta = {"source": source_name, "config": _metadata_key(config), "pairs": records}
        (tmp / "generator.json").write_text(json.dumps(meta, indent=1))
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def read_generator_metadata(root: str | Path) -> dict | None:
    """The ``generator.json`` of a generated dataset, or None for real FIRE."""
    path = Path(root) / "generator.json"
    return json.loads(path.read_text()) if path.is_file() else None

