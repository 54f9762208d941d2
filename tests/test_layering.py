"""The folder layout is the data path, and imports follow it (read from the source's AST: every import,
at module level or inside a function, counts):

* leaf folders (drivers, policies, sim, safety) import none of the runtime, trainers, vehicles or benches;
* the runtime (rtctl.runtime, rtctl.chunking) imports no trainer, no vehicle code, no bench;
* vehicles import no trainer and no bench; trainers import no bench;
* no cycles between packages (a package = one folder; rtctl's top level — cli, config — is the app).
"""
import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"rtctl": "rtctl", "policies": "rtctl.policies", "sim": "rtctl.sim", "drivers": "rtctl.drivers",
           "safety": "rtctl.safety"}
LEAVES = ("rtctl.drivers", "rtctl.policies", "rtctl.sim", "rtctl.safety")
RUNTIME = ("rtctl.runtime", "rtctl.chunking")
FORBIDDEN = {  # importer prefix → imported prefixes it must not use
    **{leaf: ("rtctl.runtime", "rtctl.chunking", "rtctl.train", "rtctl.vehicles", "rtctl.bench") for leaf in LEAVES},
    **{r: ("rtctl.train", "rtctl.vehicles", "rtctl.bench") for r in RUNTIME},
    "rtctl.vehicles": ("rtctl.train", "rtctl.bench"),
    "rtctl.train": ("rtctl.bench",),
}


def modules() -> dict[str, Path]:
    out = {}
    for top, name in FOLDERS.items():
        for p in (ROOT / top).rglob("*.py"):
            rel = p.relative_to(ROOT / top).with_suffix("")
            parts = [name, *rel.parts]
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = p
    return out


def imports(mod: str, path: Path) -> set[str]:
    found = set()
    pkg = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = pkg.split(".")[: len(pkg.split(".")) - (node.level - 1)]
                base = ".".join(up + ([base] if base else []))
            found |= {base} | {f"{base}.{a.name}" for a in node.names}
    return {m for m in found if m == "rtctl" or m.startswith("rtctl.")}


def package(mod: str, mods: dict[str, Path]) -> str:
    """The folder a module lives in (a package's own __init__ belongs to the package)."""
    p = mods.get(mod)
    if p is not None and p.name == "__init__.py":
        return mod
    return mod.rsplit(".", 1)[0] if "." in mod else mod


def _resolve(name: str, mods: dict[str, Path]) -> str | None:
    while name and name not in mods:  # "from rtctl.x import name": the module, not the name
        name = name.rsplit(".", 1)[0] if "." in name else ""
    return name or None


def edges():
    mods = modules()
    out = defaultdict(set)
    for mod, path in mods.items():
        for imp in imports(mod, path):
            target = _resolve(imp, mods)
            if target is not None and target != mod:
                out[mod].add(target)
    return mods, out


def test_forbidden_imports():
    mods, graph = edges()
    bad = []
    for mod, targets in graph.items():
        for prefix, banned in FORBIDDEN.items():
            if mod == prefix or mod.startswith(prefix + "."):
                bad += [f"{mod} imports {t}" for t in targets if any(t == b or t.startswith(b + ".") for b in banned)]
    assert not bad, "\n".join(sorted(bad))


def test_no_package_cycles():
    mods, graph = edges()
    pkgs = defaultdict(set)
    for mod, targets in graph.items():
        a = package(mod, mods)
        for t in targets:
            b = package(t, mods)
            if a != b and not a.startswith(b + ".") and not b.startswith(a + "."):  # parent ↔ child is not a cycle
                pkgs[a].add(b)
    cycles, state = [], {}

    def visit(p, stack):
        state[p] = "open"
        for q in sorted(pkgs[p]):
            if state.get(q) == "open":
                cycles.append(" → ".join(stack[stack.index(q):] + [q]))
            elif q not in state:
                visit(q, stack + [q])
        state[p] = "done"

    for p in sorted(pkgs):
        if p not in state:
            visit(p, [p])
    assert not cycles, "\n".join(cycles)
