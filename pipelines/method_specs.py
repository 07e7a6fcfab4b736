"""Method specs of ``firereg benchmark --methods``: classical baselines and trained models.

A spec is one of

- a baseline name (:data:`firereg.evaluation.baselines.METHODS`): ``identity``, ``elastix-rigid``,
  ``elastix-affine``, ``elastix-bspline``, ``sift``;
- ``TYPE:PATH``: the trained model of type ``TYPE`` (:data:`firereg.pipelines.nn.networks.MODEL_TYPES`:
  ``voxelmorph``, ``affine``, ``cascade``) in ``PATH``, a run folder (``best.pt``, else
  ``last.pt``) or a ``.pt`` checkpoint;
- ``TYPE+tto:PATH`` / ``TYPE+ttoN:PATH``: the same model with test-time refinement
  (instance optimisation of the predicted field on each pair,
  :func:`firereg.pipelines.inference.refine.fundus_refinement`) for :data:`DEFAULT_TTO_STEPS` / ``N``
  steps per pyramid level;
- ``hybrid:PATH``: keypoints + quadratic global map (``sift-quadratic``), then the deformable
  stage of the ``voxelmorph`` or ``cascade`` model in ``PATH`` on the globally aligned pair,
  composed into one map (:class:`firereg.pipelines.inference.hybrid.HybridMethod`);
  ``hybrid+tto:PATH`` / ``hybrid+ttoN:PATH`` refine the deformable stage's field on the aligned
  pair as ``TYPE+tto`` does; ``hybrid`` without a run is refused (the global stage alone is
  ``sift-quadratic``);
- ``default``: the shipped registration method, what ``firereg register`` uses without
  ``--method``: ``hybrid:`` :data:`DEFAULT_WEIGHTS` (``sift-quadratic``, then the VoxelMorph shipped
  in ``firereg/pipelines/weights/``, trained on procedural retinas only by
  ``benchmarks/train_default.py`` on pre-aligned pairs) under the label ``default``; chosen by the
  cross-domain benchmark (``TRAINING_LOG.md`` beside the weights); :data:`DEFAULT_METHOD` is its spec;
- ``LABEL=`` before any deep spec names it in the tables (needed to compare two runs of
  the same type, e.g. ``short=cascade:runs/a,long=cascade:runs/b``).

The label of a deep spec (``method`` in every table) is ``LABEL`` if given, else the text
before the first ``:`` — ``cascade``, ``cascade+tto``, ``cascade+tto20`` — so variants of
one model never share a row. ``PATH`` is everything after the first ``:`` (so it may hold
colons itself).

:func:`make_any_method` is a module-level function, so the benchmark can send it to its
worker processes (``ProcessPoolExecutor`` pickles the factory with every task). Every method
it makes carries ``fingerprint`` (:func:`method_fingerprint`): what the benchmark's records
store so that a re-run reuses a record only for the same method, settings and checkpoint.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from firereg.evaluation.baselines import METHODS, make_method
from firereg.evaluation.fingerprints import file_sha256, jsonable
from firereg.evaluation.results import RegistrationMethod
from firereg.pipelines.nn.networks import MODEL_TYPES

if TYPE_CHECKING:  # torch is imported only when a model is asked for
    from firereg.pipelines.inference.refine import RefineConfig

__all__ = [
    "DEFAULT",
    "DEFAULT_METHOD",
    "DEFAULT_TTO_STEPS",
    "DEFAULT_WEIGHTS",
    "HYBRID",
    "MethodSpec",
    "parse_method_spec",
    "parse_method_list",
    "make_any_method",
    "method_fingerprint",
    "valid_forms",
]

#: test-time refinement steps per pyramid level of ``TYPE+tto:PATH``
#: (:func:`firereg.pipelines.inference.refine.fundus_refinement`)
DEFAULT_TTO_STEPS = 50

_LABEL_RE = re.compile(r"^[A-Za-z0-9_.+-]+$")
#: the model type of ``hybrid:PATH`` specs (keypoints + quadratic, then a checkpoint's deformable stage)
HYBRID = "hybrid"
#: the spec of the shipped method
DEFAULT = "default"
#: the shipped VoxelMorph of ``default`` (package data: ``firereg/pipelines/weights/``)
DEFAULT_WEIGHTS = Path(__file__).resolve().parent / "weights" / "default_voxelmorph.pt"
#: the spec ``default`` stands for (chosen by measurement: ``firereg/pipelines/weights/TRAINING_LOG.md``)
DEFAULT_METHOD = f"{HYBRID}:{DEFAULT_WEIGHTS}"
_KIND_RE = re.compile(r"^(?P<type>[a-z]+)(?P<tto>\+tto(?P<steps>\d+)?)?$")


@dataclass(frozen=True)
class MethodSpec:
    """A parsed method spec.

    Attributes:
        text: the spec as given.
        label: the method's name in tables.
        model_type: ``None`` for a baseline, else one of :data:`firereg.pipelines.nn.networks.MODEL_TYPES`
            or :data:`HYBRID`.
        path: run folder or checkpoint of a deep spec (``None`` for a baseline).
        tto_steps: test-time refinement steps (0 = off).
    """

    text: str
    label: str
    model_type: str | None = None
    path: Path | None = None
    tto_steps: int = 0

    @property
    def deep(self) -> bool:
        """Whether the spec names a trained network."""
        return self.model_type is not None


def valid_forms() -> str:
    """One line listing the valid spec forms (for error messages)."""
    return (
        f"a baseline ({', '.join(sorted(METHODS))}), or TYPE:PATH, TYPE+tto:PATH, TYPE+ttoN:PATH "
        f"with TYPE one of {', '.join(MODEL_TYPES)} and PATH a run folder or .pt checkpoint, "
        f"or {HYBRID}:PATH, {HYBRID}+tto:PATH (sift-quadratic, then the deformable stage of a voxelmorph "
        f"or cascade PATH) "
        f"(optionally LABEL= in front to name it), or {DEFAULT} (the shipped method: "
        f"sift-quadratic + the shipped VoxelMorph)"
    )


def parse_method_spec(spec: str) -> MethodSpec:
    """Parse one spec (see the module docstring) without loading anything.

    Args:
        spec: the spec as given, e.g. ``"cascade+tto:runs/a"``.

    Returns:
        The parsed spec.

    Raises:
        ValueError: quoting the bad spec and listing the valid forms.
    """
    text = spec.strip() if isinstance(spec, str) else spec
    if not isinstance(text, str) or not text:
        raise ValueError(f"empty method spec {spec!r}; valid forms: {valid_forms()}")
    if text == DEFAULT:
        return MethodSpec(text=text, label=DEFAULT, model_type=HYBRID, path=DEFAULT_WEIGHTS)
    if ":" not in text:
        if text.rpartition("=")[2] == HYBRID:
            raise ValueError(
                f"method spec {text!r} names no run: use {HYBRID}:RUN with a voxelmorph or cascade run folder "
                f"or checkpoint (the global stage alone is sift-quadratic); valid forms: {valid_forms()}"
            )
        if text not in METHODS:
            raise ValueError(f"unknown method {text!r}; valid forms: {valid_forms()}")
        return MethodSpec(text=text, label=text)
    head, _, path = text.partition(":")
    label = None
    if "=" in head:
        label, _, head = head.partition("=")
        if not _LABEL_RE.match(label):
            raise ValueError(
                f"bad label {label!r} in method spec {text!r}: use letters, digits and _ . + -; "
                f"valid forms: {valid_forms()}"
            )
    match = _KIND_RE.match(head)
    if match is None or match["type"] not in (*MODEL_TYPES, HYBRID):
        raise ValueError(f"unknown model type {head!r} in method spec {text!r}; valid forms: {valid_forms()}")
    if not path:
        raise ValueError(f"method spec {text!r} names no run folder or checkpoint after ':'; valid forms: {valid_forms()}")
    steps = 0
    if match["tto"]:
        steps = int(match["steps"]) if match["steps"] is not None else DEFAULT_TTO_STEPS
        if steps < 1:
            raise ValueError(f"method spec {text!r} asks for {steps} refinement steps; need at least 1 (or drop +tto)")
    return MethodSpec(text=text, label=label or head, model_type=match["type"], path=Path(path), tto_steps=steps)


def parse_method_list(text: str | Sequence[str]) -> list[str]:
    """Split a comma-separated ``--methods`` value, check every spec and that labels are unique.

    Args:
        text: the ``--methods`` value, or the specs as a sequence.

    Returns:
        The specs, stripped, in order.

    Raises:
        ValueError: for an empty list, a bad spec, or two specs with one label; the last names the
            first clash and gives a ``--methods`` value without clashes (a repeated baseline
            dropped, a deep spec relabelled ``LABEL-2=...``) that this function accepts.
    """
    items = text.split(",") if isinstance(text, str) else list(text)
    specs = [s.strip() for s in items if s.strip()]
    if not specs:
        raise ValueError(f"no methods given; valid forms: {valid_forms()}")
    parsed = [parse_method_spec(spec) for spec in specs]
    seen: dict[str, str] = {}
    for spec in parsed:
        if spec.label in seen:
            how = "name one with LABEL=" if spec.deep else "list a baseline once"
            raise ValueError(
                f"methods {seen[spec.label]!r} and {spec.text!r} would both be labelled {spec.label!r}; "
                f"{how}, e.g. --methods {','.join(_without_clashes(parsed))}"
            )
        seen[spec.label] = spec.text
    return specs


def _without_clashes(parsed: Sequence[MethodSpec]) -> list[str]:
    """The specs with every repeated label resolved: a repeated baseline dropped (it takes no label),
    a repeated deep spec relabelled ``LABEL-N=TYPE:PATH`` with the first ``N >= 2`` no spec uses."""
    taken = {spec.label for spec in parsed}
    used: set[str] = set()
    out = []
    for spec in parsed:
        if spec.label not in used:
            used.add(spec.label)
            out.append(spec.text)
        elif spec.deep:
            n = 2
            while f"{spec.label}-{n}" in taken:
                n += 1
            label = f"{spec.label}-{n}"
            taken.add(label)
            used.add(label)
            head, _, path = spec.text.partition(":")
            out.append(f"{label}={head.rpartition('=')[2]}:{path}")  # TYPE[+ttoN]:PATH as given, relabelled
    return out


def make_any_method(spec: str) -> RegistrationMethod:
    """A registration method from a spec: a baseline or a trained model (see the module docstring).

    Deep specs build :class:`firereg.pipelines.inference.deep_method.DeepMethod`: it registers at the
    checkpoint's network size and answers in the pixels of the arrays it is given (the benchmark
    gives it images at the benchmark size; conventions: :mod:`firereg.transforms.coords`).

    Args:
        spec: one method spec.

    Returns:
        The method, named by the spec's label.

    Raises:
        ValueError: for a bad spec, listing the valid forms.
        FileNotFoundError: naming a missing run folder or checkpoint.
        firereg.pipelines.checkpoints.CheckpointError: naming a checkpoint that is unreadable or of
            another model type than the spec says.
    """
    parsed = parse_method_spec(spec)
    if not parsed.deep:
        method = make_method(parsed.label)
        method.fingerprint = method_fingerprint(spec, method)
        return method
    # torch is imported only when a model is asked for
    from firereg.pipelines.inference.deep_method import DeepMethod

    refine = _refinement(parsed)
    if parsed.model_type == HYBRID:
        from firereg.pipelines.inference.hybrid import HybridMethod

        method = HybridMethod(parsed.path, name=parsed.label, refine=refine)
        method.fingerprint = method_fingerprint(spec)
        return method
    method = DeepMethod(parsed.path, expected_type=parsed.model_type, refine=refine, name=parsed.label)
    method.fingerprint = method_fingerprint(spec)
    return method


def _refinement(parsed: MethodSpec) -> RefineConfig | None:
    """The test-time refinement of a deep spec (None without ``+tto``), one place for the method
    and its fingerprint: :func:`firereg.pipelines.inference.refine.fundus_refinement`, the finest
    level skipped for a hybrid (it refines a globally aligned pair)."""
    from firereg.pipelines.inference.refine import fundus_refinement

    if parsed.tto_steps <= 0:
        return None
    return fundus_refinement(parsed.tto_steps, aligned=parsed.model_type == HYBRID)


def method_fingerprint(spec: str, method: RegistrationMethod | None = None) -> dict:
    """What identifies the method of ``spec`` in a benchmark record (:mod:`firereg.evaluation.fingerprints`).

    Cheap: a baseline is built (its settings are a dataclass), a trained model is not loaded;
    its checkpoint (the file :func:`firereg.pipelines.checkpoints.resolve_checkpoint` picks) is
    hashed once per path and modification time.

    Args:
        spec: one method spec.
        method: the baseline already built from ``spec`` (None: built here).

    Returns:
        A JSON-able dict: ``spec``, ``label`` and, for a baseline, ``settings`` (its dataclass
        fields); for a trained model ``model_type``, ``refine`` (test-time refinement settings
        or None), ``checkpoint`` (resolved path) and ``checkpoint_sha256`` (of its content); a
        ``hybrid`` spec also ``settings`` (its global stage's dataclass fields).

    Raises:
        ValueError: for a bad spec.
        FileNotFoundError: naming a missing run folder or checkpoint.
    """
    parsed = parse_method_spec(spec)
    if not parsed.deep:
        method = method if method is not None else make_method(parsed.label)
        settings = dataclasses.asdict(method) if dataclasses.is_dataclass(method) else None
        return jsonable({"spec": parsed.text, "label": parsed.label, "settings": settings})
    from firereg.pipelines.checkpoints import resolve_checkpoint

    checkpoint = resolve_checkpoint(parsed.path).resolve()
    refine = _refinement(parsed)
    refine = dataclasses.asdict(refine) if refine is not None else None
    extra = {}
    if parsed.model_type == HYBRID:
        extra["settings"] = dataclasses.asdict(make_method("sift-quadratic"))
    return jsonable({
        "spec": parsed.text, "label": parsed.label, "model_type": parsed.model_type, "refine": refine,
        "checkpoint": str(checkpoint), "checkpoint_sha256": file_sha256(checkpoint), **extra,
    })
