"""Write a FIRE-format dataset generated from one real fundus photograph.

FIRE cannot be downloaded here, so every command runs by default on a dataset this
module writes: each image of a pair is its own *view* of the source retina — a
projective map plus a smooth nonlinear distortion (the retina is curved), a circular
field of view, and its own photometry (illumination gradient, gamma, colour balance,
blur, noise). Ground truth is exact: control points on vessels are chosen in the source
photograph and mapped into both images through the generator's own transforms.

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
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from firereg.transforms.fire_reader import CATEGORIES
from firereg.transforms.source_retina import (
    SourceRetina,
    anatomical_change,
    load_source,
)

__all__ = [
    "GeneratorConfig",
    "ViewTransform",
    "GeneratedPair",
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

GENERATOR_VERSION = 2
#: the default dataset: small enough for CI
DEFAULT_PAIRS = {"S": 12, "P": 8, "A": 4}
#: field-of-view radius as a share of the image size (FIRE's circle nearly fills the frame)
FOV_RADIUS_FRACTION = 0.47
#: view radius in the source as a share of the source's field-of-view radius
VIEW_RADIUS_FRACTION = 0.6
#: overlap bounds with a margin around FIRE's 75 %
HIGH_OVERLAP_MIN = 0.78
LOW_OVERLAP_MAX = 0.72
LOW_OVERLAP_MIN = 0.45


@dataclass
class GeneratorConfig:
    """Settings of one generated dataset (all sizes in pixels).

    Attributes:
        size: width = height of every generated image.
        pairs: number of pairs per category, e.g. ``{"S": 12, "P": 8, "A": 4}``.
        seed: the dataset is a deterministic function of the config.
        source: fundus photograph to generate from; None = ``skimage.data.retina()``.
        n_points: control points per pair.
        jpeg_quality: quality of the written JPEG images.
    """

    size: int = 1024
    pairs: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_PAIRS))
    seed: int = 0
    source: str | None = None
    n_points: int = 10
    jpeg_quality: int = 95

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
        if self.source is not None and not Path(self.source).is_file():
            raise FileNotFoundError(f"source image not found: {self.source}")


def parse_pairs(text: str) -> dict[str, int]:
    """Parse ``"S:12,P:8,A:4"`` into ``{"S": 12, "P": 8, "A": 4}``.

    Raises:
        ValueError: quoting the bad item.
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
        pairs[key] = int(value)
    if not pairs:
        raise ValueError(f"no pairs given in {text!r}; expected like 'S:12,P:8,A:4'")
    return pairs


@dataclass
class ViewTransform:
    """Maps pixels of one generated image to pixels of the source photograph.

    With ``u = (p - c) / r`` (unit disk = the image's field of view):
    ``w = u + k |u|^2 u + sum_j a_j sin(f_j . u + phi_j)`` (smooth distortion),
    ``v = w / (1 + g . w)`` (projective), ``q = centre + radius * R(angle) v``.
    """

    size: int
    centre: tuple[float, float]  # view centre in the source, px
    radius: float  # source px per unit of u
    angle: float  # radians
    perspective: tuple[float, float]  # g
    radial: float  # k
    modes: list[list[float]]  # rows [fx, fy, phase, ax, ay]

    @property
    def image_centre(self) -> float:
        return (self.size - 1) / 2.0

    @property
    def fov_radius(self) -> float:
        return FOV_RADIUS_FRACTION * self.size

    def _distortion(self, u: np.ndarray) -> np.ndarray:
        d = self.radial * np.sum(u * u, axis=-1, keepdims=True) * u
        for fx, fy, phase, ax, ay in self.modes:
            s = np.sin(u[..., 0:1] * fx + u[..., 1:2] * fy + phase)
            d = d + s * np.array([ax, ay])
        return d

    def _rotation(self) -> np.ndarray:
        c, s = np.cos(self.angle), np.sin(self.angle)
        return np.array([[c, -s], [s, c]])

    def to_source(self, points: np.ndarray) -> np.ndarray:
        """(..., 2) image ``(x, y)`` px → source ``(x, y)`` px."""
        u = (np.asarray(points, dtype=np.float64) - self.image_centre) / self.fov_radius
        w = u + self._distortion(u)
        v = w / (1.0 + w @ np.asarray(self.perspective))[..., None]
        return np.asarray(self.centre) + self.radius * (v @ self._rotation().T)

    def from_source(self, points: np.ndarray, tol: float = 1e-10, max_iter: int = 200) -> np.ndarray:
        """(..., 2) source ``(x, y)`` px → image ``(x, y)`` px (exact inverse, iterative)."""
        q = np.asarray(points, dtype=np.float64)
        v = ((q - np.asarray(self.centre)) / self.radius) @ self._rotation()
        w = v / (1.0 - v @ np.asarray(self.perspective))[..., None]
        u = w.copy()
        for _ in range(max_iter):  # fixed point u = w - d(u); |dd/du| << 1 so it contracts
            u_next = w - self._distortion(u)
            if np.max(np.abs(u_next - u), initial=0.0) < tol:
                u = u_next
                break
            u = u_next
        return u * self.fov_radius + self.image_centre


