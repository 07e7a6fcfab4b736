"""Brain MRI registration with known synthetic deformations, in 2D slices or 3D volumes.

A :class:`firereg.pipelines.nn.networks.VoxelMorphNet` (2D or 3D, unchanged) is trained without
supervision — :class:`firereg.pipelines.nn.losses.RegistrationLoss` only sees the images — on an
endless stream of synthetic pairs made from the MNI152 template
(:func:`firereg.transforms.brain_data.synthetic_pairs`): both images are the template under
random smooth deformations whose composition, the true fixed → moving field, is known.
That makes the error measurable:

- **field error** (mm): mean over the head voxels of the fixed image of the distance
  between the predicted and the true displacement, both mapped to world mm with the
  affine; "before" is the same with a zero prediction, i.e. the mean true displacement;
- **tissue Dice** (CSF, GM, WM; :mod:`firereg.evaluation.overlap`): the moving image's tissue
  labels, before and after warping its tissue maps with the predicted field, against the
  fixed image's labels;
- **folding**: share of voxels with Jacobian determinant <= 0
  (:func:`firereg.evaluation.deformation.deformation_quality`).

Modalities: ``mono`` registers T1 to T1 with local NCC; ``multi`` a T2-like moving image to a
T1 fixed image with MONAI's global mutual information. Scores come from held-out pairs.

Each predicted field is then refined on its pair (test-time refinement,
:func:`firereg.pipelines.inference.refine.refine_ddf` with :attr:`BrainConfig.refinement`:
Adam on the DDF with the same loss and ``Warp``, then a light Gaussian smoothing); the
network-only scores are reported beside the refined ones. On CPU the 3D default trains no
network (``steps=0``) and relies on refinement alone: a 3D training step costs seconds, and
a few hundred steps do not make a useful network (``--steps`` turns training on).

:func:`run_brain` (``firereg brain``) writes NIfTI files of one held-out pair, ``brain.png``,
``summary.json`` and ``model.pt`` (for ``firereg register FIXED.nii.gz MOVING.nii.gz --model``).
"""

from __future__ import annotations

import json
import textwrap
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from firereg.evaluation.deformation import deformation_quality
from firereg.evaluation.overlap import dice_per_label, mean_dice
from firereg.evaluation.report.figures import save_figure
from firereg.pipelines.checkpoints import checkpoint_state, save_checkpoint
from firereg.pipelines.fields_io import save_nifti_image, save_world_field
from firereg.pipelines.inference.refine import RefineConfig, refine_ddf
from firereg.pipelines.nn.losses import LossConfig, RegistrationLoss
from firereg.pipelines.nn.networks import VoxelMorphNet
from firereg.transforms.brain_data import (
    TISSUE_LABELS,
    BrainTemplate,
    load_mni152,
    synthetic_pairs,
    tissue_labels,
    warp,
)
from firereg.transforms.coords import xy_to_yx
from firereg.transforms.io import atomic_write_text

__all__ = [
    "BRAIN_MODALITIES",
    "BrainConfig",
    "BrainRun",
    "brain_templates",
    "train_brain",
    "predict_ddf",
    "evaluate_brain",
    "brain_checkpoint",
    "run_brain",
]

#: modality → (fixed image, moving image, similarity)
BRAIN_MODALITIES = {"mono": ("t1", "t1", "lncc"), "multi": ("t1", "t2", "mi")}

#: defaults that depend on the dimension: 2D | 3D
_DEFAULTS = {
    2: dict(steps=500, batch_size=4, spacing_mm=3, features=(16, 32, 32, 32, 32, 16), n_eval=16, kernel_size=9,
            refine_steps=100),
    # 3D on 2 CPU cores: a training step (batch 2 of 39x48x40) takes ~0.8 s on an idle machine; after 300
    # steps the network alone leaves 78 % (T1, NCC) and 100 % (T2->T1, MI) of the field error, and
    # refining from zero does as well as refining its output, so the 3D default is test-time refinement alone
    3: dict(steps=0, batch_size=2, spacing_mm=4, features=(16, 32, 32, 32, 32, 16), n_eval=3, kernel_size=7,
            refine_steps=200),
}
#: default smoothness weight (diffusion, voxels) per similarity
_LAMBDA = {"lncc": 1.0, "mi": 3.0, "mse": 0.05}


