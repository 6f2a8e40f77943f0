#!/usr/bin/env python3
"""The layer check behind `make lint`: every file under proxy/<layer>/
includes only headers of its own layer and of the layers its folder's
README.md names on its "May include:" line. A layer's subfolders (such as
engine/ops/) are part of it. The READMEs are the one place the layering is
written down, so the rule and its description cannot drift."""
import os
import re
import sys

top = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "proxy")
layers = sorted(d for d in os.listdir(top) if os.path.isdir(os.path.join(top, d)))
allowed, home, problems = {}, {}, []


def sources(layer):
    """The layer's files, its subfolders' included, relative to the layer."""
    root = os.path.join(top, layer)
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


def layer_of(layer, f, name):
    """The layer of the header `name` included by proxy/<layer>/<f>: like the
    compiler, the including file's folder first, then the layers' folders."""
    near = os.path.normpath(os.path.join(top, layer, os.path.dirname(f), name))
    if os.path.exists(near):
        return os.path.relpath(near, top).split(os.sep)[0]
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
    for f in os.listdir(os.path.join(top, layer)):
        if f.endswith(".h"):
            home[f] = layer

stray = [f for f in os.listdir(top) if f.endswith((".c", ".h"))]
problems += [f"proxy/{f}: outside every layer folder" for f in stray]

for layer in allowed:
    for f in sources(layer):
        if not f.endswith((".c", ".h")):
            continue
        for n, line in enumerate(open(os.path.join(top, layer, f)), 1):
            m = re.match(r'\s*#\s*include\s+"([^"]+)"', line)
            if not m:
                continue
            target = layer_of(layer, f, m.group(1))
            if target is None:
                problems.append(f"proxy/{layer}/{f}:{n}: includes {m.group(1)}, which no layer has")
            elif target not in allowed[layer]:
                problems.append(f"proxy/{layer}/{f}:{n}: {layer} includes {m.group(1)} from {target}; "
                                f"proxy/{layer}/README.md allows {', '.join(sorted(allowed[layer]))}")

for p in problems:
    print(p)
print(f"layers: {len(layers)} folders, {len(problems)} problems")
sys.exit(1 if problems else 0)
