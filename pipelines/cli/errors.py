"""How the ``firereg`` commands report bad input: one line on stderr, exit code 2, no traceback."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import typer

__all__ = ["USER_ERRORS", "root_cause", "user_errors"]

#: errors that mean bad input: shown as one line, exit code 2, no traceback; the file-system ones
#: (a path below a file, a folder where a file belongs, no permission) name the path in their message
USER_ERRORS = (FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError, PermissionError,
               ValueError, RuntimeError)


def root_cause(err: BaseException) -> BaseException:
    """The innermost cause of ``err``.

    MONAI's ``Compose`` wraps a transform's error in "applying transform ..."; the user needs
    the message of the error that started it.

    Args:
        err: the error caught.

    Returns:
        The last error of the ``__cause__`` chain (``err`` itself when it has no cause).
    """
    while err.__cause__ is not None:
        err = err.__cause__
    return err


def user_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a command so that :data:`USER_ERRORS` print ``error: <message>`` on stderr and exit with code 2.

    ``typer.Exit`` and ``typer.Abort`` (RuntimeErrors too) pass through: a command may end with
    an exit code of its own (``summary --check`` exits with 1 when the folder has problems).

    Args:
        func: the command function.

    Returns:
        The wrapped command (same signature, so typer reads its options from it).
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (typer.Exit, typer.Abort):  # a command's own exit code (both are RuntimeErrors)
            raise
        except USER_ERRORS as err:
            typer.echo(f"error: {root_cause(err)}", err=True)
            raise typer.Exit(code=2) from None

    return wrapper
