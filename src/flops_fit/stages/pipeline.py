"""The stages as plain Python: each takes a checked :class:`~flops_fit.config.settings.Settings`.

``cli.py`` builds the Settings from Hydra's config and ``api.find_optimal`` from keyword
arguments; both then call these functions, so the command line and Python plan, train and fit
the same way. Each stage reads only the files of the run directory and its settings, so any
stage can be re-run alone, from any working directory, at any time.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import warnings
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.markup import escape

from flops_fit.analysis.analyzer import run_analysis
from flops_fit.analysis.approaches import approach
from flops_fit.analysis.forecast import forecast, forecast_lines
from flops_fit.analysis.realise import describe as describe_prediction
from flops_fit.config import CustomDatasetConfig, DatasetConfig, PredictConfig, Settings
from flops_fit.config.reading import class_path, import_model_class
from flops_fit.data import as_data_source, build_custom, build_data, custom_loss
from flops_fit.errors import FlopsFitError
from flops_fit.planning.adaptive import extend_plan
from flops_fit.planning.contracts import validate_loss_fn
from flops_fit.planning.planner import SweepPlan, plan_sweep
from flops_fit.planning.plans import (
    append_runs,
    check_plan_runs,
    check_run_dir,
    experiment_differences,
    has_results,
    load_plan,
    reconcile_plan,
)
from flops_fit.result import Result
from flops_fit.rundir.io import file_lock, load_run_results, read_json, remove_stale_temp_files
from flops_fit.rundir.layout import Layout
from flops_fit.rundir.records import TuningRecord
from flops_fit.stages.answer import answer_plan, use_answer, write_answer_file
from flops_fit.stages.rounds import rounds_line, sequential, shards_note, train_in_rounds
from flops_fit.stages.tune import apply_rule, load_tuning, run_tuning
from flops_fit.stages.validate import validate_stage
from flops_fit.training.devices import pick_cuda_device, release_devices, resolve_device
from flops_fit.training.estimate import estimate_lines, probe_plan, train_timed
from flops_fit.training.runner import check_loss_fn, default_loss_fn
from flops_fit.training.schedule import check_schedule_name, endpoint_schedules, trajectory
from flops_fit.training.sweep import check_failures
from flops_fit.training.tracking.loggers import log_fit, log_plots
from flops_fit.training.workers import train_with_workers


def check_settings(s: Settings) -> Settings:
    """Check every setting, before anything is written: each group's own check, then the names
    the registries of higher layers hold (``train.schedule``, ``analysis.predict_with``);
    returns ``s``."""
    s.check()
    check_schedule_name(s.train)
    approach(s.analysis.predict_with)
    return s


def _data_identity(s: Settings) -> dict[str, Any]:
    if s.data is not None:  # a Python object: named by its class
        return {"name": "python:" + class_path(type(s.data))}
    return s.dataset.identity()


def _torch_data(s: Settings) -> Any:
    """The user's torch data: given from Python, or built by ``dataset=custom``; else None."""
    if s.data is not None:
        return s.data
    if isinstance(s.dataset, CustomDatasetConfig):
        return build_custom(s.dataset)
    return None


def _loss_fn(s: Settings) -> Any:
    """The loss given from Python, or the one ``dataset=custom`` names (None: cross-entropy)."""
    if s.loss_fn is not None:
        return s.loss_fn
    if s.data is None and isinstance(s.dataset, CustomDatasetConfig):
        return custom_loss(s.dataset)
    return None


def _data_source(s: Settings, seq_len: int, batch_size: int) -> Any:
    data = _torch_data(s)
    if data is not None:
        val_fraction = getattr(s.dataset, "val_fraction", 0.05) if s.data is None else 0.05
        return as_data_source(data, val_fraction=val_fraction)
    return build_data(s.dataset, seq_len, batch_size, cache_dir=s.run_dir)


def _example(s: Settings) -> tuple[int, Any]:
    """The sample length and example input of the settings' data (None: token windows)."""
    seq_len, example = s.train.seq_len, None
    data = _torch_data(s)
    if data is not None:  # the user's data fixes the sample shape
        example = as_data_source(data).example_input()
        is_tokens = example.dim() > 1 and not example.dtype.is_floating_point
        seq_len = int(example.shape[1]) if is_tokens else 1
    return seq_len, example


