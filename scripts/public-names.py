#!/usr/bin/env python3
"""Counts the public names a crate shows its users: the items (types, traits, functions,
constants, macros, modules) reachable at its root and in its public modules, from rustdoc's
JSON (nightly). Usage: public-names.py CRATE [FEATURES]; prints `kind name` lines, then a count.
Re-exported crates (`pub use postgres;`) count as one name each."""
import json
import subprocess
import sys
from pathlib import Path

crate = sys.argv[1]
features = sys.argv[2:] and ["--features", sys.argv[2]] or []
subprocess.run(
    ["cargo", "+nightly", "rustdoc", "-q", "-p", crate, *features, "--",
     "-Z", "unstable-options", "--output-format", "json"],
    check=True,
)
target = Path(subprocess.check_output(
    ["cargo", "metadata", "--format-version", "1", "--no-deps"]).decode()
    and json.loads(subprocess.check_output(["cargo", "metadata", "--format-version", "1", "--no-deps"]))["target_directory"])
doc = json.loads((target / "doc" / f"{crate.replace('-', '_')}.json").read_text())
index = doc["index"]
seen = set()
names = []


def kind_of(item):
    inner = item["inner"]
    return next(iter(inner)) if isinstance(inner, dict) else inner


def walk(module_id, prefix):
    for child in index[str(module_id)]["inner"]["module"]["items"]:
        item = index.get(str(child))
        if item is None or item.get("visibility") != "public":
            continue
        kind = kind_of(item)
        if kind == "use":
            use = item["inner"]["use"]
            target_id = use.get("id")
            name = use["name"]
            if use.get("is_glob"):
                continue
            target_item = index.get(str(target_id)) if target_id is not None else None
            k = kind_of(target_item) if target_item else "re-export"
            if (prefix, name) not in seen:
                seen.add((prefix, name))
                names.append((k, prefix + name))
            continue
        if kind in ("impl",):
            continue
        name = item.get("name")
        if not name or (prefix, name) in seen:
            continue
        seen.add((prefix, name))
        names.append((kind, prefix + name))
        if kind == "module":
            walk(child, prefix + name + "::")


walk(doc["root"], "")
for kind, name in sorted(names, key=lambda n: n[1]):
    print(f"{kind:10} {name}")
print(f"{len(names)} public names")
