"""Typed records of the run directory's files: ``result.json``, ``metrics.jsonl``,
``analysis/validation.json``, ``tuning.json`` and ``answer.yaml``.

Each record has ``to_dict``/``from_dict`` (as :class:`~flops_fit.planning.planner.SweepPlan`
does), so the trainer writes, and the analyzer, plots and report read, one schema. The JSON
stays as it was: a record read from an older or imported file writes back the keys it was read
with, and keys this schema does not know travel in ``extra``. ``validation.json`` is read by
:func:`read_validation` only, ``answer.yaml`` by :func:`read_answer` only.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from flops_fit.errors import FlopsFitError

STATUSES = ("completed", "failed", "diverged", "pending")
FINAL_STATUSES = ("completed", "diverged")  # never retrained unless train.force

# What analyze needs of a completed record (the public contract of results.json).
REQUIRED_FIELDS = ("compute_budget", "num_params", "num_tokens", "flops", "final_loss")
#: the largest value of a completed record's field that a fit or plot takes (1e3 x the
#: largest budget flops-fit plans, 1e27; parameters and tokens 1e15): a larger one is a typo
#: or a tampered file, and powers of it overflow. analyze refuses it, naming the record; the
#: plots leave that record out, with a note.
RECORD_LIMITS = {"compute_budget": 1e30, "flops": 1e30, "num_params": 1e15,
                 "num_params_non_embedding": 1e15, "num_tokens": 1e15}


def beyond_limits(record: Any) -> str | None:
    """``"key=value"`` of the first field of ``record`` (a dict or RunRecord) above
    :data:`RECORD_LIMITS`, or None."""
    for key, limit in RECORD_LIMITS.items():
        v = record.get(key) if isinstance(record, dict) else getattr(record, key, None)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and v > limit:
            return f"{key}={v:.3g}"
    return None


@dataclass
class RunRecord:
    """One run's record: ``runs/<run_id>/result.json`` and one entry of ``results.json``."""

    run_id: str
    status: str
    compute_budget: float | None = None  # the planned C of the run's budget
    num_params: int | None = None  # total N
    num_params_non_embedding: int | None = None
    num_tokens: int | None = None  # D actually trained
    flops: float | None = None  # C actually spent (measured FLOPs per token x D)
    flops_6nd: float | None = None
    # FLOPs executed for this run: its own flops, or under train.reuse its share of the sweep
    # (a shared trunk counted once, see trunks.py); their sum is what the sweep cost
    flops_spent: float | None = None
    final_loss: float | None = None  # held-out loss at the end
    size_param: str | None = None
    size_value: int | None = None
    steps: int | None = None
    steps_done: int | None = None
    batch_size: int | None = None
    seq_len: int | None = None
    tokens_per_param: float | None = None
    flops_per_token: float | None = None
    planned_num_tokens: int | None = None
    planned_flops: float | None = None
    epochs: float | None = None
    lr: float | None = None
    schedule: str | None = None  # train.schedule (older records: see record_schedule)
    lr_schedule: str | None = None
    lr_rule: str | None = None  # which rule set lr: "tuned (tuning.json)", "config", "train.lr"
    warmup_steps: int | None = None
    weight_decay: float | None = None
    betas: list[float] | None = None
    grad_clip: float | None = None
    initial_loss: float | None = None
    final_train_loss: float | None = None
    eval_tokens: int | None = None
    wall_time_s: float | None = None
    train_time_s: float | None = None
    tokens_per_s: float | None = None
    device: str | None = None
    dtype: str | None = None
    compile: bool | None = None
    threads: int | None = None
    thread_switches: int | None = None
    seed: int | None = None
    resumed: int | None = None
    model: str | None = None
    model_kwargs: dict[str, Any] | None = None
    data: str | None = None
    torch: str | None = None
    host: str | None = None
    finished_at: str | None = None
    error: str | None = None
    traceback: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # keys this schema does not name
    # the keys the record was read with (None: built in code, every field is written)
    _keys: tuple[str, ...] | None = field(default=None, repr=False, compare=False)

    @property
    def is_final(self) -> bool:
        """Completed or diverged: never trained again unless ``train.force``."""
        return self.status in FINAL_STATUSES

    def to_dict(self) -> dict[str, Any]:
        """The JSON object, keys in schema order (``traceback`` only when there is one)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name in ("extra", "_keys"):
                continue
            value = getattr(self, f.name)
            if self._keys is not None:
                if f.name in self._keys:
                    out[f.name] = value
            elif f.name != "traceback" or value:
                out[f.name] = value
        out.update(self.extra)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRecord:
        """From a parsed JSON object (``run_id`` and ``status`` are the only required keys)."""
        known = {f.name for f in fields(cls)} - {"extra", "_keys"}
        values = {k: v for k, v in data.items() if k in known}
        extra = {k: v for k, v in data.items() if k not in known}
        values.setdefault("status", "pending")
        if "schedule" not in data:  # an older record: derived, and not written back
            values["schedule"] = record_schedule(data)
        return cls(**values, extra=extra, _keys=tuple(data))

    @classmethod
    def planned(cls, spec: dict[str, Any]) -> RunRecord:
        """The ``pending`` record of a planned run that has no result yet (from its RunSpec)."""
        keep = ("run_id", "compute_budget", "size_param", "size_value", "num_params",
                "num_params_non_embedding", "flops_per_token", "num_tokens", "steps",
                "batch_size", "seq_len", "flops", "flops_6nd", "tokens_per_param")
        data = {k: spec.get(k) for k in keep}
        data.update(status="pending", final_loss=None)
        return cls.from_dict(data)


def record_schedule(rec: Any) -> str | None:
    """A run record's ``train.schedule``: its ``schedule`` field; a record written before that
    field (v0.1.0) names it only in its ``lr_schedule`` sentence, read here and nowhere else
    (None: a record with neither, e.g. a pending run)."""
    if not isinstance(rec, dict):
        return None
    if isinstance(rec.get("schedule"), str):
        return rec["schedule"]
    text = rec.get("lr_schedule")
    if not isinstance(text, str):
        return None
    return "wsd" if ("wsd" in text or "cooldown" in text) else "cosine"


@dataclass
class MetricsLine:
    """One line of ``metrics.jsonl``: the training curve at ``step``.

    Ordinary lines carry ``train_loss`` (mean since the previous line) and ``lr``; about ten
    carry a periodic ``val_loss``; the last (``final``) carries the run's final held-out loss.
    """

    step: int
    tokens: int
    flops: float
    train_loss: float | None = None
    lr: float | None = None
    time_s: float | None = None
    val_loss: float | None = None
    final: bool = False

    def to_json(self) -> str:
        """One JSON line (without the newline); absent values are left out."""
        out: dict[str, Any] = {"step": self.step, "tokens": self.tokens, "flops": self.flops}
        for key in ("train_loss", "lr", "time_s", "val_loss"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.final:
            out["final"] = True
        return json.dumps(out)

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> MetricsLine | None:
        """The line, or None when it lacks a step, tokens or FLOPs, or a value is not a number."""
        try:
            def num(key: str) -> float | None:
                v = row.get(key)
                if v is None:
                    return None
                if isinstance(v, bool):
                    raise ValueError(key)
                v = float(v)
                return v if math.isfinite(v) else None

            step, tokens, flops = num("step"), num("tokens"), num("flops")
            if step is None or tokens is None or flops is None:
                return None
            return cls(int(step), int(tokens), flops, num("train_loss"), num("lr"),
                       num("time_s"), num("val_loss"), bool(row.get("final", False)))
        except (TypeError, ValueError, AttributeError):
            return None


def read_metrics(path: str | Path) -> list[MetricsLine]:
    """Every readable line of a ``metrics.jsonl``; a half-written last line is skipped."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return []
    out = []
    for raw in text.splitlines():
        try:
            row = json.loads(raw)
        except json.JSONDecodeError:
            continue
        line = MetricsLine.from_dict(row) if isinstance(row, dict) else None
        if line is not None:
            out.append(line)
    return out