def make_plan(s: Settings, centres: dict[float, float] | None = None) -> SweepPlan:
    """Plan the sweep the settings describe (nothing is written but a tokenized-data cache);
    ``centres`` (budget -> N*) re-centre those budgets (sequential planning).

    The data is checked here, before anything trains: a missing or binary file, too little
    data for a batch, a user dataset that breaks the contract.
    """
    model_cls = s.resolved_model_cls()
    seq_len, example = _example(s)
    if example is None and s.dataset != DatasetConfig():  # the built-in corpus needs no check
        _data_source(s, seq_len, s.train.batch_size)
    context = {"dataset": _data_identity(s), "train": {**trajectory(s.train),
                                                       "seq_len": seq_len}}
    if s.answer is not None:  # `train answer=...`: exactly that run
        return answer_plan(s, model_cls, example, context)
    with warnings.catch_warnings(record=True):  # the notes are in plan.warnings
        warnings.simplefilter("always")
        return plan_sweep(
            model_cls, s.model.size_param, s.model_kwargs(model_cls), s.budgets.checked_values(),
            sizes=s.candidate_sizes(), sizes_per_budget=s.budgets.sizes_per_budget,
            span=s.budgets.span, tokens_per_param=s.budgets.tokens_per_param,
            exponent=s.budgets.exponent, batch_size=s.train.batch_size, seq_len=seq_len,
            min_steps=s.budgets.min_steps, example_input=example,
            model_target=class_path(model_cls) if s.model_cls is not None else s.model._target_,
            context=context, centres=centres,
        )


def check_first_batch(s: Settings, plan: SweepPlan) -> None:
    """The user's data (``dataset=custom``, a Python dataset): its first batch through the
    plan's smallest model and the loss, before anything is written, so inputs and targets
    that cannot be scored (e.g. of different lengths) are one sentence at ``plan``."""
    data = _torch_data(s)
    if data is None or not plan.runs:
        return
    source = as_data_source(data)
    loss_fn = _loss_fn(s) or default_loss_fn
    x, y = next(iter(source.val_batches(2 * source.tokens_per_sample, batch_size=2)))
    tokens = all(isinstance(t, torch.Tensor) and t.dim() > 1 and not t.dtype.is_floating_point
                 for t in (x, y))
    if tokens and loss_fn is default_loss_fn and x.shape != y.shape:
        raise FlopsFitError(
            f"The dataset's inputs have shape {tuple(x.shape[1:])} but its targets "
            f"{tuple(y.shape[1:])}; next-token cross entropy needs a target per input token, "
            "so make both the same length (e.g. tokens[:-1] and tokens[1:]).")
    smallest = min(plan.runs, key=lambda r: r.num_params)
    check_loss_fn(loss_fn, _model_cls_of(plan, s), smallest, source)


def plan_or_reconcile(s: Settings, console: Console, show: bool = False) -> SweepPlan:
    """The plan of ``s`` in its run directory, by :func:`~flops_fit.planning.plans.reconcile_plan`.

    Under a lock: the shards of a multirun start (and plan) together.
    """
    check_settings(s)
    run_dir = check_run_dir(s.run_dir)
    requested = make_plan(s)
    check_first_batch(s, requested)
    with file_lock(Layout(run_dir).plan):
        plan = reconcile_plan(run_dir, requested, s.overwrite, console)
    if plan is not requested:  # the plan on disk: untrusted, each run checked against its own
        check_plan_runs(plan, _model_cls_of(plan, s), _example(s)[1], str(Layout(run_dir).plan))
    print_notices(requested, console)
    if show:
        for note in plan.warnings:
            if note not in requested.notices:
                console.print(f"[yellow]warning:[/] {escape(note)}")
        console.print(plan.table(show_ids=console.width >= 110))
        console.print(f"Wrote {escape(str(Layout(run_dir).plan))}")
    return plan


