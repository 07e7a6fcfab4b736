"""Procedural fundus photographs: an unlimited family of distinct synthetic retinas, one per seed.

In the spirit of SynthMorph (Hoffmann et al. 2022: train registration on synthetic images so
the network sees far more anatomy than one photograph holds), :func:`render_synthetic_retina`
draws a whole fundus photograph from a seed:

- anatomy (:func:`draw_anatomy`): an optic disc with its cup, a darker macula and fovea, a
  choroidal background texture, and two vascular trees (arteries lighter and narrower than
  veins) growing from the disc — superior and inferior temporal arcades bending around the
  macula, nasal branches, recursive branching with calibre decreasing towards the periphery,
  tortuosity; arteries and veins cross freely;
- camera (:func:`apply_camera`): illumination fall-off and vignetting, colour balance, gamma,
  contrast, blur, sensor noise, JPEG, and the field of view of a real camera (circle, notched
  circle, circle cropped by the frame);
- pathology (:func:`add_pathology`, FIRE's category A): exudates, haemorrhages, drusen, haze
  and a change of vessel contrast.

Arrays are row-major (``YX``), images float32 RGB in [0, 1] unless said otherwise; points are
``(x, y)`` pixels (:mod:`firereg.transforms.coords`). Lengths of the anatomy are in units of
the field-of-view radius ``unit`` (px), so a retina looks the same at every size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

__all__ = [
    "RetinaAnatomy",
    "draw_anatomy",
    "camera_fov_mask",
    "apply_camera",
    "add_pathology",
    "render_synthetic_retina",
]

#: field-of-view radius of a rendered photograph as a share of its size
FOV_FRACTION = 0.47


@dataclass
class RetinaAnatomy:
    """One synthetic retina before the camera.

    Attributes:
        rgb: (H, W, 3) float32 in [0, 1], the fundus without illumination or field of view.
        vessels: (H, W) float32 in [0, 1], vessel opacity (arteries and veins).
        junctions: (J, 2) ``(x, y)`` px of branchings of visible vessels.
        vessel_points: (M, 2) ``(x, y)`` px on the centre lines of vessels at least 0.005 ``unit`` wide (2.4 px at 1024 px).
        disc: ``(x, y)`` px of the optic disc centre.
        fovea: ``(x, y)`` px of the fovea.
    """

    rgb: np.ndarray
    vessels: np.ndarray
    junctions: np.ndarray
    vessel_points: np.ndarray
    disc: tuple[float, float]
    fovea: tuple[float, float]


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cell: float) -> np.ndarray:
    """Zero-mean, unit-std smooth noise with features about ``cell`` px across."""
    h, w = shape
    small = rng.standard_normal((max(2, int(h / cell) + 2), max(2, int(w / cell) + 2)), dtype=np.float32)
    big = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    return (big - np.float32(big.mean())) / np.float32(max(float(big.std()), 1e-6))


def _background(rng: np.random.Generator, shape: tuple[int, int], unit: float) -> np.ndarray:
    """Fundus colour with choroidal texture (blotches and, in pale fundi, tigroid stripes).

    Drawn at half resolution (the finest texture is about 0.015 ``unit`` across) and resized.
    """
    full = shape
    shape = (max(2, shape[0] // 2), max(2, shape[1] // 2))
    unit = unit / 2
    pigment = rng.uniform(0.0, 1.0)  # 0 = pale, orange; 1 = dark, brown-red
    base = np.array([0.92 - 0.2 * pigment, 0.40 - 0.14 * pigment, 0.2 - 0.08 * pigment], np.float32)
    base = base * rng.uniform(0.92, 1.08, 3).astype(np.float32)
    base[2] += rng.uniform(0.0, 0.07)  # some fundi are pink-red, others orange
    tex = 0.5 * _smooth_noise(rng, shape, 0.25 * unit) + 0.35 * _smooth_noise(rng, shape, 0.06 * unit)
    tex += 0.25 * _smooth_noise(rng, shape, 0.015 * unit)
    rgb = base * (1.0 + np.float32(0.06) * tex[..., None] * np.array([1.0, 1.3, 1.3], np.float32))
    if rng.random() < 0.5:  # tigroid fundus: choroidal vessels as orange stripes
        stripes = np.abs(np.sin(_smooth_noise(rng, shape, 0.2 * unit) * 4.0)).astype(np.float32)
        strength = rng.uniform(0.04, 0.12) * (1.0 - pigment)
        rgb = rgb * (1.0 - strength * (1.0 - stripes)[..., None] * np.array([0.4, 1.0, 1.0], np.float32))
    return cv2.resize(rgb, (full[1], full[0]), interpolation=cv2.INTER_LINEAR)


def _blob(shape: tuple[int, int], centre, sigma: float, window: float = 4.0) -> tuple[slice, slice, np.ndarray]:
    """A Gaussian blob evaluated only on its window: (rows, cols, values)."""
    h, w = shape
    cx, cy = centre
    r = window * sigma
    y0, y1 = max(0, int(cy - r)), min(h, int(cy + r) + 1)
    x0, x1 = max(0, int(cx - r)), min(w, int(cx + r) + 1)
    yy, xx = np.mgrid[y0:max(y0, y1), x0:max(x0, x1)].astype(np.float32)
    values = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma**2))
    return slice(y0, max(y0, y1)), slice(x0, max(x0, x1)), values


def _macula_and_disc(rng: np.random.Generator, rgb: np.ndarray, unit: float, disc, fovea) -> np.ndarray:
    shape = rgb.shape[:2]
    rows, cols, mac = _blob(shape, fovea, rng.uniform(0.14, 0.2) * unit)
    depth = rng.uniform(0.2, 0.4)
    rgb[rows, cols] *= 1.0 - depth * mac[..., None] * np.array([0.5, 0.9, 0.9], np.float32)
    rows, cols, fov = _blob(shape, fovea, 0.035 * unit)
    rgb[rows, cols] *= 1.0 - 0.3 * fov[..., None]
    rows, cols, glint = _blob(shape, fovea, 0.006 * unit)
    rgb[rows, cols] += rng.uniform(0.0, 0.25) * glint[..., None]
    # optic disc: an ellipse with a soft rim, a paler cup a little off centre
    radius = rng.uniform(0.11, 0.15) * unit
    ratio = rng.uniform(0.85, 1.0)
    rows, cols, _ = _blob(shape, disc, radius, window=2.0)
    yy, xx = np.mgrid[rows, cols].astype(np.float32)
    d = np.sqrt(((xx - disc[0]) / ratio) ** 2 + (yy - disc[1]) ** 2) / radius
    rim = np.clip((1.08 - d) / 0.16, 0, 1)[..., None]
    disc_colour = np.array([0.98, 0.72, 0.45], np.float32) * rng.uniform(0.9, 1.05)
    patch = rgb[rows, cols]
    patch = patch * (1 - 0.85 * rim) + 0.85 * rim * disc_colour * (1 + 0.05 * _smooth_noise(rng, d.shape, 0.05 * unit)[..., None])
    cup_ratio = rng.uniform(0.25, 0.6)
    dc = np.sqrt(((xx - disc[0] - 0.15 * radius * np.sign(fovea[0] - disc[0])) / ratio) ** 2 + (yy - disc[1]) ** 2)
    cup = np.clip((cup_ratio * radius - dc) / (0.25 * radius) + 0.5, 0, 1)[..., None]
    patch = patch * (1 - 0.8 * cup) + 0.8 * cup * np.array([1.0, 0.93, 0.78], np.float32)
    rgb[rows, cols] = patch
    return rgb


@dataclass
class _Growth:
    """Settings of one retina's vessel growth (px)."""

    step: float
    min_width: float
    branch_every: float
    tortuosity: float
    fovea: tuple[float, float]
    avoid: float
    taper: float
    thinning: float
    bare: float  # length without branches at the disc
    bounds: tuple[int, int]