@dataclass
class BrainConfig:
    """Settings of a brain run (None = a default that depends on ``dims``, see ``_DEFAULTS``).

    Attributes:
        dims: 2 (an axial slice) or 3 (the volume).
        modality: ``mono`` (T1 → T1, local NCC) or ``multi`` (T2-like → T1, mutual information).
        steps: training steps (2D 500; 3D 0: on CPU the 3D default is test-time refinement alone,
            ``--steps N`` trains the network too).
        batch_size: pairs per step (2D 4, 3D 2; with a batch of 1 PyTorch picks a much slower
            CPU convolution for small layers).
        spacing_mm: voxel size, integer mm (2D 3, 3D 4: CPU budgets).
        amplitude_mm: largest displacement of each random field (mm; scaled by U(0.5, 1)).
        control_mm: distance of the random fields' control points (mm): their smoothness.
        lam: smoothness weight (lncc 1.0, mi 3.0).
        smoothness: ``diffusion`` or ``bending`` (:class:`LossConfig`).
        kernel_size: local NCC window, voxels (2D 9, 3D 7).
        lr: Adam learning rate.
        features: ``BasicUNet`` features.
        integration_steps: > 0 integrates a velocity field (diffeomorphic VoxelMorph).
        n_eval: held-out pairs scored (2D 16, 3D 3).
        refine_steps: test-time refinement of each predicted field (:attr:`refinement`): Adam
            steps on the DDF with the training loss per level; 0 = off (2D 100, 3D 200). The
            network-only scores are reported as well.
        refine_lr: its learning rate (voxels per step).
        refine_levels: its pyramid levels, coarse to fine, each half the previous.
        refine_sigma: Gaussian smoothing (voxels) of the refined field (0 = off).
        z_mm: world z of the 2D axial slice.
        slice_jitter: 2D training also uses slices up to this many voxels away.
        noise: image noise (share of the [0, 1] range).
        seed: random seed (training pairs, initialisation); held-out pairs use ``seed + 1000003``.
        threads: torch CPU threads (0 = leave torch's default).
    """

    dims: int = 2
    modality: str = "mono"
    steps: int | None = None
    batch_size: int | None = None
    spacing_mm: int | None = None
    amplitude_mm: float = 10.0
    control_mm: float = 40.0
    lam: float | None = None
    smoothness: str = "diffusion"
    kernel_size: int | None = None
    lr: float = 5e-3
    features: tuple[int, ...] | None = None
    integration_steps: int = 0
    n_eval: int | None = None
    refine_steps: int | None = None
    refine_lr: float = 0.05
    refine_levels: int = 1
    refine_sigma: float = 1.0
    z_mm: float = 16.0
    slice_jitter: int = 2
    noise: float = 0.02
    seed: int = 0
    threads: int = 0

    def resolved(self) -> "BrainConfig":
        """A copy with every None replaced by its default; validates the settings.

        Raises:
            ValueError: for an unknown modality, dims other than 2/3 or a non-positive setting.
        """
        if self.dims not in (2, 3):
            raise ValueError(f"dims must be 2 or 3, got {self.dims}")
        if self.modality not in BRAIN_MODALITIES:
            raise ValueError(f"unknown modality {self.modality!r}; choose one of {list(BRAIN_MODALITIES)}")
        defaults = _DEFAULTS[self.dims]
        values = {k: (defaults[k] if getattr(self, k) is None else getattr(self, k)) for k in defaults}
        lam = _LAMBDA[BRAIN_MODALITIES[self.modality][2]] if self.lam is None else self.lam
        out = replace(self, lam=lam, **values)
        out.features = tuple(out.features)
        if out.steps < 0 or out.batch_size < 1 or out.n_eval < 1 or out.refine_steps < 0:
            raise ValueError(
                f"need steps >= 0, batch size >= 1, n_eval >= 1, refine steps >= 0; got "
                f"{out.steps}, {out.batch_size}, {out.n_eval}, {out.refine_steps}"
            )
        if out.refine_levels < 1 or out.refine_sigma < 0:
            raise ValueError(f"need refine_levels >= 1 and refine_sigma >= 0, got {out.refine_levels}, {out.refine_sigma}")
        if out.amplitude_mm <= 0 or out.control_mm <= 0 or out.lam < 0:
            raise ValueError(f"need amplitude_mm > 0, control_mm > 0, lambda >= 0; got {out.amplitude_mm}, "
                             f"{out.control_mm}, {out.lam}")
        return out

    @property
    def fixed_modality(self) -> str:
        return BRAIN_MODALITIES[self.modality][0]

    @property
    def moving_modality(self) -> str:
        return BRAIN_MODALITIES[self.modality][1]

    @property
    def loss_config(self) -> LossConfig:
        return LossConfig(similarity=BRAIN_MODALITIES[self.modality][2], smoothness=self.smoothness,
                          lam=float(self.lam), kernel_size=int(self.kernel_size or 9))

    @property
    def refinement(self) -> RefineConfig:
        """The test-time refinement of a resolved config: per voxel (``grid=1``), the training loss."""
        return RefineConfig(steps=int(self.refine_steps or 0), lr=self.refine_lr, loss=self.loss_config,
                            levels=self.refine_levels, sigma=self.refine_sigma)