def print_notices(plan: SweepPlan, console: Console) -> None:
    """What planning found about the model, printed by every stage that plans: the sizes that
    cannot be built (one line) and a 6N fallback with its cause."""
    for line in plan.notices:
        console.print(f"[yellow]warning:[/] {escape(line)}", soft_wrap=True)


def plan_stage(s: Settings, console: Console | None = None) -> SweepPlan:
    """Plan and write ``plan.json`` atomically; refuse to orphan existing results. ``extend``
    first appends the sizes ``budgets.adaptive`` calls for; then rounds, compute and time."""
    console = console or Console(highlight=False)
    use_answer(s, console)
    plan = plan_or_reconcile(s, console, show=not s.extend)
    if s.extend:
        plan = extend_stage(s, plan, console, explicit=True)
        console.print(plan.table(show_ids=console.width >= 110))
    if sequential(s, plan):
        console.print(rounds_line(plan), highlight=False)
    print_estimate(s, plan, console)
    return plan


def print_estimate(s: Settings, plan: SweepPlan, console: Console) -> None:
    """The plan's compute (separate runs, with reuse), estimated time (estimate.py) and
    precision forecast at the prediction budget (analysis/forecast.py)."""
    probes = device = None
    if s.estimate.probe:
        train = copy.copy(s.train)
        if s.data is not None:
            train.seq_len = int(plan.settings.get("seq_len", train.seq_len))
        device = resolve_device(train.device)
        data = _data_source(s, train.seq_len, train.batch_size)
        probes = probe_plan(check_run_dir(s.run_dir), plan, _model_cls_of(plan, s), data,
                            train, s.estimate, console)
    for line in estimate_lines(plan, s.train, probes, device):
        console.print(escape(line), highlight=False)
    if s.estimate.forecast and plan.runs:
        target = s.predict.budget_for(max(r.compute_budget for r in plan.runs))
        f = forecast([r.compute_budget for r in plan.runs], [r.num_params for r in plan.runs],
                     target, s.estimate.noise, s.budgets.tokens_per_param,
                     Layout(check_run_dir(s.run_dir)).laws)
        for line in forecast_lines(f):
            console.print(escape(line), highlight=False)


def extend_stage(s: Settings, plan: SweepPlan, console: Console,
                 explicit: bool = False, budgets: list[float] | None = None) -> SweepPlan:
    """Append the runs ``budgets.adaptive`` calls for to plan.json (see adaptive.py).

    ``explicit`` (``plan extend=true``) extends even when ``budgets.adaptive`` is off, and so
    does ``budgets`` (a round of sequential planning), which limits the look to those budgets.
    """
    if not (s.budgets.adaptive or explicit or budgets):
        return plan
    run_dir = check_run_dir(s.run_dir)
    ext = extend_plan(plan, load_run_results(run_dir), _model_cls_of(plan, s),
                      s.candidate_sizes(), max_added=s.budgets.max_added,
                      min_steps=s.budgets.min_steps, example_input=_example(s)[1],
                      budgets=budgets)
    for note in ext.notes:
        console.print(f"adaptive: {escape(note)}", highlight=False)
    if ext.waiting and explicit:
        console.print(f"adaptive: {ext.waiting} budget(s) still have runs to train; extend "
                      "again after they finish.", highlight=False)
    if not ext.added:
        return plan
    plan = append_runs(run_dir, ext.added)
    console.print(f"adaptive: added {len(ext.added)} run(s) to "
                  f"{escape(str(Layout(run_dir).plan))}", highlight=False)
    return plan


def _model_cls_of(plan: SweepPlan, s: Settings) -> type:
    """The plan's model class: the one given from Python if it is that class, else imported."""
    if s.model_cls is not None and class_path(s.model_cls) == plan.model["_target_"]:
        return s.model_cls
    return import_model_class(plan.model["_target_"])