@dataclass
class ValidationOutcome:
    """``analysis/validation.json``: the validate stage's predicted vs. achieved loss at C.

    ``predicted_loss_ci`` is the confidence interval of the expected loss;
    ``prediction_interval`` is that interval widened by the sweep's own scatter around the fit
    (``residual_sigma_log``, over sqrt(k) for the mean of k seeds), the interval the achieved
    loss (one run's, or the mean of ``achieved_losses``) should fall in.
    """

    compute_budget: float
    largest_sweep_budget: float
    method: str | None
    predicted_params: float | None
    predicted_tokens: float | None
    predicted_loss: float | None
    predicted_loss_ci: list[float] | None
    prediction_interval: list[float]
    residual_sigma_log: float
    predicted_loss_at_run: float | None
    achieved_loss: float | None
    relative_error: float | None
    within_interval: bool | None
    predicted_optimum_was_best: bool | None
    best_loss: float | None
    other_methods: dict[str, Any] = field(default_factory=dict)
    runs: list[dict[str, Any]] = field(default_factory=list)
    achieved_losses: list[float] = field(default_factory=list)  # the predicted optimum's seeds
    extra: dict[str, Any] = field(default_factory=dict)  # keys this schema does not name

    def to_dict(self) -> dict[str, Any]:
        """The JSON object, keys in schema order."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        out.update(self.extra)
        return out

    @classmethod
    def from_dict(cls, data: Any, where: str = "validation.json") -> ValidationOutcome:
        """From the parsed ``validation.json`` (keys it lacks are None).

        Read as untrusted data: a value of the wrong type is one :class:`FlopsFitError`
        sentence naming ``where`` and the field.
        """
        def bad(what: str) -> FlopsFitError:
            return FlopsFitError(f"{where} is not a usable validation record ({what}); run "
                                 "`flops-fit validate` again, or remove the file.")

        if not isinstance(data, dict):
            raise bad("not a JSON object")
        if not _finite(data.get("compute_budget")):
            raise bad(f"compute_budget={data.get('compute_budget')!r} is not a positive number")
        for key in _VALIDATION_NUMBERS:
            if data.get(key) is not None and not _finite(data[key], positive=False):
                raise bad(f"{key}={data[key]!r} is not a number")
        for key in ("predicted_loss_ci", "prediction_interval"):
            v = data.get(key)
            if v is not None and not (isinstance(v, list) and len(v) == 2 and all(
                    x is None or _finite(x, positive=False) for x in v)):
                raise bad(f"{key}={v!r} is not an interval [lo, hi]")
        for key in ("within_interval", "predicted_optimum_was_best"):
            if data.get(key) is not None and not isinstance(data[key], bool):
                raise bad(f"{key}={data[key]!r} is not true, false or null")
        for key, kind in (("runs", list), ("achieved_losses", list), ("other_methods", dict)):
            if data.get(key) is not None and not isinstance(data[key], kind):
                raise bad(f"{key} is not a JSON {'list' if kind is list else 'object'}")
        for i, run in enumerate(data.get("runs") or []):
            if not isinstance(run, dict):
                raise bad(f"runs[{i}] is not a JSON object")
        names = [f.name for f in fields(cls) if f.name != "extra"]
        values: dict[str, Any] = {k: data.get(k) for k in names}
        values["other_methods"] = values["other_methods"] or {}
        values["runs"] = values["runs"] or []
        values["achieved_losses"] = values["achieved_losses"] or []
        return cls(**values, extra={k: v for k, v in data.items() if k not in names})


#: the fields of validation.json that are a number or null
_VALIDATION_NUMBERS = (
    "largest_sweep_budget", "predicted_params", "predicted_tokens", "predicted_loss",
    "residual_sigma_log", "predicted_loss_at_run", "achieved_loss", "relative_error",
    "best_loss",
)


def read_validation(path: str | Path) -> ValidationOutcome:
    """``analysis/validation.json`` as its typed record (the one reader of that file; the
    validate stage writes :meth:`ValidationOutcome.to_dict`).

    A missing, corrupt or malformed file is one :class:`FlopsFitError` sentence naming it.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FlopsFitError(f"No validation record at {path}; run `flops-fit validate` "
                            "first.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise FlopsFitError(f"Cannot read the validation record {path}: "
                            f"{getattr(exc, 'strerror', None) or exc}.") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FlopsFitError(f"{path} is not valid JSON (line {exc.lineno}: {exc.msg}); run "
                            "`flops-fit validate` again, or remove the file.") from None
    return ValidationOutcome.from_dict(data, str(path))


