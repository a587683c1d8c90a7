"""tl's working tree against tl at a base git revision, side by side on this machine: the no-regression check
for a refactor (training throughput and result).

    .venv/bin/python bench/versions.py --base REV [--backends torch tensorflow] [--repeats 3] [--steps 40]
        [--eval-samples 500] [--precision fp32] [--threads 1] [--nice 0] [--name NAME] [--out DIR]

The base runs without reinstalling anything: REV is checked out into a temporary ``git clone --shared``
of this repository, and a directory of symlinks maps the import names to the clone's package directories
the way REV's pyproject.toml maps them (``[tool.setuptools] package-dir``: tl -> core, tl_torch ->
backends/torch, ...; the task-plugin distributions under plugins/*/ likewise). Every base run is the
venv's own ``tl`` entry point with PYTHONPATH set to that directory, which puts it ahead of the editable
install's finder; entry-point plugins come from the installed metadata under the same module names, so
they load the clone's code too. An installed entry-point package REV does not have is shadowed by a stub
that fails to import (tl records a broken plugin and carries on), as if it were not installed. A preflight
subprocess, started exactly like the runs, checks where ``tl`` and every entry-point module resolve (the
clone for the base, this working tree for the head) and stops before measuring anything if one does not.

Each run is ``tl run`` with bench/compare.py's settings (model ``minilm``, dataset ``rotten_tomatoes``,
1 epoch over ``--max-train-samples 32 x --steps``, ``--max-eval-samples``, max length 128, batch 32,
lr 1e-4, seed 0, ``--precision``, ``--threads``), in its own process under bench/measure.py (wall time,
peak RSS, how busy the rest of the machine was), with the thread variables compare.py sets. Repeats
interleave: for each repeat, for each backend, base and head in rotating order. The defaults match
bench/results/refactor-{before,after}-train-torch (``compare.py --only train-torch --precision fp32
--threads 1 --steps 40``, run with ``--nice -10``).

Writes OUT/NAME.json (every raw sample, medians, head/base ratios, whether eval_accuracy, eval_loss and
train_loss are identical, the base's mapping and preflight, machine, exact commands) and OUT/NAME.md;
OUT defaults to bench/results, NAME to versions-<base short sha>.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

import compare  # noqa: E402
import report  # noqa: E402

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

VERSIONS = ("base", "head")
NUMERICS = ("eval_accuracy", "eval_loss", "train_loss")
STUB = '"""Stub: not in the base revision (bench/versions.py)."""\nraise ImportError("{name} is not in {rev}")\n'
PREFLIGHT = r"""
import importlib.metadata as md, importlib.util, json, sys
sys.path[0] = sys.argv[1]  # as in the `tl` console script
import tl
mods = {"tl": tl.__file__, "tl.cli": importlib.util.find_spec("tl.cli").origin}
for ep in md.entry_points(group="tl"):
    name = ep.value.split(":")[0].strip()
    for mod in (name.split(".")[0], name):
        try:
            spec = importlib.util.find_spec(mod)
            mods[mod] = spec.origin if spec else None
        except Exception as exc:
            mods.setdefault(mod, f"error: {type(exc).__name__}: {exc}")