def _grow_tree(rng: np.random.Generator, g: _Growth, start, heading: float, width: float, arc: float):
    """Grow one vascular tree; returns segments [(x0, y0, x1, y1, width)] and junctions."""
    segments, junctions = [], []
    stack = [(start[0], start[1], heading, width, arc, 0.0)]
    h, w = g.bounds
    while stack and len(segments) < 20000:
        x, y, theta, width, arc, travelled = stack.pop()
        curl = 0.0
        next_branch = rng.exponential(g.branch_every) + (g.bare if travelled == 0 else 0.0)
        while width >= g.min_width and -0.05 * w < x < 1.05 * w and -0.05 * h < y < 1.05 * h:
            curl = 0.8 * curl + rng.normal(0.0, g.tortuosity * (1.0 + 3.0 * g.min_width / width))  # thin: tortuous
            dx, dy = x - g.fovea[0], y - g.fovea[1]
            dist = math.hypot(dx, dy) + 1e-6
            # the arcades bend towards the horizontal raphe, and stop bending once along it (no loops)
            bend = arc * math.exp(-travelled / (2.7 * g.avoid)) if abs(math.sin(theta)) > 0.34 else 0.0
            turn = bend + curl
            if dist < g.avoid:  # steer away from the fovea (its avascular zone)
                away = math.atan2(dy, dx)
                diff = math.atan2(math.sin(away - theta), math.cos(away - theta))
                turn += 0.25 * diff * (1.0 - dist / g.avoid)
            theta += turn
            nx, ny = x + g.step * math.cos(theta), y + g.step * math.sin(theta)
            segments.append((x, y, nx, ny, width))
            x, y = nx, ny
            travelled += g.step
            width = width * g.taper - g.thinning
            next_branch -= g.step
            if next_branch <= 0:
                big = rng.random() < 0.15  # a bifurcation of two similar vessels, else a side branch
                child = width * (rng.uniform(0.65, 0.85) if big else rng.uniform(0.2, 0.55))
                next_branch = rng.exponential(g.branch_every)
                if child < g.min_width:
                    continue
                width = (width**3 - child**3) ** (1 / 3)  # Murray's law
                side = rng.choice([-1.0, 1.0])
                stack.append((x, y, theta + side * np.deg2rad(rng.uniform(30, 75)), child, 0.3 * arc, travelled))
                theta -= side * np.deg2rad(rng.uniform(0, 15))
                if child >= 1.5 * g.min_width:
                    junctions.append((x, y))
    return segments, junctions


