"""``run``/``create`` flag parsing: docker's values and docker's error words (no root)."""

import pytest

from berth.cli import runopts
from berth.cli.flags import UsageError, parse


def body(*argv):
    opts, args = parse(runopts.CREATE_FLAGS + runopts.RUN_ONLY_FLAGS, list(argv),
                       interspersed=False)
    return runopts.build(opts, args)[0]


@pytest.mark.parametrize("argv,message", [
    (["-m", "1x"], 'invalid argument "1x" for "-m, --memory" flag: invalid suffix: \'x\''),
    (["--memory=1x"], 'invalid argument "1x" for "-m, --memory" flag: invalid suffix: \'x\''),
    (["-c", "x"], 'invalid argument "x" for "-c, --cpu-shares" flag: strconv.ParseInt: '
                  'parsing "x": invalid syntax'),
    (["--cpus", "abc"], 'invalid argument "abc" for "--cpus" flag: failed to parse abc as a '
                        "rational number"),
    (["--cpus", "0.0000000001"], 'invalid argument "0.0000000001" for "--cpus" flag: value is '
                                 "too precise"),
    (["--memory-swap", "1q"], 'invalid argument "1q" for "--memory-swap" flag: invalid '
                              "suffix: 'q'"),
    (["--pids-limit", "x"], 'invalid argument "x" for "--pids-limit" flag: strconv.ParseInt: '
                            'parsing "x": invalid syntax'),
    (["--ulimit", "nofile"], 'invalid argument "nofile" for "--ulimit" flag: invalid ulimit '
                             "argument: nofile"),
    (["--ulimit", "foo=1"], 'invalid argument "foo=1" for "--ulimit" flag: invalid ulimit '
                            "type: foo"),
    (["--ulimit", "nofile=10:5"], 'invalid argument "nofile=10:5" for "--ulimit" flag: ulimit '
                                  "soft limit must be less than or equal to hard limit: 10 > 5"),
    (["--shm-size", "-1"], 'invalid argument "-1" for "--shm-size" flag: invalid size: \'-1\''),
    (["--mount", "type=bind"], 'invalid argument "type=bind" for "--mount" flag: target is '
                               "required"),
    (["--mount", "foo=bar"], 'invalid argument "foo=bar" for "--mount" flag: unexpected key '
                             "'foo' in 'foo=bar'"),
    (["--mount", "type=tmpfs,target=/x,tmpfs-size=1x"],
     'for "--mount" flag: invalid value for tmpfs-size: 1x'),
    (["-a", "foo"], 'invalid argument "foo" for "-a, --attach" flag: valid streams are STDIN, '
                    "STDOUT and STDERR"),
    (["--init=x"], 'invalid argument "x" for "--init" flag: strconv.ParseBool: parsing "x": '
                   "invalid syntax"),
    (["--sysctl", "foo"], 'invalid argument "foo" for "--sysctl" flag: sysctl \'foo\' is not '
                          "allowed"),
    (["--add-host", "foo"], 'invalid argument "foo" for "--add-host" flag: bad format for '
                            'add-host: "foo"'),
    (["--dns", "foo"], 'invalid argument "foo" for "--dns" flag: IP address is not correctly '
                       "formatted: foo"),
    (["--health-interval", "x"], 'invalid argument "x" for "--health-interval" flag: time: '
                                 'invalid duration "x"'),
])
def test_flag_errors(argv, message):
    with pytest.raises(UsageError) as e:
        body(*argv, "busybox")
    assert message in e.value.message