@dataclass
class BrainRun:
    """A trained brain network.

    Attributes:
        net: the network (eval mode).
        config: the resolved settings.
        template: the evaluation template (2D: the slice at ``z_mm``).
        losses: training loss per step.
        seconds: training time.
    """

    net: VoxelMorphNet
    config: BrainConfig
    template: BrainTemplate
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0


def brain_templates(config: BrainConfig) -> tuple[BrainTemplate, list[BrainTemplate]]:
    """(evaluation template, training templates) for a resolved config.

    3D: the volume for both. 2D: the axial slice at ``z_mm`` for evaluation, and the slices
    within ``slice_jitter`` voxels of it for training.
    """
    volume = load_mni152(config.spacing_mm)
    if config.dims == 3:
        return volume, [volume]
    offsets = range(-config.slice_jitter, config.slice_jitter + 1)
    return volume.axial_slice(config.z_mm), [volume.axial_slice(config.z_mm, o) for o in offsets]


def train_brain(config: BrainConfig | None = None, progress: bool = False) -> BrainRun:
    """Train a VoxelMorph network on synthetic pairs of the MNI152 template (see the module doc)."""
    config = (config or BrainConfig()).resolved()
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    template, train_set = brain_templates(config)
    torch.manual_seed(config.seed)
    net = VoxelMorphNet(spatial_dims=config.dims, in_channels=1, features=config.features,
                        integration_steps=config.integration_steps)
    loss_fn = RegistrationLoss(config.loss_config)
    optimizer = torch.optim.Adam(net.parameters(), lr=config.lr)
    gen = torch.Generator().manual_seed(config.seed)
    losses: list[float] = []
    start = time.perf_counter()
    net.train()
    for step in range(config.steps):
        tpl = train_set[int(torch.randint(len(train_set), (1,), generator=gen))]
        pairs = synthetic_pairs(tpl, config.batch_size, config.fixed_modality, config.moving_modality,
                                config.amplitude_mm, config.control_mm, config.noise, gen, with_tissue=False)
        warped, ddf = net(pairs.moving, pairs.fixed)
        loss, _ = loss_fn(warped, pairs.fixed, ddf)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        if progress and (step + 1) % 50 == 0:
            print(f"step {step + 1}/{config.steps}: loss {np.mean(losses[-50:]):.4f} "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)
    net.eval()
    return BrainRun(net, config, template, losses, time.perf_counter() - start)