@dataclass
class GeneratedPair:
    """One generated pair: images (H, W, 3) uint8 row-major, points (N, 2) ``(x, y)`` px."""

    name: str
    category: str
    fixed: np.ndarray
    moving: np.ndarray
    fixed_points: np.ndarray
    moving_points: np.ndarray
    fixed_view: ViewTransform
    moving_view: ViewTransform
    overlap: float
    changes: dict


def fov_disk(size: int) -> np.ndarray:
    """Boolean (size, size) disk of radius ``FOV_RADIUS_FRACTION * size`` — every image's FOV."""
    c = (size - 1) / 2.0
    yy, xx = np.mgrid[0:size, 0:size]
    return (xx - c) ** 2 + (yy - c) ** 2 <= (FOV_RADIUS_FRACTION * size) ** 2


def _inside_fov(view: ViewTransform, points: np.ndarray, margin: float = 1.0) -> np.ndarray:
    d = np.linalg.norm(points - view.image_centre, axis=-1)
    return d <= margin * view.fov_radius


def pair_overlap(fixed_view: ViewTransform, moving_view: ViewTransform, grid: int = 96) -> float:
    """Share of the fixed FOV whose retina lies inside the moving FOV (0..1)."""
    size = fixed_view.size
    coords = (np.arange(grid) + 0.5) * size / grid - 0.5
    pts = np.stack(np.meshgrid(coords, coords), axis=-1).reshape(-1, 2)
    pts = pts[_inside_fov(fixed_view, pts)]
    in_moving = _inside_fov(moving_view, moving_view.from_source(fixed_view.to_source(pts)))
    return float(in_moving.mean())


def _random_view(rng: np.random.Generator, size: int, centre: np.ndarray, radius: float, max_angle: float) -> ViewTransform:
    modes = []
    for _ in range(3):
        freq = rng.uniform(1.0, 3.0) * np.array([np.cos(t := rng.uniform(0, 2 * np.pi)), np.sin(t)])
        amp = rng.uniform(0.002, 0.006) * np.array([np.cos(s := rng.uniform(0, 2 * np.pi)), np.sin(s)])
        modes.append([float(freq[0]), float(freq[1]), float(rng.uniform(0, 2 * np.pi)), float(amp[0]), float(amp[1])])
    g = rng.uniform(0.0, 0.04) * np.array([np.cos(a := rng.uniform(0, 2 * np.pi)), np.sin(a)])
    return ViewTransform(
        size=size,
        centre=(float(centre[0]), float(centre[1])),
        radius=float(radius * np.exp(rng.normal(0.0, 0.03))),
        angle=float(np.deg2rad(rng.uniform(-max_angle, max_angle))),
        perspective=(float(g[0]), float(g[1])),
        radial=float(rng.uniform(-0.03, 0.03)),
        modes=modes,
    )


