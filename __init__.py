"""firereg: retinal image registration with MONAI networks and the FIRE landmark benchmark.

One import package with three rooms, installed from this repository's top-level folders:

- :mod:`firereg.transforms`: data (FIRE reader, generator, splits) and MONAI transforms;
- :mod:`firereg.pipelines`: networks, training, inference, the ``firereg`` command line;
- :mod:`firereg.evaluation`: registration results, classical baselines, the FIRE protocol, reports.

The MONAI bundles ship inside the package as ``firereg/bundles``.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("firereg")
except PackageNotFoundError:  # pragma: no cover - run from a source tree without installing
    __version__ = "0+unknown"
