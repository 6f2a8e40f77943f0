#!/usr/bin/env python3
"""Fails when an integration test keeps a local copy of a shared helper.

The suite's helpers live in tests/integration/support/ (each module lists
what it shares in __all__) and its fixtures in tests/integration/conftest.py.
A test file that defines a function or class under one of those names has
a copy that drifts from the shared one (four versions of wait_for, one with
its arguments reversed, is how this check came about): use the shared one,
and where the copy behaved differently, give the shared one a parameter.
Methods of a class are left alone (Client.current is not support.current).
Run by `make lint`; reads the files only (ast), so it needs no Postgres.
"""
import ast
import glob
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
INTEGRATION = os.path.join(HERE, "integration")


def shared_names():
    """{name: where it is shared} from support/*.py's __all__ and conftest's fixtures."""
    names = {}
    for path in sorted(glob.glob(os.path.join(INTEGRATION, "support", "*.py"))):
        for node in ast.parse(open(path).read(), path).body:
            if (isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__"
                                                      for t in node.targets)
                    and isinstance(node.value, (ast.List, ast.Tuple))):
                for elt in node.value.elts:
                    if isinstance(elt, ast.Constant) and isinstance(elt.value, str):
                        names[elt.value] = "support/" + os.path.basename(path)
    conftest = os.path.join(INTEGRATION, "conftest.py")
    for node in ast.parse(open(conftest).read(), conftest).body:
        if isinstance(node, ast.FunctionDef) and any("fixture" in ast.unparse(d) for d in node.decorator_list):
            names[node.name] = "conftest.py (fixture)"
    return names


def local_definitions(tree):
    """(name, line) of every function and class the file defines, at any
    depth, except methods (whatever is defined directly in a class body)."""
    found = []

    def walk(node, in_class):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                if not in_class:
                    found.append((child.name, child.lineno))
                walk(child, isinstance(child, ast.ClassDef))
            else:
                walk(child, in_class and not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)))
    walk(tree, False)
    return found


def main():
    shared = shared_names()
    if len(shared) < 20:
        print("check_test_helpers: found only %d shared names; support/ moved?" % len(shared))
        return 1
    bad = []
    files = sorted(glob.glob(os.path.join(INTEGRATION, "test_*.py")))
    for path in files:
        for name, line in local_definitions(ast.parse(open(path).read(), path)):
            if name in shared:
                bad.append("%s:%d: defines %s, a copy of %s's" % (os.path.relpath(path, os.path.dirname(HERE)),
                                                                   line, name, shared[name]))
    for b in bad:
        print(b)
    if bad:
        print("check_test_helpers: %d local copies of shared helpers (use the shared one; give it a parameter"
              " where the copy differs)" % len(bad))
        return 1
    print("check_test_helpers: %d test files, %d shared names, no local copy" % (len(files), len(shared)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
