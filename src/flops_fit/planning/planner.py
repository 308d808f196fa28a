"""Planning an IsoFLOP sweep: per budget, several real model sizes around the expected optimum.

For each budget C the planner

1. guesses the optimum N* from a prior: D/N = ``tokens_per_param`` (so N* = sqrt(C / (6 t))),
   or N* ∝ C^exponent anchored at the first budget;
2. takes the size-parameter values whose (meta-device) parameter count N lies within
   [N*/span, N*·span] — widening the window to the nearest values until there are at least
   ``sizes_per_budget`` — and, if there are more, keeps ``sizes_per_budget`` spread evenly in log N;
3. gives each size D = C / (measured training FLOPs per token), rounded to whole optimizer
   steps of ``batch_size * seq_len`` tokens, and records the C actually planned.

Sizes whose run would have fewer than ``min_steps`` optimizer steps are not candidates (a run
that short is mostly warm-up and follows no scaling law); the sizes are chosen among the rest,
with a warning naming the cap.
"""

from __future__ import annotations

import hashlib
import inspect
import io
import json
import math
import typing
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from rich.console import Console
from rich.table import Table

from flops_fit.config import MAX_STEPS
from flops_fit.config.reading import coerce, import_model_class, type_name
from flops_fit.errors import FlopsFitError
from flops_fit.planning.contracts import validate_model_contract
from flops_fit.planning.flops import check_sizes, count_model, smaller_buildable
from flops_fit.rundir.layout import check_run_id

PLAN_FORMAT = "flops-fit plan v1"
#: plan.settings keys that come from the budgets group
BUDGET_KEYS = ("compute_budgets", "sizes_per_budget", "span", "tokens_per_param", "exponent",
               "min_steps")
#: RunSpec keys a plan.json run may leave out (older plans have none of them)
OPTIONAL_RUN_KEYS = ("model_kwargs", "added", "added_reason", "repeat")


@dataclass
class RunSpec:
    """One planned training run. FLOPs are training FLOPs (forward + backward)."""

    run_id: str
    compute_budget: float  # the budget C this run belongs to
    size_param: str
    size_value: int
    num_params: int  # total N
    num_params_non_embedding: int
    flops_per_token: float  # measured
    num_tokens: int  # D
    steps: int
    batch_size: int
    seq_len: int
    flops: float  # planned C = flops_per_token * D
    flops_6nd: float  # 6 * N * D
    tokens_per_param: float
    model_kwargs: dict[str, Any] = field(default_factory=dict)  # full kwargs, size included
    added: bool = False  # added after training by budgets.adaptive (adaptive.py), not planned
    added_reason: str = ""  # why it was added (the edge minimum it brackets)
    repeat: int = 0  # k > 0: the same run again with its own seed (validate.seeds)


def _run_dict(run: RunSpec) -> dict[str, Any]:
    """A run's plan.json object; ``repeat`` only on repeats (plans without any stay as before)."""
    out = asdict(run)
    if not run.repeat:
        del out["repeat"]
    return out


