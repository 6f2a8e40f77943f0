#!/usr/bin/env python3
"""The call-cycle check behind `make lint`: among the files of proxy/online/
(the runner and its parts, the backfill, the cutover, the fleet), no file
calls a function of a file that calls back into it, directly or through
others; and no module (a name's .c under proxy/ and .h under include/
together: session.c and session.h are module session) includes itself
through others, so a module's private header cannot point back at its
public one. A lower
part that needs to tell an upper one something reports it through a
callback the upper one gave it (runner_internal.h: runner_report), so each
file can be read with only the files below it in mind.

A file calls another when its code names a function the other defines
without `static` (comments and string literals left out). Prints each
cycle, as FILE -> FILE -> ..., and exits 1 if there is any."""
import glob
import os
import re
import sys

TOP = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
CODE = re.compile(r'/\*.*?\*/|//[^\n]*|"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'', re.S)
DEFINITION = re.compile(r"^(?!static\b)(?:[A-Za-z_][\w\s\*]*?[\s\*])(\w+)\(([^;{]*?)\)\s*\{", re.M)
NAME = re.compile(r"\b(\w+)\s*\(")


def stripped(path):
    with open(path, encoding="utf-8") as f:
        return CODE.sub(lambda m: " " * 0 if m.group(0)[0] in "/" else '""', f.read())


def cycles(graph):
    """Each cycle once, as a list of nodes (Tarjan's strongly connected
    components of more than one node, or a node that reaches itself)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph.get(v, ()):
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def call_graph():
    files = sorted(glob.glob(os.path.join(TOP, "proxy", "online", "*.c")))
    text = {f: stripped(f) for f in files}
    owner = {}
    for f in files:
        for m in DEFINITION.finditer(text[f]):
            owner.setdefault(m.group(1), f)
    graph = {}
    for f in files:
        called = {owner[n] for n in NAME.findall(text[f]) if n in owner and owner[n] != f}
        graph[os.path.relpath(f, TOP)] = {os.path.relpath(g, TOP) for g in called}
    return graph


def include_graph():
    files = glob.glob(os.path.join(TOP, "include", "**", "*.h"), recursive=True) + \
        glob.glob(os.path.join(TOP, "proxy", "**", "*.c"), recursive=True)
    module = lambda path: os.path.splitext(os.path.basename(path))[0]
    modules = {module(f) for f in files}
    graph = {m: set() for m in modules}
    for path in files:
        with open(path, encoding="utf-8") as f:
            names = re.findall(r'^\s*#\s*include\s+"([^"]+)"', f.read(), re.M)
        graph[module(path)] |= {module(n) for n in names if module(n) in modules and module(n) != module(path)}
    return graph


def main():
    bad = 0
    for kind, graph in (("calls", call_graph()), ("includes", include_graph())):
        for comp in cycles(graph):
            print("%s cycle among: %s" % (kind, " <-> ".join(comp)))
            bad += 1
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
