"""find-optimal's answer as a launchable run: ``answer.yaml``, and the one-run plan of
``flops-fit train run_dir=NEW answer=PATH/answer.yaml``.

After find-optimal, :func:`make_answer` turns the prediction at the predicted budget into the
run the sweep would have made of it: the nearest buildable model (analysis/realise.py), planned
by :func:`~flops_fit.planning.planner.make_run` at the sweep's batch shape (batch_size x
seq_len), so N, D, steps and FLOPs per token are the planner's; its peak LR from the rule in
force (tuning.json's tuned rule if the run directory has one, else the config rule) through
:func:`~flops_fit.training.schedule.lr_for_size`, which training uses; the schedule name; the
budget and the prediction with its intervals. :func:`~flops_fit.rundir.records.read_answer`
is its one reader.

``train answer=PATH`` sets the settings from the answer (:func:`use_answer`: model, batch
shape, the sweep's train settings, ``train.lr`` fixed at the answer's peak LR) and plans
exactly that run as a one-run plan (:func:`answer_plan`).
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from rich.console import Console
from rich.markup import escape

from flops_fit.config import Settings
from flops_fit.config.sweep import ModelConfig, TrainConfig
from flops_fit.errors import FlopsFitError
from flops_fit.planning.flops import count_model
from flops_fit.planning.planner import RunSpec, SweepPlan, make_run
from flops_fit.planning.plans import load_plan
from flops_fit.rundir.io import atomic_write_text
from flops_fit.rundir.layout import Layout
from flops_fit.rundir.records import ANSWER_FORMAT, answer_text, read_answer
from flops_fit.stages.tune import apply_rule, load_tuning
from flops_fit.training.schedule import lr_for_size

#: the prediction's keys answer.yaml keeps (with their intervals, ``<key>_ci``)
_PREDICTION = ("optimal_params", "optimal_tokens", "expected_loss", "tokens_per_param")


def _tokens_per_step(batch_size: int, seq_len: int, example: torch.Tensor | None) -> int:
    if example is None:
        return batch_size * seq_len
    is_tokens = example.dim() > 1 and not example.dtype.is_floating_point
    return batch_size * (int(example.shape[1]) if is_tokens else 1)


def make_answer(run_dir: Path, p: Any, train: TrainConfig, model_cls: type[nn.Module],
                example: torch.Tensor | None) -> dict[str, Any] | None:
    """answer.yaml's mapping for prediction ``p`` (None when it names no buildable model)."""
    m = p.get("model")
    if not m or not p.get("optimal_params"):
        return None
    plan = load_plan(run_dir)
    budget = float(p["target_compute"])
    bs, seq = int(plan.settings.get("batch_size", train.batch_size)), \
        int(plan.settings.get("seq_len", train.seq_len))
    base = {k: v for k, v in m["kwargs"].items() if k != m["size_param"]}
    context = {k: plan.settings[k] for k in ("dataset", "train") if k in plan.settings}
    spec = make_run(model_cls, m["size_param"], base, int(m["size_value"]), budget,
                    plan.model["_target_"], bs, seq, _tokens_per_step(bs, seq, example),
                    example, context)
    rule = copy.copy(train)
    label = apply_rule(load_tuning(run_dir), rule)
    lr = lr_for_size(spec.num_params_non_embedding, rule)
    formula = (f"train.lr={rule.lr:.4g}" if rule.lr is not None else
               f"{rule.lr_base:.4g} * ({rule.lr_ref_params:.4g} / N_non_emb)^"
               f"{rule.lr_exponent:.4g}")
    prediction = {"method": p.get("method"), "target_compute": budget}
    for key in _PREDICTION:
        prediction[key] = _number(p.get(key))
        ci = p.get(f"{key}_ci")
        if ci:
            prediction[f"{key}_ci"] = [_number(ci[0]), _number(ci[1])]
    prediction["notes"] = list(p.get("notes") or [])
    return {
        "format": ANSWER_FORMAT,
        "budget": budget,
        "model": {"_target_": plan.model["_target_"], "size_param": m["size_param"],
                  "kwargs": {**base, m["size_param"]: int(m["size_value"])}},
        "run": {"size_param": spec.size_param, "size_value": spec.size_value,
                "num_params": spec.num_params,
                "num_params_non_embedding": spec.num_params_non_embedding,
                "flops_per_token": spec.flops_per_token, "num_tokens": spec.num_tokens,
                "steps": spec.steps, "batch_size": bs, "seq_len": seq,
                "tokens_per_param": spec.tokens_per_param, "flops": spec.flops,
                "lr": lr, "lr_rule": f"{label}: {formula}", "schedule": train.schedule,
                "budget": budget},
        "prediction": prediction,
        "train": dict(plan.settings.get("train") or {}),
        "dataset": plan.settings.get("dataset"),
    }