@dataclass
class SweepPlan:
    """A whole sweep: the runs plus what they were planned from."""

    runs: list[RunSpec]
    model: dict[str, Any]  # {_target_, size_param, kwargs}
    settings: dict[str, Any]  # budgets and train settings the plan depends on
    warnings: list[str] = field(default_factory=list)
    #: re-centred budgets (sequential.py), ``{"budget": C, "n_star": N*, "basis": why}``
    recentred: list[dict[str, Any]] = field(default_factory=list)
    #: lines every stage prints when it plans (dropped sizes, a 6N fallback); they are also
    #: among ``warnings``, and not written to plan.json apart from them
    notices: list[str] = field(default_factory=list, compare=False)

    @property
    def planned_runs(self) -> list[RunSpec]:
        """The runs planned up front (without those ``budgets.adaptive`` added later)."""
        return [r for r in self.runs if not r.added]

    @property
    def compute_budgets(self) -> list[float]:
        return sorted({r.compute_budget for r in self.runs})

    def __len__(self) -> int:
        return len(self.runs)

    def run(self, run_id: str) -> RunSpec:
        for r in self.runs:
            if r.run_id == run_id:
                return r
        raise KeyError(run_id)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": PLAN_FORMAT,
            "model": self.model,
            "settings": self.settings,
            "warnings": self.warnings,
            **({"recentred": self.recentred} if self.recentred else {}),
            "runs": [_run_dict(r) for r in self.runs],
        }

    def centre(self, budget: float) -> float | None:
        """The N* a re-centring placed ``budget``'s sizes around (None: the prior's)."""
        return next((e["n_star"] for e in reversed(self.recentred) if e["budget"] == budget),
                    None)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "plan.json") -> SweepPlan:
        """A plan from its JSON object, checked as untrusted data (types, ranges, run ids).

        Nothing is imported or called here; :meth:`model_cls` checks the model class.
        """
        def bad(what: str) -> FlopsFitError:
            return FlopsFitError(f"{where} does not have the expected shape ({what}); re-create "
                                 "it with `flops-fit plan run_dir=... overwrite=true`.")

        if not isinstance(data, dict):
            raise bad("not a JSON object")
        fmt = data.get("format", PLAN_FORMAT)
        if fmt != PLAN_FORMAT:
            raise FlopsFitError(f"{where} has format {fmt!r}, which this flops-fit does not "
                                f"read (it reads {PLAN_FORMAT!r}); re-create it with "
                                "`flops-fit plan run_dir=... overwrite=true`.")
        model = data.get("model")
        if not isinstance(model, dict) or not isinstance(model.get("_target_"), str) \
                or not isinstance(model.get("size_param"), str) \
                or not isinstance(model.get("kwargs", {}), dict):
            raise bad("no valid model: _target_, size_param and kwargs")
        settings = data.get("settings", {})
        if not isinstance(settings, dict):
            raise bad("settings are not a mapping")
        for key in ("batch_size", "seq_len"):
            if key in settings:
                try:
                    settings[key] = coerce(settings[key], int)
                except (TypeError, ValueError):
                    raise bad(f"settings.{key}={settings[key]!r} is not a whole number") \
                        from None
        raw = data.get("runs")
        if not isinstance(raw, list):
            raise bad("no list of runs")
        hints = typing.get_type_hints(RunSpec)
        runs, seen = [], set()
        for i, r in enumerate(raw):
            if not isinstance(r, dict):
                raise bad(f"run #{i} is not an object")
            missing = sorted(k for k in hints if k not in r and k not in OPTIONAL_RUN_KEYS)
            unknown = sorted(set(r) - set(hints))
            if missing or unknown:
                raise bad(f"run #{i} has {'no ' + ', '.join(missing) if missing else ''}"
                          f"{' and ' if missing and unknown else ''}"
                          f"{'unknown keys ' + ', '.join(unknown) if unknown else ''}")
            values = {}
            for key, value in r.items():
                try:
                    values[key] = coerce(value, hints[key])
                except (TypeError, ValueError):
                    raise bad(f"run #{i} has {key}={value!r}, which is not "
                              f"{type_name(hints[key])}") from None
            spec = RunSpec(**values)
            try:
                check_run_id(spec.run_id)
            except FlopsFitError:
                raise bad(f"run #{i} has run_id {spec.run_id!r}, which is not a safe folder "
                          "name") from None
            if spec.run_id in seen:
                raise bad(f"run_id {spec.run_id!r} is listed twice")
            seen.add(spec.run_id)
            checks = {"steps": 1 <= spec.steps <= MAX_STEPS, "batch_size": spec.batch_size >= 1,
                      "seq_len": spec.seq_len >= 1, "num_params": spec.num_params >= 1,
                      "compute_budget": math.isfinite(spec.compute_budget)
                      and spec.compute_budget > 0,
                      "num_tokens": spec.num_tokens >= 0, "repeat": spec.repeat >= 0,
                      "flops_per_token": math.isfinite(spec.flops_per_token)
                      and spec.flops_per_token > 0}
            for key, ok in checks.items():
                if not ok:
                    raise bad(f"run #{i} ({spec.run_id}) has {key}={getattr(spec, key)!r}, "
                              "out of range")
            runs.append(spec)
        warns = data.get("warnings", [])
        recentred = data.get("recentred", [])
        if not isinstance(recentred, list):
            raise bad("recentred is not a list")
        for i, e in enumerate(recentred):
            if not (isinstance(e, dict) and all(type(e.get(k)) in (int, float) and
                    math.isfinite(e[k]) and e[k] > 0 for k in ("budget", "n_star"))):
                raise bad(f"recentred #{i} has no positive budget and n_star")
        recentred = [{"budget": float(e["budget"]), "n_star": float(e["n_star"]),
                      "basis": str(e.get("basis", ""))} for e in recentred]
        return cls(runs, model, settings, [str(w) for w in warns]
                   if isinstance(warns, list) else [], recentred)

    def model_cls(self) -> type[nn.Module]:
        """The planned model class, checked to be an ``nn.Module`` before anything is called."""
        return import_model_class(self.model["_target_"])

    def identity(self, legacy: bool = False) -> dict[str, Any]:
        """What makes two plans the same experiment: model, data, budgets, train settings.

        ``legacy`` leaves out what plans of earlier releases did not record (train settings).
        """
        st = self.settings
        out = {"model": self.model, "dataset": st.get("dataset"),
               "budgets": {k: st.get(k) for k in BUDGET_KEYS},
               "batch": {k: st.get(k) for k in ("batch_size", "seq_len")}}
        if not legacy:
            out["train"] = st.get("train")
        return out

    def is_legacy(self) -> bool:
        """Planned by a release that did not record the train settings."""
        return "train" not in self.settings

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> SweepPlan:
        return cls.from_dict(json.loads(text))

    def table(self, show_ids: bool = False) -> Table:
        """The plan as a rich table (one row per run); run ids only when asked (wide)."""
        title = f"IsoFLOP sweep: {len(self.runs)} runs, {len(self.compute_budgets)} budgets"
        t = Table(title=title)
        cols = ["budget C", self.model.get("size_param", "size"), "N", "D", "D/N", "steps",
                "planned C"] + (["run_id"] if show_ids else [])
        for col in cols:
            t.add_column(col, justify="left" if col == "run_id" else "right", no_wrap=True)
        for r in self.runs:
            t.add_row(f"{r.compute_budget:.3g}", str(r.size_value), human(r.num_params),
                      human(r.num_tokens), f"{r.tokens_per_param:.1f}", str(r.steps),
                      f"{r.flops:.4g}", *([r.run_id] if show_ids else []))
        return t

    def __rich__(self) -> Table:
        return self.table()

    def __str__(self) -> str:
        console = Console(width=120, record=True, file=io.StringIO(), color_system=None)
        console.print(self.table(show_ids=True))
        return console.export_text()


