"""The import rules of DESIGN.md, checked on the code itself:

- TensorFlow never enters the napari process: importing the package and every module the GUI
  loads leaves ``tensorflow`` and ``keras`` out of ``sys.modules``;
- the core knows nothing of the GUI: no core module imports Qt, magicgui or napari, nor
  ``napari_patchheat._qt``, at module level (napari itself checks this with import-linter);
- no import cycle between the package's modules.

Each import check runs in a fresh interpreter, since this pytest process imports TensorFlow
elsewhere.
"""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import napari_patchheat

PACKAGE = "napari_patchheat"
SRC = Path(napari_patchheat.__file__).parent
# modules that exist to run TensorFlow: imported only by the inference worker
TF_MODULES = {f"{PACKAGE}.inference"}
# the napari side: the GUI package and the npe2 adapters
GUI_PREFIXES = (f"{PACKAGE}._qt", f"{PACKAGE}._reader", f"{PACKAGE}._writer",
                f"{PACKAGE}._sample_data")
GUI_LIBRARIES = ("qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "magicgui", "napari", "vispy",
                 f"{PACKAGE}._qt")


def all_modules() -> list[str]:
    return sorted(m.name for m in pkgutil.walk_packages(napari_patchheat.__path__, f"{PACKAGE}."))


def core_modules() -> list[str]:
    return [m for m in all_modules() if not m.startswith(GUI_PREFIXES)]


def gui_side_modules() -> list[str]:
    return [m for m in all_modules()
            if m not in TF_MODULES and not m.startswith(f"{PACKAGE}.models.")]


def loaded_after_import(modules: list[str], names: tuple[str, ...]) -> list[str]:
    """Of ``names`` (packages or modules), those in ``sys.modules`` of a fresh interpreter after
    importing ``modules``: a name counts when it or one of its submodules was loaded."""
    code = ("import sys\n" + "".join(f"import {m}\n" for m in modules)
            + f"print(sorted(n for n in {names!r} "
            "if any(m == n or m.startswith(n + '.') for m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return ast.literal_eval(out.stdout.strip().splitlines()[-1])


def test_package_grid_and_widget_side_modules_do_not_import_tensorflow():
    modules = gui_side_modules()
    assert f"{PACKAGE}.grid" in modules and f"{PACKAGE}._qt.widget" in modules
    assert loaded_after_import([PACKAGE, *modules], ("tensorflow", "keras")) == []


def test_the_tensorflow_check_can_fail():
    assert loaded_after_import([f"{PACKAGE}.grid", "tensorflow"], ("tensorflow", "keras")) != []


def test_core_modules_import_no_gui_library():
    modules = core_modules()
    assert f"{PACKAGE}.cli" in modules and f"{PACKAGE}.slide" in modules
    assert not any(m.startswith(GUI_PREFIXES) for m in modules)
    assert loaded_after_import(modules, GUI_LIBRARIES) == []


def test_the_gui_library_check_can_fail():
    loaded = loaded_after_import([f"{PACKAGE}._qt.widgets"], GUI_LIBRARIES)
    assert {"magicgui", f"{PACKAGE}._qt"} <= set(loaded)


def module_level_imports(path: Path, name: str, lazy: bool = False) -> set[str]:
    """Package modules that ``path`` (module ``name``) imports at module level, outside
    ``if TYPE_CHECKING:`` blocks; with ``lazy``, also inside functions."""
    is_pkg = path.name == "__init__.py"
    base = name.split(".") if is_pkg else name.split(".")[:-1]
    found: set[str] = set()
    tree = ast.parse(path.read_text())
    for node in _statements(tree.body, lazy):
        if isinstance(node, ast.ImportFrom):
            parent = base[: len(base) - node.level + 1] if node.level else []
            target = ".".join(parent + ([node.module] if node.module else []))
            if node.level:
                found.add(target)
                found.update(f"{target}.{a.name}" for a in node.names)
            elif target.startswith(PACKAGE):
                found.add(target)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith(PACKAGE))
    return found


def _statements(nodes, lazy: bool):
    """The nodes of ``nodes`` outside ``if TYPE_CHECKING:`` blocks; with ``lazy``, also every
    node nested in them (function bodies, ``try``, ``with``, ...)."""
    for node in nodes:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from _statements(node.orelse, lazy)
            continue
        yield node
        if lazy:
            yield from _statements(ast.iter_child_nodes(node), lazy)


def import_graph(lazy: bool = False) -> dict[str, set[str]]:
    """Module -> the package modules it imports at module level (with ``lazy``, anywhere)."""
    names = set(all_modules())
    graph = {}
    for name in names:
        rel = Path(*name.split(".")[1:])
        path = SRC / rel / "__init__.py" if (SRC / rel).is_dir() else SRC / rel.with_suffix(".py")
        graph[name] = {m for m in module_level_imports(path, name, lazy)
                       if m in names and m != name}
    return graph


