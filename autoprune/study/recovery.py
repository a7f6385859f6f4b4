"""Trials left RUNNING by a process that died, failed and their samples queued again.

A trial is RUNNING from the moment Optuna creates it (or pops it from the queue), a few milliseconds before the
objective's first step names its worker on it; a kill can land in between, or before the storage's first heartbeat
(Optuna's RDB heartbeat never counts a trial without one as stale, and a journal storage has none). So every
process names itself in the study before it asks for a trial (a study attribute of its own, with the start time of
its process, so that a reused pid is not taken for it): a trial that carries no worker was asked for by one of
the processes named there, and it is dead when each of them is shown dead, or, where some are alive or on another
machine, once it has stayed unnamed far longer than a live process takes to name it.
"""
from __future__ import annotations

import os
import socket
from datetime import datetime, timezone
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

from .result import RULE

PROCESS = "process:"  # a study attribute per process that ran trials: process:<host>:<pid>
# A live process names a trial within milliseconds of asking for it; this leaves room for a loaded machine and for
# the clocks of machines that share a storage.
UNNAMED_GRACE_S = 60.0


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _proc_stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state first); None where there is no such file."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None


def _start_time(pid: int) -> str | None:
    stat = _proc_stat(pid)
    return stat[19] if stat else None  # field 22: clock ticks after boot


def register(study: optuna.Study) -> None:
    """Names this process in the study: to be called before it asks for its first trial."""
    study.set_user_attr(PROCESS + worker_id(), {"started": _start_time(os.getpid()), "ended": False})


def unregister(study: optuna.Study) -> None:
    """Says this process asks for no more trials (it may live on: writing the front, timing it)."""
    study.set_user_attr(PROCESS + worker_id(), {"started": _start_time(os.getpid()), "ended": True})


def _processes(study: optuna.Study) -> dict[str, dict]:
    return {k[len(PROCESS):]: v for k, v in study.user_attrs.items() if k.startswith(PROCESS)}


def _shown_dead(worker: str, started: str | None, host: str) -> bool:
    """Whether `worker` (host:pid) is a process of this machine that no longer runs."""
    worker_host, _, pid = worker.rpartition(":")
    if worker_host != host or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass
    stat = _proc_stat(int(pid))
    if stat is None:  # no /proc: the pid's existence is all there is to go by
        return False
    # A zombie (killed, not yet reaped by its parent) is dead; a live process with another start time reused the pid.
    return stat[0] == "Z" or (started is not None and stat[19] != started)


def _unnamed_for_s(trial: FrozenTrial) -> float:
    start = trial.datetime_start
    if start is None:
        return 0.0
    now = datetime.now(timezone.utc) if start.tzinfo else datetime.now()
    return (now - start).total_seconds()


def dead_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The RUNNING trials no live process runs (never one of this process's)."""
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    if not running:
        return []
    host, me = socket.gethostname(), worker_id()
    processes = _processes(study)

    def dead(worker: str) -> bool:
        return worker != me and _shown_dead(worker, processes.get(worker, {}).get("started"), host)

    # The processes that may have asked for a trial that names no worker yet: this one asks for none while it recovers.
    askers = [w for w, p in processes.items() if w != me and not p.get("ended") and not dead(w)]
    found = []
    for t in running:
        worker = t.user_attrs.get("worker")
        if worker is not None:
            if dead(worker):
                found.append(t)
        elif not askers or _unnamed_for_s(t) > UNNAMED_GRACE_S:
            found.append(t)
    return found


def recover_dead_trials(study: optuna.Study) -> list[int]:
    """Fails the trials of dead processes now and queues their samples again (a trial killed between two of its
    sampler's suggestions is retried with those it had, one popped from the queue with the params it was queued with);
    returns their numbers.

    The retry is queued before the trial is failed, so that a kill between the two leaves the trial RUNNING and
    dead, to be failed by the next recovery, which then queues no second retry.
    """
    dead = dead_trials(study)
    if not dead:
        return []
    queued = {t.user_attrs["retry_of"] for t in study.get_trials(deepcopy=False) if "retry_of" in t.user_attrs}
    for t in dead:
        if t.number not in queued:
            params = {**t.system_attrs.get("fixed_params", {}), **t.params}
            carried = {RULE: t.user_attrs[RULE]} if RULE in t.user_attrs else {}
            study.enqueue_trial(params, user_attrs={"retry_of": t.number, **carried}, skip_if_exists=False)
        # Another process recovering at the same moment may have failed it first.
        study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
    return [t.number for t in dead]
