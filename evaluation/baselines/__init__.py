"""Classical registration baselines behind the one :class:`RegistrationMethod` interface.

Methods do not resize; the benchmark wraps them in :class:`firereg.evaluation.results.ResizedMethod`
to run them at a working size (lengths in their settings are pixels at 512 px and scale
with the image).

- ``identity``: no registration (the floor).
- ``elastix-rigid`` / ``elastix-affine`` / ``elastix-bspline``: ITK-elastix, intensity based.
- ``sift``: SIFT keypoints, ratio test, RANSAC homography.
- ``sift-quadratic``: ``sift``, then a robust quadratic (12-parameter) refit on the matches
  (the homography is kept where the quadratic would fold inside the field of view).

Example:
    >>> from firereg.evaluation.baselines import make_method
    >>> method = make_method("sift")
    >>> result = method.register(fixed, moving, fixed_mask, moving_mask)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Callable

from firereg.evaluation.baselines.elastix import (
    ElastixMethod,
    elastix_affine,
    elastix_bspline,
    elastix_rigid,
)
from firereg.evaluation.baselines.identity import IdentityMethod
from firereg.evaluation.baselines.sift import SiftMethod, SiftQuadraticMethod
from firereg.evaluation.results import RegistrationMethod

__all__ = [
    "METHODS",
    "make_method",
    "IdentityMethod",
    "ElastixMethod",
    "SiftMethod",
    "SiftQuadraticMethod",
]

#: name → factory of a method with its default (tuned) settings
METHODS: dict[str, Callable[[], RegistrationMethod]] = {
    "identity": IdentityMethod,
    "elastix-rigid": elastix_rigid,
    "elastix-affine": elastix_affine,
    "elastix-bspline": elastix_bspline,
    "sift": SiftMethod,
    "sift-quadratic": SiftQuadraticMethod,
}


def make_method(name: str) -> RegistrationMethod:
    """A new instance of the baseline called ``name`` (a key of :data:`METHODS`).

    Raises:
        ValueError: for an unknown name, listing the valid ones.
    """
    try:
        factory = METHODS[name]
    except KeyError:
        raise ValueError(f"unknown baseline {name!r}; valid names: {', '.join(sorted(METHODS))}") from None
    return factory()