# DESIGN.md's arrows, as layers: a module imports (even lazily) only from its layer or below
LAYERS = (
    ("grid", "density", "files", "messages"),
    ("slide", "options", "test_time", "heatmap", "extract", "pipeline", "cache", "manifest",
     "grid_picture", "focus"),  # what napari shows, read first
    ("console",),  # the command line's terminal (the cache's warnings as lines)
    ("tissue", "models", "export", "samples", "roi", "analysis",
     "session"),  # a session's files (the viewer's side: _qt/session_io.py)
    ("inference",),
    ("runner", "run_watch", "warm"),
    ("jobs",),  # the headless job: `patchheat run`'s, and each batch task's
    ("batch",),  # dask.distributed: run_batch, the tasks on the workers
    # the napari side, and the command line (`patchheat open` starts napari)
    ("_qt", "_reader", "_writer", "_sample_data", "cli"),
    ("_script",),  # the console script: imports cli, imported by nothing
)


def layer_of(module: str) -> int:
    top = module.split(".")[1] if module.count(".") else ""
    return next((i for i, names in enumerate(LAYERS) if top in names), -1)


def upward_imports(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """(importer, imported) pairs of ``graph`` whose import goes up the LAYERS."""
    return sorted((m, n) for m, deps in graph.items() for n in deps
                  if layer_of(n) > layer_of(m) >= 0)


def test_imports_point_down_the_layers():
    graph = import_graph(lazy=True)
    unplaced = sorted({m.split(".")[1] for m in graph if m.count(".") and layer_of(m) < 0})
    assert unplaced == [], "place these modules in LAYERS"
    assert graph[f"{PACKAGE}.slide.tiff_level"] >= {f"{PACKAGE}.grid"}
    assert upward_imports(graph) == []


def test_the_layer_check_can_fail():
    graph = {f"{PACKAGE}.slide.tiff_level": {f"{PACKAGE}.inference", f"{PACKAGE}.grid"}}
    assert upward_imports(graph) == [(f"{PACKAGE}.slide.tiff_level", f"{PACKAGE}.inference")]


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle of ``graph`` (its modules in order), or [] when there is none."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = 2
        path.pop()
        return []

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return []


def test_no_import_cycle_even_through_imports_inside_functions():
    graph = import_graph(lazy=True)
    assert graph[f"{PACKAGE}._qt.widget"] >= {f"{PACKAGE}._qt.run_panel", f"{PACKAGE}.grid"}
    assert f"{PACKAGE}.batch" in graph[f"{PACKAGE}.cli"]  # imported inside a function only
    assert f"{PACKAGE}.batch" not in import_graph()[f"{PACKAGE}.cli"]
    assert find_cycle(graph) == []
    importers = sorted(m for m, deps in graph.items() if f"{PACKAGE}.cli" in deps)
    assert importers == [f"{PACKAGE}._script"]  # the console script alone


def test_a_cycle_through_an_import_inside_a_function_fails_the_check(tmp_path):
    (tmp_path / "a.py").write_text("from .b import f\n")
    (tmp_path / "b.py").write_text("def f():\n    from .a import g\n    return g\n")
    names = {f"{PACKAGE}.a": tmp_path / "a.py", f"{PACKAGE}.b": tmp_path / "b.py"}

    def graph(lazy):
        return {n: module_level_imports(path, n, lazy) & set(names) for n, path in names.items()}

    assert find_cycle(graph(lazy=False)) == []
    assert find_cycle(graph(lazy=True)) == [f"{PACKAGE}.a", f"{PACKAGE}.b", f"{PACKAGE}.a"]


def test_the_cycle_check_can_fail():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]


@pytest.mark.parametrize("name", napari_patchheat.__all__)
def test_public_names_resolve(name):
    assert getattr(napari_patchheat, name).__name__ == name


MAX_MODULE_LINES = 500  # STYLE.md: a module longer than this holds two concerns


def oversized(paths) -> list[str]:
    """Of ``paths``, the files over MAX_MODULE_LINES lines, with their length."""
    lengths = ((p, len(p.read_text().splitlines())) for p in paths)
    return sorted(f"{p.name}: {n}" for p, n in lengths if n > MAX_MODULE_LINES)


def test_no_module_over_500_lines():
    modules = list(SRC.rglob("*.py"))
    assert len(modules) > 50 and SRC / "_qt" / "widget.py" in modules
    assert oversized(modules) == []


def test_the_size_check_can_fail(tmp_path):
    long = tmp_path / "long.py"
    long.write_text("x = 1\n" * (MAX_MODULE_LINES + 1))
    (tmp_path / "short.py").write_text("x = 1\n" * MAX_MODULE_LINES)
    assert oversized(sorted(tmp_path.glob("*.py"))) == [f"long.py: {MAX_MODULE_LINES + 1}"]
