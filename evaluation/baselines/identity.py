"""The identity baseline: the moving image is taken as already aligned (the floor)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from firereg.evaluation.results import MatrixResult

__all__ = ["IdentityMethod"]


@dataclass
class IdentityMethod:
    """Maps every fixed pixel to the same pixel of the moving image.

    Every method should beat it; FIRE's "no registration" row.
    """

    name: str = "identity"
    #: returns the identity on purpose (:mod:`firereg.evaluation.sanity` does not call it a failure)
    identity_by_design: ClassVar[bool] = True

    def register(
        self,
        fixed: np.ndarray,
        moving: np.ndarray,
        fixed_mask: np.ndarray | None = None,
        moving_mask: np.ndarray | None = None,
    ) -> MatrixResult:
        """Return the identity matrix between the two image grids (masks are ignored)."""
        return MatrixResult(np.eye(3), np.asarray(fixed).shape[:2], np.asarray(moving).shape[:2])
