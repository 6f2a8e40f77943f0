#!/usr/bin/env python3
"""The layer check behind `make lint`: every file under proxy/<layer>/ and
include/<layer>/ (the layer's headers, as PgBouncer keeps include/ beside
src/) includes only headers of its own layer and of the layers its folder's
README.md names on its "May include:" line. A layer's subfolders (such as
engine/ops/) are part of it. The READMEs are the one place the layering is
written down, so the rule and its description cannot drift."""
import os
import re
import sys

repo = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
top = os.path.join(repo, "proxy")
inc = os.path.join(repo, "include")
layers = sorted(d for d in os.listdir(top) if os.path.isdir(os.path.join(top, d)))
allowed, home, problems = {}, {}, []


def sources(layer):
    """The layer's files under proxy/ and include/, its subfolders' included,
    as (tree, path relative to the layer)."""
    out = []
    for tree in (top, inc):
        root = os.path.join(tree, layer)
        out += [(tree, os.path.relpath(os.path.join(d, f), root)) for d, _, fs in os.walk(root) for f in fs]
    return sorted(out)


def layer_of(tree, layer, f, name):
    """The layer of the header `name` included by <tree>/<layer>/<f>: like the
    compiler, the including file's folder first, then the layers' include
    folders (the Makefile's -Iinclude/<layer>)."""
    near = os.path.normpath(os.path.join(tree, layer, os.path.dirname(f), name))
    if os.path.exists(near):
        return os.path.relpath(near, tree).split(os.sep)[0]
    return home.get(name)


for layer in layers:
    readme = os.path.join(top, layer, "README.md")
    if not os.path.exists(readme):
        problems.append(f"proxy/{layer}: no README.md")
        continue
    m = re.search(r"^May include:(.*)$", open(readme).read(), re.M)
    if not m:
        problems.append(f"proxy/{layer}/README.md: no 'May include:' line")
        continue
    names = [n.strip(" .`") for n in m.group(1).split(",") if n.strip(" .`")]
    allowed[layer] = {layer} | {n for n in names if n != "nothing"}
    for d, _, fs in os.walk(os.path.join(inc, layer)):
        for f in fs:
            if f.endswith(".h"):
                home[os.path.relpath(os.path.join(d, f), os.path.join(inc, layer))] = layer
    problems += [f"proxy/{layer}/{f}: a header belongs in include/{layer}/"
                 for d, _, fs in os.walk(os.path.join(top, layer)) for f in fs if f.endswith(".h")]

for tree, name in ((top, "proxy"), (inc, "include")):
    stray = [f for f in os.listdir(tree) if f.endswith((".c", ".h")) or
             (os.path.isdir(os.path.join(tree, f)) and f not in layers)]
    problems += [f"{name}/{f}: outside every layer folder" for f in stray]

for layer in allowed:
    for tree, f in sources(layer):
        if not f.endswith((".c", ".h")):
            continue
        shown = f"{os.path.basename(tree)}/{layer}/{f}"
        for n, line in enumerate(open(os.path.join(tree, layer, f)), 1):
            m = re.match(r'\s*#\s*include\s+"([^"]+)"', line)
            if not m:
                continue
            target = layer_of(tree, layer, f, m.group(1))
            if target is None:
                problems.append(f"{shown}:{n}: includes {m.group(1)}, which no layer has")
            elif target not in allowed[layer]:
                problems.append(f"{shown}:{n}: {layer} includes {m.group(1)} from {target}; "
                                f"proxy/{layer}/README.md allows {', '.join(sorted(allowed[layer]))}")

for p in problems:
    print(p)
print(f"layers: {len(layers)} folders, {len(problems)} problems")
sys.exit(1 if problems else 0)
