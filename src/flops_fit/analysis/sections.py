"""Typed records of ``analysis/scaling_laws.json``'s sections.

Each section is a dataclass with ``to_dict``/``from_dict`` that give back exactly the JSON it
was read from: the keys a section was read with are remembered (and written in that order),
and keys this schema does not name travel in ``extra``. Every section is also a read-only
:class:`~collections.abc.Mapping` over ``to_dict()``, so code written against the plain JSON
sections (``analysis.parametric["E"]``) keeps working; new code reads the attributes.

=====================  ===================================================================
``PowerLawRecord``     ``y = coefficient * C**exponent`` with its intervals
``BudgetMinimum``      one IsoFLOP budget's parabola minimum (``isoflop.budgets[i]``)
``Bootstrap``          a bootstrap block: resampling settings and the raw ``samples``
``IsoflopSection``     Approach 2 (``isoflop``)
``ParametricSection``  Approach 3 (``parametric``)
``Approach1Section``   Approach 1 (``approach1``)
=====================  ===================================================================

:func:`plain` is the one JSON-cleaning helper of the package's analysis side: numpy values to
Python ones, non-finite floats to None, tuples to lists.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import numpy as np

from flops_fit.fitting import percentile_interval

__all__ = [
    "plain",
    "PowerLawRecord",
    "BudgetMinimum",
    "Bootstrap",
    "IsoflopSection",
    "ParametricSection",
    "Approach1Section",
]


def plain(obj: Any) -> Any:
    """Plain JSON values: numpy to Python, non-finite floats to None, tuples to lists."""
    if isinstance(obj, Section):
        return obj.to_dict()
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return plain(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    return obj


Interval = list  # [lo, hi], either end None when not finite


class DictView(Mapping):
    """A read-only mapping over ``to_dict()``: typed records that still read like their JSON."""

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def __getitem__(self, key: str) -> Any:
        return self.to_dict()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_dict())

    def __len__(self) -> int:
        return len(self.to_dict())


class Section(DictView):
    """Base of the section dataclasses: JSON round trip and a read-only mapping view.

    ``_nested`` names the fields that hold other sections (a dict, or a list of dicts, in
    JSON); ``_json_names`` maps a field to its JSON key where the two differ. A section read
    with :meth:`from_dict` writes back exactly the keys it was read with, in their order; one
    built in code writes every field.
    """

    _nested: ClassVar[dict[str, type[Section]]] = {}
    _json_names: ClassVar[dict[str, str]] = {}

    # the dataclass subclasses define these two fields last
    extra: dict[str, Any]
    _keys: tuple[str, ...] | None

    @classmethod
    def _field_keys(cls) -> dict[str, str]:
        """JSON key -> field name, in schema order."""
        return {cls._json_names.get(f.name, f.name): f.name for f in fields(cls)
                if f.name not in ("extra", "_keys")}

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of this section."""
        by_key = self._field_keys()
        order = self._keys if self._keys is not None else (*by_key, *self.extra)
        out: dict[str, Any] = {}
        for key in order:
            if key in by_key:
                out[key] = _dump(getattr(self, by_key[key]))
            elif key in self.extra:
                out[key] = self.extra[key]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None):
        """From the parsed JSON object (None or missing keys: the fields' defaults)."""
        data = dict(data or {})
        by_key = cls._field_keys()
        values: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for key, value in data.items():
            name = by_key.get(key)
            if name is None:
                extra[key] = value
                continue
            sub = cls._nested.get(name)
            try:
                if sub is not None and isinstance(value, dict):
                    value = sub.from_dict(value)
                elif sub is not None and isinstance(value, list):
                    value = [sub.from_dict(v) if isinstance(v, dict) else v for v in value]
            except SectionError as exc:
                raise SectionError(f"{key}.{exc}") from None
            if not isinstance(value, (Section, list)):
                _check_type(cls, name, value)
            values[name] = value
        return cls(**values, extra=extra, _keys=tuple(data))


class SectionError(ValueError):
    """A value of a stored section that is not of its field's type: ``path=value is not ...``
    (the reader of the file names the file)."""


