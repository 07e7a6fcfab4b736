"""benchmarks/speed.py: the table, failures, generated data, and one tiny end-to-end run."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "speed.py"


def _module():
    spec = importlib.util.spec_from_file_location("speed_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


speed = _module()


def test_table_ratios_against_elastix_and_sift():
    table = speed.format_table({"default": 0.5, "sift": 0.25, "elastix-bspline": 5.0, "broken": math.nan})
    rows = {line.split()[0]: line.split()[1:] for line in table.splitlines()[1:]}
    assert rows["default"] == ["0.500", "10.0x", "0.50x"]
    assert rows["sift"] == ["0.250", "20.0x", "1.00x"]
    assert rows["elastix-bspline"] == ["5.000", "1.0x", "0.05x"]
    assert rows["broken"] == ["nan", "nanx", "nanx"]
    assert "elastix-bspline / method" in table.splitlines()[0] and "sift / method" in table.splitlines()[0]


def test_a_failing_method_is_not_timed(capsys):
    blank = np.zeros((64, 64, 3), np.uint8)
    seconds = speed.time_specs(["sift"], [(blank, blank, None, None)], 64)
    assert math.isnan(seconds["sift"])
    assert "sift: failed, not timed" in capsys.readouterr().out


def test_bad_arguments_are_refused_before_any_work(tmp_path, capsys):
    with pytest.raises(SystemExit):
        speed.main(["--data", str(tmp_path / "nothing"), "--methods", "no-such-method"])
    assert "no-such-method" in capsys.readouterr().err
    assert not (tmp_path / "nothing").exists()  # refused before generating data
    with pytest.raises(ValueError, match="--pairs 0"):
        speed.load_pairs(tmp_path / "nothing", 0)
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit):
        speed.main(["--data", str(tmp_path / "empty")])
    assert "empty" in capsys.readouterr().err


def test_untrained_networks_and_training_speed(fire_data, one_torch_thread):
    pairs = speed.load_pairs(fire_data, 1)
    assert pairs[0][0].shape[:2] == (256, 256)
    seconds = speed.time_untrained(pairs, 128, 64)
    assert list(seconds) == [f"{m} (untrained, 64 px)" for m in speed.MODEL_TYPES]
    assert all(0 < value < 30 for value in seconds.values())
    assert speed.training_steps_per_second("voxelmorph", 64, steps=1) > 0


@pytest.mark.slow
def test_one_run_times_every_method_on_generated_data(tmp_path, capsys, one_torch_thread):
    data = tmp_path / "generated"
    speed.main(["--data", str(data), "--generate-size", "256", "--pairs", "1", "--size", "256",
                "--methods", "identity,sift"])  # sift is timed once
    out = capsys.readouterr().out
    assert (data / "generator.json").exists() and len(list((data / "Images").glob("*.jpg"))) == 8  # 4 pairs made
    assert "1 pairs of" in out and "(256 x 256 px)" in out and "decode excluded" in out
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.endswith("x") and "/" not in line}
    assert list(rows) == [*speed.METHODS, "identity"]
    for name in (*speed.METHODS, "identity"):
        seconds, vs_elastix, vs_sift = rows[name]
        assert float(seconds) > 0 and float(vs_elastix[:-1]) > 0 and float(vs_sift[:-1]) > 0
    assert rows["elastix-bspline"][1] == "1.0x" and rows["sift"][2] == "1.00x"
    assert "load average (1, 5, 15 min): before" in out