def human(x: float) -> str:
    """1234567 -> '1.23M' (for tables)."""
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.3g}{unit}"
    return f"{x:.3g}"


def default_size_grid(largest: int = 65536) -> list[int]:
    """Candidate sizes for a model without a declared range: 1..64, then steps of ~4%."""
    grid = set(range(1, 65))
    x = 64.0
    while x < largest:
        x *= 1.04
        grid.add(int(round(x)))
    return sorted(grid)


#: slack of :func:`trainable_params`: a model's FLOPs per token can fall below 6N (embedding
#: lookups are free), so sizes up to this factor past the 6N bound are still counted
TRAINABLE_SLACK = 4.0


def trainable_params(largest_budget: float, tokens_per_step: int, min_steps: int) -> float:
    """The largest N worth counting: ``TRAINABLE_SLACK`` x the N whose ``min_steps`` steps of
    ``tokens_per_step`` tokens cost the largest budget at 6 FLOPs per parameter and token."""
    return TRAINABLE_SLACK * largest_budget / (6.0 * tokens_per_step * max(1, min_steps))


def _run_id(budget: float, size_param: str, size: int, payload: dict[str, Any]) -> str:
    digest = hashlib.sha1(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()
    return f"C{budget:.2e}_{size_param}{size}_{digest[:8]}".replace("+", "")


def prior_optima(budgets: list[float], tokens_per_param: float,
                 exponent: float | None) -> list[float]:
    """The prior's expected optimum N* at each of the (sorted) ``budgets``: D/N =
    ``tokens_per_param``, or N* ∝ C^``exponent`` anchored there at the first budget."""
    first = math.sqrt(budgets[0] / (6.0 * tokens_per_param))
    if exponent is not None:
        return [first * (c / budgets[0]) ** exponent for c in budgets]
    return [math.sqrt(c / (6.0 * tokens_per_param)) for c in budgets]


def _choose_sizes(
    sizes: list[int], log_n: np.ndarray, centre: float, span: float, k: int
) -> list[int]:
    """Indices of ``k`` sizes spread in log N around ``centre`` (log N*), within ±log(span)."""
    half = math.log(span)
    inside = [i for i in range(len(sizes)) if abs(log_n[i] - centre) <= half]
    # widen to the nearest outside values until there are k candidates
    outside = sorted((i for i in range(len(sizes)) if i not in inside),
                     key=lambda i: abs(log_n[i] - centre))
    while len(inside) < k and outside:
        inside.append(outside.pop(0))
    inside.sort()
    if len(inside) <= k:
        return inside
    targets = np.linspace(log_n[inside[0]], log_n[inside[-1]], k)
    chosen: list[int] = []
    for t in targets:  # nearest unused candidate to each evenly spaced target
        best = min((i for i in inside if i not in chosen), key=lambda i: abs(log_n[i] - t))
        chosen.append(best)
    return sorted(chosen)


def plan_sweep(
    model_cls: type[nn.Module],
    size_param: str,
    model_kwargs: dict[str, Any] | None = None,
    compute_budgets: list[float] | None = None,
    *,
    sizes: list[int] | None = None,
    sizes_per_budget: int = 5,
    span: float = 4.0,
    tokens_per_param: float = 20.0,
    exponent: float | None = None,
    batch_size: int = 16,
    seq_len: int = 128,
    min_steps: int = 200,
    example_input: torch.Tensor | None = None,
    model_target: str | None = None,
    context: dict[str, Any] | None = None,
    centres: dict[float, float] | None = None,
) -> SweepPlan:
    """Plan an IsoFLOP sweep of ``model_cls`` (see the module docstring for the rules).

    ``sizes`` are the candidate integer values of ``size_param`` (default
    :func:`default_size_grid`);
    ``example_input`` is one sample with batch dimension 1 (default: (1, seq_len) tokens).
    Each sample counts ``seq_len`` tokens for token inputs, one otherwise. ``context`` (the
    data and train settings) joins each run id's hash, so runs of other experiments never share
    an id; it is recorded under ``plan.settings``. ``centres`` (budget -> N*) replaces the
    prior's expected optimum at those budgets (sequential planning: the trend measured so far).
    """

    model_kwargs = dict(model_kwargs or {})
    if compute_budgets is None or len(compute_budgets) == 0:
        raise FlopsFitError("No compute budgets given; pass compute_budgets=[1e12, 3e12, ...].")
    budgets = []
    for c in compute_budgets:
        if not isinstance(c, (int, float)) or not math.isfinite(c) or c <= 0:
            raise FlopsFitError(f"Compute budget {c!r} must be a finite positive number of FLOPs.")
        budgets.append(float(c))
    budgets = sorted(set(budgets))
    if sizes_per_budget < 3:
        raise FlopsFitError("sizes_per_budget must be at least 3 to fit a parabola per budget.")
    if span <= 1:
        raise FlopsFitError("span must be greater than 1 (sizes cover N*/span .. N*·span).")
    if example_input is None:  # a language model: one sample is seq_len tokens
        if "seq_len" in _init_params(model_cls):
            model_kwargs.setdefault("seq_len", seq_len)
        example_input = torch.zeros(1, seq_len, dtype=torch.long)
    is_tokens = example_input.dim() > 1 and not example_input.dtype.is_floating_point
    tokens_per_step = batch_size * (example_input.shape[1] if is_tokens else 1)

    # every candidate size built and its FLOPs counted on the meta device, smallest first; the
    # walk stops at sizes no budget can train (so a depth-sized model's 65,536-layer end of the
    # default grid is never built)
    sizes = sorted(set(sizes or default_size_grid()))
    n_cap = trainable_params(max(budgets), tokens_per_step, min_steps)
    n_stars = [float((centres or {}).get(c, n)) for c, n in
               zip(budgets, prior_optima(budgets, tokens_per_param, exponent), strict=True)]
    check = check_sizes(model_cls, size_param, model_kwargs, sizes, example_input, n_cap,
                        max(n_stars), span, sizes_per_budget)
    valid, n_total = check.valid, check.n_total
    validate_model_contract(model_cls, size_param, model_kwargs,
                            sizes=valid or sizes[:8])
    if len(valid) < 3 and check.dropped and check.complete:
        raise FlopsFitError(
            f"Only {len(valid)} size(s) of {model_cls.__name__} can be built "
            f"({', '.join(f'{size_param}={v}' for v in valid)}) and an IsoFLOP sweep needs at "
            f"least 3 per budget; {check.dropped_reason() or 'widen the size range'}.")
    log_n = np.log(np.asarray(n_total, dtype=float))

    notes: list[str] = list(check.lines())
    runs: list[RunSpec] = []
    target = model_target or f"{model_cls.__module__}.{model_cls.__qualname__}"
    specs: dict[tuple[int, float], RunSpec] = {}

    def spec_for(i: int, c: float) -> RunSpec:
        if (i, c) not in specs:
            specs[i, c] = make_run(model_cls, size_param, model_kwargs, valid[i], c, target,
                                   batch_size, seq_len, tokens_per_step, example_input,
                                   context)
        return specs[i, c]

    smaller: list[tuple[int, int] | None] = []

    def smaller_advice() -> str:
        """Lower size_min only when a smaller size builds; else the budgets or the knob."""
        if not smaller:
            smaller.append(smaller_buildable(model_cls, size_param, model_kwargs, valid[0],
                                             example_input))
        if smaller[0] is not None:
            s_, n_ = smaller[0]
            return (f"lower model.size_min ({size_param}={s_} builds, N={n_:,}) or raise the "
                    "budget.")
        return (f"{size_param}={valid[0]} is already the smallest size the model builds, so "
                "raise the budgets (budgets.values) or size the model by a finer knob whose "
                "smallest model is smaller.")

    for c, n_star in zip(budgets, n_stars, strict=True):
        # sizes whose run would be shorter than min_steps are not candidates (steps fall as N
        # grows, so this caps the size); choose again until every chosen run is long enough
        cap = len(valid)
        while True:
            idx = _choose_sizes(valid[:cap], log_n[:cap], math.log(n_star), span,
                                sizes_per_budget)
            short = [i for i in idx if spec_for(i, c).steps < min_steps]
            if not short:
                break
            cap = min(short)
        if cap < len(valid):
            notes.append(
                f"Budget {c:.2e}: sizes from {size_param}={valid[cap]} "
                f"(N={n_total[cap]:,}) up would train fewer than min_steps={min_steps} steps of "
                f"{tokens_per_step} tokens; not planned."
            )
        if n_star < n_total[0] / span:
            notes.append(
                f"Budget {c:.2e}: the expected optimum (N≈{n_star:,.0f}) is below the smallest "
                f"model ({size_param}={valid[0]}, N={n_total[0]:,}); {smaller_advice()}"
            )
        if 0 < len(idx) < 3:
            notes.append(
                f"Budget {c:.2e}: only {len(idx)} sizes train at least min_steps={min_steps} "
                "steps; its minimum cannot be located (raise the budget or lower min_steps)."
            )
        runs.extend(spec_for(i, c) for i in idx)
    for note in notes:
        warnings.warn(note, stacklevel=2)
    if not runs:
        raise FlopsFitError(
            "No run could be planned: every budget is too small for even one model "
            f"(min_steps={min_steps}); raise budgets.values, or lower train.batch_size or "
            "budgets.min_steps."
        )
    too_long = [r for r in runs if r.steps > MAX_STEPS]
    if too_long:
        r = too_long[0]
        raise FlopsFitError(
            f"Budget {r.compute_budget:.3g} would train {size_param}={r.size_value} for "
            f"{r.steps:.3g} steps, beyond any feasible run (more than {MAX_STEPS:.0e}); "
            "lower budgets.values (they are FLOPs)."
        )
    settings = {"compute_budgets": budgets, "sizes_per_budget": sizes_per_budget, "span": span,
                "tokens_per_param": tokens_per_param, "exponent": exponent,
                "batch_size": batch_size, "seq_len": seq_len, "min_steps": min_steps,
                "flops_method": count_model(model_cls, runs[0].model_kwargs,
                                            example_input).flops_method,
                **(context or {})}
    model = {"_target_": target, "size_param": size_param, "kwargs": model_kwargs}
    return SweepPlan(runs, model, settings, notes, notices=check.lines())


def make_run(
    model_cls: type[nn.Module], size_param: str, model_kwargs: dict[str, Any], size: int,
    budget: float, target: str, batch_size: int, seq_len: int, tokens_per_step: int,
    example_input: torch.Tensor | None = None, context: dict[str, Any] | None = None,
    repeat: int = 0,
) -> RunSpec:
    """The run of size ``size`` that spends ``budget`` FLOPs in whole optimizer steps.

    ``repeat`` > 0 is the same run again: its own run id, hence its own seed (and trunk).
    """
    kwargs = {**model_kwargs, size_param: size}
    count = count_model(model_cls, kwargs, example_input)
    steps = round(budget / count.flops_per_token / tokens_per_step)
    d = steps * tokens_per_step
    payload = {"model": target, "kwargs": kwargs, "budget": budget, "steps": steps,
               "batch_size": batch_size, "seq_len": seq_len}
    if context:
        payload["context"] = context
    if repeat:
        payload["repeat"] = repeat
    return RunSpec(
        run_id=_run_id(budget, size_param, size, payload),
        compute_budget=budget, size_param=size_param, size_value=size,
        num_params=count.num_params, num_params_non_embedding=count.num_params_non_embedding,
        flops_per_token=count.flops_per_token, num_tokens=d, steps=steps,
        batch_size=batch_size, seq_len=seq_len,
        flops=count.flops_per_token * d, flops_6nd=6.0 * count.num_params * d,
        tokens_per_param=d / count.num_params, model_kwargs=kwargs, repeat=repeat,
    )


def _init_params(model_cls: type) -> set[str]:
    try:
        return set(inspect.signature(model_cls.__init__).parameters)
    except (TypeError, ValueError):
        return set()
