"""``tl env``: platform, versions, hardware and the plan each backend would use (for bug reports)."""

from __future__ import annotations

import json
import platform
import sys

import click


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def env(as_json: bool) -> None:
    """Show platform, versions, hardware probe and each backend's precision plan."""
    from tl import __version__
    from tl.assets import tl_home
    from tl.cli.common import load_registry
    from tl.hardware import cpu_info, resolve_cpu_precision

    registry, _ = load_registry()
    cpu = cpu_info()
    backends = {}
    for name in registry.names("backend"):
        b = registry.items["backend"][name]
        backends[name] = {"available": b.is_available(), "versions": b.versions(),
                          "install_hint": b.install_hint}
    precision, reason = resolve_cpu_precision("auto")
    data = {
        "tl": __version__, "python": sys.version.split()[0], "platform": platform.platform(),
        "tl_home": str(tl_home()), "cpu": cpu.to_dict(), "backends": backends,
        "cpu_plan": {"precision": precision, "reason": reason, "threads": cpu.usable_cores},
    }
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(f"tl {data['tl']} | Python {data['python']} | {data['platform']}")
    click.echo(f"cache: {data['tl_home']}")
    click.echo(f"cpu: {cpu.model} | {cpu.usable_cores}/{cpu.logical_cores} cores usable | {cpu.memory_gib} GiB | "
               f"features: {', '.join(cpu.features) or 'none'}")
    click.echo(f"cpu plan: {precision} ({reason}), {cpu.usable_cores} threads")
    for name, b in backends.items():
        state = "available" if b["available"] else f"not installed ({b['install_hint']})"
        versions = ", ".join(f"{k} {v}" for k, v in b["versions"].items())
        click.echo(f"backend {name}: {state} | {versions}")
