"""The ``flops-fit`` command: a dispatcher over one Hydra app per stage.

``flops-fit <command> [hydra overrides]`` — each command is its own ``@hydra.main`` with the
primary config ``conf/<command>.yaml`` (shared groups: model, dataset, budgets, train,
analysis), so ``--help``, ``--cfg job``, ``-m`` and launchers are Hydra's own. Hydra stays in
this file: it turns the composed config into plain :class:`~flops_fit.stages.pipeline.Settings`.
"""

from __future__ import annotations

import dataclasses
import difflib
import errno
import os
import re
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
from flops_fit.config.datasets import DATASET_CLASSES
from flops_fit.errors import (
    EnvironmentFailure,
    FlopsFitError,
    Terminated,
    TrainingFailedError,
)
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
        raise FlopsFitError(_config_problem(exc)) from exc
    return stages.check_settings(settings_from_mapping(c))


def _config_problem(exc: OmegaConfBaseException) -> str:
    """An OmegaConf failure (a ``???`` left unset, an unset environment variable) in one
    sentence that names the key to set."""
    text = " ".join(str(getattr(exc, "msg", None) or exc).split())
    missing = re.search(r"Missing mandatory value: ([\w.]+)", text)
    if missing:
        key, full = missing.group(1), str(getattr(exc, "full_key", "") or "")
        if full.endswith("." + key):  # the key itself was left unset: name it in full
            key = full
        return f"{key} has no value; set it on the command line, e.g. {key}=<value>."
    env = re.search(r"Environment variable '([^']+)' not found", text)
    if env:
        return (f"The environment variable {env.group(1)} that the config reads is not set; "
                "set it, or give the value on the command line.")
    where = getattr(exc, "full_key", None)
    return (f"The config cannot be resolved{f' at {where}' if where else ''} "
            f"({text.split(' full_key:')[0]}); fix that value on the command line.")


def _group_keys() -> dict[str, set[str]]:
    """The keys of each config group (dataset: those of every dataset kind)."""
    keys = {name: {f.name for f in dataclasses.fields(cls)}
            for name, cls in Settings.GROUPS.items() if name != "dataset"}
    keys["dataset"] = {f.name for cls in DATASET_CLASSES.values()
                       for f in dataclasses.fields(cls)}
    return keys


def _precheck_keys(args: list[str]) -> None:
    """``group.key=value`` with a key the group does not have: one sentence with the nearest
    key (Hydra's own message is several lines and exits 1)."""
    groups = _group_keys()
    for arg in args:
        if arg.startswith(("-", "+", "~")) or "=" not in arg:
            continue
        path = arg.split("=", 1)[0].split(".")
        if len(path) < 2 or path[0] not in groups:
            continue
        group, key = path[0], path[1]
        if key in groups[group]:
            continue
        near = difflib.get_close_matches(key, sorted(groups[group]), n=1, cutoff=0.5)
        if not near:
            near = [k for k in sorted(groups[group]) if k.startswith(key) or key in k][:1]
        hint = f"did you mean '{near[0]}'?" if near else \
            f"its keys are {', '.join(sorted(groups[group]))}."
        raise FlopsFitError(f"{group} has no key '{key}'; {hint}")


def _resolve_run_dir(value: str) -> str:
    """``run_dir``'s value with ``${oc.env:...}`` resolved; one sentence when it cannot be."""
    if "${" not in value or "oc.env" not in value:
        return value
    try:
        return str(OmegaConf.to_container(OmegaConf.create({"run_dir": value}),
                                          resolve=True)["run_dir"])
    except OmegaConfBaseException as exc:
        raise FlopsFitError("run_dir: " + _config_problem(exc)) from None


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


_RECORD_FILES = ("config.yaml", "hydra.yaml", "overrides.yaml")
#: OSErrors of the machine (exit 6): disk full, quota, permission, read-only file system
ENVIRONMENT_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS)