def _trunks(rng: np.random.Generator, temporal: float, unit: float, step: float) -> list[tuple[float, float, float]]:
    """(heading, width px, arc curvature per step) of the trees leaving the disc."""
    arc = 2.2 * step / unit  # the arcades turn about 90 degrees within about one unit
    out = []
    for kind_width in (0.019, 0.014):  # vein, artery
        w = kind_width * unit * rng.uniform(0.9, 1.1)
        for up in (-1.0, 1.0):  # superior, inferior
            a = np.deg2rad(rng.uniform(55, 80))
            heading = math.atan2(up * math.sin(a), temporal * math.cos(a))
            out.append((heading + rng.normal(0, 0.08), w, -up * temporal * arc * rng.uniform(0.7, 1.2)))
            a = np.deg2rad(rng.uniform(50, 80))
            heading = math.atan2(up * math.sin(a), -temporal * math.cos(a))
            out.append((heading, 0.75 * w, up * temporal * arc * 0.2))
        out.append((math.atan2(rng.normal(0, 0.3), -temporal), 0.45 * w, 0.0))  # nasal
        out.append((math.atan2(rng.normal(0, 0.2), temporal), 0.3 * w, 0.0))  # macular branch
    return out


def _vessel_layers(rng, shape, unit, disc, fovea, temporal) -> tuple[list, list, list, list]:
    step = max(1.5, 0.012 * unit)
    growth = _Growth(step=step, min_width=max(0.8, 0.0022 * unit), branch_every=rng.uniform(0.07, 0.11) * unit,
                     tortuosity=rng.uniform(0.006, 0.02) * math.sqrt(step / 6.0), fovea=fovea,
                     avoid=0.3 * unit, taper=1.0 - step / (8.0 * unit),
                     thinning=0.002 * step, bare=0.12 * unit, bounds=shape)
    layers = []
    for i, (heading, width, arc) in enumerate(_trunks(rng, temporal, unit, step)):
        start = (disc[0] + rng.normal(0, 0.02 * unit), disc[1] + rng.normal(0, 0.02 * unit))
        segments, junctions = _grow_tree(rng, growth, start, heading, width, arc)
        layers.append(("vein" if i < 6 else "artery", segments, junctions))
    veins = [s for kind, segs, _ in layers if kind == "vein" for s in segs]
    arteries = [s for kind, segs, _ in layers if kind == "artery" for s in segs]
    junctions = [j for _, _, js in layers for j in js]
    return veins, arteries, junctions, [(s[0], s[1]) for s in veins + arteries if s[4] >= max(growth.min_width, 0.005 * unit)]


