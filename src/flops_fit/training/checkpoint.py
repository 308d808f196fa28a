"""What a resumable checkpoint must hold before a run trusts it: :func:`checked_loop_state`.

A checkpoint is untrusted data: a step outside ``[0, planned steps]``, a non-number where a
number belongs, or tensors that do not fit the model make it :class:`BadCheckpoint`; the runner
then ignores it in one line and the run starts again, never retried into the same failure.
"""

from __future__ import annotations

import math
from typing import Any


class BadCheckpoint(Exception):
    """A checkpoint that loads but cannot be resumed (the message says why)."""


def checked_loop_state(loop: Any, max_step: int | None) -> dict[str, Any]:
    """A checkpoint's loop state, checked: a step in ``[0, max_step]``, numbers where numbers
    belong; else :class:`BadCheckpoint`."""
    if not isinstance(loop, dict):
        raise BadCheckpoint("it has no loop state")
    step = loop.get("step")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0 \
            or (max_step is not None and step > max_step):
        bound = f"[0, {max_step}]" if max_step is not None else ">= 0"
        raise BadCheckpoint(f"its step {step!r} is not a whole number in {bound}")
    for key in ("train_time_s", "prior_wall_s", "initial_loss", "last_loss", "resumed"):
        value = loop.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not math.isfinite(value)):
            raise BadCheckpoint(f"its {key}={value!r} is not a number")
    if not isinstance(loop.get("resumed", 0), int):
        raise BadCheckpoint(f"its resumed={loop.get('resumed')!r} is not a whole number")
    return loop
