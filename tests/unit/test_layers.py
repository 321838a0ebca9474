"""The shape of lykta (docs/architecture.md): imports point down, read from the source with ``ast``.

Floor: imports nothing of lykta. Storage: the floor and itself. Domain packages: the floor, storage and
themselves (never another domain package, never the simulators). Roof (``lykta``): anything; nothing imports it.
Inside a package, modules do not import each other in a circle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

FLOOR = "floor"
STORAGE = "storage"
DOMAIN = ("ingest", "rules", "cases", "dashboards", "simulators")
ROOF = "lykta"
PACKAGES = (FLOOR, STORAGE, *DOMAIN, ROOF)

ALLOWED: dict[str, set[str]] = {
    FLOOR: {FLOOR},
    STORAGE: {FLOOR, STORAGE},
    **{d: {FLOOR, STORAGE, d} for d in DOMAIN},
    ROOF: set(PACKAGES),
}


def imports_of(source: str, module: str) -> list[tuple[int, str]]:
    """(line, imported module) of every import in ``source``, at any depth (functions included)."""
    out: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the package of ``module``
                base = module.split(".")[: -node.level]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            out.append((node.lineno, name))
            # ``from pkg import mod`` imports pkg.mod
            out.extend((node.lineno, f"{name}.{alias.name}") for alias in node.names if name in PACKAGES)
    return out


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def wrong_way(name: str, source: str, where: str) -> list[str]:
    """The imports of module ``name`` that point the wrong way, as ``where:line: why``."""
    package = name.split(".", maxsplit=1)[0]
    problems = []
    for line, imported in imports_of(source, name):
        target = imported.split(".")[0]
        if target == ROOF and package != ROOF:
            problems.append(f"{where}:{line}: nothing may import the roof ({imported})")
        elif target in PACKAGES and target not in ALLOWED[package]:
            problems.append(f"{where}:{line}: {package} imports {imported}")
    return problems


def test_every_package_is_in_a_layer() -> None:
    on_disk = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests", "bench", "examples"}
    assert on_disk == set(PACKAGES), "a new package needs its place in docs/architecture.md and in this test"


def test_imports_point_down() -> None:
    problems = [
        problem
        for name, path in modules().items()
        for problem in wrong_way(name, path.read_text(), str(path.relative_to(ROOT)))
    ]
    assert not problems, "imports that point the wrong way:\n" + "\n".join(problems)


def test_no_circles_between_modules() -> None:
    found = modules()
    graph = {
        name: {imp for _, imp in imports_of(path.read_text(), name) if imp in found and imp != name}
        for name, path in found.items()
    }
    circles = []
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                circles.append(" -> ".join([*trail[trail.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not circles, "modules that import each other in a circle:\n" + "\n".join(circles)


@pytest.mark.parametrize(
    ("package", "source", "bad"),
    [
        ("floor", "from storage import cases", True),
        ("storage", "import rules.evaluate", True),
        ("rules", "from simulators.sun import is_dark", True),
        ("cases", "from lykta.config import Settings", True),
        ("ingest", "def f():\n    from cases import api\n", True),
        ("rules", "from storage.rules import Finding\nfrom floor.sun import dark_mask", False),
        ("lykta", "from cases import api\nfrom ingest import service", False),
    ],
)
def test_the_check_sees_wrong_imports(package: str, source: str, bad: bool) -> None:
    """The checker itself: an import that runs back up (even inside a function) is reported."""
    assert bool(wrong_way(f"{package}.probe", source, "probe.py")) == bad