def _rasterise(shape: tuple[int, int], segments: list, reflex: bool = False) -> np.ndarray:
    """Vessel opacity in [0, 1]: widest last so thin branches never cut a trunk; 4x sub-pixel."""
    canvas = np.zeros(shape, np.uint8)
    shift = 2
    for x0, y0, x1, y1, width in sorted(segments, key=lambda s: s[4]):
        thick = width * (0.3 if reflex else 1.0)
        if reflex and width < 5:
            continue
        value = int(255 * min(1.0, thick))
        p0 = (int(x0 * 4 + 0.5), int(y0 * 4 + 0.5))
        p1 = (int(x1 * 4 + 0.5), int(y1 * 4 + 0.5))
        cv2.line(canvas, p0, p1, value, max(1, int(round(thick))), cv2.LINE_AA, shift)
    return canvas.astype(np.float32) * np.float32(1 / 255)


def draw_anatomy(rng: np.random.Generator, shape: tuple[int, int], unit: float, centre=None) -> RetinaAnatomy:
    """Draw one retina (no camera): background, macula, disc, arteries and veins.

    Args:
        rng: random generator; the retina is a deterministic function of its state.
        shape: (H, W) of the canvas, px.
        unit: field-of-view radius of a photograph of this retina, px (sets every length).
        centre: ``(x, y)`` px the photograph would be centred on; default the canvas centre.

    Returns:
        The :class:`RetinaAnatomy`.
    """
    h, w = shape
    cx, cy = centre if centre is not None else ((w - 1) / 2, (h - 1) / 2)
    temporal = float(rng.choice([-1.0, 1.0]))  # left or right eye: side of the fovea from the disc
    along = rng.uniform(-0.3, 0.45)  # 0: fovea at the centre; 0.7: disc at the centre
    fovea = (cx - temporal * along * unit, cy + rng.normal(0, 0.06) * unit)
    disc = (fovea[0] - temporal * rng.uniform(0.66, 0.8) * unit, fovea[1] - rng.uniform(-0.02, 0.1) * unit)
    rgb = _background(rng, shape, unit)
    rgb = _macula_and_disc(rng, rgb, unit, disc, fovea)
    veins, arteries, junctions, points = _vessel_layers(rng, shape, unit, disc, fovea, temporal)
    sigma = max(0.4, 0.0012 * unit)
    vein = cv2.GaussianBlur(_rasterise(shape, veins), (0, 0), sigma)
    artery = cv2.GaussianBlur(_rasterise(shape, arteries), (0, 0), sigma)
    reflex = cv2.GaussianBlur(_rasterise(shape, arteries, reflex=True), (0, 0), sigma)
    contrast = rng.uniform(0.8, 1.1)
    for ch, (kv, ka, kr) in enumerate(((0.2, 0.07, 1.0), (0.6, 0.4, 0.8), (0.5, 0.34, 0.6))):
        plane = rgb[..., ch] * (1.0 - np.float32(contrast * kv) * vein) * (1.0 - np.float32(contrast * ka) * artery)
        rgb[..., ch] = plane + np.float32(0.12 * kr) * reflex
    vessels = np.maximum(vein, artery)
    return RetinaAnatomy(
        rgb=np.clip(rgb, 0, 1).astype(np.float32),
        vessels=vessels,
        junctions=np.asarray(junctions, np.float64).reshape(-1, 2),
        vessel_points=np.asarray(points, np.float64).reshape(-1, 2),
        disc=(float(disc[0]), float(disc[1])),
        fovea=(float(fovea[0]), float(fovea[1])),
    )


