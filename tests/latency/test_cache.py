"""This machine's own tables: profiled on first use, cached per user, shared safely between processes; bad
caches are one line and lose nothing; the fingerprint override makes this machine one nobody has seen."""
import copy
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from autoprune.cli import main
from autoprune.latency import profile as profile_module
from autoprune.latency.cache import PROFILE_ATTEMPTS, table_for_this_machine
from autoprune.latency.predict import LatencyPredictor
from autoprune.latency.table import UnsteadyProfileWarning
from autoprune.models.specs import load_model
from autoprune.pruning.space import build_space

TINY = f"{Path(__file__).resolve().parent.parent / 'tiny_cnn.py'}:factory"
PREDICT = [sys.executable, "-m", "autoprune.cli", "predict", "--model", TINY, "--top", "1"]


def _run(cmd, cache, **env):
    return subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "AUTOPRUNE_CACHE": str(cache), **env})


def _tables(cache: Path) -> list[Path]:
    return sorted(cache.glob("*.json"))


def _predicted(out: str) -> str:
    return out.splitlines()[0].split("predicted ")[1].split(" ms")[0]


def test_the_first_use_profiles_this_machine_and_later_runs_reuse_it(tmp_path):
    first = _run(PREDICT, tmp_path)
    assert first.returncode == 0, first.stderr
    assert "profiling one now" in first.stderr and "profiled in" in first.stderr
    (table,) = _tables(tmp_path)
    data = json.loads(table.read_text())
    assert data["device"]["backend"] == "ort-cpu" and data["device"]["threads"] == 1
    assert "validation" in next(iter(data["models"].values()))  # held-out figures for --margin auto
    again = _run(PREDICT, tmp_path)
    assert again.returncode == 0 and "profiled in" not in again.stderr
    assert _predicted(again.stdout) == _predicted(first.stdout)
    assert _tables(tmp_path) == [table]
    # A finer space of the same layout grows the same table with the kernels it lacks, once.
    finer = _run([*PREDICT, "--steps", "16"], tmp_path)
    assert finer.returncode == 0 and "kernels of this search space" in finer.stderr
    assert len(json.loads(table.read_text())["entries"]) > len(data["entries"])
    assert "profiled in" not in _run([*PREDICT, "--steps", "16"], tmp_path).stderr
    # Another thread count is another table; the listing shows both as this machine's.
    assert _run([*PREDICT, "--threads", "2"], tmp_path).returncode == 0
    assert len(_tables(tmp_path)) == 2
    listing = _run([sys.executable, "-m", "autoprune.cli", "tables"], tmp_path).stdout
    assert listing.count("(here)") == 2 and "t1 b1 float32" in listing and "t2 b1 float32" in listing


def test_two_processes_on_an_empty_cache_profile_once(tmp_path):
    env = {**os.environ, "AUTOPRUNE_CACHE": str(tmp_path)}
    procs = [subprocess.Popen(PREDICT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(2)]
    done = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in done]
    assert sum("profiling one now" in err for _, err in done) == 1
    assert sum("waiting for another process" in err for _, err in done) == 1
    assert len(_tables(tmp_path)) == 1
    assert _predicted(done[0][0]) == _predicted(done[1][0])


