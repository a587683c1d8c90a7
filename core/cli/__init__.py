"""The ``tl`` command line. One module per command group; plugins add commands by hook."""

from __future__ import annotations

import importlib
import os
import sys
import traceback

import click

from tl import __version__
from tl.errors import TLError

#: Built-in commands: name -> "module:attribute", imported when the command is used or listed.
BUILTIN_COMMANDS = {
    "run": "tl.cli.run:run",
    "tune": "tl.cli.tune:tune",
    "predict": "tl.cli.predict:predict",
    "evaluate": "tl.cli.predict:evaluate",
    "export": "tl.cli.export:export",
    "serve": "tl.cli.serve:serve",
    "plugins": "tl.cli.plugins:plugins",
    "plugin": "tl.cli.plugin_new:plugin",
    "pull": "tl.cli.plugins:pull",
    "env": "tl.cli.env:env",
    "runs": "tl.cli.runs:runs",
}


class TLGroup(click.Group):
    """The ``tl`` group: built-in commands looked up in ``BUILTIN_COMMANDS`` (plugins' commands are
    added to a group by ``tl_register_commands``), and TLError turned into one line on stderr and
    its exit code (2 for usage errors)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*BUILTIN_COMMANDS, *super().list_commands(ctx)})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.commands or name not in BUILTIN_COMMANDS:
            return super().get_command(ctx, name)
        module, attribute = BUILTIN_COMMANDS[name].split(":")
        return getattr(importlib.import_module(module), attribute)

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


def make_cli() -> TLGroup:
    """A fresh ``tl`` command group with the built-in commands."""

    @click.group(cls=TLGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
    @click.version_option(__version__, prog_name="tl")
    @click.option("--debug", is_flag=True, envvar="TL_DEBUG", help="Show tracebacks for errors.")
    @click.option("--strict-plugins", is_flag=True, envvar="TL_STRICT_PLUGINS",
                  help="Make plugin errors fatal (default: one warning line, and tl goes on).")
    @click.pass_context
    def cli(ctx: click.Context, debug: bool, strict_plugins: bool) -> None:
        """tl: fine-tune pre-trained transformers on your labelled text, on PyTorch or TensorFlow.

        \b
        Quick start (offline: MiniLM on Rotten Tomatoes reviews):
          tl run recipes/quickstart.toml --backend torch
          tl predict --model runs/<id>/model "a gripping, beautifully acted film"
        """
        ctx.ensure_object(dict)
        ctx.obj["debug"] = debug
        if strict_plugins:  # for tl's hook calls and the processes a run starts (torchrun workers)
            os.environ["TL_STRICT_PLUGINS"] = "1"

    return cli


#: The group with the built-in commands only (``tl``'s own; ``main`` adds the plugins' commands to a fresh one).
cli = make_cli()


def with_plugin_commands(group: TLGroup) -> TLGroup:
    """``group`` with the commands every plugin adds through ``tl_register_commands``."""
    from tl.plugins import get_plugin_manager
    from tl.plugins.events import call_hook, strict_plugins

    try:
        call_hook(get_plugin_manager(), "tl_register_commands", cli=group)
    except TLError as exc:
        if strict_plugins():
            click.echo(f"Error: {exc}", err=True)
            sys.exit(exc.exit_code)
        click.echo(f"Warning: {exc}", err=True)
    return group


def main() -> None:
    if os.environ.get("TL_DEBUG"):
        sys.tracebacklimit = 1000
    # plugin commands are added before click parses the options: see --strict-plugins among tl's own
    for arg in sys.argv[1:]:
        if not arg.startswith("-"):
            break
        if arg == "--strict-plugins":
            os.environ["TL_STRICT_PLUGINS"] = "1"
    with_plugin_commands(make_cli())(prog_name="tl")