def camera_fov_mask(rng: np.random.Generator, size: int) -> tuple[np.ndarray, str]:
    """A real camera's field of view on a ``size`` x ``size`` frame: (bool mask, kind).

    Kinds: ``"circle"`` (radius about 0.47 size), ``"notched"`` (a circle with the small
    rectangular notch some cameras print at the rim), ``"cropped"`` (a circle wider than the
    frame, cut flat at the top and bottom).
    """
    c = (size - 1) / 2.0
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    r = np.sqrt((xx - c) ** 2 + (yy - c) ** 2)
    kind = str(rng.choice(["circle", "notched", "cropped"], p=[0.5, 0.25, 0.25]))
    if kind == "cropped":
        radius = rng.uniform(0.52, 0.58) * size
        mask = (r <= radius) & (np.abs(yy - c) <= 0.47 * size)
    else:
        radius = rng.uniform(0.45, 0.48) * size
        mask = r <= radius
    if kind == "notched":
        angle = rng.choice([-0.25, 0.25, 0.75]) * np.pi + rng.normal(0, 0.05)
        nx, ny = c + radius * np.cos(angle), c + radius * np.sin(angle)
        half = 0.025 * size
        mask &= ~((np.abs(xx - nx) < half) & (np.abs(yy - ny) < half))
    return mask, kind


