#!/usr/bin/env python3
"""The status-word check behind `make lint`: the words of a migration's
statuses and phases (expanding, backfilling, switched, rolling_back, ...)
are spelled in C in one place, proxy/engine/migration_lifecycle.c; every
other file asks it (mig_status_word, mig_phase_word, mig_status_sql_list,
mig_status_of_word, mig_word_in_progress). A second spelling is a second
definition that can drift, as "in progress" once had four.

The words are read from migration_lifecycle.c itself (its W_* defines and
its phase_words table), so a new status is checked as soon as it exists.
A C string literal of any other file under proxy/ or include/ is an
offence when it is exactly one of the words, or holds one as an SQL
literal ('active'). Three words are also ordinary words of other
domains and are not checked as whole literals (they are as SQL literals):
"idle" and "active" are a session's states in the relay and in
pg_stat_activity, "failed" a JSON count of refused and failed messages.

Prints FILE:LINE: "WORD" for each offence; exits 1 if there is any."""
import glob
import os
import re
import sys

TOP = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
HOME = "proxy/engine/migration_lifecycle.c"
OTHER_DOMAINS = {"idle", "active", "failed"}


def literals(text):
    """(line, content) of each C string literal, comments and character
    literals skipped."""
    i, line, n = 0, 1, len(text)
    while i < n:
        c = text[i]
        if c == "\n":
            line += 1
            i += 1
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            line += text.count("\n", i, j)
            i = j
        elif text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif c in "\"'":
            j, buf = i + 1, []
            while j < n and text[j] != c and text[j] != "\n":
                if text[j] == "\\" and j + 1 < n:
                    buf.append(text[j:j + 2])
                    j += 2
                else:
                    buf.append(text[j])
                    j += 1
            if c == '"':
                yield line, "".join(buf)
            i = j + 1
        else:
            i += 1


def words():
    with open(os.path.join(TOP, HOME), encoding="utf-8") as f:
        text = f.read()
    found = set(re.findall(r'#define\s+W_\w+\s+"(\w+)"', text))
    table = re.search(r"phase_words\[[^]]*\]\s*=\s*\{(.*?)\};", text, re.S)
    if table:
        found |= set(re.findall(r'"(\w+)"', table.group(1)))
    return found


def main():
    known = words()
    if len(known) < 8:
        print("%s: cannot read the status words (found %s)" % (HOME, sorted(known)))
        return 1
    whole = known - OTHER_DOMAINS
    sql = re.compile(r"'(%s)'" % "|".join(sorted(known)))
    bad = 0
    files = glob.glob(os.path.join(TOP, "proxy", "**", "*.c"), recursive=True)
    files += glob.glob(os.path.join(TOP, "include", "**", "*.h"), recursive=True)
    for path in sorted(files):
        rel = os.path.relpath(path, TOP)
        if rel == HOME:
            continue
        with open(path, encoding="utf-8") as f:
            text = f.read()
        for line, lit in literals(text):
            hits = ([lit] if lit in whole else []) + sql.findall(lit)
            for w in hits:
                print('%s:%d: "%s" is a status word: ask migration_lifecycle.h for it' % (rel, line, w))
                bad += 1
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
