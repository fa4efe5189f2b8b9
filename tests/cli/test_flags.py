"""Docker-style flag parsing (no daemon needed)."""

import pytest

from berth.cli.flags import Flag, UsageError, parse

FLAGS = [Flag("-q,--quiet"), Flag("-a,--all"), Flag("-f,--filter", "list"),
         Flag("--format", "str"), Flag("-n,--tail", "int")]


@pytest.mark.parametrize("argv,key,want", [
    (["-q"], "quiet", True),
    (["-aq"], "all", True),
    (["--quiet=false"], "quiet", False),
    (["-f", "a=1", "--filter=b=2", "-fc=3"], "filter", ["a=1", "b=2", "c=3"]),
    (["--format", "{{.ID}}"], "format", "{{.ID}}"),
    (["--format={{.ID}}"], "format", "{{.ID}}"),
    (["-n", "5"], "tail", 5),
    (["-n=7"], "tail", 7),
])
def test_parse(argv, key, want):
    values, pos = parse(FLAGS, argv)
    assert values[key] == want and pos == []


def test_positionals_interleave_and_double_dash():
    values, pos = parse(FLAGS, ["img", "-q", "--", "-a"])
    assert values["quiet"] and not values["all"] and pos == ["img", "-a"]


def test_not_interspersed_stops_at_first_positional():
    values, pos = parse(FLAGS, ["-q", "busybox", "sh", "-a"], interspersed=False)
    assert values["quiet"] and not values["all"] and pos == ["busybox", "sh", "-a"]


@pytest.mark.parametrize("argv,msg", [
    (["--bogus"], "unknown flag: --bogus"),
    (["-z"], "unknown shorthand flag: 'z' in -z"),
    (["--format"], "flag needs an argument: --format"),
    (["-n", "x"], 'invalid argument "x" for "-n" flag'),
])
def test_errors(argv, msg):
    with pytest.raises(UsageError) as e:
        parse(FLAGS, argv)
    assert e.value.message.startswith(msg) and e.value.status == 125
