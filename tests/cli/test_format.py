"""The --format engine, docker's table writer and human-readable sizes (no daemon needed)."""

import pytest

from berth.cli.format import (
    Template,
    TemplateError,
    go_json,
    human_duration,
    human_size,
    render,
    tabwrite,
)

ROW = {"Repository": "busybox", "Tag": "latest", "ID": "0123456789ab", "Size": "4.26MB",
       "Names": ["a", "b"], "Labels": {"k": "v", "x": "<y>"}, "Count": 0, "Empty": ""}


@pytest.mark.parametrize("tmpl,want", [
    ("{{.Repository}}:{{.Tag}}", "busybox:latest"),
    ("{{.Missing}}", "<no value>"),
    ("{{join .Names \", \"}}", "a, b"),
    ("{{index .Labels \"k\"}}", "v"),
    ("{{range .Names}}[{{.}}]{{end}}", "[a][b]"),
    ("{{range .Nothing}}x{{else}}none{{end}}", "none"),
    ("{{if .Empty}}yes{{else}}no{{end}}", "no"),
    ("{{if eq .Tag \"latest\"}}L{{else if eq .Tag \"x\"}}X{{else}}O{{end}}", "L"),
    ("{{.Repository | upper}}", "BUSYBOX"),
    ("{{lower (upper .Tag)}}", "latest"),
    ("{{truncate .ID 5}}", "01234"),
    ("{{printf \"%s-%d\" .Tag 3}}", "latest-3"),
    ("{{len .Names}}", "2"),
    ("a {{- \" b \" -}} c", "a b c"),
    ("{{with .Labels}}{{.k}}{{end}}", "v"),
    ("{{range $k, $v := .Labels}}{{$k}}={{$v}};{{end}}", "k=v;x=<y>;"),
    ("{{range $i, $e := .Names}}{{$i}}{{$e}}{{end}}", "0a1b"),
    ("{{$x := .Tag}}{{$x}}-{{$.Repository}}", "latest-busybox"),
    ("{{if eq .Tag \"x\"}}X{{else if eq .Tag \"latest\"}}L{{else}}O{{end}} after", "L after"),
    ("{{slice .ID 0 3}}|{{index .ID 0}}|{{html \"<a>\"}}|{{urlquery \"a b&\"}}",
     "012|48|&lt;a&gt;|a+b%26"),
    ("{{printf \"%5.2f|%-4d|%x|%q|%T\" 1.5 7 255 .Tag .Count}}", " 1.50|7   |ff|\"latest\"|int64"),
    ("{{range $k, $v := .Labels}}{{end}}{{$k}}", None),  # out of scope
])
def test_template(tmpl, want):
    if want is None:
        with pytest.raises(TemplateError):
            Template(tmpl).render(ROW)
        return
    assert Template(tmpl).render(ROW) == want


def test_json_is_go_marshal():
    assert go_json({"b": 1, "a": "<none>"}) == '{"a":"\\u003cnone\\u003e","b":1}'
    assert Template("{{json .Labels}}").render(ROW) == '{"k":"v","x":"\\u003cy\\u003e"}'


def test_bad_templates_are_errors():
    for bad in ["{{.A", "{{if .A}}x", "{{nosuchfunc .A}}", "{{end}}"]:
        with pytest.raises(TemplateError):
            Template(bad).render(ROW)


def test_table_uses_docker_tabwriter_layout():
    rows = [{"Repository": "busybox", "Tag": "latest", "ID": "0123456789ab"},
            {"Repository": "docker.example/a/very-long-name", "Tag": "1", "ID": "ffff"}]
    out = render("table {{.Repository}}\\t{{.Tag}}\\t{{.ID}}", rows,
                 {"Repository": "REPOSITORY", "Tag": "TAG", "ID": "IMAGE ID"})
    assert out.splitlines() == [
        "REPOSITORY                        TAG       IMAGE ID",
        "busybox                           latest    0123456789ab",
        "docker.example/a/very-long-name   1         ffff",
    ]
    assert render("table {{.ID}}", [], {"ID": "IMAGE ID"}) == "IMAGE ID\n"
    assert render("{{.ID}}", rows, {}) == "0123456789ab\nffff\n"


def test_tabwrite_min_width():
    assert tabwrite(["a\tb", "cc\td"]) == "a         b\ncc        d\n"


@pytest.mark.parametrize("n,want", [(0, "0B"), (999, "999B"), (1000, "1kB"), (4261920, "4.26MB"),
                                    (1_234_567_890, "1.23GB"), (12_345, "12.3kB")])
def test_human_size(n, want):
    assert human_size(n) == want


def test_bytes_size_is_binary():
    from berth.cli.format import bytes_size

    assert bytes_size(25276502016) == "23.54GiB" and bytes_size(512) == "512B"


def test_human_size_precision_4():
    assert human_size(4261920, 4) == "4.262MB"


@pytest.mark.parametrize("s,want", [(0.5, "Less than a second"), (1, "1 second"),
                                    (59, "59 seconds"), (61, "About a minute"),
                                    (600, "10 minutes"), (3600, "About an hour"),
                                    (7200, "2 hours"), (3 * 86400, "3 days"),
                                    (20 * 86400, "2 weeks"), (90 * 86400, "3 months"),
                                    (800 * 86400, "2 years")])
def test_human_duration(s, want):
    assert human_duration(s) == want


@pytest.mark.parametrize("tmpl,msg", [
    # docker CLI 28's own words for each (checked side by side)
    ("{{", "template: :1: unclosed action"),
    ("{{nofunc .A}}", 'template: :1: function "nofunc" not defined'),
    ("{{if .A}}", "template: :1: unexpected EOF"),
    ("{{json}}", 'template: :1:2: executing "" at <json>: wrong number of args for json: '
                 "want 1 got 0"),
    ("{{.ID.X}}", 'template: :1:5: executing "" at <.ID.X>: can\'t evaluate field X in type '
                  "string"),
    ("{{.Nope}}", 'template: :1:2: executing "" at <.Nope>: can\'t evaluate field Nope in type '
                  "*formatter.imageContext"),
    ("{{index .Names 5}}", 'template: :1:2: executing "" at <index .Names 5>: error calling '
                           "index: index out of range: 5"),
])
def test_errors_in_gos_words(tmpl, msg):
    with pytest.raises(TemplateError) as e:
        Template(tmpl, context="*formatter.imageContext").render(ROW)
    assert e.value.message == msg


def test_inspect_mode_missing_key_is_an_error():
    with pytest.raises(TemplateError) as e:
        Template("{{.Config.Nope.X}}", missing="error").render({"Config": {}})
    assert e.value.message == ('template: :1:9: executing "" at <.Config.Nope.X>: map has no '
                               'entry for key "Nope"')
