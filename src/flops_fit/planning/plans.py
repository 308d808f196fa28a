"""plan.json on disk: the run directory check, reading a plan as untrusted data, and
:func:`reconcile_plan`, the one rule for a run directory whose plan differs from the request.

The rule, for plan, train, find-optimal, validate and the Python API alike:

* no plan.json, or the same plan: go on (the plan on disk is kept as it is);
* runs that ``budgets.adaptive`` appended (``added: true``) do not count: a plan extended by
  them is still the same experiment (:func:`plan_differences`), and is kept as it is;
* a different plan and no results yet: re-plan;
* a different plan and results: refuse in one sentence that names the difference;
  ``overwrite=true`` re-plans (runs/ stays; results.json is kept as a dated copy);
* a results.json holding records that runs/ does not back (imported from elsewhere) is never
  overwritten without ``overwrite=true``, and then a dated copy is kept.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.markup import escape

from flops_fit.errors import EnvironmentFailure, FlopsFitError
from flops_fit.planning.flops import count_model
from flops_fit.planning.planner import RunSpec, SweepPlan
from flops_fit.rundir.io import atomic_write_json, file_lock, read_json
from flops_fit.rundir.layout import Layout, check_no_links, check_run_id


def check_run_dir(run_dir: str | Path, create: bool = True) -> Path:
    """The run directory as an absolute path; one sentence if it cannot be one.

    ``create=False`` only checks (the command line does so before Hydra accepts the rest).
    """
    if not str(run_dir).strip():
        raise FlopsFitError("run_dir is empty; give the folder of the sweep, e.g. "
                            "run_dir=outputs/first.")
    run_dir = Path(run_dir).expanduser().absolute()
    if run_dir.exists() and not run_dir.is_dir():
        raise FlopsFitError(f"run_dir {run_dir} is a file, not a folder; choose another run_dir.")
    for name in ("runs",):  # a sub-folder flops-fit needs that is a file
        if (run_dir / name).exists() and not (run_dir / name).is_dir():
            raise FlopsFitError(f"{run_dir / name} is a file, but flops-fit keeps its runs in "
                                "that folder; move the file away or choose another run_dir.")
    check_no_links(run_dir)  # nothing is written through a link inside it
    existing = run_dir
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise FlopsFitError(f"run_dir {run_dir} lies below the file {existing}; choose "
                            "another run_dir.")
    try:  # a temporary file is the only reliable test, root included
        if not create:  # nothing is created: the nearest existing folder must take files
            with tempfile.TemporaryFile(dir=existing):
                pass
            return run_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=run_dir):
            pass
        if (run_dir / "runs").is_dir():
            with tempfile.TemporaryFile(dir=run_dir / "runs"):
                pass
    except OSError as exc:
        raise EnvironmentFailure(
            f"run_dir {run_dir} is not writable ({exc.strerror or exc}); choose a folder you "
            "can write to."
        ) from exc
    return run_dir


def load_plan(run_dir: str | Path) -> SweepPlan:
    """Read and check ``run_dir/plan.json`` (untrusted: schema, types, ranges, run ids)."""
    path = Layout(Path(run_dir)).plan
    data = read_json(path, "plan")
    if not isinstance(data, dict):
        raise FlopsFitError(
            f"{path} is not a plan (a JSON object with a list of runs); re-create it with "
            "`flops-fit plan overwrite=true`."
        )
    return SweepPlan.from_dict(data, where=str(path))


def check_plan_runs(plan: SweepPlan, model_cls: type, example_input: Any = None,
                    where: str = "plan.json") -> SweepPlan:
    """Check each run of ``plan`` against what the planner builds for it: its kwargs are the
    plan's model kwargs with its size value, its parameters and FLOPs per token those of the
    model counted again, ``steps`` the whole steps its budget buys, and tokens and FLOPs
    follow (``steps x batch x tokens per sample``). A run that differs (a tampered plan.json)
    is one sentence; returns ``plan``."""
    size_param = plan.model.get("size_param")
    base = dict(plan.model.get("kwargs") or {})
    for i, r in enumerate(plan.runs):
        def bad(what: str, r: RunSpec = r, i: int = i) -> FlopsFitError:
            return FlopsFitError(
                f"{where} run #{i} ({r.run_id}) has {what}, which is not what the planner "
                "builds for that run; restore the file or re-create it with `flops-fit plan "
                "run_dir=... overwrite=true`.")

        if r.size_param != size_param:
            raise bad(f"size_param={r.size_param!r} (the plan's model has {size_param!r})")
        kwargs = {**base, size_param: r.size_value}
        if r.model_kwargs != kwargs:
            changed = sorted(k for k in set(kwargs) | set(r.model_kwargs)
                             if kwargs.get(k) != r.model_kwargs.get(k))
            if changed == [size_param]:
                raise bad(f"size_value={r.size_value!r} but model_kwargs "
                          f"{size_param}={r.model_kwargs.get(size_param)!r}")
            raise bad("model_kwargs " + ", ".join(f"{k}={r.model_kwargs.get(k)!r}"
                                                  for k in changed))
        # the planner's example: one sample of the user's data, else seq_len tokens
        example = example_input if example_input is not None else \
            torch.zeros(1, r.seq_len, dtype=torch.long)
        try:
            count = count_model(model_cls, kwargs, example)
        except Exception as exc:  # a model that no longer builds fails its runs with the cause
            del exc
            continue
        if count.num_params != r.num_params:
            raise bad(f"num_params={r.num_params} (the model has {count.num_params})")
        if not math.isclose(count.flops_per_token, r.flops_per_token, rel_tol=1e-9):
            raise bad(f"flops_per_token={r.flops_per_token:.6g} (the model counts "
                      f"{count.flops_per_token:.6g})")
        per_sample = int(example.shape[1]) if example.dim() > 1 \
            and not example.dtype.is_floating_point else 1
        tokens_per_step = r.batch_size * per_sample
        steps = round(r.compute_budget / count.flops_per_token / tokens_per_step)
        if r.steps != steps:
            raise bad(f"steps={r.steps} (its budget {r.compute_budget:.3g} buys {steps})")
        if r.num_tokens != r.steps * tokens_per_step:
            raise bad(f"num_tokens={r.num_tokens} (steps x batch x tokens per sample = "
                      f"{r.steps * tokens_per_step})")
        if not math.isclose(r.flops, count.flops_per_token * r.num_tokens, rel_tol=1e-9):
            raise bad(f"flops={r.flops:.6g} (FLOPs per token x tokens = "
                      f"{count.flops_per_token * r.num_tokens:.6g})")
    return plan


def has_results(run_dir: str | Path) -> bool:
    """Whether any run of ``run_dir`` has finished or started (a result or a checkpoint)."""
    runs = Layout(Path(run_dir)).runs
    return runs.is_dir() and any(
        p.is_dir() and (any(p.glob("result.json")) or any(p.glob("checkpoint.pt")))
        for p in runs.iterdir())


def imported_records(run_dir: str | Path) -> list[str]:
    """Run ids of results.json's finished records that runs/ does not back (imported data)."""
    lay = Layout(Path(run_dir))
    if not lay.results.is_file():
        return []
    try:
        records = read_json(lay.results, "results")
    except FlopsFitError:
        return ["(unreadable results.json)"]
    out = []
    for rec in records if isinstance(records, list) else [None]:
        if not isinstance(rec, dict):
            out.append("(a malformed record)")
            continue
        if rec.get("status", "pending") == "pending":
            continue
        rid = rec.get("run_id")
        try:
            backed = lay.result(check_run_id(rid)).is_file()
        except FlopsFitError:
            backed = False
        if not backed:
            out.append(str(rid))
    return out


