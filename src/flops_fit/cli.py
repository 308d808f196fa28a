"""The ``flops-fit`` command: a dispatcher over one Hydra app per stage.

``flops-fit <command> [hydra overrides]`` — each command is its own ``@hydra.main`` with the
primary config ``conf/<command>.yaml`` (shared groups: model, dataset, budgets, train,
analysis), so ``--help``, ``--cfg job``, ``-m`` and launchers are Hydra's own. Hydra stays in
this file: it turns the composed config into plain :class:`~flops_fit.stages.pipeline.Settings`.
"""

from __future__ import annotations

import os
import signal
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import CompactHydraException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from rich.console import Console
from rich.markup import escape

from flops_fit.config import Settings, settings_from_mapping
from flops_fit.errors import FlopsFitError, Terminated
from flops_fit.planning.plans import check_run_dir
from flops_fit.stages import pipeline as stages
from flops_fit.training.interrupts import on_sigterm

COMMANDS: dict[str, str] = {
    "plan": "plan the IsoFLOP sweep of the model and write run_dir/plan.json",
    "train": "train every planned run that is not complete (resumable, shardable with -m)",
    "analyze": "fit the scaling laws to run_dir/results.json -> analysis/scaling_laws.json",
    "visualize": "draw the plots and report.html from the run directory's files",
    "find-optimal": "plan, train, analyze and visualize; print the compute-optimal prediction",
    "validate": "train the predicted optimum of a larger held-out budget and compare",
    "tune": "find the peak LR per model size -> run_dir/tuning.json (train then uses its rule)",
}

CONFIG_PATH = "conf"


def _vocab(tokenizer: str, bpe_vocab_size: int) -> int:
    """``dataset.vocab_size`` of a text dataset: 256 for bytes, the BPE's size for bpe, else
    0 (a tokenizer.json: the user sets it; :meth:`DatasetConfig.check` says so)."""
    return {"bytes": 256, "bpe": int(bpe_vocab_size)}.get(str(tokenizer), 0)


OmegaConf.register_new_resolver("flops_fit.vocab", _vocab, replace=True)


def settings_from_cfg(cfg: DictConfig) -> Settings:
    """Hydra config -> checked plain Settings (one dataclass per group)."""
    try:
        c = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except OmegaConfBaseException as exc:
        raise FlopsFitError(f"The config is incomplete: {exc.msg}; set it on the command line.") \
            from exc
    return settings_from_mapping(c)


def _report(exc: BaseException) -> None:
    Console(stderr=True).print(f"[bold red]flops-fit:[/] {escape(str(exc))}", highlight=False,
                               soft_wrap=True)


class JobFailed(CompactHydraException):
    """A multirun job's FlopsFitError, handed back to the launching process as one sentence.

    ``sys.exit`` inside a launcher job would kill a joblib worker (and with it the other jobs)
    or leave a submitit job without a result (a traceback in the parent); a returned failure
    lets every other job finish, then Hydra prints this line and exits with status 1.
    """


def _in_multirun() -> bool:
    try:
        return HydraConfig.get().mode == RunMode.MULTIRUN
    except ValueError:  # no Hydra config: called from Python
        return False


def _guard(fn: Callable[[DictConfig], None]) -> Callable[[DictConfig], None]:
    """Run a stage; bad input ends in one sentence and a non-zero exit, not a traceback."""

    def wrapped(cfg: DictConfig) -> None:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            return fn(cfg)
        try:
            fn(cfg)
        except FlopsFitError as exc:
            _report(exc)  # in a launcher job: its log
            if _in_multirun():
                num = HydraConfig.get().job.get("num", "?")
                raise JobFailed(f"flops-fit: job #{num} failed: {exc}") from None
            sys.exit(exc.exit_code)
        except KeyboardInterrupt as exc:  # SIGINT, or SIGTERM (SLURM, containers) below
            _report(RuntimeError("interrupted; run the same command again to resume."))
            sys.exit(143 if isinstance(exc, Terminated) else 130)

    wrapped.__name__ = fn.__name__
    wrapped.__doc__ = fn.__doc__
    return wrapped


def _console() -> Console:
    return Console(highlight=False)


def _stage(fn: Callable[[Settings, Console], object]) -> Callable[[DictConfig], None]:
    def run(cfg: DictConfig) -> None:
        fn(settings_from_cfg(cfg), _console())

    run.__name__ = fn.__name__
    return run


_STAGE_FNS = {
    "plan": _stage(stages.plan_stage), "train": _stage(stages.train_command),
    "analyze": _stage(stages.analyze_command), "visualize": _stage(stages.visualize_command),
    "find-optimal": _stage(stages.find_optimal_command),
    "validate": _stage(stages.validate_command), "tune": _stage(stages.tune_command),
}


def _app(command: str) -> Callable[[], None]:
    """The Hydra app of one command (its primary config is conf/<command>.yaml)."""
    return hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name=command)(
        _guard(_STAGE_FNS[command])
    )


def _usage() -> str:
    lines = ["usage: flops-fit <command> [hydra overrides]   (python -m flops_fit ... is the same)",
             "", "commands:"]
    lines += [f"  {name:<13} {text}" for name, text in COMMANDS.items()]
    lines += ["", "examples:",
              "  flops-fit find-optimal run_dir=outputs/first budgets=smoke",
              "  flops-fit plan run_dir=/tmp/p budgets.values=[1e12,3e12]",
              "  flops-fit tune run_dir=outputs/first   (then find-optimal uses the tuned LR)",
              "  flops-fit train -m run_dir=X train.shard=0,1 train.num_shards=2 "
              "hydra/launcher=joblib",
              "", "`flops-fit <command> --help` shows that command's config groups and options."]
    return "\n".join(lines)


def _precheck_run_dir(args: list[str]) -> None:
    """Catch a run_dir Hydra itself would crash on (it writes .hydra/ there first).

    Nothing is created here: Hydra has not accepted the other overrides yet.
    """
    for arg in args:
        if arg.startswith("run_dir="):
            value = arg.split("=", 1)[1].strip("'\"")
            if "," not in value and "$" not in value:
                check_run_dir(Path(value), create=False)


def _one_line_warning(message: Warning | str, category: type[Warning], filename: str,
                      lineno: int, file: object = None, line: str | None = None) -> None:
    """A library warning on the command line: one line on stderr, no source location."""
    print(f"warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``flops-fit`` and ``python -m flops_fit``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(_usage())
        sys.exit(0 if args else 2)
    command, rest = args[0], args[1:]
    if command not in COMMANDS:
        print(f"flops-fit: unknown command {command!r}; choose one of "
              f"{', '.join(COMMANDS)} (see flops-fit --help).", file=sys.stderr)
        sys.exit(2)
    try:
        _precheck_run_dir(rest)
    except FlopsFitError as exc:
        _report(exc)
        sys.exit(exc.exit_code)
    # `tune=true` (find-optimal: tune first) is short for tune.first=true; `tune` is a group
    rest = [f"tune.first={a.split('=', 1)[1]}" if a.lower() in ("tune=true", "tune=false")
            else a for a in rest]
    sys.argv = [f"flops-fit {command}", *rest]
    signal.signal(signal.SIGTERM, on_sigterm)
    warnings.showwarning = _one_line_warning
    try:
        _app(command)()
    except ValueError as exc:  # Hydra's own flag checks (e.g. -m with --cfg) raise it bare
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        _report(ValueError(f"{exc} (see flops-fit {command} --help)."))
        sys.exit(2)
