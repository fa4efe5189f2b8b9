"""berth-runtime's command line beside runc's (Debian's 1.1): what scripts and runc's own
integration tests rely on. Exit codes, the gist of each message, options after the container
id, `spec`'s bytes, --log and --debug, COMMAND --help.
"""

import json
import time

import pytest

pytestmark = [pytest.mark.root, pytest.mark.interop]


def both(runtimes, *args, **kw) -> dict:
    return {name: rt(*args, **kw) for name, rt in runtimes.items()}


def codes(res: dict) -> dict:
    return {name: r.returncode for name, r in res.items()}


@pytest.mark.parametrize("args,code,says", [
    (["foo"], 3, b"No help topic for 'foo'"),
    (["delete"], 1, b'"delete" requires exactly 1 argument(s)'),
    (["delete", "a", "b"], 1, b'"delete" requires exactly 1 argument(s)'),
    (["kill"], 1, b'"kill" requires a minimum of 1 argument(s)'),
    (["state", "--bogus", "x"], 1, b"flag provided but not defined"),
    (["state", "nosuch"], 1, b"does not exist"),
    (["kill", "nosuch", "FOO"], 1, b"does not exist"),  # the container is looked up first
    (["exec", "nosuch", "true"], 255, b"does not exist"),  # exec's own failures: 255
])
def test_usage_errors(runtimes, args, code, says):
    res = both(runtimes, *args)
    assert codes(res) == {"berth": code, "runc": code}
    for name, r in res.items():
        assert says in r.stderr.replace(b'\\"', b'"'), (name, r.stderr)  # (runc's quoting)
    assert res["berth"].stderr.count(b"\n") == 1  # one line


@pytest.fixture
def running(runtimes, make_bundle):
    """{"berth": id, "runc": id} of a `sleep 100` container under each runtime."""
    out = {}
    for name, rt in runtimes.items():
        b = make_bundle(f"cl-{name}", ["sleep", "100"]).write()
        cid = rt.new_id("cl")
        rt("run", "-d", "--bundle", str(b.path), cid, check=True)
        out[name] = cid
    return out


def test_exec_failures_exit_255(runtimes, running, tmp_path):
    for name, rt in runtimes.items():
        cid = running[name]
        assert rt("exec", cid, "sh", "-c", "exit 42").returncode == 42
        r = rt("exec", "--pid-file", str(tmp_path / "no" / "dir"), cid, "true")
        assert r.returncode == 255, (name, r.stderr)
        assert r.stderr.count(b"\n") == 1 and b"Traceback" not in r.stderr
        assert rt("exec", cid, "no-such-binary").returncode == 255, name


def test_kill_like_runc(runtimes, running):
    for name, rt in runtimes.items():
        cid = running[name]
        assert rt("kill", cid, "0").returncode == 0, name  # signal 0: is it there?
        r = rt("kill", cid, "99")
        assert r.returncode == 1 and b"invalid argument" in r.stderr.lower(), (name, r.stderr)
        rt("kill", cid, "KILL", check=True)
        deadline = time.monotonic() + 10
        while rt.state(cid)["status"] != "stopped" and time.monotonic() < deadline:
            time.sleep(0.02)
        assert rt("kill", cid, "TERM").returncode == 1, name  # not running
        # with --all the cgroup's processes (none now) are signalled: no error
        assert rt("kill", "-a", cid, "0").returncode == 0, name
        rt("delete", cid, check=True)


def test_options_after_the_container_id(runtimes, running, cgroup_prefix):
    """runc's urfave/cli takes a command's options after its arguments (`update ID
    --memory 64M`); exec and ps do not (what follows is the process's own)."""
    from berth.runtime import cgroups

    for name, rt in runtimes.items():
        cid = running[name]
        rt("update", cid, "--memory", "64M", "--cpu-share", "512", check=True)
        st = json.loads(rt("state", cid, check=True).stdout)
        with open(f"/proc/{st['pid']}/cgroup") as f:
            own = {k: v for _n, k, v in (line.strip().split(":", 2) for line in f)}
        fs = cgroups.CgroupFS()
        mem = fs.v1["memory"][0] + own["memory"]
        cpu = fs.v1["cpu"][0] + own["cpu"]
        assert open(mem + "/memory.limit_in_bytes").read().strip() == str(64 << 20), name
        assert open(cpu + "/cpu.shares").read().strip() == "512", name
        out = rt("exec", cid, "echo", "--memory", "x").stdout
        assert out == b"--memory x\n", name


def test_spec_writes_what_runc_writes(runtimes, tmp_path):
    out = {}
    for name, rt in runtimes.items():
        for flags in ([], ["--rootless"]):
            d = tmp_path / f"spec-{name}-{len(flags)}"
            d.mkdir()
            rt("spec", "--bundle", str(d), *flags, check=True)
            text = (d / "config.json").read_text()
            # the two values that name the runtime
            cfg = json.loads(text)
            text = text.replace(json.dumps(cfg["ociVersion"]), '"V"', 1)
            text = text.replace(json.dumps(cfg["hostname"]), '"H"', 1)
            out[name, len(flags)] = text
    assert out["berth", 0] == out["runc", 0]
    assert out["berth", 1] == out["runc", 1]
    assert "\t" in out["berth", 0]  # tab-indented, as runc writes it


def test_log_file_and_debug(runtimes, running, tmp_path):
    for name, rt in runtimes.items():
        cid = running[name]
        log = tmp_path / f"{name}.log"
        r = rt("--log", str(log), "state", cid)
        assert r.returncode == 0 and log.exists(), name  # made even when all goes well
        r = rt("--debug", "exec", cid, "true")
        assert r.returncode == 0 and b"level=debug" in r.stderr, (name, r.stderr)
        assert b"child process in init()" in r.stderr, name
        jlog = tmp_path / f"{name}.json"
        r = rt("--debug", "--log", str(jlog), "--log-format", "json", "exec", cid, "true")
        assert r.returncode == 0 and b"level=debug" not in r.stderr, name
        lines = [json.loads(x) for x in jlog.read_text().splitlines()]
        assert any(x["level"] == "debug" and "setns_init: about to exec" in x["msg"]
                   for x in lines), (name, lines)
        r = rt("--log", str(jlog), "--log-format", "json", "state", "nosuch")
        assert r.returncode == 1, name
        last = json.loads(jlog.read_text().splitlines()[-1])
        assert last["level"] == "error" and "does not exist" in last["msg"], (name, last)


@pytest.mark.parametrize("cmd", ["create", "delete", "exec", "kill", "list", "update"])
def test_command_help(runtimes, cmd):
    for name, r in both(runtimes, cmd, "--help", capture_output=True).items():
        assert r.returncode == 0, (name, r.stderr)
        lines = r.stdout.decode().splitlines()
        assert lines[0] == "NAME:" and f" {cmd} - " in lines[1], (name, lines[:3])


def test_wrong_state_errors(runtimes, running, make_bundle):
    for name, rt in runtimes.items():
        cid = running[name]
        b = make_bundle(f"ws-{name}", ["true"]).write()
        for args, says in ((["run", "-d", "--bundle", str(b.path), cid], b"already exists"),
                           (["start", cid], b"cannot start an already running container"),
                           (["delete", cid], b"that is not stopped: running"),
                           (["resume", cid], b"not paused")):
            r = rt(*args)
            assert r.returncode == 1 and says in r.stderr, (name, args, r.stderr)
        assert rt.state(cid)["status"] == "running", name  # none of them changed it
