#!/usr/bin/env python3
"""Fails if a crate's modules import each other in a circle.

For each crate directory given, every module under src/ (a file, or a directory's mod.rs) is a
node; an edge A -> B is a path `crate::B` (or `super::B` from a sibling) in A's code, or a name
the crate root re-exports from B (`crate::Name` for `pub use b::Name`); comments and
`#[cfg(doc)]` imports are left out (a doc link is not a dependency). Prints the graph's cycles,
if any, and exits 1; else prints each crate's module count and edge count.
"""
import re
import sys
from pathlib import Path


def modules(src: Path):
    found = {}
    for path in sorted(src.rglob("*.rs")):
        rel = path.relative_to(src).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] in ("lib", "main", "mod"):
            parts = parts[:-1]
        if not parts:
            continue  # the crate root re-exports; it is not a module of its own
        found["::".join(parts)] = path
    return found


def code(text: str) -> str:
    # Drop `#[cfg(doc)]` items (one statement), then comments.
    text = re.sub(r"#\[cfg\(doc\)\]\s*use[^;]*;", "", text)
    text = re.sub(r"//[^\n]*", "", text)
    return re.sub(r"/\*.*?\*/", "", text, flags=re.S)


def reexports(src: Path):
    """Names the crate root re-exports, by the module they come from."""
    root = src / "lib.rs"
    table = {}
    if not root.exists():
        return table
    text = code(root.read_text())
    for module, group in re.findall(r"pub(?:\(crate\))? use (\w+)::\{([^}]*)\}", text):
        for item in group.split(","):
            name = item.strip().split(" as ")[-1].strip()
            if name:
                table[name] = module
    for module, name in re.findall(r"pub(?:\(crate\))? use (\w+)::(\w+)\s*;", text):
        table[name] = module
    return table


def edges(mods, names_to_modules):
    graph = {m: set() for m in mods}
    names = sorted(mods, key=len, reverse=True)
    for mod, path in mods.items():
        body = code(path.read_text())
        # `use crate::{a, b::c}` groups: expand the first segment of each item.
        refs = set(re.findall(r"crate::([a-z_][a-z0-9_]*(?:::[a-z_][a-z0-9_]*)*)", body))
        for name in re.findall(r"crate::([A-Z]\w*)", body):
            refs.add(names_to_modules.get(name, ""))
        for group in re.findall(r"crate::\{([^}]*)\}", body):
            for item in group.split(","):
                first = item.strip().split("::")[0]
                refs.add(names_to_modules.get(first, first))
        parent = mod.rsplit("::", 1)[0] if "::" in mod else ""
        for sup in re.findall(r"super::([a-z_][a-z0-9_]*)", body):
            refs.add(f"{parent}::{sup}" if parent else sup)
        for ref in refs:
            target = next((n for n in names if ref == n or ref.startswith(n + "::")), None)
            if target and target != mod and not mod.startswith(target + "::") and not target.startswith(mod + "::"):
                graph[mod].add(target)
    return graph


def cycles(graph):
    found, state, stack = [], {}, []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                found.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def main():
    bad = False
    for crate in sys.argv[1:]:
        src = Path(crate) / "src"
        graph = edges(modules(src), reexports(src))
        loops = cycles(graph)
        count = sum(len(v) for v in graph.values())
        if loops:
            bad = True
            for loop in loops:
                print(f"{crate}: circle: {' -> '.join(loop)}")
        else:
            print(f"{crate}: {len(graph)} modules, {count} imports, no circle")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