def _differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new), key=str):
            out += _differences(old.get(key), new.get(key), f"{prefix}{key}.")
        return out
    return [] if old == new else [f"{prefix.rstrip('.')}: {old!r} -> {new!r}"]


def plan_differences(old: SweepPlan, new: SweepPlan) -> list[str]:
    """What differs between two plans' identities (model, data, budgets, train settings)."""
    diff = _differences(old.identity(), new.identity())
    moved = {e["budget"] for e in old.recentred}
    if not diff and _planned_ids(old, moved) != _planned_ids(new, moved):
        diff = ["the planned runs"]
    return diff


def _planned_ids(plan: SweepPlan, moved: set[float]) -> list[str]:
    """The ids a plan's identity compares: runs added by ``budgets.adaptive`` and the runs of
    budgets sequential planning re-centred (``moved``) follow from the experiment's results, so
    they are left out."""
    return [r.run_id for r in plan.planned_runs if r.compute_budget not in moved]


def append_runs(run_dir: str | Path, added: list[RunSpec]) -> SweepPlan:
    """Append ``added`` (runs of ``budgets.adaptive``) to ``run_dir/plan.json``; the new plan.

    Under the plan's lock; runs already in the plan are not added twice.
    """
    lay = Layout(Path(run_dir))
    with file_lock(lay.plan):
        plan = load_plan(run_dir)
        have = {r.run_id for r in plan.runs}
        new = [r for r in added if r.run_id not in have]
        if new:
            plan.runs.extend(new)
            atomic_write_json(lay.plan, plan.to_dict())
    return plan


