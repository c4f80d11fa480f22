"""The package's import structure: one direction between layers, no cycles, and function-local
imports only in the face layer (the command line, the server, the package root), each saying why.

    python -m pytest tests/test_layers.py -q      # the check CI runs with the suite

The layers, lowest first (README, "Layout"): what a layer imports comes from its own
layer or below.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"
LAYERS: dict[str, int] = {
    # 1: configuration and primitives that know nothing of the method
    "rodi.version": 1, "rodi.config": 1, "rodi.variants": 1, "rodi.atomic": 1, "rodi.cache": 1,
    "rodi.distributed": 1,
    # 2: files to tensors (data) and tensors to files (viz: pictures, media: videos); the networks
    "rodi.data": 2, "rodi.models": 2, "rodi.viz": 2, "rodi.media": 2,
    # 3: the objective and its variants' terms
    "rodi.objectives": 3,
    # 4: the training state, step and loop
    "rodi.training": 4,
    # 5: inference: load, prepare, transfer, interpolate, retarget
    "rodi.inference": 5,
    # 6: evaluation: metrics, judges, probes, reports, benchmark
    "rodi.evaluation": 6,
    # 7: the face: command line, server, the package root's lazy API
    "rodi.cli": 7, "rodi.serve": 7, "rodi": 7,
}
FACE = {"rodi.cli", "rodi.serve", "rodi"}
# function-local imports below the face that are there for another reason than start-up time
EXEMPT = {
    ("rodi.data.mocap", "pybullet"): "pybullet prints its build time to stdout from C when "
                                     "imported: only rendering (with that output silenced) "
                                     "imports it",
    ("rodi.data.tracks", "cv2"): "OpenCV is the optional extra rodi[tracks]: imported where "
                                 "footage is tracked, so rodi works without it",
    ("rodi.data.tracks", "norfair"): "norfair is the optional extra rodi[tracks], as OpenCV",
    ("rodi.evaluation.keypoints", "mediapipe"): "MediaPipe is the optional extra "
                                                "rodi[keypoints]: imported where keypoints are "
                                                "judged, so rodi works without it",
    ("rodi.evaluation.keypoints", "mediapipe.python.solutions"): "the same optional extra",
}


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted((SRC / "rodi").rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _unit(module: str) -> str:
    """The layer table's entry a module belongs to (its package, or itself)."""
    best = max((k for k in LAYERS if module == k or module.startswith(k + ".")), key=len)
    return best


def _imports(module: str, path: Path):
    """(imported rodi module, names, line, function-local?) for every import in the file."""
    tree = ast.parse(path.read_text())
    top = {id(node) for node in tree.body}
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            names = [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, [], node.lineno, id(node) not in top
            continue
        else:
            continue
        yield name, names, node.lineno, id(node) not in top


def _edges():
    modules = _modules()
    for module, path in modules.items():
        for name, names, line, local in _imports(module, path):
            if name != "rodi" and not name.startswith("rodi."):
                continue
            targets = [f"{name}.{n}" if f"{name}.{n}" in modules else name for n in names] or [name]
            for target in targets:
                yield module, target, line, local


def test_every_module_is_in_a_layer():
    assert all(_unit(m) for m in _modules())


def test_imports_go_to_the_same_layer_or_below():
    upward = [f"{SRC / a.replace('.', '/')}:{line}: {a} (layer {LAYERS[_unit(a)]}) imports {b} "
              f"(layer {LAYERS[_unit(b)]})"
              for a, b, line, _ in _edges() if LAYERS[_unit(b)] > LAYERS[_unit(a)]]
    assert not upward, "\n".join(upward)


@pytest.mark.parametrize("level", ["package", "module"])
def test_there_is_no_import_cycle(level):
    """No cycle between the layer table's entries, nor between modules."""
    graph: dict[str, set[str]] = {}
    for a, b, _, _ in _edges():
        if level == "package":
            a, b = _unit(a), _unit(b)
        if a != b:
            graph.setdefault(a, set()).add(b)
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(trail[trail.index(nxt):] + [nxt]) if nxt in trail
                              else nxt)
            elif nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, "\n".join(cycles)


def test_function_local_imports_are_only_in_the_face_and_say_why():
    """Below the face, every import is at the top of its module. In the face, a function-local
    import defers torch (or gradio) for start-up time and says so in a comment: on its line, on
    the line above, or for a block of them above the first."""
    misplaced, silent = [], []
    for module, path in _modules().items():
        lines = path.read_text().splitlines()
        for name, _, line, local in _imports(module, path):
            if not local:
                continue
            where = f"{path}:{line}: import of {name}"
            if (module, name) in EXEMPT:
                continue
            if module not in FACE:
                misplaced.append(where)
                continue
            block = line - 1  # 0-based index of the import; walk up through the imports above it
            while block > 0 and lines[block - 1].strip().startswith(("from ", "import ")):
                block -= 1
            commented = any("#" in lines[i] for i in range(block, line))
            if not commented and not (block > 0 and lines[block - 1].strip().startswith("#")):
                silent.append(where)
    assert not misplaced, "function-local imports below the face:\n" + "\n".join(misplaced)
    assert not silent, "function-local imports without a comment saying why:\n" + "\n".join(silent)