def _check_type(cls: type, name: str, value: Any) -> None:
    """``value`` fits field ``name`` of ``cls`` (None always does): numbers where numbers
    belong, true/false, text, lists; else :class:`SectionError`."""
    if value is None:
        return
    hint = str(cls.__dataclass_fields__[name].type).replace(" ", "")
    kinds = set(hint.split("|")) - {"None"}
    if kinds <= {"float", "int"}:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        what = "a number"
    elif kinds == {"bool"}:
        ok, what = isinstance(value, bool), "true or false"
    elif kinds == {"str"}:
        ok, what = isinstance(value, str), "text"
    elif all(k.startswith(("list", "Interval")) for k in kinds):
        ok, what = isinstance(value, list), "a list"
    elif name in cls._nested:
        ok, what = False, "an object"  # a nested section that is neither an object nor a list
    else:
        return
    if not ok:
        raise SectionError(f"{name}={value!r} is not {what}")


def _dump(value: Any) -> Any:
    if isinstance(value, Section):
        return value.to_dict()
    if isinstance(value, list):
        return [_dump(v) for v in value]
    return value


def _extra() -> Any:
    return field(default_factory=dict)


def _keys() -> Any:
    return field(default=None, repr=False)


@dataclass(eq=False)
class PowerLawRecord(Section):
    """``y(C) = coefficient * C**exponent``: an N_opt, D_opt or L_opt law.

    The parametric section's laws carry only the first four keys; the IsoFLOP laws also the
    OLS standard errors (``exponent_bootstrap_se`` when bootstrapped); Approach 1's a
    ``ci_note``.
    """

    coefficient: float | None = None
    exponent: float | None = None
    coefficient_ci: Interval | None = None
    exponent_ci: Interval | None = None
    exponent_se: float | None = None
    log_coefficient_se: float | None = None
    log_x_center: float | None = None
    n_points: int | None = None
    exponent_bootstrap_se: float | None = None
    ci_note: str | None = None
    extra: dict[str, Any] = _extra()
    _keys: tuple[str, ...] | None = _keys()

    def at(self, compute: float | np.ndarray) -> float | np.ndarray:
        """``coefficient * compute**exponent`` (NaN where a value is missing)."""
        k = math.nan if self.coefficient is None else float(self.coefficient)
        e = math.nan if self.exponent is None else float(self.exponent)
        return k * compute ** e


@dataclass(eq=False)
class BudgetMinimum(Section):
    """One IsoFLOP budget: its runs' parabola minimum in log N (``isoflop.budgets[i]``)."""

    compute_budget: float | None = None
    compute: float | None = None
    n_runs: int | None = None
    n_sizes: int | None = None
    params_range: Interval | None = None
    optimal_params: float | None = None
    optimal_tokens: float | None = None
    optimal_loss: float | None = None
    interior: bool | None = None
    used: bool | None = None
    note: str | None = None
    optimal_params_ci: Interval | None = None
    optimal_tokens_ci: Interval | None = None
    optimal_loss_ci: Interval | None = None
    extra: dict[str, Any] = _extra()
    _keys: tuple[str, ...] | None = _keys()


@dataclass(eq=False)
class Bootstrap(Section):
    """A bootstrap block: how it resampled and the refitted values (``raw_samples``).

    ``raw_samples`` is the JSON list of rows (one per resample, one column per ``columns``
    entry, None for a non-finite value); :meth:`samples` is it as a float array.
    """

    _json_names: ClassVar[dict[str, str]] = {"raw_samples": "samples"}

    n_resamples: int | None = None
    n_failed: int | None = None
    seed: int | None = None
    resampling: str | None = None
    columns: list[str] | None = None
    raw_samples: list[list[float | None]] | None = None
    extra: dict[str, Any] = _extra()
    _keys: tuple[str, ...] | None = _keys()

    def samples(self) -> np.ndarray | None:
        """The samples as an array of shape ``(n_resamples, len(columns))`` (None -> NaN).

        None when there are fewer than two rows or the rows do not form a numeric matrix.
        """
        raw = self.raw_samples
        if raw is None or len(raw) == 0:
            return None
        try:
            arr = np.array([[np.nan if v is None else v for v in row] for row in raw],
                           dtype=float)
        except (TypeError, ValueError):
            return None
        return arr if arr.ndim == 2 and arr.shape[0] > 1 else None