def write_answer_file(run_dir: Path, p: Any, train: TrainConfig, model_cls: type[nn.Module],
                      example: torch.Tensor | None, console: Console) -> Path | None:
    """answer.yaml for prediction ``p``, and the lines saying what it holds and how to train it
    (None: ``p`` names no buildable model, nothing written)."""
    answer = make_answer(run_dir, p, train, model_cls, example)
    if answer is None:
        return None
    path = Layout(run_dir).answer
    atomic_write_text(path, answer_text(path, answer))
    r = answer["run"]
    console.print(escape(f"  run: {r['size_param']}={r['size_value']} (N={r['num_params']:,}), "
                         f"{r['num_tokens']:,} tokens = {r['steps']:,} steps of "
                         f"{r['batch_size']}x{r['seq_len']}, peak LR {r['lr']:.3g} "
                         f"({r['lr_rule']}), {r['schedule']}"), highlight=False)
    console.print(escape(f"Wrote {path}; train it with `flops-fit train run_dir=NEW "
                         f"answer={path}`"), highlight=False)
    return path


def _number(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and math.isfinite(x) else None


def use_answer(s: Settings, console: Console) -> dict[str, Any] | None:
    """Set ``s`` from ``s.answer`` (model, batch shape, the sweep's train settings, the peak LR
    fixed, adaptive off); the answer, or None without one."""
    if s.answer is None:
        return None
    answer = read_answer(Path(s.answer).expanduser())
    run = answer["run"]
    model = answer["model"]
    s.model = ModelConfig(_target_=model["_target_"], size_param=run["size_param"],
                          size_min=None, size_max=None, size_step=None,
                          kwargs={k: v for k, v in model["kwargs"].items()
                                  if k != run["size_param"]})
    s.model_cls = None
    for key, value in (answer.get("train") or {}).items():  # trained like the sweep
        if key in TrainConfig.__dataclass_fields__ and key not in ("lr", "lr_base",
                                                                   "lr_exponent"):
            setattr(s.train, key, value)
    s.train.batch_size, s.train.seq_len = int(run["batch_size"]), int(run["seq_len"])
    s.train.lr, s.train.schedule = float(run["lr"]), str(run["schedule"])
    s.budgets.adaptive = False
    s.budgets.values = [float(run["budget"])]
    fitted = answer.get("dataset")
    if fitted and s.data is None and fitted != s.dataset.identity():
        console.print(escape(f"note: the answer was fitted on dataset {fitted.get('name')!r} "
                             f"but this trains on {s.dataset.identity().get('name')!r}; give "
                             "the sweep's dataset settings to train the run it describes."),
                      highlight=False)
    console.print(escape(f"answer {s.answer}: {run['size_param']}={run['size_value']} "
                         f"(N={run['num_params']:,}), {run['steps']} steps of "
                         f"{run['batch_size']}x{run['seq_len']}, peak LR {run['lr']:.4g}, "
                         f"{run['schedule']}, C={run['budget']:.3g}"), highlight=False)
    return answer


def answer_plan(s: Settings, model_cls: type[nn.Module], example: torch.Tensor | None,
                context: dict[str, Any]) -> SweepPlan:
    """The one-run plan of ``s.answer`` (after :func:`use_answer`): exactly its run."""
    answer = read_answer(Path(s.answer).expanduser())
    run = answer["run"]
    base = s.model_kwargs(model_cls)
    bs, seq = int(run["batch_size"]), int(run["seq_len"])
    spec: RunSpec = make_run(model_cls, run["size_param"], base, int(run["size_value"]),
                             float(run["budget"]), s.model._target_, bs, seq,
                             _tokens_per_step(bs, seq, example), example, context)
    if spec.steps != run["steps"] or spec.num_params != run["num_params"]:
        raise FlopsFitError(
            f"The answer {s.answer} trains {run['size_param']}={run['size_value']} with "
            f"N={run['num_params']:,} for {run['steps']} steps, but here that model counts "
            f"N={spec.num_params:,} and {spec.steps} steps; train it with the sweep's data "
            "and model code.")
    settings = {"compute_budgets": [spec.compute_budget], "sizes_per_budget": 1,
                "span": None, "tokens_per_param": None, "exponent": None,
                "batch_size": bs, "seq_len": seq, "min_steps": 1,
                "flops_method": count_model(model_cls, spec.model_kwargs,
                                            example).flops_method,
                "answer": str(s.answer), **context}
    model = {"_target_": s.model._target_, "size_param": run["size_param"], "kwargs": base}
    return SweepPlan([spec], model, settings)
