"""Training pairs generated on the fly: a fresh FIRE-like pair for every item, seeded and resumable.

A FIRE folder holds a fixed set of pairs; :class:`GeneratedPairs` instead draws a new pair
for every item it is asked for: a FIRE category (S, P, A in FIRE's shares by default), a
retina (a procedural one of the pair's own, skimage's photograph, or a mix), a
FIRE-calibrated motion, two views and their photometry — all of
:func:`firereg.transforms.fire_generator.generate_pair`, in memory. The pair is rendered at a
render size (twice the working size by default, so rendering stays cheap) and then goes
through the very steps a folder pair goes through after it is read
(:func:`firereg.transforms.pair_transforms.pair_transforms` with ``load=False``: mask,
channel, area resize to the working size, intensity scaling, augmentation), so an item is
the dictionary a folder pair gives: the same keys, (C, W, H) ``MetaTensor`` images in the
``XY`` layout of ``PILReader``, points ``(x, y)`` in working-size pixels
(:mod:`firereg.transforms.coords`). ``mask`` is None (no file behind it).

Seeding: what item ``i`` holds follows from the random state of :attr:`GeneratedPairs.transform`
(a MONAI ``Randomizable``) when it is drawn. :class:`firereg.pipelines.training.sampling.SeededItems`
reseeds it from ``(seed, epoch, i)`` before every item, so every epoch sees new pairs and a
resumed run sees exactly the pairs an uninterrupted one would have seen.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from monai.data import MetaTensor, PILReader
from monai.transforms import Compose, EnsureChannelFirst, Randomizable
from PIL import Image
from torch.utils.data import Dataset

from firereg.transforms.fire_generator import (
    GeneratedPair,
    fov_disk,
    generate_pair,
    load_source,
)
from firereg.transforms.fire_reader import CATEGORIES
from firereg.transforms.pair_transforms import (
    FIXED,
    FIXED_POINTS,
    MASK_PATH,
    MOVING,
    MOVING_POINTS,
    PairTransformConfig,
    pair_transforms,
)
from firereg.transforms.residual_pairs import PrealignConfig, prealign_pair

__all__ = [
    "FIRE_SHARES",
    "RETINA_MODES",
    "PairSpec",
    "DrawPair",
    "GeneratedPairs",
    "loaded_image",
    "pair_item",
    "render_size_for",
]

#: FIRE's pairs per category (134 pairs: S 71, P 49, A 14), the default category shares
FIRE_SHARES: dict[str, float] = {"S": 71, "P": 49, "A": 14}
#: where the retina of a generated pair comes from
RETINA_MODES = ("procedural", "photograph", "mixed")
#: pairs are rendered at this multiple of the working size, then area-resized to it
RENDER_SCALE = 2
#: the smallest render size, px (the generator needs room for its vessels and points)
MIN_RENDER_SIZE = 128
#: draws of a pair that cannot be generated (a rare motion or view that fits no retina) before giving up
MAX_TRIES = 5


def render_size_for(size: int) -> int:
    """The render size of generated pairs for working size ``size``: ``max(2 * size, 128)`` px."""
    return max(RENDER_SCALE * int(size), MIN_RENDER_SIZE)


def loaded_image(rgb: np.ndarray, name: str) -> MetaTensor:
    """A row-major (H, W, C) image as ``LoadImaged(reader="PILReader", ensure_channel_first=True)``
    gives it for a file holding it: a (C, W, H) float32 ``MetaTensor`` (``XY`` layout) with
    ``PILReader``'s metadata (identity affine); ``filename_or_obj`` is ``name``.

    Args:
        rgb: (H, W, 3) uint8 image.
        name: what stands for the file name in the metadata.
    """
    array, meta = PILReader().get_data(Image.fromarray(np.ascontiguousarray(rgb)))
    meta["filename_or_obj"] = name
    image = MetaTensor.ensure_torch_and_prune_meta(array.astype(np.float32), meta)
    return EnsureChannelFirst()(image, meta_dict=meta)


def pair_item(pair: GeneratedPair, pipeline: Compose) -> dict:
    """The pair dictionary of a generated pair, as a folder holding it would give.

    Args:
        pair: from :func:`firereg.transforms.fire_generator.generate_pair` (images row-major,
            points ``(x, y)`` px of those images).
        pipeline: :func:`firereg.transforms.pair_transforms.pair_transforms` with ``load=False``.

    Returns:
        The dictionary of ``pair_transforms`` for a folder pair: ``name``, ``category``,
        ``fixed``/``moving`` (C, W, H), ``fixed_mask``/``moving_mask`` (1, W, H), points
        (1, N, 2) working-size px; ``mask`` None. The mask is the generator's field of view
        (:func:`firereg.transforms.fire_generator.fov_disk`, what ``Masks/mask.png`` holds).
    """
    data = {
        "name": pair.name,
        "category": pair.category,
        FIXED: loaded_image(pair.fixed, f"{pair.name}_1"),
        MOVING: loaded_image(pair.moving, f"{pair.name}_2"),
        MASK_PATH: fov_disk(pair.fixed.shape[0]),
        FIXED_POINTS: np.asarray(pair.fixed_points, dtype=np.float64),
        MOVING_POINTS: np.asarray(pair.moving_points, dtype=np.float64),
    }
    item = pipeline(data)
    item[MASK_PATH] = None
    return item


@dataclass(frozen=True)
class PairSpec:
    """What one generated item is: its pair's name (first letter = category), retina, seeds."""

    name: str
    category: str
    photograph: bool
    pair_seed: int
    augment_seed: int


