"""Container events, as dockerd sends them, through ``berth events`` and ``GET /events``."""

import json
import time

import pytest

pytestmark = pytest.mark.root


def events_of(bd, since: float, cid: str) -> list[dict]:
    until = f"{time.time() + 0.2:.3f}"
    out = bd.berth("events", "--since", f"{since:.3f}", "--until", until, "--filter",
                   f"container={cid}", "--format", "{{json .}}").stdout
    return [json.loads(line) for line in out.splitlines()]


def test_run_rm_stop_pause_exec_events(bd):
    t0 = time.time()
    bd.berth("run", "--rm", "--name", "ev1", "--network", "none", "busybox", "sh", "-c",
             "exit 3", check=False)
    time.sleep(0.2)
    evs = events_of(bd, t0, "ev1")
    assert [e["Action"] for e in evs] == ["create", "attach", "start", "die", "destroy"]
    die = evs[3]
    assert die["Actor"]["Attributes"]["exitCode"] == "3"
    assert die["Actor"]["Attributes"]["image"] == "busybox"
    assert die["Actor"]["Attributes"]["name"] == "ev1"
    assert die["Type"] == "container" and die["status"] == "die" and die["from"] == "busybox"

    t1 = time.time()
    cid = bd.berth("run", "-d", "--name", "ev2", "--network", "none", "busybox", "sleep",
                   "300").stdout.strip()
    bd.berth("pause", "ev2")
    bd.berth("unpause", "ev2")
    bd.berth("exec", "ev2", "true")
    bd.berth("stop", "-t", "1", "ev2")
    bd.berth("rm", "ev2")
    time.sleep(0.2)
    acts = [e["Action"] for e in events_of(bd, t1, cid)]
    assert acts[:4] == ["create", "start", "pause", "unpause"]
    assert acts[4:7] == ["exec_create: true", "exec_start: true", "exec_die"]
    assert acts[7:] == ["kill", "die", "stop", "destroy"]


def test_oom_event(bd):
    t0 = time.time()
    bd.berth("run", "--name", "evoom", "-m", "16m", "--network", "none", "busybox", "sh", "-c",
             "x=$(head -c 50000000 /dev/zero | tr '\\0' a)", check=False)
    time.sleep(0.2)
    acts = [e["Action"] for e in events_of(bd, t0, "evoom")]
    assert "oom" in acts and acts.index("oom") < acts.index("die")


def test_docker_events_filter_and_until(bd):
    t0 = time.time()
    bd.docker("run", "--rm", "--network", "none", "busybox", "true")
    time.sleep(0.2)
    out = bd.docker("events", "--since", f"{t0:.3f}", "--until", f"{time.time():.3f}",
                    "--filter", "event=die", "--format", "{{.Action}} {{.Type}}").stdout
    assert out == "die container\n"
