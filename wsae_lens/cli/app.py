"""The ``wsae-lens`` typer application; each command lives in its own module of this package.

Errors are handled here, once for every command (:class:`ErrorHandlingGroup`): a mistake in the input
(see :mod:`wsae_lens.cli.errors` for what counts) prints one ``Error: ...`` message and exits with code
2; an internal error keeps its traceback. ``--debug`` / ``WSAE_LENS_DEBUG=1`` shows the traceback of
input errors too.
"""

from __future__ import annotations

import os
from typing import Any

import typer
from typer.core import TyperGroup

try:  # typer >= 0.2x vendors click as typer._click; older typer uses click itself
    from typer._click import Context
    from typer._click.exceptions import UsageError
except ImportError:  # pragma: no cover
    from click import Context
    from click.exceptions import UsageError

from wsae_lens.cli.errors import DEBUG_ENV_VAR, USER_ERROR_EXIT_CODE, user_error_of

DEBUG_HINT = f"(--debug or {DEBUG_ENV_VAR}=1 shows the traceback.)"


def _debug_requested(ctx: Context) -> bool:
    if ctx.params.get("debug"):
        return True
    return os.environ.get(DEBUG_ENV_VAR, "").strip().lower() not in ("", "0", "false", "no")


class ErrorHandlingGroup(TyperGroup):
    """Runs a command; prints input errors as one message (exit code 2) instead of a traceback."""

    def invoke(self, ctx: Context) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort):
            raise
        except UsageError as err:  # typer.BadParameter from a command, a missing argument, ...
            if _debug_requested(ctx):
                raise
            # typer would draw the message in a rich box; print click's plain form instead.
            if err.ctx is not None:
                typer.echo(err.ctx.get_usage(), err=True)
                typer.echo(f"Try '{err.ctx.command_path} --help' for help.\n", err=True)
            typer.echo(f"Error: {err.format_message()}", err=True)
            ctx.exit(err.exit_code)
        except Exception as err:
            try:
                user_error = user_error_of(err)
            except Exception:  # the classifier must never hide the original error
                user_error = None
            if user_error is None or _debug_requested(ctx):
                raise
            command = " ".join(filter(None, [ctx.info_name, ctx.invoked_subcommand]))
            typer.echo(user_error.format(), err=True)
            typer.echo(f"Run `{command} --help` for the options. {DEBUG_HINT}", err=True)
            ctx.exit(USER_ERROR_EXIT_CODE)


app = typer.Typer(
    name="wsae-lens",
    cls=ErrorHandlingGroup,
    help=(
        "Weighted SAEs, group bias adaptation and approximate feature activation for SAELens.\n\n"
        "A mistake in the input (an invalid config value, a missing field, an unreadable file, ...) exits "
        "with code 2 and one message naming the field or file; --debug shows its traceback."
    ),
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


@app.callback()
def main(
    debug: bool = typer.Option(
        False, "--debug", help=f"Show the full traceback of input errors too (same as {DEBUG_ENV_VAR}=1)."
    ),
) -> None:
    """Global options (the app's help text is set on ``app`` above)."""