print(json.dumps({"tl_file": tl.__file__, "sys_path": sys.path, "modules": mods}))
"""


class PreflightFailed(RuntimeError):
    pass


def git(*args: str, cwd: Path = ROOT) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def top_level_dirs(pyproject: Path) -> dict[str, Path]:
    """Import name -> directory of every top-level package a setuptools pyproject.toml installs."""
    cfg = tomllib.loads(pyproject.read_text()).get("tool", {}).get("setuptools", {})
    base = pyproject.parent
    package_dir = cfg.get("package-dir", {})
    root = base / package_dir.get("", ".")
    found = {name: base / d for name, d in package_dir.items() if name and "." not in name}
    packages = cfg.get("packages", [])
    if isinstance(packages, dict):  # [tool.setuptools.packages.find]
        wheres = packages.get("find", {}).get("where", ["."])
        packages = [p.name for w in wheres for p in sorted((base / w).iterdir()) if (p / "__init__.py").is_file()]
    for pkg in packages:
        top = pkg.split(".")[0]
        found.setdefault(top, root / top)
    return {name: d for name, d in found.items() if (d / "__init__.py").is_file()}


def installed_entry_point_packages() -> set[str]:
    import importlib.metadata as md

    return {ep.value.split(":")[0].strip().split(".")[0] for ep in md.entry_points(group="tl")}


def prepare_base(rev: str, tmp: Path) -> dict[str, Any]:
    """Check out REV into TMP/clone and build TMP/path: one symlink per import name (and stubs)."""
    sha = git("rev-parse", "--verify", f"{rev}^{{commit}}")
    clone, links = tmp / "clone", tmp / "path"
    subprocess.run(["git", "clone", "-q", "--shared", "--no-checkout", str(ROOT), str(clone)], check=True)
    git("checkout", "-q", "--detach", sha, cwd=clone)
    mapping = top_level_dirs(clone / "pyproject.toml")
    wanted = installed_entry_point_packages()
    for project in sorted(clone.glob("plugins/*/pyproject.toml")):  # the separately installed task plugins
        for name, d in top_level_dirs(project).items():
            if name in wanted:
                mapping.setdefault(name, d)
    links.mkdir(parents=True)
    for name, d in sorted(mapping.items()):
        (links / name).symlink_to(d.resolve(), target_is_directory=True)
    stubs = sorted(wanted - set(mapping))
    for name in stubs:
        (links / name).mkdir()
        (links / name / "__init__.py").write_text(STUB.format(name=name, rev=sha[:10]))
    subprocess.run([sys.executable, "-m", "compileall", "-q", *[str(d) for d in mapping.values()]],
                   check=True, stdout=subprocess.DEVNULL)  # no first-run .pyc compilation inside the timings
    return {"rev": rev, "sha": sha, "subject": git("log", "-1", "--format=%s", sha)[:200], "clone": str(clone),
            "pythonpath": str(links), "mapping": {k: str(v.relative_to(clone)) for k, v in sorted(mapping.items())},
            "stubs": stubs}


def version_env(base: dict, version: str) -> dict[str, str]:
    # "" counts as unset: the head runs with no PYTHONPATH, whatever this shell exports
    return {"PYTHONPATH": base["pythonpath"] if version == "base" else ""}


def preflight(ctx: compare.Ctx, base: dict, version: str) -> dict:
    """Where ``tl`` and the entry-point modules resolve for VERSION's runs; raises if anywhere unexpected."""
    env = {**os.environ, **compare_env(ctx), **version_env(base, version)}
    proc = subprocess.run([ctx.python, "-c", PREFLIGHT, str(Path(ctx.tl).parent)], env=env, cwd=ctx.work,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise PreflightFailed(f"{version}: the import check failed:\n{proc.stderr.strip()}")
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    home = Path(base["clone"]).resolve() if version == "base" else ROOT
    stub_dir = Path(base["pythonpath"])
    wrong, missing = {}, {}
    for mod, origin in info["modules"].items():
        top = mod.split(".")[0]
        found = origin is not None and not str(origin).startswith("error:")
        if version == "base" and top in base["stubs"]:
            if found and Path(origin).resolve() != (stub_dir / top / "__init__.py").resolve():
                wrong[mod] = origin
        elif found:
            if not Path(origin).resolve().is_relative_to(home):
                wrong[mod] = origin
        elif version == "base" and top != mod and top in base["mapping"]:
            missing[mod] = origin  # an installed entry point the base's own package lacks: a broken plugin there
        else:
            wrong[mod] = origin
    if wrong:
        raise PreflightFailed(f"{version}: expected every tl module under {home}, but\n  "
                              + "\n  ".join(f"{m} -> {o}" for m, o in wrong.items()))
    if missing:
        print(f"versions: WARNING: entry-point modules the base does not have (its runs record them as broken "
              f"plugins): {', '.join(missing)}", file=sys.stderr)
    info["missing_entry_points"] = missing
    print(f"versions: {version} imports tl from {info['tl_file']} (-> {Path(info['tl_file']).resolve()})",
          file=sys.stderr)
    return info


def compare_env(ctx: compare.Ctx) -> dict[str, str]:
    threads = str(ctx.threads)  # what compare.measured adds to each run's environment
    return {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TF_CPP_MIN_LOG_LEVEL": "2",
            "OMP_NUM_THREADS": threads, "TF_NUM_INTRAOP_THREADS": threads, "TF_NUM_INTEROP_THREADS": threads,
            "RAYON_NUM_THREADS": threads}


def tree_digest() -> str:
    """sha256 of the head's package sources (core, backends, plugins), to notice edits during a run."""
    h = hashlib.sha256()
    for top in ("core", "backends", "plugins", "pyproject.toml"):
        paths = [ROOT / top] if (ROOT / top).is_file() else sorted((ROOT / top).rglob("*"))
        for p in paths:
            if p.is_file() and "__pycache__" not in p.parts and not any(x.endswith(".egg-info") for x in p.parts):
                h.update(str(p.relative_to(ROOT)).encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def run_once(ctx: compare.Ctx, base: dict, version: str, backend: str, r: int) -> dict:
    out = ctx.work / f"run-{version}-{backend}-{r}"
    cmd = compare.tl_train_cmd(ctx, backend, out)
    env = version_env(base, version)
    name = f"{version} {backend}"
    ctx.commands.setdefault(name, shlex.join([f"PYTHONPATH={env['PYTHONPATH']}", *cmd]))
    try:
        sample = compare.train_sample(ctx, name, cmd, out / "metrics.json", env)
        metrics = json.loads((out / "metrics.json").read_text())
        sample["train_loss"] = metrics.get("train_loss")
        sample["tokenize_cached"] = metrics.get("tokenize_cached")
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return sample


def numerics(base_samples: list[dict], head_samples: list[dict]) -> dict[str, dict]:
    out = {}
    for key in NUMERICS:
        b = [s[key] for s in base_samples if "error" not in s and s.get(key) is not None]
        h = [s[key] for s in head_samples if "error" not in s and s.get(key) is not None]
        if not b or not h:
            out[key] = {"identical": None, "base": b, "head": h}
            continue
        entry = {"identical": len(set(b + h)) == 1, "base_values": sorted(set(b)), "head_values": sorted(set(h)),
                 "base_repeatable": len(set(b)) == 1, "head_repeatable": len(set(h)) == 1}
        if not entry["identical"]:
            entry["head_minus_base_median"] = statistics.median(h) - statistics.median(b)
        out[key] = entry
    return out


def fmt(x: float | None, digits: int = 1, suffix: str = "") -> str:
    return "—" if x is None else f"{x:,.{digits}f}{suffix}"


def markdown(summary: dict) -> str:
    s, m, base, head = summary["settings"], summary["machine"], summary["base"], summary["head"]
    busy = [x["others_cores"] for b in summary["results"].values() for v in VERSIONS for x in b[v]["samples"]
            if x.get("others_cores") is not None]
    lines = [f"tl at the working tree (head: {head['git_commit'][:10]}"
             f"{' + uncommitted changes' if head['uncommitted_changes'] else ''}) against base {base['sha'][:10]} "
             f"({base['rev']}: {base['subject'][:80]}).", "",
             f"Machine: {m['cpu']}, {m['cores_usable']} usable cores, {m['memory_gib']} GiB; "
             f"{', '.join(f'{k} {v}' for k, v in m['versions'].items() if v and k != 'tl')}. Every run used "
             f"{s['threads']} thread(s) at niceness {s['niceness']}; other processes kept a median of "
             f"{fmt(statistics.median(busy) if busy else None)} of the {m['cores_usable']} cores busy meanwhile. "
             f"{s['steps']} steps × batch 32 ({s['train_samples']} samples), {s['precision']}, held-out accuracy on "
             f"{s['eval_samples']} examples; median of {s['repeats']}, base and head interleaved "
             f"({summary['total_wall_s'] / 60:.1f} minutes in all).", ""]
    if base["stubs"]:
        lines += [f"Entry-point packages the base does not have (stubbed for its runs): {', '.join(base['stubs'])}.", ""]
    if base["preflight"]["missing_entry_points"]:
        lines += ["Entry-point modules missing in the base (broken plugins in its runs): "
                  f"{', '.join(base['preflight']['missing_entry_points'])}.", ""]
    if summary["head_changed_during_run"]:
        lines += ["**The working tree changed while this ran**: head samples may mix versions.", ""]
    for backend, b in summary["results"].items():
        lines += [f"**{backend}**", "", "| version | samples/s (median) | samples/s (each) | train runtime | "
                  "held-out accuracy | eval loss | train loss | time to first step | wall | peak RSS |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for v in VERSIONS:
            md_, samples = b[v]["median"], b[v]["samples"]
            each = ", ".join("failed" if "error" in x else f"{x['samples_per_second']}" for x in samples)
            lines.append(f"| {v}{report._failed(b[v])} | {fmt(md_.get('samples_per_second'), 2)} | {each} | "
                         f"{fmt(md_.get('train_runtime_s'), 1, ' s')} | {fmt(md_.get('eval_accuracy'), 4)} | "
                         f"{fmt(md_.get('eval_loss'), 6)} | {fmt(md_.get('train_loss'), 6)} | "
                         f"{fmt(md_.get('first_step_s'), 1, ' s')} | {fmt(md_.get('wall_s'), 1, ' s')} | "
                         f"{fmt(md_.get('max_rss_mib'), 0, ' MiB')} |")
        ratio = b["ratio_samples_per_second"]
        lines += ["", f"head ÷ base samples/s: **{fmt(ratio, 3, '×')}**."]
        for key, n in b["numerics"].items():
            if n["identical"] is None:
                lines.append(f"{key}: not comparable (failed runs or not reported).")
            elif n["identical"]:
                lines.append(f"{key}: identical ({n['base_values'][0]!r}).")
            else:
                lines.append(f"{key}: **differs**: base {n['base_values']}, head {n['head_values']} "
                             f"(head − base of the medians {n['head_minus_base_median']:+.6g}).")
        lines.append("")
    lines += ["Commands (base with PYTHONPATH at the symlinks into its clone):", ""]
    lines += [f"- {k}: `{v}`" for k, v in summary["commands"].items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", required=True, help="git revision to compare the working tree against")
    p.add_argument("--backends", nargs="+", choices=("torch", "tensorflow"), default=["torch", "tensorflow"])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--steps", type=int, default=40, help="optimizer steps of batch 32 (default 40)")
    p.add_argument("--eval-samples", type=int, default=500, help="held-out examples scored (default 500)")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--nice", type=int, default=0,
                   help="add this to the scheduling priority of every run (e.g. -10, as root, on a shared machine)")
    p.add_argument("--name", help="results file stem (default versions-<base short sha>)")
    p.add_argument("--out", type=Path, default=BENCH / "results")
    p.add_argument("--keep-work", action="store_true", help="keep the clone and the run logs (printed at the end)")
    a = p.parse_args()
    if a.nice:
        os.nice(a.nice)  # inherited by every run
    tmp = Path(tempfile.mkdtemp(prefix="tl-versions-"))
    work = tmp / "work"
    work.mkdir()
    ctx = compare.Ctx(work=work, threads=a.threads, precision=a.precision, lr=1e-4, seed=0, n_train=32 * a.steps,
                      n_eval=a.eval_samples, predict_n=0)
    t_start, load_before = time.time(), os.getloadavg()
    try:
        base = prepare_base(a.base, tmp)
        name = a.name or f"versions-{base['sha'][:7]}"
        digest = tree_digest()
        checks = {v: preflight(ctx, base, v) for v in VERSIONS}
        base["preflight"] = checks["base"]
        results: dict[str, Any] = {b: {v: {"samples": []} for v in VERSIONS} for b in a.backends}
        for r in range(a.repeats):
            for i, backend in enumerate(a.backends):
                order = VERSIONS if (r + i) % 2 == 0 else VERSIONS[::-1]  # rotate the order every repeat
                for version in order:
                    t, load = time.time(), os.getloadavg()[0]
                    try:
                        sample = run_once(ctx, base, version, backend, r)
                    except (compare.RunFailed, subprocess.CalledProcessError, KeyError, ValueError) as exc:
                        sample = {"error": str(exc)}
                        print(f"versions: FAILED {exc}", file=sys.stderr)
                    sample["repeat"], sample["loadavg_1m_before"] = r, load
                    results[backend][version]["samples"].append(sample)
                    print(f"[{r + 1}/{a.repeats}] {backend} | {version}: {report.brief(sample)} "
                          f"({time.time() - t:.0f} s)", file=sys.stderr, flush=True)
        for b in results.values():
            for v in VERSIONS:
                b[v]["median"] = compare.medians(b[v]["samples"])
            sb, sh = b["base"]["median"].get("samples_per_second"), b["head"]["median"].get("samples_per_second")
            b["ratio_samples_per_second"] = round(sh / sb, 4) if sb and sh else None
            b["numerics"] = numerics(b["base"]["samples"], b["head"]["samples"])
        machine = compare.machine_info()
        head = {"git_commit": machine.pop("git_commit"), "uncommitted_changes": machine.pop("uncommitted_changes"),
                "source_digest_before": digest, "source_digest_after": tree_digest(),
                "preflight": checks["head"]}
        summary = {
            "settings": {"model": "minilm", "dataset": "rotten_tomatoes", "max_length": 128, "batch_size": 32,
                         "lr": ctx.lr, "seed": ctx.seed, "precision": a.precision, "threads": a.threads,
                         "repeats": a.repeats, "niceness": os.getpriority(os.PRIO_PROCESS, 0),
                         "train_samples": ctx.n_train, "eval_samples": ctx.n_eval, "steps": a.steps,
                         "backends": a.backends},
            "base": base,
            "head": head,
            "head_changed_during_run": head["source_digest_before"] != head["source_digest_after"],
            "machine": {**machine, "loadavg_before": load_before, "loadavg_after": os.getloadavg()},
            "total_wall_s": round(time.time() - t_start, 1),
            "commands": ctx.commands,
            "results": results,
        }
        a.out.mkdir(parents=True, exist_ok=True)
        (a.out / f"{name}.json").write_text(json.dumps(summary, indent=2) + "\n")
        text = markdown(summary)
        (a.out / f"{name}.md").write_text(text)
        print(text)
        print(f"versions: wrote {a.out / name}.json and .md", file=sys.stderr)
    except PreflightFailed as exc:
        sys.exit(f"versions: PREFLIGHT FAILED, nothing measured: {exc}")
    finally:
        if a.keep_work:
            print(f"versions: kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
