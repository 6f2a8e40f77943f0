#!/usr/bin/env python3
"""The comment check behind `make lint`: every file name a comment gives must
name a file of this repository, so that a comment cannot keep pointing at a
file that was renamed, split or removed.

Comments (and Python docstrings) of the C sources, the tests, the benchmarks
and the Makefile are read for names ending in a source or document
extension:

- a name with a folder (`proxy/relay/session.c`, `engine/step_run.c`,
  `tests/integration/conftest.py`) must exist relative to the repository's
  top, to proxy/ or include/ (where the layer folders are), or to the commenting file's
  own folder;
- a bare name (`session.h`, `neonfront.py`) must be the name of a file
  somewhere in the repository.

System headers (`<...>`), URLs, names with wildcards or placeholders (`*`,
`%`, `<layer>`, `cutover-DATE.json`) and absolute paths are not file names
of this repository; nor are the files of other projects that comments cite
as models and the user's own files, listed in FOREIGN below, each with why
it is there.

Prints FILE:LINE: names MISSING for each offence; exits 1 if there is any."""
import io
import os
import re
import subprocess
import sys
import tokenize

TOP = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

SCANNED = ["proxy/**/*.c", "include/**/*.h", "tests/unit/*.c", "tests/fuzz/*.c", "tests/**/*.py", "tests/*.sh",
           "bench/*.sh", "bench/*.py", "Makefile"]

# Files that are not this repository's, named in comments as the model or the
# source of something here, or as a file of the user's. None of them is (or
# should become) a file of this repository.
FOREIGN = {
    # Postgres's own sources, whose behaviour the SCRAM code and its tests follow
    "src/backend/libpq/auth-scram.c": "Postgres: the server side of SCRAM (relay/scram.c)",
    "src/interfaces/libpq/fe-auth-scram.c": "Postgres: libpq's side of SCRAM (relay/scram.c)",
    "src/common/saslprep.c": "Postgres: pg_saslprep (relay/saslprep.h)",
    "src/test/authentication/t/002_saslprep.pl": "Postgres: the SASLprep cases the tests reuse",
    "src/include/nodes/parsenodes.h": "Postgres: where CURSOR_OPT_HOLD comes from (relay/pin.c)",
    # the user's files, at run time
    "config/users.json": "the default users file, written by `pgtandem passwd` (not shipped)",
    "__init__.py": "a Python package's own file, in an Alembic versions folder (importer/alembic_chain.h)",
}

# A placeholder in a name: bench/results/cutover-DATE.json
PLACEHOLDER = re.compile(r"[-_][A-Z]{2,}(?=[-_.])")

# A name (with or without folders) ending in one of these extensions.
NAME = re.compile(r"(?<![\w./$%*<{-])((?:[\w.-]+/)*[\w-][\w.-]*\.(?:c|h|py|sh|md|json|sql|js|mjs|pl))(?![\w/*%>}-])")
BARE_EXTS = (".c", ".h", ".py", ".sh")
URL = re.compile(r"\b[a-z][a-z0-9+.-]*://\S+")
SYSTEM_HEADER = re.compile(r"<[\w./+-]+\.h>")


def tracked():
    out = subprocess.run(["git", "-C", TOP, "ls-files", "--cached", "--others", "--exclude-standard"],
                         capture_output=True, text=True, check=True).stdout
    return [f for f in out.splitlines() if os.path.exists(os.path.join(TOP, f))]


def glob_re(pattern):
    """A SCANNED pattern as a regex: * within a folder, **/ across folders (or none)."""
    parts = re.split(r"(\*\*/|\*)", pattern)
    return re.compile("".join("(?:.*/)?" if p == "**/" else "[^/]*" if p == "*" else re.escape(p)
                              for p in parts) + r"\Z")


def scanned(files):
    patterns = [glob_re(p) for p in SCANNED]
    return [f for f in files if any(p.match(f) for p in patterns)]


def c_comments(text):
    """(line, text) of every comment of a C file, outside strings and
    character constants."""
    out, i, line, n = [], 0, 1, len(text)
    while i < n:
        ch = text[i]
        if ch == "\n":
            line += 1
            i += 1
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            end = n if end < 0 else end + 2
            for k, part in enumerate(text[i:end].split("\n")):
                out.append((line + k, part))
            line += text.count("\n", i, end)
            i = end
        elif text.startswith("//", i):
            end = text.find("\n", i)
            end = n if end < 0 else end
            out.append((line, text[i:end]))
            i = end
        elif ch in "\"'":
            j = i + 1
            while j < n and text[j] != ch and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            i = j + 1
        elif ch == "#" and text[text.rfind("\n", 0, i) + 1:i].strip() == "":
            # a preprocessor line: an #include is code (the layer check's), not a comment
            m = re.match(r"#\s*include\b[^\n]*", text[i:])
            i += m.end() if m else 1
        else:
            i += 1
    return out


def py_comments(path, text):
    """(line, text) of every comment and docstring (a string that is a
    statement of its own) of a Python file."""
    out, prev = [], tokenize.NEWLINE
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type == tokenize.COMMENT:
                out.append((tok.start[0], tok.string))
            elif tok.type == tokenize.STRING and prev in (tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
                                                          tokenize.NL, tokenize.ENCODING):
                for k, part in enumerate(tok.string.split("\n")):
                    out.append((tok.start[0] + k, part))
            if tok.type not in (tokenize.NL, tokenize.COMMENT):
                prev = tok.type
    except (tokenize.TokenError, SyntaxError) as e:
        print("%s: cannot tokenize (%s)" % (path, e), file=sys.stderr)
    return out


def hash_comments(text):
    """(line, text) of every # comment of a shell script or the Makefile:
    a # at the start of a word, outside quotes."""
    out = []
    for no, line in enumerate(text.split("\n"), 1):
        if no == 1 and line.startswith("#!"):
            continue
        quote = None
        for i, ch in enumerate(line):
            if quote:
                if ch == quote:
                    quote = None
            elif ch in "\"'":
                quote = ch
            elif ch == "#" and (i == 0 or line[i - 1] in " \t;") and not line[max(0, i - 2):i].endswith("$"):
                out.append((no, line[i:]))
                break
    return out


def comments(path, text):
    if path.endswith((".c", ".h")):
        return c_comments(text)
    if path.endswith(".py"):
        return py_comments(path, text)
    return hash_comments(text)


def main():
    files = tracked()
    present = set(files)
    basenames = {os.path.basename(f) for f in files}
    problems, checked = [], sorted(scanned(files))
    for f in checked:
        with open(os.path.join(TOP, f), errors="replace") as fh:
            text = fh.read()
        here = os.path.dirname(f)
        for no, comment in comments(f, text):
            comment = SYSTEM_HEADER.sub(" ", URL.sub(" ", comment))
            for m in NAME.finditer(comment):
                name = m.group(1).rstrip(".")
                if name in FOREIGN or PLACEHOLDER.search(name):
                    continue
                if "/" in name:
                    if any(os.path.normpath(c) in present for c in (name, os.path.join("proxy", name),
                                                                     os.path.join("include", name),
                                                                     os.path.join(here, name))):
                        continue
                elif not name.endswith(BARE_EXTS) or name in basenames:
                    continue
                problems.append("%s:%d: names %s MISSING" % (f, no, name))
    for p in problems:
        print(p)
    print("comment paths: %d files, %d problems" % (len(checked), len(problems)))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