def _check(shares: Mapping[str, float], retinas: str, photograph_share: float) -> np.ndarray:
    """Category probabilities in :data:`CATEGORIES` order; ``ValueError`` naming a bad setting."""
    unknown = set(shares) - set(CATEGORIES)
    if unknown:
        raise ValueError(f"unknown categories {sorted(unknown)} in the category shares; use S, P, A")
    weights = np.array([float(shares.get(c, 0)) for c in CATEGORIES])
    if not np.all(np.isfinite(weights)) or np.any(weights < 0) or weights.sum() <= 0:
        raise ValueError(f"category shares must be >= 0 and not all 0, got {dict(shares)}")
    if retinas not in RETINA_MODES:
        raise ValueError(f"retinas must be one of {', '.join(RETINA_MODES)}, got {retinas!r}")
    if not 0 <= photograph_share <= 1:
        raise ValueError(f"photograph_share must be in [0, 1], got {photograph_share!r}")
    return weights / weights.sum()


class DrawPair(Randomizable):
    """Draw and prepare one generated pair: item index → pair dictionary (see the module docstring).

    Its random state decides everything about the item (category, retina, the pair's seed,
    the augmentation's seed); :meth:`set_random_state` fixes it.

    Args:
        config: the pair pipeline's settings (working size, channel, augmentation).
        retinas: ``procedural``, ``photograph`` (``skimage.data.retina()``) or ``mixed``.
        photograph_share: with ``mixed``, the share of pairs from the photograph.
        shares: relative frequency of each category (default FIRE's).
        render_size: px the pair is rendered at (default :func:`render_size_for`).
        n_points: control points per pair.
        prealign: None (raw pairs) or how to pre-align each pair's moving image globally
            (:func:`firereg.transforms.residual_pairs.prealign_pair`, seeded by the pair's seed).
    """

    def __init__(
        self,
        config: PairTransformConfig,
        retinas: str = "procedural",
        photograph_share: float = 0.0,
        shares: Mapping[str, float] | None = None,
        render_size: int | None = None,
        n_points: int = 10,
        prealign: PrealignConfig | None = None,
    ) -> None:
        self.probs = _check(FIRE_SHARES if shares is None else shares, retinas, float(photograph_share))
        self.retinas, self.photograph_share = retinas, float(photograph_share)
        self.render_size = int(render_size) if render_size is not None else render_size_for(config.size)
        if self.render_size < 64:
            raise ValueError(f"render size must be at least 64 px, got {self.render_size}")
        self.n_points = int(n_points)
        if prealign is not None:
            prealign.validate()
        self.prealign = prealign
        self.pipeline = pair_transforms(config, load=False)

    def draw(self, index: int) -> PairSpec:
        """The next item's :class:`PairSpec` (advances the random state)."""
        category = CATEGORIES[int(self.R.choice(len(CATEGORIES), p=self.probs))]
        mixed_photo = bool(self.R.rand() < self.photograph_share)
        photograph = self.retinas == "photograph" or (self.retinas == "mixed" and mixed_photo)
        pair_seed, augment_seed = (int(s) for s in self.R.randint(0, 2**31, size=2))
        return PairSpec(f"{category}{int(index):05d}", category, photograph, pair_seed, augment_seed)

    def render(self, spec: PairSpec) -> GeneratedPair:
        """The pair of ``spec`` at the render size (row-major images, points in their px)."""
        source = load_source() if spec.photograph else None
        pair = generate_pair(spec.name, source, self.render_size, spec.pair_seed, self.n_points)
        if self.prealign is None:
            return pair
        return prealign_pair(pair, np.random.default_rng([spec.pair_seed, 1]), self.prealign)

    def __call__(self, index: int) -> dict:
        spec = self.draw(index)
        for _ in range(MAX_TRIES):
            try:
                pair = self.render(spec)
                break
            except RuntimeError:  # a pair the generator could not place: draw another (deterministically)
                spec = PairSpec(spec.name, spec.category, spec.photograph, int(self.R.randint(0, 2**31)),
                                spec.augment_seed)
        else:
            raise RuntimeError(f"could not generate a {spec.category} pair for item {index} in {MAX_TRIES} tries")
        self.pipeline.set_random_state(seed=spec.augment_seed)
        return pair_item(pair, self.pipeline)


class GeneratedPairs(Dataset):
    """``length`` items, each a freshly generated pair (:class:`DrawPair`; module docstring).

    Item ``i`` depends on the random state of :attr:`transform` when it is read, not on
    ``i`` alone: wrap the dataset in :class:`firereg.pipelines.training.sampling.SeededItems`
    (which reseeds ``transform`` from ``(seed, epoch, i)``), or call :meth:`set_random_state`
    before reading an item, for reproducible items.

    Args:
        config: the pair pipeline's settings (working size, channel, augmentation).
        length: items per epoch (``pairs_per_epoch``).
        seed: initial random state.
        **draw: :class:`DrawPair`'s ``retinas``, ``photograph_share``, ``shares``,
            ``render_size``, ``n_points``, ``prealign``.

    Raises:
        ValueError: naming the bad setting.
    """

    def __init__(self, config: PairTransformConfig, length: int = 256, seed: int = 0, **draw) -> None:
        if int(length) < 1:
            raise ValueError(f"pairs per epoch must be at least 1, got {length}")
        self.length = int(length)
        self.transform = DrawPair(config, **draw)
        self.transform.set_random_state(seed=int(seed))

    def set_random_state(self, seed: int | None = None) -> GeneratedPairs:
        """Seed what the next item holds (``transform.set_random_state``)."""
        self.transform.set_random_state(seed=seed)
        return self

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        if not 0 <= int(index) < self.length:
            raise IndexError(f"item {index} out of range for {self.length} generated pairs")
        return self.transform(int(index))