def predict_ddf(net: torch.nn.Module, moving: torch.Tensor, fixed: torch.Tensor, config: BrainConfig) -> torch.Tensor:
    """The network's DDF (voxels), refined for ``config.refine_steps`` steps when asked (:attr:`BrainConfig.refinement`)."""
    with torch.no_grad():
        _, ddf = net(moving, fixed)
    return refine_ddf(ddf, moving, fixed, None, config.refinement)


def _world_norm(ddf: torch.Tensor, affine: np.ndarray) -> np.ndarray:
    """|A[:3, :D] u| in mm for a voxel DDF (D, *spatial) → (*spatial)."""
    d = ddf.shape[0]
    linear = torch.as_tensor(affine[:3, :d], dtype=ddf.dtype)
    return torch.einsum("wd,d...->w...", linear, ddf).norm(dim=0).numpy()


def _score(ddf: torch.Tensor, pairs, affine: np.ndarray, lab_fixed: np.ndarray, mask: np.ndarray) -> tuple[dict, dict]:
    """Field error, tissue Dice and folding of one predicted DDF (1, D, *spatial); also its arrays."""
    labels = list(TISSUE_LABELS.values())
    error = _world_norm(ddf[0] - pairs.true_ddf[0], affine)
    lab_warped = tissue_labels(warp(pairs.moving_tissue, ddf)[0].numpy())
    d_after = dice_per_label(lab_fixed, lab_warped, labels)
    q_all = deformation_quality(ddf[0])
    q_mask = deformation_quality(ddf[0], mask=mask)
    row = {
        "error_after": float(error[mask].mean()), "error_after_p95": float(np.percentile(error[mask], 95)),
        "dice_after": mean_dice(d_after), **{f"dice_after_{k}": d_after[v] for k, v in TISSUE_LABELS.items()},
        "folding": q_all.folding_fraction, "folding_in_head": q_mask.folding_fraction, "jac_min": q_all.jac_min,
    }
    return row, {"error_after": error, "labels_warped": lab_warped}


def _summarise(rows: list[dict]) -> dict:
    """The "after" metrics of scored pairs (:func:`_score` rows): means, worst folding and Jacobian."""
    mean = {k: float(np.mean([r[k] for r in rows])) for k in rows[0] if k != "jac_min"}
    return {
        "field_error_mm_after": mean["error_after"],
        "field_error_mm_p95_after": mean["error_after_p95"],
        "dice_after": mean["dice_after"],
        "dice_per_tissue_after": {k: mean[f"dice_after_{k}"] for k in TISSUE_LABELS},
        "folding_fraction": mean["folding"],
        "folding_fraction_in_head": mean["folding_in_head"],
        "folding_fraction_max": float(max(r["folding"] for r in rows)),
        "jacobian_min": float(min(r["jac_min"] for r in rows)),
    }


def _score_before(pairs, affine: np.ndarray, lab_fixed: np.ndarray, lab_moving: np.ndarray,
                  mask: np.ndarray) -> tuple[dict, np.ndarray]:
    """Field error (|true displacement|, mm) and tissue Dice of one pair before registration; also the error map."""
    before = _world_norm(pairs.true_ddf[0], affine)
    d_before = dice_per_label(lab_fixed, lab_moving, list(TISSUE_LABELS.values()))
    return {
        "error_before": float(before[mask].mean()), "error_before_p95": float(np.percentile(before[mask], 95)),
        "dice_before": mean_dice(d_before), **{f"dice_before_{k}": d_before[v] for k, v in TISSUE_LABELS.items()},
    }, before