@dataclass(eq=False)
class IsoflopSection(Section):
    """Approach 2: one parabola per budget, power laws through the interior minima.

    The bootstrap's columns are ``log_k_n, a, log_k_d, b, log_k_l, l_exp`` (log coefficient
    and exponent of ``n_opt``, ``d_opt``, ``loss_opt``).
    """

    _nested: ClassVar[dict[str, type[Section]]] = {
        "n_opt": PowerLawRecord, "d_opt": PowerLawRecord, "loss_opt": PowerLawRecord,
        "budgets": BudgetMinimum, "bootstrap": Bootstrap,
    }

    available: bool = False
    message: str = ""
    warnings: list[str] = field(default_factory=list)
    n_opt: PowerLawRecord | None = None
    d_opt: PowerLawRecord | None = None
    loss_opt: PowerLawRecord | None = None
    budgets: list[BudgetMinimum] = field(default_factory=list)
    skipped_budgets: list[Any] = field(default_factory=list)
    min_sizes_per_budget: int | None = None
    ci_level: float | None = None
    bootstrap: Bootstrap | None = None
    extra: dict[str, Any] = _extra()
    _keys: tuple[str, ...] | None = _keys()


@dataclass(eq=False)
class ParametricSection(Section):
    """Approach 3: ``L(N, D) = E + A / N**alpha + B / D**beta`` with bootstrap intervals.

    ``n_opt``/``d_opt`` are the implied allocation laws ``G (C/k)**a`` and ``(C/k)**b / G``
    written as power laws of C (``k = flops_per_param_token``). The bootstrap's columns are
    ``E, A, B, alpha, beta``. An unavailable fit carries only ``available`` and ``message``.
    """

    _nested: ClassVar[dict[str, type[Section]]] = {
        "n_opt": PowerLawRecord, "d_opt": PowerLawRecord, "bootstrap": Bootstrap,
    }

    available: bool = False
    message: str = ""
    E: float | None = None
    A: float | None = None
    B: float | None = None
    alpha: float | None = None
    beta: float | None = None
    a: float | None = None
    b: float | None = None
    G: float | None = None
    form: str | None = None
    loss: str | None = None
    huber_delta: float | None = None
    objective: float | None = None
    n_points: int | None = None
    fixed_E: float | None = None
    min_observed_loss: float | None = None
    converged: bool | None = None
    n_starts: int | None = None
    degenerate: bool | None = None
    degenerate_reasons: list[str] = field(default_factory=list)
    flops_per_param_token: float | None = None
    ci_level: float | None = None
    n_opt: PowerLawRecord | None = None
    d_opt: PowerLawRecord | None = None
    E_ci: Interval | None = None
    E_se: float | None = None
    A_ci: Interval | None = None
    A_se: float | None = None
    B_ci: Interval | None = None
    B_se: float | None = None
    alpha_ci: Interval | None = None
    alpha_se: float | None = None
    beta_ci: Interval | None = None
    beta_se: float | None = None
    a_ci: Interval | None = None
    a_se: float | None = None
    b_ci: Interval | None = None
    b_se: float | None = None
    bootstrap: Bootstrap | None = None
    extra: dict[str, Any] = _extra()
    _keys: tuple[str, ...] | None = _keys()

    @property
    def params(self) -> tuple[float, float, float, float, float]:
        """``(E, A, B, alpha, beta)`` as floats (NaN where missing)."""
        return tuple(math.nan if v is None else float(v)  # type: ignore[return-value]
                     for v in (self.E, self.A, self.B, self.alpha, self.beta))

    @property
    def kappa(self) -> float:
        """FLOPs per parameter and token of the allocation ``C = k N D`` (6 when unknown)."""
        k = self.flops_per_param_token
        return float(k) if k else 6.0

    def problem(self) -> str:
        """Why this fit should not predict, as a predicate phrase ("is degenerate (...)")."""
        if not self.available:
            return "is unavailable (" + str(self.message).rstrip(".") + ")"
        return "is degenerate (" + "; ".join(self.degenerate_reasons or []) + ")"


