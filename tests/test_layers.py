"""The package's layers, written once, and checked on every module's imports.

A module may import modules of its own layer and of the layers below it, never of a layer above;
two service packages that must stay apart (the cluster and the web layer) never import each other;
and no module imports another module's private (underscore) names. docs/architecture.md draws
the same layers: keep the two in step.

Only the source is read (``ast``): nothing is imported, so the check also covers parts that need
optional dependencies. Imports under ``if TYPE_CHECKING:`` are for annotations only and are not
counted.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "python" / "sabot"

# Top to bottom. A module belongs to the entry with the longest matching dotted prefix.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("entry points", ("sabot.cli", "sabot.composable_launcher", "sabot.demo", "sabot.cluster.__main__")),
    ("public API", ("sabot.launcher", "sabot.distributed", "sabot.progress_bar")),
    ("node wiring", ("sabot.node",)),
    ("services", ("sabot.http", "sabot.cluster", "sabot.stream")),
    ("engine", ("sabot.engine",)),
    ("connectors", ("sabot.connectors",)),
    ("compute", ("sabot.columnar", "sabot.apply", "sabot.processors", "sabot.metrics")),
    ("native core and configuration", ("sabot._native", "sabot.config")),
    ("vocabulary", (
        "sabot.errors", "sabot.states", "sabot.version", "sabot.bounded_cache",
        "sabot.run_blocking", "sabot.durable", "sabot.mapped_file", "sabot.crc", "sabot.system",
        "sabot.logging_setup", "sabot.job_ids",
    )),
]

# Packages of one layer that must not know each other (in either direction).
APART: list[tuple[str, str]] = [("sabot.cluster", "sabot.http")]

# The root package re-exports the public API lazily; below the public API, import what you need
# from the module that defines it, so that no lower layer depends on the whole package.
ROOT = "sabot"
ROOT_ALLOWED_FROM = {"entry points", "public API"}


@dataclass(frozen=True)
class Import:
    importer: str
    target: str  # a module of the package
    name: str | None  # the name taken from it (``from target import name``), if any
    line: int


def _module_name(path: Path) -> tuple[str, bool]:
    parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    if is_package:
        parts.pop()
    return ".".join(parts), is_package


def _modules() -> dict[str, tuple[Path, bool]]:
    found = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        name, is_package = _module_name(path)
        found[name] = (path, is_package)
    return found


MODULES = _modules()


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    nodes: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            nodes.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return nodes


def _imports(module: str) -> list[Import]:
    path, is_package = MODULES[module]
    found: list[Import] = []
    for node in _import_nodes(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == ROOT or alias.name.startswith(ROOT + "."):
                    found.append(Import(module, alias.name, None, node.lineno))
            continue
        if node.level:
            base = module.split(".")
            if not is_package:
                base.pop()
            if node.level > 1:
                base = base[: len(base) - (node.level - 1)]
            target = ".".join(base + ([node.module] if node.module else []))
        elif node.module and (node.module == ROOT or node.module.startswith(ROOT + ".")):
            target = node.module
        else:
            continue
        for alias in node.names:
            submodule = f"{target}.{alias.name}"
            if submodule in MODULES:  # ``from . import transport``: the submodule itself
                found.append(Import(module, submodule, None, node.lineno))
            else:
                found.append(Import(module, target, alias.name, node.lineno))
    return found


def _layer_of(module: str) -> int | None:
    best: tuple[int, int] | None = None  # (prefix length, layer index)
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if module == prefix or module.startswith(prefix + "."):
                if best is None or len(prefix) > best[0]:
                    best = (len(prefix), index)
    return None if best is None else best[1]


def _package_of(module: str, packages: tuple[str, ...]) -> str | None:
    return next((p for p in packages if module == p or module.startswith(p + ".")), None)


ALL_IMPORTS = [imp for module in MODULES for imp in _imports(module)]


def test_every_module_has_a_layer():
    unplaced = [m for m in MODULES if m != ROOT and _layer_of(m) is None]
    assert not unplaced, f"add these modules to LAYERS (and docs/architecture.md): {unplaced}"


def upward_imports(imports: list[Import]) -> list[str]:
    upward = []
    for imp in imports:
        if imp.target == ROOT:
            continue
        here, there = _layer_of(imp.importer), _layer_of(imp.target)
        if here is not None and there is not None and there < here:
            upward.append(
                f"{imp.importer} (line {imp.line}, {LAYERS[here][0]}) imports {imp.target}"
                f" ({LAYERS[there][0]})"
            )
    return upward


def root_imports(imports: list[Import]) -> list[str]:
    return [
        f"{imp.importer} (line {imp.line}) imports {imp.name or ROOT} from the root package"
        for imp in imports
        if imp.target == ROOT
        and _layer_of(imp.importer) is not None
        and LAYERS[_layer_of(imp.importer)][0] not in ROOT_ALLOWED_FROM
    ]


def crossings(imports: list[Import], pair: tuple[str, str]) -> list[str]:
    found = []
    for imp in imports:
        here = _package_of(imp.importer, pair)
        there = _package_of(imp.target, pair)
        if here and there and here != there:
            found.append(f"{imp.importer} (line {imp.line}) imports {imp.target}")
    return found


def private_imports(imports: list[Import]) -> list[str]:
    return [
        f"{imp.importer} (line {imp.line}) imports {imp.name} from {imp.target}"
        for imp in imports
        if imp.name
        and imp.name.startswith("_")
        and not imp.name.startswith("__")
        and imp.target != imp.importer
    ]


def test_no_module_imports_a_layer_above_it():
    upward = upward_imports(ALL_IMPORTS)
    assert not upward, "imports that go up a layer:\n" + "\n".join(upward)


def test_root_package_only_imported_by_the_top_layers():
    offenders = root_imports(ALL_IMPORTS)
    assert not offenders, "\n".join(offenders)


@pytest.mark.parametrize("pair", APART, ids=lambda p: f"{p[0]}-{p[1]}")
def test_packages_kept_apart(pair):
    found = crossings(ALL_IMPORTS, pair)
    assert not found, f"{pair[0]} and {pair[1]} must not import each other:\n" + "\n".join(found)


def test_no_module_imports_private_names_of_another():
    private = private_imports(ALL_IMPORTS)
    assert not private, "\n".join(private)


def test_no_module_touches_private_attributes_of_an_imported_module():
    offenders = []
    for module, (path, _) in MODULES.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        bound = {}  # local name -> module it was bound to by an import
        for node in _import_nodes(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith(ROOT):
                        bound[alias.asname or alias.name.split(".")[0]] = alias.name
        for imp in _imports(module):
            if imp.name is None and imp.target != module:
                bound.setdefault(imp.target.rsplit(".", 1)[-1], imp.target)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and isinstance(node.value, ast.Name)
                and node.value.id in bound
            ):
                offenders.append(f"{module} (line {node.lineno}) uses {node.value.id}.{node.attr}")
    assert not offenders, "\n".join(offenders)


def test_each_rule_reports_a_breach():
    """The rules are only worth something if they can fail: each one is fed an import that
    breaks it, alongside the real ones, and must name it."""
    engine_to_cluster = Import("sabot.engine.runtime", "sabot.cluster.worker", None, 7)
    assert any("sabot.engine.runtime (line 7" in line for line in upward_imports(ALL_IMPORTS + [engine_to_cluster]))
    cluster_to_http = Import("sabot.cluster.worker", "sabot.http.server", None, 8)
    assert crossings([cluster_to_http], APART[0]) and not upward_imports([cluster_to_http])
    engine_to_root = Import("sabot.engine.runtime", ROOT, "process", 9)
    assert root_imports([engine_to_root])
    private = Import("sabot.cluster.worker", "sabot.engine.runtime", "_pool", 10)
    assert private_imports([private]) == ["sabot.cluster.worker (line 10) imports _pool from sabot.engine.runtime"]
    # A submodule taken by ``from . import name`` is the submodule, not a name of the package.
    assert Import("sabot.cluster.worker", "sabot.cluster.transport", None, 39) in _imports("sabot.cluster.worker")


def test_architecture_doc_draws_the_same_layers():
    """docs/architecture.md's layer table lists the layers of LAYERS, in order, with the same
    modules (``http/`` is the package sabot.http, ``cluster/__main__`` the module)."""
    doc = (PACKAGE_DIR.parents[1] / "docs" / "architecture.md").read_text()
    rows = []
    for line in doc.split("## Layers", 1)[1].split("\n## ", 1)[0].splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and cells[1].startswith("`"):
            names = re.findall(r"`([^`]+)`", cells[1])
            rows.append((cells[0], tuple(sorted("sabot." + n.strip("/").replace("/", ".") for n in names))))
    assert rows == [(name, tuple(sorted(prefixes))) for name, prefixes in LAYERS]


def test_architecture_doc_maps_every_module():
    """The folder map of docs/architecture.md names every module (a package it describes as a
    whole, like ``cluster/protocol/``, covers its modules)."""
    doc = (PACKAGE_DIR.parents[1] / "docs" / "architecture.md").read_text()
    doc = doc.split("## Folder map", 1)[1].split("\n## ", 1)[0]
    missing = []
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        rel = path.relative_to(PACKAGE_DIR).as_posix()
        if path.name in ("__init__.py", "__main__.py"):
            continue
        parents = [rel.rsplit("/", n)[0] + "/" for n in range(1, rel.count("/") + 1)]
        if f"`{rel}`" not in doc and not any(f"`{p}`" in doc for p in parents):
            missing.append(rel)
    assert not missing, f"add to docs/architecture.md's folder map: {missing}"