def train_command(s: Settings, console: Console) -> list[dict[str, Any]]:
    """Train every run of the settings' plan that is not complete (planning first if needed).

    The LR rule is ``tuning.json``'s when the run directory has one (:func:`use_tuned_rule`).
    """
    resolve_device(s.train.device)  # a device this machine lacks: refused before plan.json
    use_answer(s, console)
    label = use_tuned_rule(s, console)
    plan = plan_or_reconcile(s, console)
    model_cls = _model_cls_of(plan, s)
    train = s.train
    if _torch_data(s) is not None:  # the plan fixed the sample length of the user's data
        train.seq_len = int(plan.settings.get("seq_len", train.seq_len))
    data = _data_source(s, train.seq_len, train.batch_size)
    loss_fn = _loss_fn(s)
    if loss_fn is not None:
        validate_loss_fn(loss_fn)
    plan = extend_stage(s, plan, console)  # results of an earlier (sharded) train call
    # one free GPU per job (devices_per_run of them for a multi-device run), before CUDA starts
    train.device = pick_cuda_device(train.device, k=train.devices_per_run)

    def train_plan(plan: SweepPlan, only: set[str] | None = None) -> list[dict[str, Any]]:
        run_dir = check_run_dir(s.run_dir)  # timed against the estimate
        return train_timed(run_dir, plan, train, lambda: train_with_workers(
            run_dir, plan, model_cls, data, train, loss_fn, console, label, only), console,
            only)

    try:
        if sequential(s, plan):
            plan = train_in_rounds(
                s, plan, console, train_plan,
                extend=lambda p, group: extend_stage(s, p, console, budgets=group),
                replan=lambda centres: make_plan(s, centres))
            done = load_run_results(check_run_dir(s.run_dir))
            records = [done[r.run_id] for r in plan.runs if r.run_id in done]
        else:
            if note := shards_note(s, plan):
                console.print(note, highlight=False)
            records = train_plan(plan)
        # one process: train -> extend -> train the added runs, until nothing is added
        # (bounded by budgets.max_added per budget); shards extend at the next train
        while s.budgets.adaptive and train.num_shards == 1:
            before = len(plan.runs)
            plan = extend_stage(s, plan, console)
            if len(plan.runs) == before:
                break
            records = train_plan(plan)
    finally:
        release_devices()  # a reused launcher worker must not keep this job's GPU
    check_failures(records, console)
    return records


def use_tuned_rule(s: Settings, console: Console) -> str:
    """Apply ``run_dir/tuning.json``'s LR rule to ``s.train`` (if any); the rule's label.

    A sweep never mixes rules: a run directory whose runs were trained under another rule
    than ``tuning.json``'s is refused in one sentence (the plan's identity holds the rule).
    """
    run_dir = check_run_dir(s.run_dir)
    record = load_tuning(run_dir)
    before = {k: getattr(s.train, k) for k in ("lr_base", "lr_exponent", "lr_ref_params")}
    label = apply_rule(record, s.train)
    if record is None or s.train.lr is not None:
        return label
    _refuse_mixed_rules(run_dir, s, record, before)
    console.print(f"LR rule: {escape(label)}: lr = {s.train.lr_base:.3g} * "
                  f"({s.train.lr_ref_params:.3g} / N)^{s.train.lr_exponent:.3f}",
                  highlight=False)
    return label


def _refuse_mixed_rules(run_dir: Path, s: Settings, record: TuningRecord,
                        config_rule: dict[str, float]) -> None:
    """One sentence when run_dir holds results trained under another LR rule than tuning.json's."""
    lay = Layout(run_dir)
    if not lay.plan.exists() or not has_results(run_dir) or s.overwrite:
        return
    try:
        old = (load_plan(run_dir).settings.get("train") or {})
    except FlopsFitError:
        return  # reconcile_plan says what is wrong with it
    keys = ("lr_base", "lr_exponent", "lr_ref_params")
    trained = {k: old.get(k) for k in keys}
    if any(trained[k] is None for k in keys) or old.get("lr") is not None:
        return
    if all(abs(float(trained[k]) - getattr(s.train, k)) <= 1e-12 * abs(getattr(s.train, k))
           for k in keys):
        return
    raise FlopsFitError(
        f"run_dir {run_dir} has runs trained with the LR rule lr_base={trained['lr_base']:.3g}, "
        f"lr_exponent={trained['lr_exponent']:.3g}, but {lay.tuning.name} now sets "
        f"lr_base={s.train.lr_base:.3g}, lr_exponent={s.train.lr_exponent:.3g}; a sweep never "
        "mixes LR rules, so tune in a fresh run_dir before training, re-plan with "
        f"overwrite=true (finished runs stay under runs/), or move {lay.tuning.name} away.")


