"""``firereg benchmark --methods`` with two specs of one label: the ``--methods`` value the error
suggests is itself accepted (firereg.pipelines.method_specs.parse_method_list).

``sift,sift`` used to suggest ``sift-2=sift``, which the parser rejects (a baseline takes no label).
"""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from firereg.pipelines.cli.app import app
from firereg.pipelines.method_specs import parse_method_list, parse_method_spec

runner = CliRunner()


@pytest.mark.parametrize(
    "methods, suggested",
    [
        ("sift,sift", "sift"),
        ("identity,sift,identity,sift", "identity,sift"),
        ("cascade:runs/a,cascade:runs/b", "cascade:runs/a,cascade-2=cascade:runs/b"),
        # the next free number, and a spec that has a label already keeps its type, steps and path
        ("cascade:a,cascade:b,cascade-2=cascade:c", "cascade:a,cascade-3=cascade:b,cascade-2=cascade:c"),
        ("x=cascade+tto5:runs/a,x=voxelmorph:C:/runs/b", "x=cascade+tto5:runs/a,x-2=voxelmorph:C:/runs/b"),
    ],
)
def test_suggested_methods_are_accepted(methods, suggested, tmp_path):
    result = runner.invoke(app, ["benchmark", "--methods", methods, "--out", str(tmp_path / "b")])
    assert result.exit_code == 2, result.output
    assert "would both be labelled" in result.stderr and "Traceback" not in result.output
    line = result.stderr.strip()
    assert line.endswith(f"e.g. --methods {suggested}")
    assert parse_method_list(suggested) == suggested.split(",")  # the suggestion itself is valid
    labels = [parse_method_spec(s).label for s in suggested.split(",")]
    assert len(set(labels)) == len(labels)
