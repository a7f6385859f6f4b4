"""Trials left RUNNING by a killed process, whatever moment the kill landed at, on each storage (study/recovery.py):
failed at once where every process that could have asked for them is shown dead, their samples queued again."""
import signal
import socket
import subprocess
import sys
import time

import optuna
import pytest
from optuna.trial import TrialState

from autoprune.study import recovery
from autoprune.study.execution import make_storage
from autoprune.study.recovery import dead_trials, recover_dead_trials, register
from postgres import start_server

# A process that does what a search worker does up to a moment, then stops there: SIGKILLed, or alive (sleeping).
WORKER = """
import os, signal, sys, time
import optuna
from autoprune.study.execution import make_storage
from autoprune.study.recovery import register, worker_id

url, name, moment, end = sys.argv[1:]
study = optuna.load_study(study_name=name, storage=make_storage(url))
register(study)
trial = study.ask()  # "popped" when the study's queue holds a trial, else a new one
if moment == "named":
    trial.suggest_float("a", 0.1, 10, log=True)
    trial.set_user_attr("worker", worker_id())
print(trial.number, flush=True)
if end == "kill":
    os.kill(os.getpid(), signal.SIGKILL)
time.sleep(600)
"""


@pytest.fixture(scope="module")
def postgresql():
    url, stop = start_server()
    yield url
    stop()


@pytest.fixture(params=["sqlite", "journal", pytest.param("postgresql", marks=pytest.mark.slow)])
def where(request, tmp_path):
    """A storage URL and a study name of its own in it."""
    name = f"s{time.monotonic_ns()}"
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'study.db'}", name
    if request.param == "journal":
        return f"journal:{tmp_path / 'study.log'}", name
    return request.getfixturevalue("postgresql"), name


def _study(url, name="s"):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(study_name=name, storage=make_storage(url), direction="maximize")


def _worker(url, name, moment, end):
    proc = subprocess.Popen([sys.executable, "-c", WORKER, url, name, moment, end], stdout=subprocess.PIPE, text=True)
    number = int(proc.stdout.readline())
    if end == "kill":
        assert proc.wait() == -signal.SIGKILL
    return proc, number


@pytest.mark.parametrize("moment", ["asked", "popped", "named"])
def test_a_trial_killed_at_any_moment_of_its_start_is_failed_at_once_and_its_sample_queued_again(where, moment):
    url, name = where
    study = _study(url, name)
    if moment == "popped":  # a starting point or a retry: Optuna pops it from the queue, then the worker names it
        study.enqueue_trial({"a": 2.0})
    _, number = _worker(url, name, moment, "kill")
    (left,) = study.get_trials(states=(TrialState.RUNNING,))
    assert left.number == number and ("worker" in left.user_attrs) == (moment == "named")

    assert recover_dead_trials(study) == [number]
    assert study.trials[number].state == TrialState.FAIL and not study.get_trials(states=(TrialState.RUNNING,))
    (retry,) = [t for t in study.trials if t.user_attrs.get("retry_of") == number]
    assert retry.state == TrialState.WAITING
    queued = {"asked": {}, "popped": {"a": 2.0}, "named": left.params}[moment]
    assert retry.system_attrs["fixed_params"] == queued  # a popped trial keeps the knobs it was queued with
    assert recover_dead_trials(study) == []


def test_an_unnamed_trial_of_a_live_process_is_left_to_it_until_it_outlives_the_grace(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = _study(url)
    proc, number = _worker(url, "s", "asked", "sleep")
    try:
        assert recover_dead_trials(study) == []  # it may name the trial any moment now
        monkeypatch.setattr(recovery, "UNNAMED_GRACE_S", 0.0)
        assert [t.number for t in dead_trials(study)] == [number]  # a live process names it in milliseconds
    finally:
        proc.kill()
        proc.wait()
    monkeypatch.undo()
    assert recover_dead_trials(study) == [number]  # its only possible asker is gone: at once


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # asked outside optimize, as a test does
def test_a_live_process_on_a_reused_pid_is_not_taken_for_the_dead_worker(tmp_path):
    study = _study(f"sqlite:///{tmp_path / 'study.db'}")
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        name = f"{socket.gethostname()}:{sleeper.pid}"
        trial = study.ask()
        trial.set_user_attr("worker", name)
        study.set_user_attr(recovery.PROCESS + name, {"started": recovery._start_time(sleeper.pid), "ended": False})
        assert recover_dead_trials(study) == []
        if recovery._start_time(sleeper.pid) is None:
            pytest.skip("no /proc here: a pid's start time cannot be read")
        study.set_user_attr(recovery.PROCESS + name, {"started": "1", "ended": False})  # the worker was another process
        assert recover_dead_trials(study) == [trial.number]
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_recovery_killed_between_queuing_the_retry_and_failing_the_trial_is_finished_by_the_next(tmp_path,
                                                                                                    monkeypatch):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = _study(url)
    register(study)  # this process asks for none of them: recovery never waits on it
    _, number = _worker(url, "s", "named", "kill")
    tell = optuna.Study.tell

    def killed(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(optuna.Study, "tell", killed)
    with pytest.raises(KeyboardInterrupt):
        recover_dead_trials(study)
    monkeypatch.setattr(optuna.Study, "tell", tell)
    assert study.trials[number].state == TrialState.RUNNING
    assert recover_dead_trials(study) == [number]
    assert study.trials[number].state == TrialState.FAIL
    assert len([t for t in study.trials if t.user_attrs.get("retry_of") == number]) == 1