def tune_unless_tuned(s: Settings, console: Console) -> None:
    """Run :func:`tune_command` before a sweep (find-optimal ``tune=true``, the API's
    ``tune=True``), unless the run directory already has tuning.json."""
    if load_tuning(check_run_dir(s.run_dir)) is None:
        tune_command(dataclasses.replace(s, train=dataclasses.replace(s.train)), console)


def tune_command(s: Settings, console: Console) -> TuningRecord:
    """Find the peak LR per model size and write ``run_dir/tuning.json`` (see tune.py).

    The sizes come from the sweep these settings plan, under the configured rule (nothing is
    written to plan.json); the runs go to ``run_dir/tuning/`` and are never trained twice.
    """
    check_settings(s)
    resolve_device(s.train.device)
    run_dir = check_run_dir(s.run_dir)
    plan = make_plan(s)
    print_notices(plan, console)
    check_first_batch(s, plan)
    model_cls = _model_cls_of(plan, s)
    train = s.train
    if s.data is not None:
        train.seq_len = int(plan.settings.get("seq_len", train.seq_len))
    batch = train.batch_size * (2 if "batch_size" in s.tune.params else 1)
    data = _data_source(s, train.seq_len, batch)
    if s.loss_fn is not None:
        validate_loss_fn(s.loss_fn)
    train.device = pick_cuda_device(train.device)
    try:
        return run_tuning(run_dir, plan, model_cls, data, train, s.tune, s.budgets.min_steps,
                          s.loss_fn, console)
    finally:
        release_devices()


def analyze_command(s: Settings, console: Console):
    """Fit the scaling laws to ``results.json``; print them with intervals and the table."""
    analysis = run_analysis(check_run_dir(s.run_dir), s.analysis, s.analysis.table_budgets,
                            console, endpoint_schedules())
    log_fit(s.run_dir, s.train.loggers, analysis)  # the sweep's trackers, if any (loggers.py)
    return analysis


def visualize_command(s: Settings, console: Console) -> list:
    """Redraw every plot and ``report.html`` from the run directory's files alone."""
    figures, report = draw(check_run_dir(s.run_dir), s.predict.budget)
    log_plots(s.run_dir, s.train.loggers)  # the sweep's trackers, if any (loggers.py)
    console.print(f"Wrote {len(figures)} plots to {escape(str(report.parent / 'plots'))} and "
                  f"{escape(str(report))}")
    return figures


def draw(run_dir: Path, predict_budget: float | None = None) -> tuple[list, Path]:
    """Plots (PNG + SVG under plots/) and report.html of a fitted run directory."""
    # matplotlib only for the stages that draw: `analyze` from cron writes nothing into $HOME
    from flops_fit.report.page import write_report

    lay = Layout(Path(run_dir))
    result = Result.load(run_dir)
    stale = _stale_fit_note(lay, result)
    largest = max(result.compute_budgets) if result.compute_budgets else None
    budget = PredictConfig(predict_budget).budget_for(largest)
    if budget and result.analysis.method:
        result.predict(budget)  # an unusable fit is said in one sentence, not drawn
    with file_lock(lay.plots):  # one drawer at a time: its killed predecessors' temp files go
        remove_stale_temp_files(lay.plots)
        remove_stale_temp_files(lay.root, lay.report.name)
        figures = result.plot(predict_budget=budget)
        records = read_json(lay.results, "results")
        report = write_report(run_dir, figures, result.analysis, records,
                              extra={"predict_budget": budget})
    if stale:
        console = Console(stderr=True, highlight=False)
        console.print(f"[yellow]warning:[/] {escape(stale)}")
    return figures, report


