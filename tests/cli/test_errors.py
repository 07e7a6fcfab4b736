"""Bad input in a ``firereg`` command: one line on stderr, exit code 2 (firereg.pipelines.cli.errors)."""

from __future__ import annotations

import pytest
import typer

from firereg.pipelines.cli.errors import USER_ERRORS, root_cause, user_errors


def _chained() -> RuntimeError:
    try:
        try:
            raise ValueError("image 3 has 2 channels")
        except ValueError as inner:
            raise RuntimeError("applying transform <LoadImaged>") from inner
    except RuntimeError as outer:
        return outer


def test_root_cause_is_the_innermost_error():
    err = _chained()
    assert str(root_cause(err)) == "image 3 has 2 channels"
    plain = KeyError("x")
    assert root_cause(plain) is plain


@pytest.mark.parametrize("error", [FileNotFoundError("no such folder: /x"), FileExistsError("/x holds files"),
                                   ValueError("bad --size"), _chained()])
def test_user_errors_print_one_line_and_exit_2(error, capsys):
    @user_errors
    def command() -> None:
        raise error

    with pytest.raises(typer.Exit) as info:
        command()
    assert info.value.exit_code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"error: {root_cause(error)}\n"
    assert isinstance(error, USER_ERRORS)


def test_other_errors_and_results_pass_through():
    @user_errors
    def broken() -> None:
        raise KeyError("a bug, not bad input")

    @user_errors
    def fine(x: int) -> int:
        """Doubles."""
        return 2 * x

    with pytest.raises(KeyError):
        broken()
    assert fine(x=4) == 8 and fine.__doc__ == "Doubles." and fine.__name__ == "fine"
