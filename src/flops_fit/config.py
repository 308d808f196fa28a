"""Plain config dataclasses, one per config group, mapping one to one onto ``conf/<group>/*.yaml``.

``cli.py`` turns Hydra's DictConfig into these; everything below the CLI takes them (or plain
arguments), so the core runs and tests without Hydra.
"""

from __future__ import annotations

import importlib
import inspect
import math
from dataclasses import dataclass, field, fields
from typing import Any

import torch.nn as nn

from flops_fit.errors import FlopsFitError


def from_mapping(cls: type, data: dict[str, Any], group: str) -> Any:
    """Build dataclass ``cls`` from a mapping, naming any unknown key in one sentence."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise FlopsFitError(
            f"Unknown key(s) {', '.join(unknown)} in the {group} config; "
            f"known keys are: {', '.join(sorted(known))}."
        )
    return cls(**data)


def import_object(path: str, what: str = "model") -> Any:
    """Import ``package.module.Name``; one clear sentence when it does not exist."""
    module_name, _, attr = path.rpartition(".")
    if not module_name:
        raise FlopsFitError(
            f"{what} _target_ {path!r} is not a dotted path like 'pkg.module.Class'."
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise FlopsFitError(
            f"Cannot import {what} _target_ {path!r} ({exc}); check the spelling or install "
            "the package that defines it."
        ) from exc
    try:
        return getattr(module, attr)
    except AttributeError as exc:
        raise FlopsFitError(
            f"Module {module_name!r} has no {attr!r}, so {what} _target_ {path!r} does not exist; "
            "check the class name."
        ) from exc


@dataclass
class ModelConfig:
    """``conf/model/*.yaml``: which class, which constructor argument is its size, and the rest.

    ``size_min``/``size_max``/``size_step`` bound the integer values the planner may choose.
    """

    _target_: str = "flops_fit.models.gpt.GPT"
    size_param: str = "width"
    size_min: int = 16
    size_max: int = 1024
    size_step: int = 16
    kwargs: dict[str, Any] = field(default_factory=dict)

    def model_cls(self) -> type[nn.Module]:
        obj = import_object(self._target_, "model")
        if not (inspect.isclass(obj) and issubclass(obj, nn.Module)):
            raise FlopsFitError(f"model _target_ {self._target_!r} is not a torch.nn.Module class.")
        return obj

    def sizes(self) -> list[int]:
        """Candidate values of the size parameter."""
        if self.size_step < 1 or self.size_min < 1 or self.size_max < self.size_min:
            raise FlopsFitError(
                f"model size range {self.size_min}..{self.size_max} step {self.size_step} is "
                "empty; set size_min >= 1, size_max >= size_min and size_step >= 1."
            )
        return list(range(self.size_min, self.size_max + 1, self.size_step))


@dataclass
class DatasetConfig:
    """``conf/dataset/*.yaml``: the built-in stdlib corpus or a user's text files (byte level)."""

    name: str = "stdlib"
    path: str | None = None  # a text file or folder for name=text_files
    pattern: str = "*.py"  # which files of a folder to read
    max_bytes: int = 32_000_000  # cap on the corpus held in memory
    val_fraction: float = 0.05  # share of files held out for validation
    vocab_size: int = 256


@dataclass
class BudgetsConfig:
    """``conf/budgets/*.yaml``: the FLOP budgets and how widely each is bracketed."""

    values: list[float] = field(default_factory=lambda: [1e12, 3e12])
    sizes_per_budget: int = 5
    span: float = 4.0  # sizes cover N_opt/span .. N_opt*span (log-spaced)
    tokens_per_param: float = 20.0  # prior for the centre of each budget's sizes
    exponent: float | None = None  # or: N_opt ∝ C^exponent, anchored at the first budget
    min_steps: int = 200  # sizes whose run would have fewer optimizer steps are not planned

    def checked_values(self) -> list[float]:
        out = []
        for v in self.values:
            try:
                c = float(v)
            except (TypeError, ValueError):
                raise FlopsFitError(
                    f"Budget {v!r} is not a number; give FLOPs like budgets.values=[1e12,3e12]."
                ) from None
            if not math.isfinite(c) or c <= 0:
                raise FlopsFitError(
                    f"Budget {v!r} must be a finite positive number of FLOPs, e.g. 1e12."
                )
            out.append(c)
        if not out:
            raise FlopsFitError("budgets.values is empty; give at least one FLOP budget.")
        return sorted(set(out))


@dataclass
class TrainConfig:
    """``conf/train/*.yaml``: how every run is trained (see trainer.py for the rules)."""

    batch_size: int = 16
    seq_len: int = 128
    lr: float | None = None  # None: the size rule in trainer.lr_for_size
    lr_base: float = 9e-3  # lr rule: lr_base * (N_ref / N_non_embedding) ** lr_exponent
    lr_exponent: float = 0.2
    lr_ref_params: float = 1e5
    min_lr_ratio: float = 0.1  # cosine ends at 10% of peak
    warmup_fraction: float = 0.1
    warmup_min_steps: int = 100  # warm-up floor (at most half the run): short runs stay stable
    weight_decay: float = 0.0  # see conf/train/default.yaml
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    eval_tokens: int = 262_144  # held-out tokens for final_loss
    periodic_eval_tokens: int = 32_768  # held-out tokens per periodic val_loss point
    eval_every: int = 0  # steps between periodic val losses (0: ~10 per run)
    log_every: int = 10
    checkpoint_every_s: float = 120.0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    dtype: str = "auto"  # auto (bf16 autocast on CUDA) | fp32 | bf16
    compile: bool = False
    threads: int = 0  # torch.set_num_threads; 0 = all cores (split between local shards)
    seed: int = 0
    shard: int = 0
    num_shards: int = 1
    force: bool = False  # retrain completed runs
    diverge_factor: float = 3.0  # loss above factor * initial loss = diverged


@dataclass
class AnalysisConfig:
    """Settings of the analyze stage; one field per key of ``conf/analysis/default.yaml``.

    predict_with : ``"parametric"`` (default, Approach 3; falls back to the IsoFLOP laws when its
        fit is degenerate) or ``"isoflop"`` (Approach 2; falls back to parametric when no budget
        has an interior minimum).
    loss : ``"huber"`` (Huber with ``huber_delta`` on log loss, summed) or ``"lsq"``.
    huber_delta : default 1e-2, about the run-to-run noise of log loss, so that ordinary runs
        are fitted by least squares and only outliers are down-weighted (Chinchilla's 1e-3 acts
        like least absolute deviations: less accurate on 1%-noise sweeps, see the benchmark).
    bootstrap : resamples behind every interval (0: point estimates only); ``ci`` their level.
    fix_E : hold the irreducible loss at this value instead of fitting it.
    flops_convention : C of a run, ``"flops"`` (measured) or ``"6nd"`` (``6 * N * D``).
    params_convention : N of a run, ``"total"`` or ``"non_embedding"``.
    holdout : None or ``"largest"`` (refit without the largest budget and compare).
    table_budgets : budgets of the printed table (None: the sweep's own and two decades beyond).
    approach1 : also fit the envelope of the training curves when ``metrics.jsonl`` exist.
    """

    predict_with: str = "parametric"
    loss: str = "huber"
    huber_delta: float = 1e-2
    bootstrap: int = 200
    ci: float = 0.95
    seed: int = 0
    fix_E: float | None = None
    flops_convention: str = "flops"
    params_convention: str = "total"
    holdout: str | None = None
    table_budgets: list[float] | None = None
    approach1: bool = True

    def __post_init__(self) -> None:
        def bad(key: str, value: Any, allowed: str) -> FlopsFitError:
            return FlopsFitError(
                f"analysis.{key}={value!r} is not valid; use {allowed}."
            )

        choices = {
            "predict_with": ("parametric", "isoflop"),
            "loss": ("huber", "lsq"),
            "flops_convention": ("flops", "6nd"),
            "params_convention": ("total", "non_embedding"),
        }
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise bad(key, getattr(self, key), " or ".join(allowed))
        if self.holdout not in (None, "largest"):
            raise bad("holdout", self.holdout, "null or largest")
        self.huber_delta = checked_number(self.huber_delta, "huber_delta", positive=True)
        self.ci = checked_number(self.ci, "ci", positive=True)
        if not self.ci < 1:
            raise bad("ci", self.ci, "a confidence level between 0 and 1, such as 0.95")
        if isinstance(self.bootstrap, bool) or not isinstance(self.bootstrap, int) \
                or self.bootstrap < 0:
            raise bad("bootstrap", self.bootstrap, "a whole number of resamples >= 0")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise bad("seed", self.seed, "a whole number")
        if self.fix_E is not None:
            self.fix_E = checked_number(self.fix_E, "fix_E", positive=True)
        if not isinstance(self.approach1, bool):
            raise bad("approach1", self.approach1, "true or false")
        if self.table_budgets is not None:
            self.table_budgets = checked_budgets(self.table_budgets, "analysis.table_budgets")


def checked_number(value: Any, key: str, positive: bool = False) -> float:
    """``analysis.<key>`` as a float; one sentence when it is not a (positive) number."""
    try:
        if isinstance(value, bool):
            raise TypeError
        out = float(value)
    except (TypeError, ValueError):
        raise FlopsFitError(f"analysis.{key}={value!r} is not a number; give a number.") from None
    if not math.isfinite(out) or (positive and out <= 0):
        raise FlopsFitError(f"analysis.{key}={value!r} must be a finite positive number.")
    return out


def checked_budgets(values: Any, what: str) -> list[float]:
    """A list of positive finite FLOP budgets (a single number is a list of one)."""
    if isinstance(values, (int, float, str)) and not isinstance(values, bool):
        values = [values]
    out = []
    try:
        for v in values:
            if isinstance(v, bool):
                raise TypeError
            out.append(float(v))
    except (TypeError, ValueError):
        raise FlopsFitError(
            f"{what}={values!r} is not a list of FLOP budgets; give numbers such as [1e18, 1e19]."
        ) from None
    if not out or not all(math.isfinite(v) and v > 0 for v in out):
        raise FlopsFitError(
            f"{what}={values!r} must hold positive finite FLOP budgets, such as [1e18, 1e19]."
        )
    return out