def started_budgets(run_dir: str | Path, plan: SweepPlan) -> set[float]:
    """The budgets of ``plan`` with a run begun: its folder under runs/ exists (where its
    lock, checkpoint and record live)."""
    lay = Layout(Path(run_dir))
    return {r.compute_budget for r in plan.runs if lay.run(r.run_id).exists()}


def recentre_runs(run_dir: str | Path, budget_runs: dict[float, list[RunSpec]],
                  entries: list[dict[str, Any]]) -> SweepPlan:
    """Replace the runs of each budget in ``budget_runs`` by its new runs and record
    ``entries`` (sequential planning) in ``run_dir/plan.json``, atomically under its lock; the
    new plan. A budget with a run begun (:func:`started_budgets`) is left as it is.
    """
    lay = Layout(Path(run_dir))
    with file_lock(lay.plan):
        plan = load_plan(run_dir)
        started = started_budgets(run_dir, plan)
        moved = {c for c in budget_runs if c not in started}
        if moved:
            kept = [r for r in plan.runs if r.compute_budget not in moved]
            new = [r for c in sorted(moved) for r in budget_runs[c]]
            plan.runs = sorted(kept + new, key=lambda r: r.compute_budget)  # stable
            plan.recentred = plan.recentred + [e for e in entries if e["budget"] in moved]
            atomic_write_json(lay.plan, plan.to_dict())
    return plan


def experiment_differences(old: SweepPlan, new: SweepPlan) -> list[str]:
    """What differs between two plans but the budgets: the model, the data, how runs train."""
    a, b = old.identity(legacy=old.is_legacy()), new.identity(legacy=old.is_legacy())
    a.pop("budgets")
    b.pop("budgets")
    return _differences(a, b)


def _keep_dated_copy(path: Path) -> Path | None:
    if not path.exists():
        return None
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    copy = path.with_name(f"{path.stem}.{stamp}{path.suffix}")
    shutil.copy2(path, copy)
    return copy


def reconcile_plan(run_dir: str | Path, requested: SweepPlan, overwrite: bool = False,
                   console: Console | None = None, what: str = "run_dir") -> SweepPlan:
    """The plan to use in ``run_dir`` for ``requested`` (see the module docstring).

    Returns the plan on disk when it is the same experiment, else writes ``requested``.
    """
    console = console or Console(highlight=False)
    run_dir = Path(run_dir)
    lay = Layout(run_dir)
    old: SweepPlan | None = None
    unreadable = ""
    if lay.plan.exists():
        try:
            old = load_plan(run_dir)
        except FlopsFitError as exc:
            unreadable = str(exc)
    if old is not None:
        diff = plan_differences(old, requested)
        if not diff:
            return old
        if old.is_legacy() and not _differences(old.identity(legacy=True),
                                                requested.identity(legacy=True)):
            console.print(f"note: {escape(str(lay.plan))} was written by an earlier flops-fit "
                          "that did not record the train settings; resuming it as planned.")
            return old
    else:
        diff = ["plan.json unreadable: " + unreadable] if unreadable else []
    imported = imported_records(run_dir)
    started = has_results(run_dir)
    if not overwrite:
        if imported:
            raise FlopsFitError(
                f"{lay.results} holds {len(imported)} finished record(s) that runs/ does not "
                f"back (imported results, e.g. {imported[0]}); training here would replace "
                "them, so use another run_dir, or add overwrite=true (a dated copy is kept)."
            )
        if started and (old is not None or unreadable):
            raise FlopsFitError(
                f"{what} {run_dir} already has results from a different plan "
                f"({'; '.join(diff[:4])}); use another run_dir, or add overwrite=true to "
                "re-plan (finished runs stay under runs/)."
            )
        if unreadable:
            raise FlopsFitError(unreadable)
    if overwrite and (imported or started):
        copy = _keep_dated_copy(lay.results)
        if copy is not None:
            console.print(f"note: kept the old results as {escape(str(copy))}")
    if old is not None and diff:
        console.print(f"note: re-planning {escape(str(run_dir))} "
                      f"({escape('; '.join(diff[:4]))}).")
    atomic_write_json(lay.plan, requested.to_dict())
    return requested
