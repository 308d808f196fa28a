"""Run the real ``flops-fit`` command with one ``SIGKILL`` planted at a chosen moment.

    python tests/helpers/faults.py MODE:K <command> run_dir=... [overrides]

The process kills itself with signal 9 (no cleanup, no ``finally``, no flush: what ``kill -9``,
the OOM killer or a pre-empted node does) at the K-th occurrence of MODE:

* ``none``          -- no fault: the plain command;
* ``step``          -- inside an optimizer step, after ``backward`` and before ``opt.step``;
* ``checkpoint``    -- halfway through writing a checkpoint (half its bytes are on disk);
* ``result``        -- a run's ``result.json`` fully written to its temp file, not yet renamed;
* ``after-result``  -- just after that rename, before the run's checkpoint is deleted;
* ``rebuild``       -- ``results.json`` rebuilt into its temp file, not renamed, lock held.

Before it dies it prints ``FAULT: ...`` on stderr, so a test can tell the kill happened there.
"""

from __future__ import annotations

import io
import os
import signal
import sys
from typing import Any


def _die(what: str) -> None:
    sys.stderr.write(f"FAULT: SIGKILL {what}\n")
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def install(mode: str, k: int) -> None:
    """Plant the kill (see the module docstring)."""
    count = [0]

    def hit() -> bool:
        count[0] += 1
        return count[0] == k

    if mode == "step":
        import torch.nn.utils

        real_clip = torch.nn.utils.clip_grad_norm_

        def clip(*args: Any, **kwargs: Any) -> Any:
            if hit():
                _die(f"inside optimizer step {k} (after backward)")
            return real_clip(*args, **kwargs)

        torch.nn.utils.clip_grad_norm_ = clip
    elif mode == "checkpoint":
        import torch

        real_save = torch.save

        def save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> Any:
            if hit():
                buf = io.BytesIO()
                real_save(obj, buf, *args, **kwargs)
                data = buf.getvalue()
                f.write(data[: len(data) // 2])
                f.flush()
                _die(f"halfway through checkpoint {k} ({len(data) // 2} of {len(data)} bytes)")
            return real_save(obj, f, *args, **kwargs)

        torch.save = save
    elif mode in ("result", "after-result", "rebuild"):
        real_replace = os.replace
        target = "results.json" if mode == "rebuild" else "result.json"

        def replace(src: Any, dst: Any, *args: Any, **kwargs: Any) -> Any:
            mine = os.path.basename(os.fspath(dst)) == target
            if mine and mode != "after-result" and hit():
                _die(f"before renaming {target} #{k} into place")
            out = real_replace(src, dst, *args, **kwargs)
            if mine and mode == "after-result" and hit():
                _die(f"just after renaming {target} #{k} into place")
            return out

        os.replace = replace
    elif mode != "none":
        raise SystemExit(f"unknown fault mode {mode!r}")


if __name__ == "__main__":
    fault, _, nth = sys.argv[1].partition(":")
    install(fault, int(nth or 1))
    from flops_fit.cli import main

    main(sys.argv[2:])
