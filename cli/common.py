"""What every svkit command shares: lazy sub-commands, one-line errors with exit status 2, clean Ctrl-C."""
from __future__ import annotations

import functools
import importlib
import sys

import click

from sv_data.errors import SvkitError

INTERRUPTED = 130


class CommandError(click.ClickException):
    exit_code = 2

    def show(self, file=None):
        click.echo(f"error: {self.format_message()}", err=True)


def describe_os_error(exc: OSError) -> str:
    """``PATH: strerror`` (``PATH -> OTHER: strerror`` for a rename), without Python's ``[Errno n]``."""
    where = exc.filename if exc.filename2 is None else f"{exc.filename} -> {exc.filename2}"
    return f"{where}: {exc.strerror or exc}"


def progress_option(command):
    """``--progress/--no-progress``, the switch of every command that shows progress bars. ``--quiet``, the older
    spelling of ``--no-progress`` in the CLEVR-SV commands, keeps working (hidden from --help)."""

    @click.option("--progress/--no-progress", default=True, show_default=True, help="Show progress bars.")
    @click.option("--quiet", is_flag=True, hidden=True, help="Same as --no-progress.")
    @functools.wraps(command)
    def wrapper(*args, progress, quiet, **kwargs):
        return command(*args, progress=progress and not quiet, **kwargs)

    return wrapper


class LazyGroup(click.Group):
    """A group whose sub-commands are imported only when used (or listed), so that ``--help`` and light commands
    do not pay for importing Blender or PyTorch. ``lazy`` maps a command name to ``"module:attribute"``."""

    def __init__(self, *args, lazy: dict[str, str], **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy = lazy

    def list_commands(self, ctx):
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx, name):
        if name not in self.lazy:
            return super().get_command(ctx, name)
        module, attribute = self.lazy[name].split(":")
        return getattr(importlib.import_module(module), attribute)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except SvkitError as exc:
            raise CommandError(str(exc)) from None
        except OSError as exc:
            if exc.filename is None:  # not about a path the user gave (a lost connection, say): a bug to report
                raise
            raise CommandError(describe_os_error(exc)) from None
        except click.UsageError as exc:
            # click's own usage errors (a folder for a file, a word for a number) follow the same one-line rule.
            where = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
            raise CommandError(exc.format_message() + where) from None
        except KeyboardInterrupt:
            click.echo("\ninterrupted: finished work is kept; re-run the same command to resume", err=True)
            sys.exit(INTERRUPTED)


def command_group(commands: dict[str, str], summary: str) -> click.Group:
    """One of svkit's top-level commands (``sv-data``, ``sv-model``): ``commands`` maps each sub-command to its
    ``"module:attribute"``, imported only when used."""
    from cli.defaults import CONTEXT

    @click.group(cls=LazyGroup, lazy=commands, context_settings=CONTEXT, help=summary)
    @click.version_option(package_name="svkit")
    def main():
        pass

    return main


def evaluator_option(what_for: str):
    """``--evaluator``, as ``sv-model evaluate`` and ``sv-model train`` share it (sv_model.evaluation.packaged
    resolves the value)."""
    return click.option(
        "--evaluator", metavar="FOLDER|NAME|none",
        help=f"{what_for} An evaluator folder of sv-model train-evaluator, the name of one of svkit's packaged "
             "evaluators (docs/evaluation.md), or none. [default: svkit's packaged evaluator for the dataset where "
             "it ships one (CLEVR-SV: its attribute evaluator), else none]")
