"""Tests for firereg.evaluation.overlap: Dice of masks and label maps (MONAI's, NaN when both sets are empty)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from firereg.evaluation.overlap import dice, dice_per_label, mean_dice


def test_dice_binary_and_per_label():
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    a[:2] = True  # 8 pixels
    b[1:3] = True  # 8 pixels, 4 shared
    assert dice(a, b) == pytest.approx(0.5)
    assert dice(a, a) == 1.0
    assert np.isnan(dice(np.zeros(3), np.zeros(3)))
    la = np.array([[0, 1, 1], [2, 2, 3]])
    lb = np.array([[0, 1, 2], [2, 2, 0]])
    scores = dice_per_label(la, lb)
    assert list(scores) == [1, 2, 3]
    assert scores[1] == pytest.approx(2 * 1 / 3) and scores[2] == pytest.approx(2 * 2 / 5) and scores[3] == 0.0
    with_absent = dice_per_label(la, lb, labels=[1, 4])
    assert np.isnan(with_absent[4])
    assert mean_dice(with_absent) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match=r"\(2, 3\) and \(3, 2\)"):
        dice_per_label(la, lb.T)
    with pytest.raises(ValueError, match="integer labels"):
        dice_per_label(la + 0.5, lb)


def test_dice_is_the_exact_ratio_for_masks_and_labels_of_any_shape():
    rng = np.random.default_rng(0)
    for shape in [(7,), (13, 11), (9, 8, 7)]:
        a, b = rng.random(shape) < 0.4, rng.random(shape) < 0.3
        assert dice(a, b) == 2 * int((a & b).sum()) / (int(a.sum()) + int(b.sum()))  # float64, exactly
    assert dice(np.zeros(5), np.ones(5)) == 0.0  # one empty set: 0, not NaN
    assert dice(torch.ones(3, 3), torch.ones(3, 3)) == 1.0
    la, lb = rng.integers(0, 4, (20, 30)), rng.integers(0, 4, (20, 30))
    scores = dice_per_label(la, lb, labels=[3, 1, 2, 7])
    assert list(scores) == [1, 2, 3, 7] and np.isnan(scores[7])
    for v in (1, 2, 3):
        assert scores[v] == dice(la == v, lb == v)
    assert dice_per_label(np.zeros((2, 2), int), np.zeros((2, 2), int)) == {}
