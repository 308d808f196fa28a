"""flops-fit: plan an IsoFLOP sweep of your model, train it, fit scaling laws, predict."""

from flops_fit.errors import FlopsFitError, NotEnoughDataError
from flops_fit.planning.contracts import validate_model_contract
from flops_fit.planning.planner import RunSpec, SweepPlan, plan_sweep

__version__ = "0.1.0"

__all__ = [
    "FlopsFitError",
    "NotEnoughDataError",
    "RunSpec",
    "SweepPlan",
    "plan_sweep",
    "validate_model_contract",
    "find_optimal",
    "Result",
]


def __getattr__(name: str):  # lazy: importing flops_fit stays cheap
    if name == "find_optimal":
        from flops_fit.api import find_optimal

        return find_optimal
    if name == "Result":
        from flops_fit.result import Result

        return Result
    raise AttributeError(f"module 'flops_fit' has no attribute {name!r}")
