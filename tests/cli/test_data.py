"""``firereg make-data``, ``summary`` and ``split`` (firereg.pipelines.cli.data) run in-process with typer's CliRunner."""

from __future__ import annotations

import shutil

import pytest
from typer.testing import CliRunner

from firereg.pipelines import default_data
from firereg.pipelines.cli.app import app
from firereg.transforms.fire_generator import GeneratorConfig, read_generator_metadata
from firereg.transforms.fire_reader import read_fire
from firereg.transforms.splits import make_split, read_split

runner = CliRunner()


def _rows(output: str) -> dict[str, list[str]]:
    """Table rows of the summary, keyed by their first cell (S, P, A, all)."""
    rows = {}
    for line in output.splitlines():
        cells = line.split()
        if cells and cells[0] in ("S", "P", "A", "all"):
            rows[cells[0]] = cells
    return rows


def _assert_user_error(result, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    err = result.stderr.strip()
    assert err.startswith("error: ")
    assert len(err.splitlines()) == 1, err
    for needle in needles:
        assert needle in err, (needle, err)
    assert "Traceback" not in result.output
    assert result.stdout == ""


def test_make_data_writes_layout_and_summary(tmp_path, firereg_home):
    out = tmp_path / "made"
    result = runner.invoke(app, ["make-data", str(out), "--size", "256", "--pairs", "S:1,P:1,A:1", "--seed", "3"])
    assert result.exit_code == 0, result.output
    for name in ("S01", "P01", "A01"):
        assert (out / "Images" / f"{name}_1.jpg").is_file()
        assert (out / "Images" / f"{name}_2.jpg").is_file()
        assert (out / "Ground Truth" / f"control_points_{name}_1_2.txt").is_file()
    assert (out / "Masks" / "mask.png").is_file()
    meta = read_generator_metadata(out)
    assert meta["config"]["seed"] == 3 and meta["config"]["size"] == 256
    assert meta["config"]["pairs"] == {"S": 1, "P": 1, "A": 1}
    assert f"FIRE-format dataset in {out}" in result.stdout
    rows = _rows(result.stdout)
    assert set(rows) == {"S", "P", "A", "all"}
    assert rows["S"][1] == "1" and rows["all"][1] == "3"
    # the printed overlap of P is the generator's, below FIRE's 75 %
    assert float(rows["P"][2]) == pytest.approx(meta["pairs"]["P01"]["overlap"], abs=5e-4)
    assert float(rows["P"][2]) < 0.75 < float(rows["S"][2])
    assert not firereg_home.exists()  # an explicit OUT does not touch the defaults


def test_make_data_into_other_dataset_needs_overwrite(tmp_path, fire_data, firereg_home):
    out = tmp_path / "fire"
    shutil.copytree(fire_data, out)
    result = runner.invoke(app, ["make-data", str(out), "--size", "128", "--pairs", "S:1"])
    _assert_user_error(result, str(out), "--overwrite")
    result = runner.invoke(app, ["make-data", str(out), "--size", "128", "--pairs", "S:1", "--overwrite"])
    assert result.exit_code == 0, result.output
    assert read_fire(out)["name"].tolist() == ["S01"]


def test_summary_of_folder(fire_data, firereg_home):
    result = runner.invoke(app, ["summary", "--data", str(fire_data)])
    assert result.exit_code == 0, result.output
    assert f"FIRE folder: {fire_data}" in result.stdout
    assert "excluded as known bad: none" in result.stdout
    rows = _rows(result.stdout)
    assert {k: v[1] for k, v in rows.items()} == {"S": "2", "P": "2", "A": "1", "all": "5"}
    assert not firereg_home.exists()


def test_summary_says_p37_is_excluded(fire_data, tmp_path, firereg_home):
    root = tmp_path / "fire"
    shutil.copytree(fire_data, root)
    for i in ("1", "2"):
        shutil.copy(root / "Images" / f"P01_{i}.jpg", root / "Images" / f"P37_{i}.jpg")
    shutil.copy(root / "Ground Truth" / "control_points_P01_1_2.txt", root / "Ground Truth" / "control_points_P37_1_2.txt")
    result = runner.invoke(app, ["summary", "--data", str(root)])
    assert result.exit_code == 0, result.output
    assert "excluded as known bad: P37" in result.stdout
    assert _rows(result.stdout)["P"][1] == "2"
    result = runner.invoke(app, ["summary", "--data", str(root), "--include-p37"])
    assert result.exit_code == 0, result.output
    assert "excluded as known bad: none" in result.stdout
    assert _rows(result.stdout)["P"][1] == "3"


@pytest.fixture
def small_defaults(monkeypatch):
    """Make the default dataset small (the real default is 24 pairs at 1024 px, ~25 s)."""
    made = []

    def small_config():
        made.append(1)
        return GeneratorConfig(size=128, pairs={"S": 2, "P": 1, "A": 1}, seed=0, n_points=5)

    monkeypatch.setattr(default_data, "GeneratorConfig", small_config)
    return made


def test_summary_without_data_uses_firereg_home(firereg_home, small_defaults):
    result = runner.invoke(app, ["summary"])
    assert result.exit_code == 0, result.output
    expected = firereg_home / "fire-generated"
    assert default_data.default_data_dir() == expected
    assert f"FIRE folder: {expected}" in result.stdout
    assert (expected / "Images" / "S02_2.jpg").is_file()
    assert {k: v[1] for k, v in _rows(result.stdout).items()} == {"S": "2", "P": "1", "A": "1", "all": "4"}
    # the second call reuses the dataset
    stamp = (expected / "generator.json").stat().st_mtime_ns
    result = runner.invoke(app, ["summary"])
    assert result.exit_code == 0, result.output
    assert (expected / "generator.json").stat().st_mtime_ns == stamp
    assert len(small_defaults) == 2


def test_split_writes_csv(fire_data, tmp_path, firereg_home):
    manifest = read_fire(fire_data)
    seed_0 = make_split(manifest, val_fraction=0.4, seed=0)
    # a seed whose split differs from seed 0's, so the test sees whether --seed is used
    seed = next(s for s in range(1, 50) if not make_split(manifest, val_fraction=0.4, seed=s).equals(seed_0))
    out = tmp_path / "splits" / "split.csv"
    result = runner.invoke(app, ["split", str(out), "--data", str(fire_data), "--seed", str(seed), "--val-fraction", "0.4"])
    assert result.exit_code == 0, result.output
    assert f"split written to {out}" in result.stdout
    table = read_split(out)
    expected = make_split(manifest, val_fraction=0.4, seed=seed)
    assert table.to_dict("list") == expected.to_dict("list")
    assert (table["split"] == "validation").sum() == 2
    assert not firereg_home.exists()


def test_split_with_default_data(tmp_path, firereg_home, small_defaults):
    out = tmp_path / "split.csv"
    result = runner.invoke(app, ["split", str(out)])
    assert result.exit_code == 0, result.output
    assert len(read_split(out)) == 4
    assert (firereg_home / "fire-generated" / "generator.json").is_file()


def test_bad_data_folder(tmp_path, firereg_home):
    missing = tmp_path / "nonexistent"
    for args in (["summary", "--data", str(missing)], ["split", str(tmp_path / "s.csv"), "--data", str(missing)]):
        result = runner.invoke(app, args)
        _assert_user_error(result, str(missing))
    assert not (tmp_path / "s.csv").exists()


def test_broken_fire_folder(fire_data, tmp_path, firereg_home):
    root = tmp_path / "fire"
    shutil.copytree(fire_data, root)
    cp = root / "Ground Truth" / "control_points_S02_1_2.txt"
    cp.write_text("1 2 3\n")
    result = runner.invoke(app, ["summary", "--data", str(root)])
    _assert_user_error(result, str(cp), "line 1")


def test_bad_pairs(tmp_path, firereg_home):
    out = tmp_path / "x"
    result = runner.invoke(app, ["make-data", str(out), "--size", "128", "--pairs", "Q:1"])
    _assert_user_error(result, "'Q:1'")
    assert not out.exists()


def test_missing_source(tmp_path, firereg_home):
    missing = tmp_path / "photo.jpg"
    result = runner.invoke(app, ["make-data", str(tmp_path / "x"), "--size", "128", "--pairs", "S:1",
                                 "--source", str(missing)])
    _assert_user_error(result, str(missing))


def test_help_lists_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("make-data", "summary", "split"):
        assert command in result.stdout


@pytest.mark.slow
def test_summary_generates_the_real_default_dataset(firereg_home):
    """The unpatched default: 24 pairs (S 12, P 8, A 4) at 1024 px in $FIREREG_HOME/fire-generated."""
    result = runner.invoke(app, ["summary"])
    assert result.exit_code == 0, result.output
    root = firereg_home / "fire-generated"
    assert f"FIRE folder: {root}" in result.stdout
    rows = _rows(result.stdout)
    assert {k: v[1] for k, v in rows.items()} == {"S": "12", "P": "8", "A": "4", "all": "24"}
    assert float(rows["P"][4]) < 0.75 < float(rows["S"][3]) and float(rows["A"][3]) > 0.75  # max P, min S/A
    manifest = read_fire(root)
    assert (manifest["width"] == 1024).all() and (manifest["height"] == 1024).all()
