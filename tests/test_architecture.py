"""The house rules of docs/architecture.md, checked on the package's own import statements (parsed, not run):
no import circles, data flows one way through the rooms' layers, no room reads another room's private helpers, and
the remote-code files import nothing beyond torch, transformers and each other."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "modeling_promptcam"
REMOTE_CODE = ("configuration_promptcam", "modeling_promptcam", "pipeline_promptcam")
# what the Hub's remote-code loader may find on any machine that runs transformers: torch, transformers, the
# standard library, and the sibling remote-code files (relative imports)
REMOTE_CODE_ALLOWED = {"torch", "transformers", "__future__"} | set(sys.stdlib_module_names)
# Pillow: transformers' image pipelines and image processors cannot run without it (its "vision" backend), but the
# model itself can, so the remote-code files import it only inside the functions that decode images (the decoding
# rule in pipeline_promptcam.py), never at module level (docs/architecture.md)
REMOTE_CODE_INSIDE_FUNCTIONS = {"PIL"}
# the rooms in the order data flows (docs/architecture.md): a room may import its own modules and rooms of a lower
# layer, never a higher one or one of the same layer
LAYERS = [
    {"model"},
    {"files", "extras", "compat", "ranges"},
    {"data"},
    {"convert", "training", "explain", "export"},
    {"evaluation", "taxonomy"},
    {"demo", "app"},
    {"cli"},
]
# modules at the package top that belong to a room: the remote-code files form the model, `python -m` is the CLI
ROOM_OF_TOP_MODULE = {name: "model" for name in REMOTE_CODE} | {"__main__": "cli"}
SHIMS = {
    "adapters",
    "backbones",
    "faithfulness",
    "faithfulness_eval",
    "hub",
    "img_focus",
    "linear_probe",
    "localization",
    "presets",
    "small_datasets",
    "synthetic",
    "visualization",
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in PACKAGE.rglob("*.py")}


def imports_of(path: Path) -> list[tuple[str, list[str], int]]:
    """Every import in the file (module level and inside functions): (absolute module, imported names, line)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(alias.name, [], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            found.append((target, [alias.name for alias in node.names], node.lineno))
    return found


def resolve(target: str, names: list[str], known: dict[str, Path]) -> list[str]:
    """The package modules an import statement loads (`from .pkg import submodule` names the submodule)."""
    resolved = [target] if target in known else []
    resolved += [f"{target}.{name}" for name in names if f"{target}.{name}" in known]
    return resolved


def room_of(module: str) -> str:
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else ""
    return ROOM_OF_TOP_MODULE.get(top, top)


def layer_of(room: str) -> int | None:
    return next((index for index, rooms in enumerate(LAYERS) if room in rooms), None)


def graph() -> dict[str, set[str]]:
    known = modules()
    edges = {}
    for name, path in known.items():
        edges[name] = {
            module
            for target, names, _ in imports_of(path)
            for module in resolve(target, names, known)
            if module != name
        }
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state, stack = {}, []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        stack.append(node)
        for successor in sorted(edges.get(node, ())):
            if state.get(successor) == "open":
                return stack[stack.index(successor) :] + [successor]
            if successor not in state and (cycle := visit(successor)):
                return cycle
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_package_has_no_import_circle():
    assert find_cycle(graph()) is None, f"import circle: {' -> '.join(find_cycle(graph()))}"


def test_the_cycle_finder_finds_a_circle():
    # the check above can fail: a planted circle is found, a chain is not
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_every_module_belongs_to_a_room_of_a_known_layer():
    unplaced = [
        name
        for name in modules()
        if name != "modeling_promptcam" and room_of(name) not in SHIMS and layer_of(room_of(name)) is None
    ]
    assert not unplaced, f"modules outside the layers of docs/architecture.md: {unplaced}"


def test_data_flows_one_way_through_the_layers():
    wrong = []
    for name, targets in graph().items():
        source = room_of(name)
        if name == "modeling_promptcam" or source in SHIMS:
            continue  # the package's own __init__ and the compatibility shims re-export from the rooms
        for target in targets:
            destination = room_of(target)
            if destination == source or target == "modeling_promptcam":
                continue
            if destination in SHIMS:
                wrong.append(f"{name} imports the deprecated path {target}")
            elif layer_of(destination) >= layer_of(source):
                wrong.append(f"{name} (layer {layer_of(source)}) imports {target} (layer {layer_of(destination)})")
    assert not wrong, "\n".join(wrong)


def test_no_room_imports_private_helpers_of_another_room():
    known = modules()
    wrong = []
    for name, path in known.items():
        for target, names, line in imports_of(path):
            if not target.startswith("modeling_promptcam") or room_of(target) == room_of(name):
                continue
            private = [imported for imported in names if imported.startswith("_") and imported != "__version__"]
            if private:
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {private} from {target}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("name", REMOTE_CODE)
def test_remote_code_files_import_only_torch_transformers_and_each_other(name):
    path = PACKAGE / f"{name}.py"
    assert remote_code_import_problems(path.read_text(encoding="utf-8")) == [], (
        f"{name}.py imports what a Hub folder cannot carry: {remote_code_import_problems(path.read_text('utf-8'))}"
    )


def remote_code_import_problems(source: str) -> list[str]:
    """The imports of a remote-code file beyond torch, transformers, the standard library and its siblings; Pillow
    is allowed inside functions only."""
    tree = ast.parse(source)
    inside_functions = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        for inner in ast.walk(node)
    }
    wrong = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            if node.level != 1 or node.module not in REMOTE_CODE:
                wrong.append(f"line {node.lineno}: from {'.' * node.level}{node.module or ''} import ...")
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            allowed = REMOTE_CODE_ALLOWED | (REMOTE_CODE_INSIDE_FUNCTIONS if id(node) in inside_functions else set())
            roots = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module]
            wrong += [f"line {node.lineno}: {root}" for root in roots if root.split(".")[0] not in allowed]
    return wrong


def test_the_remote_code_check_allows_pillow_only_inside_functions():
    # the check above can fail: Pillow at module level, numpy anywhere and a relative import of a room are caught
    assert remote_code_import_problems("def f():\n    from PIL import Image\n") == []
    assert remote_code_import_problems("from PIL import Image\n") == ["line 1: PIL"]
    assert remote_code_import_problems("def f():\n    import numpy\n") == ["line 2: numpy"]
    assert remote_code_import_problems("from .data import images\n") == ["line 1: from .data import ..."]