def _stale_fit_note(lay: Layout, result: Result) -> str:
    """A sentence when results.json changed since the fit was made (e.g. a failed analyze)."""
    fitted = (result.analysis.provenance or {}).get("results_sha256")
    if not fitted or not lay.results.is_file():
        return ""
    if hashlib.sha256(lay.results.read_bytes()).hexdigest() == fitted:
        return ""
    return (f"{lay.laws} was fitted to an older results.json, so the plots show that fit over "
            f"newer runs; run `flops-fit analyze run_dir={lay.root}` to refit.")


def find_optimal_command(s: Settings, console: Console) -> Result:
    """(tune ->) plan -> train -> analyze -> visualize, each skipping work already done; print
    the answer, and write it as a launchable run (answer.yaml, stages/answer.py). ``tune.first``
    (``tune=true``) tunes the LR rule first."""
    if s.answer is not None:
        raise FlopsFitError("answer= names one run for `flops-fit train` (or `plan`) to train; "
                            "find-optimal plans a sweep, so drop answer=.")
    if s.tune.first:
        tune_unless_tuned(s, console)
    train_command(s, console)
    analyze_command(s, console)
    visualize_command(s, console)
    result = Result.load(s.run_dir)
    largest = max(result.compute_budgets) if result.compute_budgets else None
    budget = s.predict.budget_for(largest)
    if budget:
        p = result.predict(float(budget))
        console.print(_prediction_line(p), highlight=False)
        for line in describe_prediction(p):
            console.print(escape(line), highlight=False)
        run_dir = check_run_dir(s.run_dir)
        write_answer_file(run_dir, p, s.train, _model_cls_of(load_plan(run_dir), s),
                          _example(s)[1], console)
    return result


def _prediction_line(p: Any) -> str:
    def ci(key: str, fmt: str) -> str:
        lo_hi = p.get(f"{key}_ci")
        return f" [{format(lo_hi[0], fmt)}, {format(lo_hi[1], fmt)}]" if lo_hi else ""

    return escape(
        f"Compute-optimal at C={p['target_compute']:.3g} FLOPs: "
        f"N={p['optimal_params']:.3g}{ci('optimal_params', '.3g')} parameters, "
        f"D={p['optimal_tokens']:.3g}{ci('optimal_tokens', '.3g')} tokens "
        f"({p['tokens_per_param']:.1f} tokens/param), "
        f"loss {p['expected_loss']:.4f}{ci('expected_loss', '.4f')} (95% intervals)")


def validate_command(s: Settings, console: Console) -> dict[str, Any]:
    """Train the predicted optimum of a larger held-out budget and compare with the fit.

    The validation runs are trained like the sweep's, so the settings must describe the same
    experiment as the run directory's plan (model, data and train settings; the budgets may
    differ): otherwise it refuses, naming the difference.
    """
    check_settings(s)
    resolve_device(s.train.device)
    run_dir = check_run_dir(s.run_dir)
    label = use_tuned_rule(s, console)
    plan = load_plan(run_dir)
    diff = experiment_differences(plan, make_plan(s))
    if not diff:
        check_plan_runs(plan, _model_cls_of(plan, s), _example(s)[1], str(Layout(run_dir).plan))
    if diff:
        raise FlopsFitError(
            f"run_dir {run_dir} was trained with other settings than these "
            f"({'; '.join(diff[:4])}); "
            "validate with the sweep's own settings (the same overrides as its train command)."
        )
    model_cls = _model_cls_of(plan, s)
    sizes = s.candidate_sizes() if s.model._target_ == plan.model["_target_"] else None
    train = s.train
    train.batch_size = int(plan.settings.get("batch_size", train.batch_size))
    train.seq_len = int(plan.settings.get("seq_len", train.seq_len))
    data = _data_source(s, train.seq_len, train.batch_size)
    train.device = pick_cuda_device(train.device)
    try:
        return validate_stage(run_dir, model_cls, sizes, data, train, s.validate.budget,
                              s.validate.neighbours, console, lr_rule=label,
                              loss_fn=_loss_fn(s), seeds=s.validate.seeds)
    finally:
        release_devices()
