"""The ``tl`` command line. One module per command group; plugins add commands by hook."""

from __future__ import annotations

import os
import sys
import traceback

import click

from tl import __version__
from tl.errors import TLError


class TLGroup(click.Group):
    """Turns TLError into one line on stderr and its exit code (2 for usage errors)."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except TLError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                traceback.print_exc()
            message = " ".join(str(exc).split("\n"))  # one line, whatever the message holds
            click.echo(f"Error: {message}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            ctx.exit(130)


@click.group(cls=TLGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="tl")
@click.option("--debug", is_flag=True, envvar="TL_DEBUG", help="Show tracebacks for errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """tl: fine-tune pre-trained transformers on your labelled text, on PyTorch or TensorFlow.

    \b
    Quick start (offline: MiniLM on Rotten Tomatoes reviews):
      tl run recipes/quickstart.toml --backend torch
      tl predict --model runs/<id>/model "a gripping, beautifully acted film"
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


def _register_builtin_commands() -> None:
    from tl.cli.env import env
    from tl.cli.export import export
    from tl.cli.plugin_new import plugin
    from tl.cli.plugins import plugins, pull
    from tl.cli.predict import evaluate, predict
    from tl.cli.run import run

    for command in (run, predict, evaluate, export, plugins, plugin, pull, env):
        cli.add_command(command)


def _register_plugin_commands() -> None:
    from tl.plugins import get_plugin_manager

    try:
        pm = get_plugin_manager()
        pm.hook.tl_register_commands(cli=cli)
    except TLError as exc:
        click.echo(f"Warning: {exc}", err=True)


_register_builtin_commands()


def main() -> None:
    _register_plugin_commands()
    if os.environ.get("TL_DEBUG"):
        sys.tracebacklimit = 1000
    cli(prog_name="tl")
