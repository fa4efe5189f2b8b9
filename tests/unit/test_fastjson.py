import json

import pytest

from berth import fastjson

SAMPLES = [
    {"ociVersion": "1.1.0", "process": {"args": ["sh", "-c", "echo é ☃"], "env": []}},
    [1, -2, 3.5, 1e300, -0.0, True, False, None, "", "\u0000\n\t\"\\"],
    "just a string",
    12345678901234567890,
    {"nested": {"deep": [[[{}]]]}},
]


@pytest.mark.parametrize("value", SAMPLES)
def test_round_trip_matches_stdlib(value):
    text = fastjson.dumps(value)
    assert text == json.dumps(value, separators=(",", ":"))
    assert fastjson.loads(text) == value
    assert fastjson.loads(json.dumps(value, indent=2)) == value


def test_sort_keys():
    assert fastjson.dumps({"b": 1, "a": 2}, sort_keys=True) == '{"a":2,"b":1}'


def test_bytes_and_bom():
    assert fastjson.loads(b'\xef\xbb\xbf {"a": 1}\n') == {"a": 1}


@pytest.mark.parametrize("bad", ["", "   ", '{"a": 1} x', '{"a":', "[1,]", "{'a': 1}", "nul"])
def test_rejects_what_stdlib_rejects(bad):
    with pytest.raises(ValueError):
        json.loads(bad)
    with pytest.raises(fastjson.JSONDecodeError):
        fastjson.loads(bad)


def test_unserialisable_is_type_error():
    with pytest.raises(TypeError, match="set"):
        fastjson.dumps({"a": {1, 2}})
    # a failed call leaves no cycle marker behind
    d = {"x": [1]}
    assert fastjson.dumps(d) == '{"x":[1]}'


def test_import_is_light():
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import berth.fastjson"],
        capture_output=True, text=True, check=True,
    ).stderr
    imported = {line.split("|")[-1].strip() for line in out.splitlines()[1:]}
    assert "re" not in imported and "json" not in imported


def test_errors_without_stdlib_json_loaded():
    # _json looks its error class up in sys.modules; in a fresh process json is not there.
    import subprocess
    import sys

    code = (
        "import sys\nfrom berth import fastjson\nassert 'json' not in sys.modules\n"
        "for bad in ['{not json', '[1, 2', '\"abc', '{\"a\" 1}']:\n"
        "    try:\n        fastjson.loads(bad)\n    except fastjson.JSONDecodeError as e:\n"
        "        print(e)\n    else:\n        raise SystemExit('accepted ' + bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 4 and all("line 1 column" in line for line in lines)