def _finite(value: Any, positive: bool = True) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value) and (value > 0 or not positive))


@dataclass
class TunedSize:
    """One size of ``tuning.json``: its loss-vs-LR grid and the best LR found."""

    size_value: int
    num_params: int
    num_params_non_embedding: int
    steps: int
    lrs: list[float]
    losses: list[float | None]  # None: the run diverged or failed
    best_lr: float
    interior: bool  # the best LR lies inside the grid (a parabola's vertex)
    run_ids: list[str] = field(default_factory=list)  # tuning/runs/<run_id>
    batch: dict[str, Any] | None = None  # tune.params=[lr,batch_size]: the batch grid

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        if out["batch"] is None:
            del out["batch"]
        return out


@dataclass
class TuningRecord:
    """``tuning.json``: the LR rule ``flops-fit tune`` fitted, and the grids behind it.

    ``rule`` = {lr_base, lr_exponent, lr_ref_params} of ``lr = lr_base * (lr_ref_params /
    N_non_embedding) ** lr_exponent``; ``flops`` the tuning compute, ``sweep_flops`` the plan's.
    Read as untrusted data (:meth:`from_dict` checks every number the rule uses).
    """

    rule: dict[str, float]
    sizes: list[TunedSize]
    flops: float
    sweep_flops: float
    budget: float
    size_param: str = ""
    model: str = ""
    config_rule: dict[str, float] = field(default_factory=dict)
    schedule: str = ""
    params: list[str] = field(default_factory=lambda: ["lr"])
    batch: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    created_utc: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def fraction(self) -> float:
        """Tuning compute as a share of the sweep's own."""
        return self.flops / self.sweep_flops if self.sweep_flops else math.nan

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name == "extra":
                continue
            value = getattr(self, f.name)
            out[f.name] = [s.to_dict() for s in value] if f.name == "sizes" else value
        out["fraction_of_sweep"] = self.fraction
        out.update(self.extra)
        return out

    @classmethod
    def from_dict(cls, data: Any, where: str = "tuning.json") -> TuningRecord:
        """From the parsed JSON; one sentence (FlopsFitError) when it is not a usable record."""
        def bad(what: str) -> FlopsFitError:
            return FlopsFitError(f"{where} is not a usable tuning record ({what}); run "
                                 "`flops-fit tune` again, or remove the file to use the "
                                 "configured LR rule.")

        if not isinstance(data, dict):
            raise bad("not a JSON object")
        rule = data.get("rule")
        if not isinstance(rule, dict):
            raise bad("no rule")
        for key in ("lr_base", "lr_ref_params"):
            if not _finite(rule.get(key)):
                raise bad(f"rule.{key}={rule.get(key)!r} is not a positive number")
        if not _finite(rule.get("lr_exponent"), positive=False):
            raise bad(f"rule.lr_exponent={rule.get('lr_exponent')!r} is not a number")
        sizes = []
        for i, s in enumerate(data.get("sizes") or []):
            try:
                sizes.append(TunedSize(**{f.name: s[f.name] for f in fields(TunedSize)
                                          if f.name in s}))
            except (TypeError, KeyError):
                raise bad(f"size #{i} is malformed") from None
        names = {f.name for f in fields(cls)} - {"extra", "rule", "sizes"}
        values = {k: data[k] for k in names if k in data}
        for key in ("flops", "sweep_flops", "budget"):
            values.setdefault(key, math.nan)
        extra = {k: v for k, v in data.items()
                 if k not in names | {"rule", "sizes", "fraction_of_sweep"}}
        return cls(rule={k: float(rule[k]) for k in ("lr_base", "lr_exponent", "lr_ref_params")},
                   sizes=sizes, extra=extra, **values)


