"""The berth CLI prints what the docker CLI prints, run against the same berthd."""

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.image.imagebuild import config_for, docker_archive, layer_tar

pytestmark = [pytest.mark.root, pytest.mark.interop]


@pytest.fixture(scope="module")
def daemon(busybox_tar):
    from tests.conftest import _start_berthd

    d = _start_berthd()
    try:
        # fixed creation times: "N hours ago" must not tick between the two CLIs' runs
        old = "2020-01-02T03:04:05Z"
        bb = busybox_tar.read_bytes()
        d.docker("load", input=docker_archive([([bb], ["busybox:latest"])], config=config_for(
            [bb], created=old, labels={"team": "core"})))
        d.docker("tag", "busybox", "localhost:5000/team/bb:v1")
        layers = [layer_tar([("file", "a", os.urandom(3000))]),
                  layer_tar([("file", "b", b"x" * 70)])]
        d.docker("load", input=docker_archive([(layers, ["two/layers:1"])],
                                              config=config_for(layers, created=old)))
        one = [layer_tar([("file", "c", b"c")])]
        d.docker("load", input=docker_archive([(one, [])],
                                              config=config_for(one, created=old)))
        yield d
    finally:
        d.stop()


SAME = [
    ["images"],
    ["images", "-a"],
    ["images", "-q"],
    ["images", "--no-trunc"],
    ["images", "--digests"],
    ["images", "busybox"],
    ["images", "--filter", "dangling=true"],
    ["images", "--filter", "dangling=false", "-q"],
    ["images", "--filter", "reference=*/team/*"],
    ["images", "--filter", "label=team=core", "--format", "{{.Repository}}"],
    ["images", "--format", "{{.Repository}}:{{.Tag}}"],
    ["images", "--format", "{{json .}}"],
    ["images", "--format", "table {{.ID}}\\t{{.Repository}}\\t{{.Size}}"],
    ["image", "ls", "--format", "{{.ID}} {{.CreatedSince}} {{.Size}} {{.Digest}}"],
    ["history", "busybox"],
    ["history", "--no-trunc", "two/layers:1"],
    ["history", "-q", "two/layers:1"],
    ["history", "--format", "{{.ID}}|{{.CreatedBy}}|{{.Size}}|{{.Comment}}", "two/layers:1"],
    ["image", "inspect", "busybox"],
    ["image", "inspect", "--format", "{{.Id}} {{json .RepoTags}} {{.Config.Labels}}",
     "busybox"],
    ["image", "inspect", "-f", "{{range .RootFS.Layers}}{{.}} {{end}}", "two/layers:1"],
    ["system", "df"],
    ["system", "df", "--format", "json"],
    ["system", "df", "-v"],
    ["history", "--human=false", "two/layers:1"],
    ["history", "-H=false", "--format", "{{.CreatedAt}} {{.Size}}", "two/layers:1"],
    ["history", "--format", "json", "two/layers:1"],
    ["image", "inspect", "--format", "json", "two/layers:1"],
    ["images", "--format", "json"],
    ["rmi", "nosuch"],
    ["image", "inspect", "nosuch"],
    ["tag", "nosuch", "x"],
    ["history", "nosuch"],
]


@pytest.mark.parametrize("args", SAME, ids=[" ".join(a) for a in SAME])
def test_same_output_as_docker_cli(daemon, args):
    ours = daemon.berth(*args, check=False)
    theirs = daemon.docker(*args, check=False)
    assert ours.returncode == theirs.returncode
    if args[0] == "images" or args[:2] == ["image", "ls"]:
        # the docker CLI prints one image's tags in Go map order (random): compare as sets
        a, b = ours.stdout.splitlines(), theirs.stdout.splitlines()
        fmt = args[args.index("--format") + 1] if "--format" in args else "table"
        head = 1 if fmt.startswith("table") and "-q" not in args else 0
        assert (a[:head], sorted(a[head:])) == (b[:head], sorted(b[head:]))
    else:
        assert ours.stdout == theirs.stdout
    assert ours.stderr.lower() == theirs.stderr.lower()


def test_cli_reaches_the_daemon_importing_little(daemon):
    """The CLI's hot path imports none of the costly modules."""
    code = (f"import sys; sys.path.insert(0, {str(REPO)!r}); from berth.cli.main import main; "
            f"sys.argv = ['berth', '-H', {daemon.host!r}, 'images', '-q']; main()")
    r = subprocess.run([sys.executable, "-X", "importtime", "-I", "-S", "-c", code],
                       capture_output=True, text=True, check=True)
    imported = {line.split("|")[-1].strip() for line in r.stderr.splitlines()[1:]}
    for heavy in ("json", "re", "socket", "argparse", "typing", "dataclasses", "h11",
                  "http.client", "enum"):
        assert heavy not in imported, heavy
