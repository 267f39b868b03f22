"""The import rules of bench/ (.ci/run runs this; exit 1 on a finding): no cycle between modules or
between parts, no import of a higher layer (the order data -> codec -> diffusion -> metrics -> report,
the commands and the CLI on top), no private name imported from another module. Every import
counts, at module level or inside a function; `if TYPE_CHECKING:` blocks do not.
Usage: python .ci/check_layers.py [REPO]"""

import ast
import sys
from pathlib import Path

LAYERS = [  # lowest first; a module takes the layer of its longest matching prefix
    "bench.utils",
    "bench.download bench.images bench.weight_files bench.decode_record bench.sampler_facts",
    "bench.data",
    "bench.config",  # its schema takes the dataset names from the data registry
    "bench.training",
    "bench.codec",
    "bench.points",
    "bench.diffusion",
    "bench.metrics",
    "bench.baselines",
    "bench.results",
    "bench.report bench.perf bench.gpu_check bench.preflight",
    "bench.commands",
    "bench.cli bench.__main__",
]
FACES: tuple[str, ...] = ("bench.data", "bench.diffusion")  # parts reached only through their package's __init__
RANK = {p: i for i, line in enumerate(LAYERS) for p in line.split()}
root = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
files = {
    ".".join(p.relative_to(root).with_suffix("").parts).removesuffix(".__init__"): p
    for p in sorted((root / "bench").rglob("*.py"))
}


def layer(m):
    hits = [p for p in RANK if m == p or m.startswith(p + ".")]
    return RANK[max(hits, key=len)] if hits else None


def deps(name, path):
    tree, out, bad = ast.parse(path.read_text()), set(), []
    skip = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for b in node.body
        for n in ast.walk(b)
    }
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = name.split(".")[: len(name.split(".")) - node.level + (path.name == "__init__.py")]
                base = ".".join(pkg + [base] if base else pkg)
            out |= {base} | {f"{base}.{a.name}" for a in node.names}
            bad += [
                f"{name} imports the private {base}.{a.name}"
                for a in node.names
                if a.name.startswith("_") and not a.name.startswith("__") and base.startswith("bench")
            ]
    return {d for d in out if d in files and d != name}, bad


graph, problems = {}, []
for name, path in files.items():
    graph[name], bad = deps(name, path)
    problems += bad
    if name != "bench" and layer(name) is None:
        problems.append(f"{name}: in no layer (add it to LAYERS)")
for name, ds in sorted(graph.items()):
    for d in sorted(ds):
        if None not in (layer(name), layer(d)) and layer(d) > layer(name):
            problems.append(f"{name} (layer {layer(name)}) imports {d} (layer {layer(d)})")
        problems += [
            f"{name} imports {d}: use the face {f}"
            for f in FACES
            if d.startswith(f + ".") and not (name == f or name.startswith(f + "."))
        ]


def cycles(g):  # strongly connected components of size > 1 (Tarjan, iterative enough for ~100 nodes)
    index, low, stack, found = {}, {}, [], []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in g.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            scc = stack[stack.index(v) :]
            del stack[stack.index(v) :]
            found.extend([sorted(scc)] if len(scc) > 1 else [])

    for v in list(g):
        if v not in index:
            visit(v)
    return found


def part(m):
    return ".".join(m.split(".")[:2])


parts = {}
for name, ds in graph.items():
    parts.setdefault(part(name), set()).update(part(d) for d in ds if part(d) != part(name))
problems += [f"module cycle: {' -> '.join(c)}" for c in cycles(graph)]
problems += [f"part cycle: {' -> '.join(c)}" for c in cycles(parts)]
print("\n".join(problems) or f"ok: {len(files)} modules, no cycle, no upward import")
sys.exit(1 if problems else 0)