def apply_camera(rng: np.random.Generator, rgb: np.ndarray, mask: np.ndarray, jpeg: bool = True) -> np.ndarray:
    """Photograph a retina: illumination, colour, gamma, contrast, blur, noise, FOV, JPEG.

    Args:
        rng: random generator of the camera settings.
        rgb: (H, W, 3) float32 fundus in [0, 1] (:attr:`RetinaAnatomy.rgb`).
        mask: (H, W) bool field of view; outside is black.
        jpeg: compress and decompress at a random JPEG quality (60..95).

    Returns:
        (H, W, 3) uint8 RGB photograph.
    """
    h, w = mask.shape
    n = 128  # illumination is smooth: compute it on a coarse grid and resize
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float64)
    u, v = (xx - (n - 1) / 2) / (0.47 * n), (yy - (n - 1) / 2) / (0.47 * n)
    r2 = u * u + v * v
    centre = rng.normal(0, 0.15, 2)
    fall = rng.uniform(0.1, 0.35) * ((u - centre[0]) ** 2 + (v - centre[1]) ** 2) ** rng.uniform(1.0, 1.8)
    light = (1.0 - fall) * (1.0 + rng.uniform(-0.12, 0.12) * u + rng.uniform(-0.12, 0.12) * v)
    light *= 1.0 - rng.uniform(0.1, 0.35) * np.clip(r2 - 0.8, 0, None) * 4  # dark rim
    light = cv2.resize(light.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    gains = (rng.uniform(0.85, 1.15, 3) * rng.uniform(0.9, 1.25)).astype(np.float32)  # colour, exposure
    img = rgb * np.clip(light, 0.05, 1.5)[..., None] * gains
    gamma = rng.uniform(0.8, 1.3)
    img = np.clip(img, 0, 1) ** np.float32(gamma)
    contrast = rng.uniform(0.85, 1.2)
    mean = img[mask].mean(axis=0) if mask.any() else img.mean(axis=(0, 1))
    img = (img - mean.astype(np.float32)) * np.float32(contrast) + mean.astype(np.float32)
    blur = rng.uniform(0.3, 1.4) * w / 1024
    img = cv2.GaussianBlur(img.astype(np.float32), (0, 0), blur)
    noise = rng.uniform(0.004, 0.018)
    img = img + np.float32(noise) * rng.standard_normal(img.shape, dtype=np.float32) * np.sqrt(np.clip(img, 0.02, 1))
    edge = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), max(0.7, 1.2 * w / 1024)) * mask  # soft inner rim
    img = np.clip(img * edge[..., None], 0, 1)
    out = (img * 255 + 0.5).astype(np.uint8)
    if jpeg:
        quality = int(rng.integers(60, 96))
        ok, buf = cv2.imencode(".jpg", out[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
        out = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1].copy()
    return out


def add_pathology(
    rng: np.random.Generator, rgb: np.ndarray, vessels: np.ndarray, region: np.ndarray, unit: float
) -> tuple[np.ndarray, dict]:
    """Anatomical change of FIRE's category A: lesions, drusen, vessel contrast, haze.

    Args:
        rng: the pair's random generator.
        rgb: (H, W, 3) float32 in [0, 1] (a retina or a rendered view).
        vessels: (H, W) float32 vessel opacity of ``rgb`` in [0, 1].
        region: (N, 2) ``(x, y)`` px around which lesions are placed.
        unit: field-of-view radius, px (lesion sizes scale with it).

    Returns:
        The changed float32 RGB and a record of the changes (kinds, positions, sizes in px).
    """
    out = rgb.copy()
    shape = out.shape[:2]
    lesions = []
    colours = {"exudate": (0.35, 0.3, 0.05), "haemorrhage": (-0.45, -0.7, -0.65), "drusen": (0.18, 0.16, 0.06)}
    for _ in range(int(rng.integers(5, 14))):
        kind = str(rng.choice(["exudate", "haemorrhage", "drusen"]))
        cx, cy = region[int(rng.integers(len(region)))] + rng.normal(0, 0.08 * unit, 2)
        sigma = rng.uniform(0.006, 0.025) * unit * (0.5 if kind == "drusen" else 1.0)
        count = int(rng.integers(3, 9)) if kind == "drusen" else 1
        for _ in range(count):
            px, py = (cx, cy) if count == 1 else (cx + rng.normal(0, 4 * sigma), cy + rng.normal(0, 4 * sigma))
            rows, cols, blob = _blob(shape, (px, py), sigma * rng.uniform(0.7, 1.3))
            sharp = np.clip(blob * 1.6, 0, 1)[..., None] * np.asarray(colours[kind], np.float32)
            out[rows, cols] = out[rows, cols] * (1 + sharp) if kind == "haemorrhage" else out[rows, cols] + sharp
        lesions.append({"kind": kind, "x": float(cx), "y": float(cy), "sigma": float(sigma), "count": count})
    vessel_change = float(rng.choice([-1, 1]) * rng.uniform(0.15, 0.35))
    out *= (1 - np.float32(vessel_change) * vessels)[..., None]
    haze = float(rng.uniform(0.1, 0.3))
    small = cv2.resize(out, (max(2, shape[1] // 8), max(2, shape[0] // 8)), interpolation=cv2.INTER_AREA)
    veil = cv2.resize(cv2.GaussianBlur(small, (0, 0), max(0.5, unit / 240)), (shape[1], shape[0]))
    out = (1 - haze) * out + haze * (0.6 * veil + 0.4 * np.float32(0.55))
    return np.clip(out, 0, 1).astype(np.float32), {"lesions": lesions, "vessel_contrast_change": vessel_change, "haze": haze}


def render_synthetic_retina(seed: int, size: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic fundus photograph, a deterministic function of ``seed``.

    Args:
        seed: any int; different seeds give different retinas, cameras and fields of view.
        size: width = height of the photograph, px (>= 64).

    Returns:
        (size, size, 3) uint8 RGB photograph (``YX``) and its (size, size) bool field-of-view mask.

    Raises:
        ValueError: if ``size`` < 64.
    """
    if size < 64:
        raise ValueError(f"size must be at least 64 px, got {size}")
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0x5E71])
    anatomy = draw_anatomy(rng, (size, size), FOV_FRACTION * size)
    mask, _ = camera_fov_mask(rng, size)
    return apply_camera(rng, anatomy.rgb, mask), mask