@dataclass(eq=False)
class JointSection(Section):
    """The joint IsoFLOP fit (``joint``): one model for every run of the sweep,

    ``L(N, C) = E + A C**-gamma (1 + kappa (ln N - ln N*(C))**2)``, ``N*(C) = G C**a``,
    ``D*(C) = C / (k N*(C))`` (``k = flops_per_param_token``). ``precise`` is False when the
    data cannot pin its intervals (``reason`` says why; no interval is then stored). ``floor``
    is ``"free"`` or ``"forward-validated"`` (``floor_choice`` then holds the forward errors).
    The bootstrap's columns are ``E, A, gamma, kappa, G, a``; its ``dof`` and ``sigma`` (the
    residual sd of log loss) are in the block's extra keys.
    """

    _nested: ClassVar[dict[str, type[Section]]] = {
        "n_opt": PowerLawRecord, "d_opt": PowerLawRecord, "budgets": BudgetMinimum,
        "bootstrap": Bootstrap,
    }

    available: bool = False
    message: str = ""
    warnings: list[str] = field(default_factory=list)
    precise: bool | None = None
    reason: str = ""
    form: str | None = None
    E: float | None = None
    A: float | None = None
    gamma: float | None = None
    kappa: float | None = None
    G: float | None = None
    a: float | None = None
    b: float | None = None
    floor: str | None = None
    floor_choice: dict[str, Any] | None = None
    flops_per_param_token: float | None = None
    sigma: float | None = None
    dof: int | None = None
    n_points: int | None = None
    ci_level: float | None = None
    n_opt: PowerLawRecord | None = None
    d_opt: PowerLawRecord | None = None
    E_ci: Interval | None = None
    gamma_ci: Interval | None = None
    a_ci: Interval | None = None
    b_ci: Interval | None = None
    budgets: list[BudgetMinimum] = field(default_factory=list)
    bootstrap: Bootstrap | None = None
    extra: dict[str, Any] = _extra()
    _keys: tuple[str, ...] | None = _keys()

    @property
    def kappa_flops(self) -> float:
        """FLOPs per parameter and token (6 when unknown)."""
        k = self.flops_per_param_token
        return float(k) if k else 6.0


@dataclass(eq=False)
class Approach1Section(Section):
    """Approach 1: the envelope of the training curves, ``N_opt ~ C**a`` (``approach1``)."""

    _nested: ClassVar[dict[str, type[Section]]] = {"n_opt": PowerLawRecord}

    available: bool = False
    message: str = ""
    n_opt: PowerLawRecord | None = None
    n_curves: int | None = None
    n_levels: int | None = None
    loss_field: str | None = None
    points: str | None = None  # which points the envelope used (and why, under cosine: bias)
    extra: dict[str, Any] = _extra()
    _keys: tuple[str, ...] | None = _keys()


def interval_text(ci: list | None, fmt: str = ".4g") -> str:
    """`` [lo, hi]`` of an interval for the text of a law ("" without one)."""
    if ci and ci[0] is not None and ci[1] is not None:
        return f" [{format(ci[0], fmt)}, {format(ci[1], fmt)}]"
    return ""


def law_record(law: Any, log_k: np.ndarray | None = None,
               exps: np.ndarray | None = None, ci: float = 0.95) -> dict[str, Any] | None:
    """The JSON of a fitted power law (None when it has no finite exponent), plain values.

    ``log_k``/``exps``: bootstrap samples of its log coefficient and exponent, shape ``(S,)``.
    """
    if law is None or not math.isfinite(law.exponent):
        return None
    out: dict[str, Any] = {
        "coefficient": law.coefficient, "exponent": law.exponent,
        "coefficient_ci": None, "exponent_ci": None,
        "exponent_se": law.exponent_se, "log_coefficient_se": law.log_coefficient_se,
        "log_x_center": law.log_x_center, "n_points": law.n_points,
    }
    if log_k is not None and exps is not None and np.isfinite(exps).any():
        out["coefficient_ci"] = np.exp(percentile_interval(log_k, ci))
        out["exponent_ci"] = percentile_interval(exps, ci)
        out["exponent_bootstrap_se"] = np.nanstd(exps[np.isfinite(exps)], ddof=1) \
            if np.isfinite(exps).sum() > 1 else None
    return plain(out)
