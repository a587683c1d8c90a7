"""``tl tune``: search hyperparameters with Optuna; each trial a normal run evaluated on a validation
split of the training data, the best configuration then trained on all of it and scored once on the
evaluation split."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import click

from tl.cli.run import configure, run_options
from tl.errors import TLError, UsageError
from tl.training.config import load_recipe
from tl.tuning.settings import DEFAULT_TRIALS, DEFAULT_VALIDATION_SPLIT, PRUNERS, TuneSettings


def _help(name: str, text: str):
    """Give the option ``name`` that an earlier decorator (``run_options``) added ``text`` as its help."""
    def decorate(func):
        for param in getattr(func, "__click_params__", []):
            if param.name == name:
                param.help = text
        return func
    return decorate


@click.command()
@click.argument("recipe", required=False, type=click.Path(dir_okay=False))
@_help("validation_split", f"Share of the training data each trial is evaluated on (held out by a salted hash). "
                           f"Default: {DEFAULT_VALIDATION_SPLIT}.")
@run_options
@click.option("--param", "params", multiple=True, metavar="NAME=SPACE",
              help="A searched option, e.g. lr=loguniform(1e-5,3e-4), epochs=int(1,4), batch_size=choice(16,32), "
                   "weight_decay=uniform(0,0.1), strategy=choice(finetune,freeze). Repeat for each.")
@click.option("--trials", type=click.IntRange(min=1),
              help=f"Trials to finish (with --resume: the new total). Default: {DEFAULT_TRIALS}.")
@click.option("--metric", help="Validation metric to optimise: the task's summary metrics (sentiment: accuracy, "
                               "macro_f1) or loss (minimised). Default: the task's first.")
@click.option("--pruner", type=click.Choice(PRUNERS),
              help="median: stop a trial after an epoch scoring below the median of finished trials. Default: median.")
@click.option("--output", "-o", help="Tuning directory. Default: tunes/<timestamp>-<task>-<backend>.")
@click.option("--resume", "resume_dir", type=click.Path(file_okay=False),
              help="Continue the tuning in this directory (a killed or interrupted tl tune).")
@click.option("--trial-train-samples", type=click.IntRange(min=2), metavar="N",
              help="Trials use a fixed random subset of N training rows (the validation rows held out of it) "
                   "for a faster search; the final run trains on all of the training data.")
@click.option("--no-final", is_flag=True, help="Skip the final run of the best configuration on all training data.")
@click.pass_context
def tune(ctx: click.Context, recipe: str | None, params: tuple[str, ...], trials: int | None, metric: str | None,
         pruner: str | None, output: str | None, resume_dir: str | None, trial_train_samples: int | None,
         no_final: bool, **options: Any) -> None:
    """Search hyperparameters: N trials, each a run on a validation split held out from the training data.

    RECIPE and the run options (as for `tl run`) fix what is not searched; each --param searches one
    option. The best configuration is written as DIR/best.toml (`tl run DIR/best.toml`), trained on all
    the training data and evaluated once on the evaluation split (DIR/best).
    """
    from tl.cli.common import load_registry
    from tl.tuning.study import require_optuna

    require_optuna()
    t0 = time.perf_counter()
    registry, pm = load_registry()
    if resume_dir:
        given = {"recipe": recipe, "params": params or None, "metric": metric, "pruner": pruner,
                 "output": output, "trial_train_samples": trial_train_samples, **options}
        extra = sorted(k for k, v in given.items() if v is not None)
        if extra:
            spelled = {"recipe": "RECIPE", "params": "--param"}
            names = ", ".join(spelled.get(k, f"--{k.replace('_', '-')}") for k in extra)
            raise UsageError(f"--resume continues a tuning as it was configured; drop {names} "
                             "(only --trials and --no-final may be given)")
        session = _Session.resume(Path(resume_dir), registry, pm, trials)
    else:
        if trial_train_samples and options.get("max_train_samples"):
            raise UsageError("--trial-train-samples and --max-train-samples: pass one (--max-train-samples "
                             "limits the trials and the final run alike)")
        session = _Session.new(recipe, params, trials, metric, pruner, output, options, registry, pm,
                               trial_train_samples)
    session.debug = bool(ctx.obj and ctx.obj.get("debug"))
    session.execute(final=not no_final, t0=t0)


class _Session:
    """One ``tl tune`` process over a tuning directory it holds (its lock) from start to end."""

    def __init__(self, directory: Path, settings: TuneSettings, registry: Any, pm: Any, lock: Any,
                 made: list[Path], resumed: bool) -> None:
        from tl.tuning.space import parse_params

        self.directory, self.settings, self.registry, self.pm = directory, settings, registry, pm
        self.lock, self.made, self.resumed = lock, made, resumed
        self.params = parse_params(settings.params)
        self.debug = False

    # --- a new tuning, or one resumed -------------------------------------------------------------
    @classmethod
    def new(cls, recipe: str | None, params: tuple[str, ...], trials: int | None, metric: str | None,
            pruner: str | None, output: str | None, options: dict[str, Any], registry: Any, pm: Any,
            trial_train_samples: int | None = None) -> _Session:
        from tl.training.rundir import LOCK_NAME, new_run_id, prepare_run_dir
        from tl.tuning.space import check_values, parse_params

        if not params:
            raise UsageError("pass at least one --param NAME=SPACE, e.g. --param 'lr=loguniform(1e-5,3e-4)'")
        parsed = parse_params(params)
        recipe_values = load_recipe(recipe) if recipe else {}
        # the recipe's validation_split, if any, is the tuning's (the final run trains on all the data)
        split = options.pop("validation_split") or recipe_values.pop("validation_split", None) \
            or DEFAULT_VALIDATION_SPLIT
        fixed = {k: v for k, v in options.items() if v is not None}
        check_values(parsed, fixed)  # a searched option overrides the recipe's value, not the command line's
        for param in parsed:  # each value in the context of the fixed ones (e.g. strategy with --merge-adapters)
            for value in param.candidates():
                try:
                    configure(registry, recipe_values, {**fixed, param.name: value, "validation_split": split})
                except UsageError as exc:
                    raise UsageError(f"--param {param.label}: {exc}") from None
        first = {**fixed, **{p.name: p.candidates()[0] for p in parsed}}
        base = configure(registry, recipe_values, first)
        task = registry.get("task", base.task)
        from tl.data.loading import load_splits

        # the data read once up front, the evaluation split too: a bad path or column now, not after the trials
        load_splits(base, registry, task)
        metrics = (*task.summary_metrics, "loss")
        metric = metric or task.summary_metrics[0]
        if metric not in metrics:
            raise UsageError(f"--metric {metric!r} is not a metric of task {task.name!r}; "
                             f"choose {', '.join(metrics)}")
        from tl.tuning.study import direction_of

        settings = TuneSettings(recipe=recipe_values, recipe_path=recipe, options=fixed, params=list(params),
                                trials=trials or DEFAULT_TRIALS, metric=metric, direction=direction_of(metric),
                                pruner=pruner or "median", validation_split=split, seed=int(base.seed or 0),
                                trial_train_samples=trial_train_samples)
        directory = Path(output) if output else _fresh(Path("tunes") / new_run_id(base.task, base.backend))
        if directory.is_dir() and any(p.name != LOCK_NAME for p in directory.iterdir()):
            raise UsageError(f"--output {directory} already exists and is not empty; continue that tuning with "
                             f"tl tune --resume {directory}, or choose another path")
        made: list[Path] = []
        directory, lock = prepare_run_dir(str(directory), base.task, base.backend, made=made)
        return cls(directory, settings, registry, pm, lock, made, resumed=False)

    @classmethod
    def resume(cls, directory: Path, registry: Any, pm: Any, trials: int | None) -> _Session:
        from tl.training.rundir import RunLock
        from tl.tuning import settings as saved

        if not directory.is_dir():
            raise UsageError(f"--resume {directory}: no such directory")
        lock = RunLock.acquire(directory, "--resume")  # a tl tune still running there is named
        try:
            settings = saved.load(directory)
            if trials:
                settings.trials = trials
        except BaseException:
            lock.release()
            raise
        return cls(directory, settings, registry, pm, lock, [], resumed=True)

    # --- the trials, the report, the final run ------------------------------------------------------
    def execute(self, final: bool, t0: float) -> None:
        from tl.tuning import settings as saved
        from tl.tuning.study import finished, open_study, recover

        s, directory = self.settings, self.directory
        try:
            if not self.resumed:
                saved.save(directory, s)
            study = open_study(directory, direction=s.direction, seed=s.seed, pruner=s.pruner, trials=s.trials,
                               create=not self.resumed)
            if self.resumed:
                again = recover(study)
                if again:
                    click.echo(f"tl tune: trial(s) {', '.join(map(str, again))} did not finish; trying them again")
            done = len(finished(study))
            click.echo(f"tl tune: {s.trials} trials ({done} done) | searching {', '.join(p.name for p in self.params)} "
                       f"| validation {s.metric} ({s.direction}) on {s.validation_split:.0%} of "
                       + (f"{s.trial_train_samples} training rows " if s.trial_train_samples else "the training data ") +
                       f"| {directory}")
            self._trials(study, done)
            best = self._report(study)
            if final:
                self._final(best)
        finally:
            s.result["wall_s"] = round(float(s.result.get("wall_s", 0.0)) + time.perf_counter() - t0, 1)
            if directory.exists() and (directory / saved.TUNE_FILE).exists():
                saved.save(directory, s)
            self.lock.release()
        click.echo(f"tuning directory: {directory}  ({s.result['wall_s']:.1f}s in all)")

    def _config(self, values: dict[str, Any], output: Path, validation: bool = True) -> Any:
        """A trial's configuration (``validation``: on the validation split, with --trial-train-samples
        rows), or the final run's (all the training data, the evaluation split)."""
        s = self.settings
        subset = {"max_train_samples": s.trial_train_samples} if validation and s.trial_train_samples else {}
        return configure(self.registry, s.recipe, {**s.options, **values, **subset, "output": str(output),
                                                   "validation_split": s.validation_split if validation else None})

    def _trials(self, study: Any, done: int) -> None:
        from tl.training.pipeline import run
        from tl.tuning.space import describe
        from tl.tuning.study import finished, run_trial

        s = self.settings

        def execute(config: Any, **kwargs: Any) -> Any:
            return run(config, self.registry, self.pm, **kwargs)

        while done < s.trials:
            try:
                out = run_trial(study, self.params, self._config, s.metric, self.directory, execute, debug=self.debug)
            except UsageError:
                if not self.resumed and not finished(study):
                    self._discard()  # a configuration no trial can run: nothing worth keeping
                raise
            done = len(finished(study))
            result = f"{s.metric} {out.value:.4f}" if out.status == "finished" else \
                out.detail if out.status == "pruned" else f"failed: {out.detail}"
            click.echo(f"trial {out.number} [{done}/{s.trials}] {describe(out.values)} | {result} | {out.seconds:.1f}s")

    def _report(self, study: Any) -> Any:
        from tl.tuning import report
        from tl.tuning.space import describe

        s, directory = self.settings, self.directory
        names = [p.name for p in self.params]
        rows = report.trial_rows(study, names, s.metric)
        report.write_table(rows, directory / report.TABLE_FILE)
        click.echo(report.format_table(rows, s.metric))
        try:
            report.write_plot(study, directory / report.PLOT_FILE, s.metric, s.direction)
        except Exception as exc:  # a plot is a convenience; the tuning's results stand without it
            click.echo(f"tl: warning: could not write {report.PLOT_FILE} ({type(exc).__name__}: {exc})", err=True)
        complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
        if not complete:
            errors = [r["error"] for r in rows if r["error"]]
            raise TLError(f"no trial finished ({len(rows)} tried" + (f"; first error: {errors[0]}" if errors else "")
                          + f"); see {directory / report.TABLE_FILE}")
        best = study.best_trial
        values = {**s.recipe, **s.options, **best.params}
        values.pop("output", None)
        values.pop("threads", None)  # this machine's, not the configuration's
        report.write_recipe(directory / report.RECIPE_FILE, values, [
            f"tl tune {directory}: best of {len(rows)} trials, trial {best.number}: validation {s.metric} "
            f"{best.value:.4f} ({s.validation_split:.0%} of the training data)",
            f"train and evaluate it: tl run {directory / report.RECIPE_FILE}"])
        s.result["best"] = {"trial": best.number, "params": best.params, s.metric: best.value,
                            "run_dir": best.user_attrs.get("run_dir"), "recipe": report.RECIPE_FILE}
        click.echo(f"best: trial {best.number} | {describe(best.params)} | validation {s.metric} {best.value:.4f} "
                   f"| recipe {directory / report.RECIPE_FILE}")
        return best

    def _final(self, best: Any) -> None:
        from tl.training.pipeline import run

        s, directory = self.settings, self.directory
        earlier = s.result.get("final") or {}
        if earlier.get("trial") == best.number and earlier.get("status") == "finished":
            click.echo(f"final: trial {best.number}'s configuration was already trained and evaluated: "
                       f"{directory / 'best'}")
            return
        t = time.perf_counter()
        config = self._config(dict(best.params), directory / "best", validation=False)
        result = run(config, self.registry, self.pm, quiet=True, overwrite=True)  # a resumed tuning's new best
        m = result.metrics
        shown = [f"eval_{k}" for k in result.summary] + ["eval_loss"]
        s.result["final"] = {"trial": best.number, "params": best.params, "status": "finished",
                             "run_dir": "best", **{k: m[k] for k in shown if k in m},
                             "num_train_samples": m.get("num_train_samples"),
                             "num_eval_samples": m.get("num_eval_samples"),
                             "wall_s": round(time.perf_counter() - t, 1)}
        click.echo("final: best configuration trained on all the training data, evaluated on the evaluation split: "
                   + " | ".join(f"{k} {m[k]:.4f}" for k in shown if k in m) + f" | {result.run_dir}")

    def _discard(self) -> None:
        """Remove what this session made (a new tuning whose first trial hit a usage error)."""
        from tl.training.rundir import remove_unstarted
        from tl.tuning.settings import TUNE_FILE
        from tl.tuning.study import STUDY_FILE, TRIALS_DIR

        self.lock.release()
        for name in (TUNE_FILE, STUDY_FILE):
            (self.directory / name).unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            (self.directory / TRIALS_DIR).rmdir()
        remove_unstarted(self.made)


def _fresh(path: Path) -> Path:
    """``path``, or ``path-2``, ... when a tuning started in the same second took it."""
    candidate, n = path, 1
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.name}-{n}")
    return candidate