def _sample_views(
    rng: np.random.Generator, source: SourceRetina, size: int, category: str
) -> tuple[ViewTransform, ViewTransform, float]:
    """Draw two views whose overlap satisfies the category (rejection sampling)."""
    view_radius = VIEW_RADIUS_FRACTION * source.radius
    for _ in range(200):
        if category == "P":
            half_sep = rng.uniform(0.2, 0.42) * view_radius  # t = d / 2R in [0.2, 0.42]
            max_angle = 10.0
        else:
            half_sep = rng.uniform(0.02, 0.12) * view_radius
            max_angle = 5.0
        direction = rng.uniform(0, 2 * np.pi)
        offset = half_sep * np.array([np.cos(direction), np.sin(direction)])
        room = 0.97 * source.radius - 1.08 * view_radius - half_sep
        if room <= 0:
            continue
        mid = np.asarray(source.centre) + rng.uniform(0, room) * np.array(
            [np.cos(b := rng.uniform(0, 2 * np.pi)), np.sin(b)]
        )
        fixed_view = _random_view(rng, size, mid - offset, view_radius, max_angle)
        moving_view = _random_view(rng, size, mid + offset, view_radius, max_angle)
        overlap = pair_overlap(fixed_view, moving_view)
        ok = LOW_OVERLAP_MIN <= overlap <= LOW_OVERLAP_MAX if category == "P" else overlap >= HIGH_OVERLAP_MIN
        if ok:
            return fixed_view, moving_view, overlap
    raise RuntimeError(f"could not draw views for a {category} pair in 200 tries")


def _choose_points(
    rng: np.random.Generator, source: SourceRetina, fixed_view: ViewTransform, moving_view: ViewTransform, n: int
) -> np.ndarray:
    """Pick ``n`` vessel points (source px) spread over the overlap (farthest-point sampling)."""
    candidates = source.vessel_points
    # far outside a view the inverse may diverge to inf/NaN; those points are simply not inside
    with np.errstate(over="ignore", invalid="ignore"):
        in_both = _inside_fov(fixed_view, fixed_view.from_source(candidates), 0.9) & _inside_fov(
            moving_view, moving_view.from_source(candidates), 0.9
        )
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