def test_a_corrupt_cached_table_is_kept_aside_and_profiled_again(tmp_path):
    assert _run(PREDICT, tmp_path).returncode == 0
    (table,) = _tables(tmp_path)
    good = table.read_text()
    table.write_text(good[: len(good) // 2])  # truncated, as a full disk would leave it
    again = _run(PREDICT, tmp_path)
    assert again.returncode == 0, again.stderr
    warned = [line for line in again.stderr.splitlines() if "unreadable" in line]
    assert len(warned) == 1 and warned[0].startswith("autoprune: warning:")
    assert "profiling one now" in again.stderr
    assert json.loads(table.read_text())["models"]  # whole again
    assert table.with_name(table.name + ".corrupt").read_text() == good[: len(good) // 2]  # nothing lost


def test_a_cached_table_whose_held_out_check_failed_is_measured_again_whole(tmp_path):
    assert _run(PREDICT, tmp_path).returncode == 0
    (table,) = _tables(tmp_path)
    data = json.loads(table.read_text())
    # As a profile taken while the machine's speed moved leaves it: slow kernels and a failed held-out check.
    planted = {"mape_pct": 23.3, "within_10pct": 0.1}
    for model in data["models"].values():
        model["validation"].update(planted)
        model.pop("profiles")  # as a table cached by an earlier release, or before a single failed try
    for entry in data["entries"].values():
        entry["ms"] *= 1.5
    table.write_text(json.dumps(data))
    named = tmp_path / "named" / "disturbed.json"
    named.parent.mkdir()
    named.write_text(table.read_text())

    again = _run(PREDICT, tmp_path)
    assert again.returncode == 0, again.stderr
    assert "missed its own held-out configs by MAPE 23.3%" in again.stderr and "profiling it again" in again.stderr
    fresh = json.loads(table.read_text())
    validation = next(iter(fresh["models"].values()))["validation"]
    assert validation["mape_pct"] < planted["mape_pct"]
    slowed = sum(fresh["entries"][k]["ms"] == v["ms"] for k, v in data["entries"].items())
    assert slowed < len(data["entries"]) / 2  # the kernels were measured again too, not only the whole models
    assert _tables(tmp_path) == [table] and not list(tmp_path.glob("*.again*"))
    assert next(iter(fresh["models"].values()))["profiles"] >= 2
    # A table named by the user is theirs: never profiled again, but every prediction with it says it is off.
    named_run = _run([*PREDICT, "--table", str(named)], tmp_path)
    assert named_run.returncode == 0, named_run.stderr
    assert "profiling it again" not in named_run.stderr and "profiling one now" not in named_run.stderr
    warned = [line for line in named_run.stderr.splitlines() if "held-out configs miss by MAPE 23.3%" in line]
    assert len(warned) == 1 and warned[0].startswith("autoprune: warning:")
    assert json.loads(named.read_text()) == data


def test_a_machine_that_fails_every_profile_keeps_the_best_and_says_so_once(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOPRUNE_CACHE", str(tmp_path))
    assert _run(PREDICT, tmp_path).returncode == 0
    (table,) = _tables(tmp_path)
    measured = json.loads(table.read_text())

    def failed_check(mape):
        data = copy.deepcopy(measured)
        for model in data["models"].values():
            model.pop("profiles", None)
            model["validation"].update({"mape_pct": mape, "within_10pct": 0.2})
        return json.dumps(data)

    tries = []

    def unsteady_profile(loaded, space, backend, out, *rest):
        # As a machine whose speed moves under a steady neighbour's load: every try's held-out check fails.
        tries.append(out)
        Path(out).write_text(failed_check(30.0 - 5 * len(tries)))

    monkeypatch.setattr(profile_module, "profile", unsteady_profile)
    table.write_text(failed_check(31.0))  # the cached one failed too: it counts as the first of the tries
    loaded = load_model(TINY)
    space = build_space(loaded)
    with pytest.warns(UnsteadyProfileWarning, match=f"in all {PROFILE_ATTEMPTS} profiles") as caught:
        kept = table_for_this_machine(loaded, space)
    assert len(tries) == PROFILE_ATTEMPTS - 1 and len(caught) == 1
    model = next(iter(kept.models.values()))
    assert model["profiles"] == PROFILE_ATTEMPTS and model["validation"]["mape_pct"] == 20.0  # the best try
    assert json.loads(table.read_text())["models"] == kept.models and not list(tmp_path.glob("*.again*"))
    # Later runs use it as it is: no profile, and no warning on every prediction (this one said it once).
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = table_for_this_machine(loaded, space)
        LatencyPredictor(again, space).predict({})
    assert len(tries) == PROFILE_ATTEMPTS - 1


def test_a_cache_that_cannot_be_written_and_a_missing_table_are_one_line(tmp_path, capsys, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("AUTOPRUNE_CACHE", str(blocker / "tables"))
    assert main(["predict", "--model", TINY]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot write the latency-table cache" in err[0] and "AUTOPRUNE_CACHE" in err[0]
    assert blocker.read_text() == "not a folder"
    assert main(["predict", "--model", TINY, "--table", str(tmp_path / "missing.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "latency table not found" in err[0]


def test_an_unseen_fingerprint_gets_its_own_table_and_the_shipped_one_warns(tmp_path, monkeypatch, capsys):
    unseen = json.dumps({"cpu": "Unseen CPU 1", "isa": ["sse4_2"]})
    done = _run(PREDICT, tmp_path, AUTOPRUNE_FINGERPRINT=unseen)
    assert done.returncode == 0 and "Unseen CPU 1" in done.stderr  # the profile says which machine it is for
    (table,) = _tables(tmp_path)
    assert json.loads(table.read_text())["device"]["cpu"] == "Unseen CPU 1"  # the runner records the override
    monkeypatch.setenv("AUTOPRUNE_CACHE", str(tmp_path))
    monkeypatch.setenv("AUTOPRUNE_FINGERPRINT", unseen)
    assert main(["predict", "--table", "shipped", "--top", "1"]) == 0
    warned = [line for line in capsys.readouterr().err.splitlines() if "another machine" in line]
    assert len(warned) == 1 and "Unseen CPU 1" in warned[0]
    monkeypatch.setenv("AUTOPRUNE_FINGERPRINT", '{"socket": 2}')
    assert main(["predict", "--table", "shipped"]) == 2
    assert "AUTOPRUNE_FINGERPRINT must be a JSON object" in capsys.readouterr().err
    monkeypatch.delenv("AUTOPRUNE_FINGERPRINT")
    assert main(["tables", "--clear"]) == 0
    assert _tables(tmp_path) == [] and "0" in capsys.readouterr().out.splitlines()[-1]