@pytest.mark.parametrize("argv,message", [
    (["--memory-swappiness", "200"], "invalid value: 200. Valid memory swappiness range is "
                                     "0-100"),
    (["--restart", "on-failure:x"], "invalid restart policy format: maximum retry count must "
                                    "be an integer"),
    (["--restart", "always", "--rm"], "conflicting options: cannot specify both --restart and "
                                      "--rm"),
    (["-v", ":/x"], "invalid spec: :/x: empty section between colons"),
    (["--security-opt", "foo"], 'Invalid --security-opt: "foo"'),
    (["--pid", "foo"], "--pid: invalid PID mode"),
    (["--cgroupns", "foo"], "--cgroupns: invalid CGROUP mode"),
    (["-p", "99999:80"], "invalid hostPort: 99999"),
    (["-p", "80:80/xyz"], "invalid proto: xyz"),
    (["--env-file", "/nonexistent-berth"], "open /nonexistent-berth: no such file or "
                                           "directory"),
])
def test_conflicts(argv, message):
    with pytest.raises(runopts.RunError) as e:
        body(*argv, "busybox")
    assert e.value.message == message


def test_values():
    b = body("-m", "32m", "--cpus", "0.5", "--pids-limit", "50", "--memory-swap", "-1",
             "-e", "A=1", "-l", "k=v", "-v", "/tmp:/h:ro", "-v", "/data", "--tmpfs", "/t:size=1m",
             "--mount", "type=volume,src=vv,dst=/vv,readonly", "--ulimit", "nofile=10:20",
             "--restart", "on-failure:3", "--init", "--entrypoint", "", "-w", "/w", "-u", "1:2",
             "--stop-timeout", "7", "--cap-add", "NET_ADMIN", "--read-only",
             "--network", "none", "-h", "box", "busybox", "sh", "-c", "x")
    h = b["HostConfig"]
    assert h["Memory"] == 32 << 20 and h["NanoCpus"] == 500_000_000 and h["PidsLimit"] == 50
    assert h["MemorySwap"] == -1 and h["Init"] is True and h["ReadonlyRootfs"] is True
    assert h["Binds"] == ["/tmp:/h:ro"] and b["Volumes"] == {"/data": {}}
    assert h["Tmpfs"] == {"/t": "size=1m"}
    assert h["Mounts"] == [{"Type": "volume", "Source": "vv", "Target": "/vv", "ReadOnly": True}]
    assert h["Ulimits"] == [{"Name": "nofile", "Hard": 20, "Soft": 10}]
    assert h["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
    assert h["NetworkMode"] == "none" and h["CapAdd"] == ["NET_ADMIN"]
    assert b["Entrypoint"] == [""] and b["Cmd"] == ["sh", "-c", "x"] and b["Image"] == "busybox"
    assert b["WorkingDir"] == "/w" and b["User"] == "1:2" and b["StopTimeout"] == 7
    assert b["Env"] == ["A=1"] and b["Labels"] == {"k": "v"} and b["Hostname"] == "box"
    assert b["AttachStdout"] and b["AttachStderr"] and not b["AttachStdin"]


def test_defaults_and_interactive():
    b = body("-it", "busybox")
    assert b["Tty"] and b["OpenStdin"] and b["AttachStdin"] and b["StdinOnce"]
    assert b["Entrypoint"] is None and b["Cmd"] is None
    h = b["HostConfig"]
    assert h["NetworkMode"] == "default" and "Init" not in h and h["MemorySwappiness"] == -1
    assert h["PidsLimit"] is None


@pytest.mark.parametrize("text,value", [("1k", 1024), ("1KiB", 1024), ("64m", 64 << 20),
                                        ("1.5g", 3 << 29), ("100", 100), ("10b", 10)])
def test_ram_in_bytes(text, value):
    assert runopts.ram_in_bytes(text) == value


def test_ports():
    exposed, bindings = runopts.parse_ports(["127.0.0.1:8080:80", "9000-9001:90-91/udp", "53"])
    assert bindings["80/tcp"] == [{"HostIp": "127.0.0.1", "HostPort": "8080"}]
    assert bindings["91/udp"] == [{"HostIp": "", "HostPort": "9001"}]
    assert bindings["53/tcp"] == [{"HostIp": "", "HostPort": ""}]
    assert set(exposed) == {"80/tcp", "90/udp", "91/udp", "53/tcp"}