def _render(rng: np.random.Generator, rgb: np.ndarray, view: ViewTransform, haze: float = 0.0) -> tuple[np.ndarray, dict]:
    """Render one view with its own photometry; returns (H, W, 3) uint8 and the settings."""
    size = view.size
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    q = view.to_source(np.stack([xx, yy], axis=-1))
    img = cv2.remap(rgb, q[..., 0].astype(np.float32), q[..., 1].astype(np.float32), cv2.INTER_LINEAR,
                    borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    u = (np.stack([xx, yy], axis=-1) - view.image_centre) / view.fov_radius
    gradient = rng.uniform(-0.15, 0.15, 2)
    vignette = rng.uniform(-0.25, 0.0)
    illumination = 1.0 + u @ gradient + vignette * np.sum(u * u, axis=-1)
    gains = rng.uniform(0.9, 1.1, 3)
    gamma = rng.uniform(0.85, 1.2)
    blur = rng.uniform(0.0, 1.2) * size / 1024
    noise = rng.uniform(0.005, 0.02)
    img = img * illumination[..., None].astype(np.float32) * gains.astype(np.float32)
    if haze > 0:  # cataract-like veil: low-contrast, blurred, whitish
        veil = cv2.GaussianBlur(img, (0, 0), sigmaX=size / 60)
        img = (1 - haze) * img + haze * (0.6 * veil + 0.4 * np.float32(0.55))
    img = np.clip(img, 0, 1) ** np.float32(gamma)
    if blur > 0.05:
        img = cv2.GaussianBlur(img, (0, 0), sigmaX=blur)
    img = img + rng.normal(0, noise, img.shape).astype(np.float32)
    radius = np.sqrt(np.sum((np.stack([xx, yy], -1) - view.image_centre) ** 2, axis=-1))
    edge = np.clip((view.fov_radius - radius) / 2.0 + 0.5, 0, 1).astype(np.float32)  # 2-px soft rim
    img = np.clip(img * edge[..., None], 0, 1)
    settings = {"gradient": gradient.tolist(), "vignette": float(vignette), "gains": gains.tolist(),
                "gamma": float(gamma), "blur_px": float(blur), "noise": float(noise), "haze": float(haze)}
    return (img * 255 + 0.5).astype(np.uint8), settings


def generate_pair(name: str, source: SourceRetina, size: int, seed: int, n_points: int = 10) -> GeneratedPair:
    """Generate one pair of category ``name[0]`` deterministically from ``seed`` and ``name``."""
    category = name[0]
    digest = int(hashlib.sha256(name.encode()).hexdigest()[:8], 16)
    rng = np.random.default_rng([seed, digest])
    for _ in range(20):
        fixed_view, moving_view, overlap = _sample_views(rng, source, size, category)
        try:
            q = _choose_points(rng, source, fixed_view, moving_view, n_points)
        except RuntimeError:
            continue
        break
    else:
        raise RuntimeError(f"could not place {n_points} control points for pair {name}")
    changes: dict = {}
    moving_rgb = source.rgb
    haze = 0.0
    if category == "A":
        moving_rgb, changes = anatomical_change(rng, source, q)
        haze = float(rng.uniform(0.15, 0.35))
        changes["haze"] = haze
    fixed_img, fixed_photo = _render(rng, source.rgb, fixed_view)
    moving_img, moving_photo = _render(rng, moving_rgb, moving_view, haze=haze)
    changes["photometry"] = {"fixed": fixed_photo, "moving": moving_photo}
    return GeneratedPair(
        name=name,
        category=category,
        fixed=fixed_img,
        moving=moving_img,
        fixed_points=fixed_view.from_source(q),
        moving_points=moving_view.from_source(q),
        fixed_view=fixed_view,
        moving_view=moving_view,
        overlap=overlap,
        changes=changes,
    )


def _metadata_key(config: GeneratorConfig) -> dict:
    return {"version": GENERATOR_VERSION, **asdict(config)}


def make_fire_dataset(
    out: str | Path, config: GeneratorConfig | None = None, overwrite: bool = False, progress: bool = True
) -> Path:
    """Write a FIRE-format dataset to ``out`` (``Images/``, ``Ground Truth/``, ``Masks/mask.png``).

    Also writes ``generator.json`` (settings, per-pair overlap and transforms). The
    dataset is written to a temporary sibling folder and renamed into place at the end,
    so ``out`` is never left half-written. If ``out`` already holds a dataset generated
    with the same settings it is reused as it is.

    Args:
        out: destination folder.
        config: generator settings; defaults to :class:`GeneratorConfig`.
        overwrite: replace an existing, different ``out``.
        progress: show a progress bar.

    Returns:
        ``out`` as a Path.

    Raises:
        FileExistsError: if ``out`` exists, is not empty and holds something else, and
            ``overwrite`` is False.
    """
    config = config or GeneratorConfig()
    config.validate()
    out = Path(out)
    meta_path = out / "generator.json"
    if meta_path.is_file():
        try:
            previous = json.loads(meta_path.read_text())
        except json.JSONDecodeError:
            previous = {}
        if previous.get("config") == _metadata_key(config):
            return out
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} exists and holds something else; choose another folder or pass --overwrite (overwrite=True)")
    source = load_source(config.source)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        for sub in ("Images", "Ground Truth", "Masks"):
            (tmp / sub).mkdir()
        Image.fromarray((fov_disk(config.size) * 255).astype(np.uint8)).save(tmp / "Masks" / "mask.png")
        names = [f"{c}{i:02d}" for c in CATEGORIES for i in range(1, config.pairs.get(c, 0) + 1)]
        records = {}
        for name in tqdm(names, desc="generating FIRE-format pairs", disable=not progress):
            pair = generate_pair(name, source, config.size, config.seed, config.n_points)
            for index, img in (("1", pair.fixed), ("2", pair.moving)):
                Image.fromarray(img).save(tmp / "Images" / f"{name}_{index}.jpg", quality=config.jpeg_quality)
            lines = [
                f"{xf:.3f} {yf:.3f} {xm:.3f} {ym:.3f}"
                for (xf, yf), (xm, ym) in zip(pair.fixed_points, pair.moving_points)
            ]
            (tmp / "Ground Truth" / f"control_points_{name}_1_2.txt").write_text("\n".join(lines) + "\n")
            records[name] = {
                "category": pair.category,
                "overlap": pair.overlap,
                "fixed_view": asdict(pair.fixed_view),
                "moving_view": asdict(pair.moving_view),
                "changes": pair.changes,
            }
        meta = {"source": source.name, "config": _metadata_key(config), "pairs": records}
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