def _write_record(cfg: DictConfig, command: str) -> Callable[[], None]:
    """Write Hydra's record of this command (``.hydra/<command>/`` in the job's output folder,
    as Hydra would) and return the function that takes it back: a refused command leaves the
    run directory as it found it (the record it replaced restored, new folders removed)."""
    try:
        hydra_cfg = HydraConfig.instance().cfg
        out = Path(hydra_cfg.hydra.runtime.output_dir) / ".hydra" / command
    except (ValueError, AttributeError):  # no Hydra config: called from Python
        return lambda: None
    old = {n: (out / n).read_bytes() for n in _RECORD_FILES if (out / n).is_file()}
    created = [d for d in (out.parent, out) if not d.exists()]
    record = OmegaConf.create(OmegaConf.to_container(hydra_cfg))
    record.hydra.output_subdir = f".hydra/{command}"
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name, node in zip(_RECORD_FILES, (cfg, record, hydra_cfg.hydra.overrides.task),
                              strict=True):
            (out / name).write_text(OmegaConf.to_yaml(node), encoding="utf-8")
    except OSError:
        pass  # the stage's own first write says what is wrong with the folder

    def undo() -> None:
        for name in _RECORD_FILES:
            try:
                if name in old:
                    (out / name).write_bytes(old[name])
                else:
                    (out / name).unlink(missing_ok=True)
            except OSError:
                pass
        for d in reversed(created):
            try:
                d.rmdir()
            except OSError:
                pass

    return undo


def _guard(fn: Callable[[DictConfig], None], command: str = "") -> Callable[[DictConfig], None]:
    """Run a stage; bad input ends in one sentence and a non-zero exit, not a traceback.

    Hydra's record of the command is written here, and taken back when the command is refused.
    """

    def wrapped(cfg: DictConfig) -> None:
        undo = _write_record(cfg, command) if command else (lambda: None)
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            try:
                return fn(cfg)
            except FlopsFitError as exc:
                if not isinstance(exc, TrainingFailedError):
                    undo()
                raise
        try:
            fn(cfg)
        except FlopsFitError as exc:
            if not isinstance(exc, TrainingFailedError):  # runs were trained: keep the record
                undo()
            _report(exc)  # in a launcher job: its log
            if _in_multirun():
                num = HydraConfig.get().job.get("num", "?")
                raise JobFailed(f"flops-fit: job #{num} failed: {exc}") from None
            sys.exit(exc.exit_code)
        except OSError as exc:  # a write the stage did not wrap: the machine, not the input
            if exc.errno not in ENVIRONMENT_ERRNOS:
                raise
            undo()
            _report(EnvironmentFailure(f"Cannot write {exc.filename or 'a file'}: "
                                       f"{exc.strerror or exc}; free disk space or fix the "
                                       "permissions, then run the same command again."))
            sys.exit(EnvironmentFailure.exit_code)
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
        _guard(_STAGE_FNS[command], command)
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
    _precheck_keys(args)
    for arg in args:
        if arg.startswith("run_dir="):
            value = _resolve_run_dir(arg.split("=", 1)[1].strip("'\""))
            if "," not in value and "$" not in value:
                check_run_dir(Path(value), create=False)


def _missing_run_dirs(args: list[str]) -> list[Path]:
    """The folders a ``run_dir=`` argument names that do not exist yet (deepest last)."""
    for arg in args:
        if arg.startswith("run_dir=") and "," not in arg and "$" not in arg:
            path = Path(arg.split("=", 1)[1].strip("'\"")).expanduser().absolute()
            out = []
            while not path.exists() and path != path.parent:
                out.insert(0, path)
                path = path.parent
            return out
    return []


def _remove_empty(folders: list[Path]) -> None:
    """Remove ``folders`` (deepest first) where they are empty: nothing of theirs is lost."""
    for folder in reversed(folders):
        try:
            folder.rmdir()
        except OSError:
            return


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
    new_dirs = _missing_run_dirs(rest)
    try:
        _app(command)()
    except SystemExit as exc:
        if exc.code not in (0, None):  # refused: the folders Hydra made for it go again
            _remove_empty(new_dirs)
        raise
    except ValueError as exc:  # Hydra's own flag checks (e.g. -m with --cfg) raise it bare
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        _report(ValueError(f"{exc} (see flops-fit {command} --help)."))
        sys.exit(2)