def evaluate_brain(net: torch.nn.Module, template: BrainTemplate, config: BrainConfig) -> tuple[dict, dict]:
    """Score the network on ``config.n_eval`` held-out synthetic pairs.

    Returns:
        ``(metrics, example)``: the metrics dict (see the module doc; per-pair means,
        averaged; with refinement on and a trained network, ``network_only`` holds the
        scores of the network's own fields) and the arrays of the first pair (numpy, for the NIfTI files and figure).
    """
    config = config.resolved()
    gen = torch.Generator().manual_seed(config.seed + 1_000_003)
    rows, net_rows = [], []
    example: dict = {}
    start = time.perf_counter()
    for n in range(config.n_eval):
        pairs = synthetic_pairs(template, 1, config.fixed_modality, config.moving_modality,
                                config.amplitude_mm, config.control_mm, config.noise, gen)
        with torch.no_grad():
            _, ddf_net = net(pairs.moving, pairs.fixed)
        ddf = refine_ddf(ddf_net, pairs.moving, pairs.fixed, None, config.refinement)
        mask = pairs.fixed_mask[0, 0].numpy()
        lab_fixed = tissue_labels(pairs.fixed_tissue[0].numpy())
        lab_moving = tissue_labels(pairs.moving_tissue[0].numpy())
        common, before = _score_before(pairs, template.affine, lab_fixed, lab_moving, mask)
        row, arrays = _score(ddf, pairs, template.affine, lab_fixed, mask)
        rows.append({**common, **row})
        if config.refine_steps and config.steps > 0:  # an untrained network (steps 0) predicts ~0
            net_rows.append(_score(ddf_net, pairs, template.affine, lab_fixed, mask)[0])
        if n == 0:
            example = {
                "fixed": pairs.fixed[0, 0].numpy(), "moving": pairs.moving[0, 0].numpy(),
                "warped": warp(pairs.moving, ddf)[0, 0].numpy(), "ddf": ddf[0].numpy(),
                "true_ddf": pairs.true_ddf[0].numpy(), "labels_fixed": lab_fixed, "labels_moving": lab_moving,
                "labels_warped": arrays["labels_warped"], "mask": mask, "error_before": before,
                "error_after": arrays["error_after"],
            }
    before = {k: float(np.mean([r[k] for r in rows])) for k in rows[0] if k.endswith("before") or "_before" in k}
    after = _summarise(rows)
    metrics = {
        "n_pairs": len(rows),
        "field_error_mm_before": before["error_before"],
        "field_error_mm_after": after["field_error_mm_after"],
        "field_error_ratio": after["field_error_mm_after"] / max(before["error_before"], 1e-12),
        "field_error_mm_p95_before": before["error_before_p95"],
        "field_error_mm_p95_after": after["field_error_mm_p95_after"],
        "dice_before": before["dice_before"],
        "dice_after": after["dice_after"],
        "dice_per_tissue_before": {k: before[f"dice_before_{k}"] for k in TISSUE_LABELS},
        "dice_per_tissue_after": after["dice_per_tissue_after"],
        **{k: after[k] for k in ("folding_fraction", "folding_fraction_in_head", "folding_fraction_max", "jacobian_min")},
        "refine_steps": config.refine_steps,
        "seconds": round(time.perf_counter() - start, 1),
    }
    if net_rows:
        net_only = _summarise(net_rows)
        net_only["field_error_ratio"] = net_only["field_error_mm_after"] / max(before["error_before"], 1e-12)
        metrics["network_only"] = net_only
    return metrics, example


