"""``tl env``: platform, versions, hardware and the plan each backend would use (for bug reports)."""

from __future__ import annotations

import json
import platform
import sys

import click


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--no-frameworks", is_flag=True,
              help="Skip the backends' device probes (which import torch / tensorflow); CPU facts only.")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True,
              help="Effective batch size to plan for.")
def env(as_json: bool, no_frameworks: bool, batch_size: int) -> None:
    """Show platform, versions, the hardware probe and each installed backend's training plan."""
    from tl import __version__
    from tl.assets.wheels import tl_home
    from tl.cli.common import load_registry
    from tl.errors import TLError
    from tl.training.plan import PlanRequest, Probe, cpu_probe, make_plan

    registry, _ = load_registry()
    backends = {}
    for name in registry.names("backend"):
        b = registry.items["backend"][name]
        entry = {"available": b.is_available(), "versions": b.versions(), "install_hint": b.install_hint}
        if entry["available"]:
            try:
                probe: Probe = cpu_probe() if no_frameworks else b.probe()
                entry["probe"] = probe.to_dict()
                entry["plan"] = make_plan(probe, PlanRequest(batch_size=batch_size)).to_dict()
            except TLError as exc:
                entry["error"] = str(exc)
        backends[name] = entry
    cpu = cpu_probe().cpu
    data = {
        "tl": __version__, "python": sys.version.split()[0], "platform": platform.platform(),
        "tl_home": str(tl_home()), "cpu": cpu.to_dict(), "backends": backends,
    }
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
        return
    click.echo(f"tl {data['tl']} | Python {data['python']} | {data['platform']}")
    click.echo(f"cache: {data['tl_home']}")
    click.echo(f"cpu: {cpu.model} | {cpu.usable_cores}/{cpu.logical_cores} cores usable | {cpu.memory_gib} GiB | "
               f"features: {', '.join(cpu.features) or 'none'}")
    for name, b in backends.items():
        versions = ", ".join(f"{k} {v}" for k, v in b["versions"].items())
        if not b["available"]:
            click.echo(f"backend {name}: not installed ({b['install_hint']})")
            continue
        click.echo(f"backend {name}: {versions}")
        for acc in b.get("probe", {}).get("accelerators", []):
            click.echo(f"  device: {acc['kind']} {acc['name']} capability {acc['capability']} "
                       f"memory {acc['memory_gib']} GiB bf16={acc['bf16']}")
        if "plan" in b:
            p = b["plan"]
            click.echo(f"  plan: {p['device']} | {p['precision']} ({p['precision_reason']}) | batch "
                       f"{p['effective_batch']} = {p['per_device_batch']} x {p['grad_accum']} | {p['threads']} threads")
        if "error" in b:
            click.echo(f"  error: {b['error']}")
