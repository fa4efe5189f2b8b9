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


TEMPLATES = [
    "{{", "{{.Nope}}", "{{.ID.X}}", "{{nofunc .ID}}", "{{end}}", "{{if .ID}}", "{{json}}",
    "{{(.ID}}", '{{"abc}}', "{{len .}}", "{{index .ID 1}}", "{{slice .ID 0 3}}",
    '{{range $i, $e := split .Repository "/"}}[{{$i}}={{$e}}]{{end}}',
    "{{$x := .ID}}{{$x}}{{$.Tag}}", '{{printf "%q %d %5.2f|%-8s|%x" .Tag 3 1.5 .Tag 255}}',
    '{{if eq .Tag "latest"}}L{{else if eq .Tag "v1"}}V{{else}}O{{end}} after',
    '{{html "<a>"}} {{urlquery "a b"}} {{js "x\'y"}}', "table {{.ID}}\t{{.Nope}}",
]


@pytest.mark.parametrize("tmpl", TEMPLATES)
def test_templates_and_their_errors_as_docker(daemon, tmpl):
    """Go's template semantics and error texts: the docker CLI formats the same rows."""
    for args in (["images", "busybox", "--format", tmpl],
                 ["history", "busybox", "--format", tmpl.replace(".Repository", ".ID")
                  .replace(".Tag", ".CreatedBy")]):
        ours = daemon.berth(*args, check=False)
        theirs = daemon.docker(*args, check=False)
        assert (ours.returncode, ours.stdout, ours.stderr) == \
            (theirs.returncode, theirs.stdout, theirs.stderr), args


@pytest.mark.parametrize("tmpl", ["{{.Nope}}", "{{.Config.Nope.X}}", "{{index .RepoTags 5}}",
                                  "{{", "{{.Id}} {{.Metadata.LastTagTime}}",
                                  "{{range $i, $e := .RepoTags}}{{$i}}={{$e}} {{end}}",
                                  # the typed struct docker tries first: ID, nil slices, times
                                  "{{.ID}} {{.Metadata}} {{.RootFS}} {{.Config.Cmd}}",
                                  "{{.Config.ExposedPorts}} {{json .Config.Labels}}"])
def test_inspect_templates_as_docker(daemon, tmpl):
    args = ["image", "inspect", "busybox", "two/layers:1", "nosuch", "-f", tmpl]
    ours = daemon.berth(*args, check=False)
    theirs = daemon.docker(*args, check=False)
    assert (ours.returncode, ours.stdout, ours.stderr) == \
        (theirs.returncode, theirs.stdout, theirs.stderr)


USAGE = [["images", "a", "b"], ["images", "--bogus"], ["tag", "x"], ["save"], ["history"],
         ["image", "inspect"], ["image", "prune", "x"], ["image", "ls", "a", "b"], ["rmi"],
         ["load", "x"], ["images", "-x"], ["images", "--format"],
         ["save", "-o", "/nonexistent/x.tar", "busybox"], ["save", "-o", "/tmp", "busybox"]]


@pytest.mark.parametrize("args", USAGE, ids=[" ".join(a) for a in USAGE])
def test_usage_errors_as_docker(daemon, args):
    ours = daemon.berth(*args, check=False)
    theirs = daemon.docker(*args, check=False)
    # docker 28 prints "SRun" where it means "Run" after an at-most error (a cobra slip)
    want = theirs.stderr.replace("docker", "berth").replace("\nSRun ", "\nRun ")
    assert (ours.returncode, ours.stderr) == (theirs.returncode, want)