def brain_checkpoint(run: BrainRun) -> dict:
    """A firereg checkpoint (:func:`firereg.pipelines.checkpoints.checkpoint_state`) that ``firereg register``
    reads for NIfTI pairs.

    Besides the usual keys it records ``domain="nifti"``, the working ``shape`` (voxels),
    ``spacing_mm``, the template ``affine``, ``intensity="minmax"`` (each image scaled to
    [0, 1]), the training ``loss``, ``refine_lr`` and ``refine_sigma`` (used by test-time
    refinement in ``firereg register --refine-steps``).
    """
    c = run.config
    net_kwargs = {"spatial_dims": c.dims, "features": list(c.features), "integration_steps": c.integration_steps}
    return checkpoint_state(
        run.net, "voxelmorph", net_kwargs, max(run.template.shape), "luminance",
        epoch=0, domain="nifti", shape=list(run.template.shape), spacing_mm=list(run.template.spacing),
        affine=run.template.affine.tolist(), intensity="minmax", modality=c.modality, loss=asdict(c.loss_config),
        refine_lr=c.refine_lr, refine_sigma=c.refine_sigma, source=run.template.source,
    )


def _slice(a: np.ndarray, dims: int) -> np.ndarray:
    """The middle axial slice of a 3D array (or the 2D array), row-major for display (rows = y)."""
    return xy_to_yx((a[:, :, a.shape[2] // 2] if dims == 3 else a)[None])[..., 0]


def _plot(path: Path, example: dict, template: BrainTemplate, config: BrainConfig, metrics: dict) -> Path:
    """``brain.png``: images, tissue borders and field errors of the example pair (middle axial slice)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from firereg.evaluation.report.figures import colour_overlay

    d = config.dims
    fig, axes = plt.subplots(2, 4, figsize=(13, 7.2))
    show = lambda ax, img, title, **kw: (ax.imshow(img, origin="lower", **kw), ax.set_title(title, fontsize=9))  # noqa: E731
    show(axes[0][0], _slice(example["fixed"], d), f"fixed ({config.fixed_modality.upper()})", cmap="gray")
    show(axes[0][1], _slice(example["moving"], d), f"moving ({config.moving_modality.upper()})", cmap="gray")
    show(axes[0][2], _slice(example["warped"], d), "warped moving", cmap="gray")
    f_lab, w_lab, m_lab = (_slice(example[k], d) for k in ("labels_fixed", "labels_warped", "labels_moving"))
    edges = lambda lab: np.pad(np.diff(lab, axis=0) != 0, ((0, 1), (0, 0))) | np.pad(np.diff(lab, axis=1) != 0, ((0, 0), (0, 1)))  # noqa: E731
    show(axes[0][3], colour_overlay(edges(f_lab).astype(np.float32), edges(w_lab).astype(np.float32)),
         "tissue borders: fixed magenta, warped green")
    vmax = float(np.percentile(example["error_before"][example["mask"]], 99))
    e_b = np.where(example["mask"], example["error_before"], np.nan)
    e_a = np.where(example["mask"], example["error_after"], np.nan)
    im = show(axes[1][0], _slice(e_b, d), "true displacement |u| (mm) = error before", cmap="magma", vmin=0, vmax=vmax)[0]
    fig.colorbar(im, ax=axes[1][0], fraction=0.04)
    im = show(axes[1][1], _slice(e_a, d), "field error after (mm)", cmap="magma", vmin=0, vmax=vmax)[0]
    fig.colorbar(im, ax=axes[1][1], fraction=0.04)
    show(axes[1][2], m_lab != f_lab, "labels differ: before", cmap="gray")
    show(axes[1][3], w_lab != f_lab, "labels differ: after", cmap="gray")
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    where = "axial slice" if d == 2 else "middle axial slice of the volume"
    title = (f"{d}D {config.modality}-modal brain registration ({where}, {template.spacing[0]:g} mm) — "
             f"field error {metrics['field_error_mm_before']:.2f} → {metrics['field_error_mm_after']:.2f} mm, "
             f"tissue Dice {metrics['dice_before']:.3f} → {metrics['dice_after']:.3f}, "
             f"folding {100 * metrics['folding_fraction']:.3f} %\ndata: ")
    fig.suptitle(title + textwrap.fill(template.source, 150), fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path, dpi=100)


def _mode(config: BrainConfig) -> str:
    if config.steps == 0:
        return f"test-time refinement only ({config.refine_steps} steps per pair; the network is untrained)"
    learned = "learned (VoxelMorph trained on random synthetic deformations of the template)"
    return learned + (f" + test-time refinement ({config.refine_steps} steps per pair)" if config.refine_steps else "")


def _as_volume(a: np.ndarray, dims: int) -> np.ndarray:
    """2D arrays are written as (X, Y, 1) so that every viewer shows them with the slice's affine."""
    return a[:, :, None] if dims == 2 else a


def run_brain(out: str | Path, config: BrainConfig | None = None, progress: bool = False) -> dict:
    """Train, score and write a brain run into ``out``; returns the summary dict.

    Files: ``fixed.nii.gz``, ``moving.nii.gz``, ``warped.nii.gz``, ``labels_{fixed,moving,warped}.nii.gz``
    (0 bg, 1 CSF, 2 GM, 3 WM), ``ddf.nii.gz`` (predicted) and ``ddf_true.nii.gz`` (world mm, fixed →
    moving, see :func:`firereg.pipelines.fields_io.save_world_field`) of the first held-out pair, all with the
    template's affine; ``brain.png``; ``summary.json``; ``model.pt``.
    """
    config = (config or BrainConfig()).resolved()
    out = Path(out)
    run = train_brain(config, progress=progress)
    metrics, example = evaluate_brain(run.net, run.template, config)
    out.mkdir(parents=True, exist_ok=True)
    affine, d = run.template.affine, config.dims
    written = {}
    for key in ("fixed", "moving", "warped"):
        written[key] = save_nifti_image(_as_volume(example[key], d), affine, out / f"{key}.nii.gz")
    for key in ("labels_fixed", "labels_moving", "labels_warped"):
        written[key] = save_nifti_image(_as_volume(example[key], d), affine, out / f"{key}.nii.gz", dtype=np.uint8)
    written["ddf"] = save_world_field(example["ddf"], affine, out / "ddf.nii.gz")
    written["ddf_true"] = save_world_field(example["true_ddf"], affine, out / "ddf_true.nii.gz")
    written["figure"] = _plot(out / "brain.png", example, run.template, config, metrics)
    written["model"] = save_checkpoint(brain_checkpoint(run), out / "model.pt")
    summary = {
        "data_source": run.template.source,
        "dims": d,
        "modality": config.modality,
        "fixed_image": config.fixed_modality.upper(),
        "moving_image": config.moving_modality.upper() + ("-like (synthetic from tissue maps)" if config.moving_modality == "t2" else ""),
        "similarity": config.loss_config.similarity,
        "lambda": config.lam,
        "shape": list(run.template.shape),
        "spacing_mm": list(run.template.spacing),
        "deformation": {"amplitude_mm_max": config.amplitude_mm, "control_mm": config.control_mm,
                        "kind": "random smooth fields on both images; the true fixed->moving field is known"},
        "training": {"mode": _mode(config), "steps": config.steps,
                     "batch_size": config.batch_size, "seconds": round(run.seconds, 1),
                     "final_loss": float(np.mean(run.losses[-20:])) if run.losses else None},
        "refine_steps": config.refine_steps,
        "metrics": metrics,
        "files": {k: str(v) for k, v in written.items()},
        "notes": [
            "metrics are means over held-out synthetic pairs (seed + 1000003), inside the fixed head mask",
            "field error: |u_pred - u_true| in world mm; 'before' = |u_true| (identity prediction)",
            "Dice: CSF/GM/WM labels of the (warped) moving tissue maps vs the fixed ones, mean of the 3 tissues",
            "NIfTI fields: fixed->moving displacement in mm along the world (RAS) axes of the fixed affine",
        ],
    }
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary
