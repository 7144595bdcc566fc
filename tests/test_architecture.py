"""The layout's promises: the runtime never imports the builder's world, no wing imports a higher one, no cycles
(counting imports under TYPE_CHECKING and inside functions), the CLI stays light, exit codes are distinct, no module
outside the format specs branches on a format's name, and the README's repository map lists every module."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from builder import errors as builder_errors
from submission import errors as runtime_errors

ROOT = Path(__file__).resolve().parents[1]
# builder modules by layer: a module may import its own layer and lower ones, never a higher one
LAYERS = {"builder.errors": 0, "builder.environment": 0, "builder.metrics": 0, "builder.truth": 0,
          "builder.sample": 0, "builder.task": 0, "builder.platforms": 0, "builder.pack": 1, "builder.plan": 1, "builder.image": 2,
          "builder.validate": 3, "builder.export": 3, "builder.pipeline": 4, "builder.report": 4, "builder.cli": 5, "builder.__main__": 6}


def modules(package: str) -> dict[str, Path]:
    root = ROOT / package
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports(path: Path, module: str, top_level_only: bool = False) -> set[str]:
    """Absolute names of the modules ``path`` imports (function-level imports too unless ``top_level_only``)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".")[: -node.level + (1 if path.name == "__init__.py" else 0) or None]
                base = ".".join([*package, base] if base else package)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def layer(name: str) -> int | None:
    if name in ("builder", "builder.__version__"):  # the package itself holds only the version
        return 0
    for prefix, level in LAYERS.items():
        if name == prefix or name.startswith(prefix + "."):
            return level
    return None


def test_the_runtime_imports_nothing_of_the_builder_world():
    code = (
        "import importlib, pkgutil, sys, json, submission\n"
        "for m in pkgutil.walk_packages(submission.__path__, 'submission.'):\n"
        "    importlib.import_module(m.name)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('builder', 'typer', 'docker', 'rich'))))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert json.loads(proc.stdout) == []
    for name, path in modules("submission").items():
        assert not {i for i in imports(path, name) if i.split(".")[0] in ("builder", "typer", "docker", "rich")}, name


def test_no_builder_module_imports_a_higher_layer():
    for name, path in modules("builder").items():
        own = layer(name)
        assert own is not None, f"{name} is in no layer: add it to LAYERS"
        for imported in imports(path, name):
            other = layer(imported)
            assert other is None or other <= own, f"{name} (layer {own}) imports {imported} (layer {other})"


@pytest.mark.parametrize("package", ["builder", "submission"])
def test_no_import_cycles(package):
    """Every import counts: at the top, under TYPE_CHECKING, and inside functions."""
    found = modules(package)
    graph = {name: {i for i in imports(path, name) if i in found and i != name} for name, path in found.items()}

    def visit(node: str, trail: tuple[str, ...]) -> None:
        assert node not in trail, "import cycle: " + " -> ".join((*trail[trail.index(node):], node))
        for nxt in graph[node]:
            if not (nxt in trail[:1] and nxt.startswith(node)):  # a package importing its own submodule is fine
                visit(nxt, (*trail, node))

    for start in graph:
        visit(start, ())


@pytest.mark.parametrize("argv", [
    ["--help"],
    ["pack", "--help"],
    ["thresholds", "--oof", "{oof}", "--labels", "{labels}", "--out", "{out}"],
    ["validate", "--csv", "{oof}", "--sample-submission", "{oof}"],
])
def test_light_commands_never_import_torch(tmp_path, argv):
    (tmp_path / "oof.csv").write_text("id,a,b\nx,0.9,0.1\ny,0.2,0.8\n")
    (tmp_path / "labels.csv").write_text("id,a,b\nx,1,0\ny,0,1\n")
    argv = [a.format(oof=tmp_path / "oof.csv", labels=tmp_path / "labels.csv", out=tmp_path / "t.json") for a in argv]
    code = (
        "import json, sys\n"
        "from typer.testing import CliRunner\n"
        "from builder.cli import app\n"
        f"result = CliRunner().invoke(app, {argv!r})\n"
        "print(json.dumps([result.exit_code, sorted(m for m in ('torch', 'timm') if m in sys.modules)]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    code, heavy = json.loads(proc.stdout.splitlines()[-1])
    assert code == 0 and heavy == [], proc.stdout


def test_exit_codes_are_distinct_per_error_class():
    def subclasses(cls: type) -> list[type]:
        return [cls] + [s for c in cls.__subclasses__() for s in subclasses(c)]

    classes = subclasses(runtime_errors.SubmissionError) + subclasses(builder_errors.BuilderError)
    codes = [c.exit_code for c in classes]
    assert len(set(codes)) == len(codes), {c.__name__: c.exit_code for c in classes}
    assert not {builder_errors.CHECK_FAILED, builder_errors.USAGE, 0} & set(codes)
    readme = (ROOT / "README.md").read_text()
    for cls in classes:
        assert f"| {cls.exit_code} | `{cls.__name__}`" in readme, f"README lists no exit code for {cls.__name__}"


def _format_names() -> set[str]:
    from submission import formats

    return set(formats.FORMATS)


def _branches_on(node: ast.AST, names: set[str]) -> list[str]:
    """Format names a node compares with, looks up, maps, or matches."""
    def constants(n: ast.AST) -> list[str]:
        if isinstance(n, ast.Constant) and n.value in names:
            return [n.value]
        if isinstance(n, (ast.Tuple, ast.List, ast.Set)):
            return [c for e in n.elts for c in constants(e)]
        return []

    if isinstance(node, ast.Compare):
        return [c for side in (node.left, *node.comparators) for c in constants(side)]
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get":
        return [c for a in node.args for c in constants(a)]
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Dict):  # {"multiclass": "label", ...}[task]
        return [c for part in (*node.value.keys, *node.value.values) if part is not None for c in constants(part)]
    if isinstance(node, ast.MatchValue):
        return constants(node.value)
    return []


def test_no_module_outside_the_format_specs_branches_on_a_format_name():
    names = _format_names()
    outside = {**modules("builder"), **{n: p for n, p in modules("submission").items() if ".formats" not in n}}
    found = [f"{name} line {node.lineno}: {value!r}" for name, path in outside.items()
             for node in ast.walk(ast.parse(path.read_text())) for value in _branches_on(node, names)]
    assert not found, "format knowledge outside submission/formats/: " + "; ".join(found)


def test_the_format_name_check_catches_a_branch():
    names = _format_names()
    code = ('if fmt == "binary":\n    x = {"multiclass": "label"}[task]\nelif fmt in ("label", "labels"):\n'
            '    formats.get("probs")\nsettings = {"format": "binary"}  # data, not a branch\n')
    assert sorted(v for node in ast.walk(ast.parse(code)) for v in _branches_on(node, names)) == [
        "binary", "label", "label", "labels", "probs"]


def _readme_map() -> dict[str, set[str]]:
    """The README's repository map: folder -> the names listed under it ("builder/pack" -> {"bundle.py", ...})."""
    text = (ROOT / "README.md").read_text()
    block = text.split("## Repository", 1)[1].split("```", 2)[1]
    listed: dict[str, set[str]] = {}
    stack: list[tuple[int, str]] = []
    for line in block.splitlines():
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        entry = line.strip().split("  ")[0].strip()
        while stack and stack[-1][0] >= indent:
            stack.pop()
        folder = "/".join(name.rstrip("/") for _, name in stack)
        for name in (n.strip() for n in entry.split(",")):
            listed.setdefault(folder, set()).add(name)
        if entry.endswith("/"):
            stack.append((indent, entry))
    return listed


@pytest.mark.parametrize("package", ["builder", "submission"])
def test_the_readme_map_lists_every_module(package):
    listed = _readme_map()
    missing = []
    for path in sorted((ROOT / package).rglob("*.py")):
        relative = path.relative_to(ROOT)
        folder, name = relative.parent.as_posix(), relative.name
        if name == "__init__.py":  # a package is listed by its folder
            parent, _, leaf = folder.rpartition("/")
            if f"{leaf}/" not in listed.get(parent, set()) and folder != package:
                missing.append(folder + "/")
        elif name not in listed.get(folder, set()):
            missing.append(relative.as_posix())
    assert not missing, f"the README's repository map does not list: {', '.join(missing)}"
