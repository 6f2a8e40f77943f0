#!/usr/bin/env python3
"""The layer check behind `make lint`: every file under proxy/<layer>/
includes only headers of its own layer and of the layers its folder's
README.md names on its "May include:" line. The READMEs are the one place
the layering is written down, so the rule and its description cannot drift."""
import os
import re
import sys

top = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "proxy")
layers = sorted(d for d in os.listdir(top) if os.path.isdir(os.path.join(top, d)))
allowed, home, problems = {}, {}, []

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
    for f in sorted(os.listdir(os.path.join(top, layer))):
        if not f.endswith((".c", ".h")):
            continue
        for n, line in enumerate(open(os.path.join(top, layer, f)), 1):
            m = re.match(r'\s*#\s*include\s+"([^"]+)"', line)
            if not m:
                continue
            target = home.get(m.group(1))
            if target is None:
                problems.append(f"proxy/{layer}/{f}:{n}: includes {m.group(1)}, which no layer has")
            elif target not in allowed[layer]:
                problems.append(f"proxy/{layer}/{f}:{n}: {layer} includes {m.group(1)} from {target}; "
                                f"proxy/{layer}/README.md allows {', '.join(sorted(allowed[layer]))}")

for p in problems:
    print(p)
print(f"layers: {len(layers)} folders, {len(problems)} problems")
sys.exit(1 if problems else 0)
