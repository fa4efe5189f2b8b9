"""The layering rule (docs/ARCHITECTURE.md "Layers of code"): a package imports only packages
of a lower rank. Packages of one rank are siblings and do not import each other."""

import ast
from pathlib import Path

BERTH = Path(__file__).resolve().parents[2] / "berth"

RANK = {
    "cli": 9,
    "api": 8,
    "engine": 7,
    "build": 6,
    "distribution": 5,
    "image": 4,
    "network": 4,
    "shim": 3,
    "runtime": 2,
    "linux": 1,
    # shared, importing nothing of berth's
    "errors": 0,
    "atomic": 0,
    "fastjson": 0,
    "units": 0,
    "__version__": 0,
}


def _imports(path: Path, module: list[str]):
    tree = ast.parse(path.read_text())
    package = module if path.name == "__init__.py" else module[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = base + (node.module.split(".") if node.module else [])
            else:
                target = (node.module or "").split(".")
            if target == ["berth"]:
                targets = [["berth", a.name] for a in node.names]
            else:
                targets = [target]
        elif isinstance(node, ast.Import):
            targets = [a.name.split(".") for a in node.names]
        else:
            continue
        for t in targets:
            if len(t) >= 2 and t[0] == "berth":
                yield t[1], node.lineno


def test_packages_import_only_downwards():
    wrong = []
    for path in sorted(BERTH.rglob("*.py")):
        rel = path.relative_to(BERTH.parent).with_suffix("")
        module = list(rel.parts)
        if module[-1] == "__init__":
            module = module[:-1]
        if len(module) < 2:
            continue
        src = module[1]
        assert src in RANK, f"{src}: a new package needs a rank in this test and in ARCHITECTURE.md"
        for dst, line in _imports(path, module):
            if dst == src:
                continue
            assert dst in RANK, f"{path}:{line}: berth.{dst} has no rank"
            if RANK[dst] >= RANK[src]:
                wrong.append(f"{path.relative_to(BERTH.parent)}:{line}: {src} imports {dst}")
    assert not wrong, "imports against the layering:\n" + "\n".join(wrong)