ANSWER_FORMAT = "flops-fit answer v1"
#: answer.yaml's ``run``: the keys a launchable run needs, each with its type
ANSWER_RUN_KEYS = {"size_param": str, "size_value": int, "num_params": int,
                   "num_params_non_embedding": int, "num_tokens": int, "steps": int,
                   "batch_size": int, "seq_len": int, "lr": float, "schedule": str,
                   "budget": float}


def answer_text(path: str | Path, answer: dict[str, Any]) -> str:
    """``answer`` (``format``, ``budget``, ``model``, ``run``, ``prediction``, ...) as the YAML
    text of ``path``, under a comment that says how to train it (written atomically by the
    stage, rundir/io.py)."""
    import yaml

    head = ("# flops-fit find-optimal's answer: the nearest buildable model at the predicted "
            "budget,\n# as one launchable run. Train exactly this run with\n"
            f"#   flops-fit train run_dir=NEW answer={path}\n")
    return head + yaml.safe_dump(json.loads(json.dumps(answer, allow_nan=False)),
                                 sort_keys=False)


def read_answer(path: str | Path) -> dict[str, Any]:
    """``answer.yaml`` as a checked mapping; one sentence naming what is wrong."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FlopsFitError(f"No answer at {path}; run `flops-fit find-optimal` first (it "
                            "writes answer.yaml into its run_dir).") from None
    except (OSError, yaml.YAMLError) as exc:
        raise FlopsFitError(f"Cannot read the answer {path} ({type(exc).__name__}); "
                            "re-create it with `flops-fit find-optimal`.") from None

    def bad(what: str) -> FlopsFitError:
        return FlopsFitError(f"{path} is not a flops-fit answer ({what}); re-create it with "
                             "`flops-fit find-optimal`.")

    if not isinstance(data, dict) or data.get("format") != ANSWER_FORMAT:
        raise bad(f"no format: {ANSWER_FORMAT}")
    model, run = data.get("model"), data.get("run")
    if not isinstance(model, dict) or not isinstance(model.get("_target_"), str) \
            or not isinstance(model.get("kwargs"), dict):
        raise bad("no model with _target_ and kwargs")
    if not isinstance(run, dict):
        raise bad("no run")
    for key, kind in ANSWER_RUN_KEYS.items():
        value = run.get(key)
        ok = isinstance(value, (int, float) if kind is float else kind) \
            and not isinstance(value, bool)
        if not ok or (kind is not str and not _finite(value)):
            raise bad(f"run.{key}={value!r}")
    return data
