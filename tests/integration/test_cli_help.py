"""The CLI explains itself: every command's --help/-h prints usage on stdout
and exits 0; `pgtandem proxy --help` lists every flag of the settings tables
with its default and config key; every flag the README and the documents
under doc/ show is in the help of the command it belongs to; doc/configuration.md
is what doc/gen_configuration.py writes from the binary (`make docs`); the
README opens with the two commands and links every document, and every
relative link of the documentation leads to a file and heading that exist;
the config file's unknown-key error lists every key; ports given as 0 are
logged as bound; `migrate lint DIR` leaves psql scripts alone.

The lists checked here are read from the C tables (proxy/base/settings_table.c,
proxy/base/config.c) and the dispatch in proxy/cli/migrate_cli.c, so a flag
or command added there without help fails a test."""
import difflib
import glob
import os
import re
import select
import subprocess
import sys
import time

import pytest

from support import BIN, port_open, run_pgtandem, TOP


def source(path):
    with open(os.path.join(TOP, path)) as f:
        return f.read()


def numeric_settings():
    """(name, flag, default) of every SETTINGS entry with a flag."""
    out = []
    for m in re.finditer(r'\{"(\w+)",\s*"(--[\w-]+)",\s*SETTING_(\w+),\s*([^,]+),\s*([^,]+),\s*([^,]+),',
                         source("proxy/base/settings_table.c")):
        name, flag, kind, default = m.group(1), m.group(2), m.group(3), m.group(6).strip()
        shown = ("true" if float(default) else "false") if kind == "BOOL" else "%.15g" % float(default)
        out.append((name, flag, shown))
    return out


def string_options():
    """(flag, config key or None, default as shown) of config.c's OPTIONS table."""
    text = source("proxy/base/config.c")
    table = text[text.index("static const struct config_option OPTIONS[]"):]
    table = table[:table.index("{NULL, NULL")]
    out = []
    for m in re.finditer(r'\{"(--[\w-]+)",\s*(NULL|"\w+"),\s*"[^"]*",\s*\w+,\s*"((?:[^"\\]|\\.)*)"', table):
        key = None if m.group(2) == "NULL" else m.group(2).strip('"')
        out.append((m.group(1), key, m.group(3)))
    return out


def migrate_commands():
    """Every command migrate_main dispatches on."""
    text = source("proxy/cli/migrate_cli.c")
    main = text[text.index("int migrate_main("):]
    return sorted(set(re.findall(r'strcmp\(cmd, "(\w+)"\)', main)))


def run_ok(args):
    r = run_pgtandem(args, timeout=30)
    assert r.returncode == 0, (args, r.returncode, r.stderr)
    assert r.stderr == "", (args, r.stderr)
    assert r.stdout.startswith("usage:"), (args, r.stdout[:200])
    return r.stdout


def test_the_tables_were_read():
    assert len(numeric_settings()) >= 15, numeric_settings()
    assert len(string_options()) >= 17, string_options()
    assert {"start", "status", "complete", "rollback", "plan", "lint", "convert"} <= set(migrate_commands())


HELP_ARGS = [["help"], ["--help"], ["-h"], ["help", "proxy"], ["help", "migrate"], ["help", "passwd"],
             ["proxy", "--help"], ["proxy", "-h"], ["migrate", "--help"], ["migrate", "-h"], ["migrate", "help"],
             ["passwd", "--help"], ["passwd", "-h"], ["version", "--help"], ["version", "-h"],
             # after other flags, as a user adds it to a command line that failed
             ["proxy", "--listen", "127.0.0.1:1", "--help"], ["migrate", "plan", "x.sql", "--db", "u", "-h"],
             ["passwd", "app", "--file", "/nonexistent/x.json", "--help"]]


@pytest.mark.parametrize("args", HELP_ARGS, ids=" ".join)
def test_help_exits_zero_with_usage_on_stdout(args):
    run_ok(args)


def test_every_migrate_command_has_help():
    overview = run_ok(["migrate", "--help"])
    for cmd in migrate_commands():
        assert re.search(r"^  %s\b" % cmd, overview, re.M), (cmd, overview)
        for flag in ("--help", "-h"):
            out = run_ok(["migrate", cmd, flag])
            assert out.startswith("usage: pgtandem migrate %s" % cmd), out
            assert "--help" in out


def block(help_text, flag):
    """The help lines of one flag: its line and the indented ones after it."""
    lines = help_text.splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^  %s( |$)" % re.escape(flag), line):
            j = i + 1
            while j < len(lines) and lines[j].startswith("    ") and not lines[j].lstrip().startswith("--"):
                j += 1
            return "\n".join(lines[i:j])
    return None


def test_proxy_help_lists_every_setting_with_default_range_and_key():
    out = run_ok(["proxy", "--help"])
    for name, flag, default in numeric_settings():
        b = block(out, flag)
        assert b, (flag, out)
        assert "default %s" % default in b, (flag, b)
        assert "config key: %s" % name in b, (flag, b)
        if default in ("true", "false"):   # a switch: no range
            assert "true or false" in b, (flag, b)
        else:
            assert re.search(r"from -?[\d.e+]+ to [\d.e+]+", b), (flag, b)
    for flag, key, default in string_options():
        b = block(out, flag)
        assert b, (flag, out)
        assert "default %s" % default in b, (flag, b)
        assert "config key: %s" % (key or "(none)") in b, (flag, b)
    for flag, words in (("--pool-mode", "session, transaction"), ("--client-tls", "disable, allow, require"),
                        ("--log-level", "error, warn, info, debug"), ("--auth", "passthrough, scram")):
        assert "one of " + words in block(out, flag), flag


def test_pgtandem_help_shows_every_proxy_flag():
    out = run_ok(["help"])
    for _, flag, _ in numeric_settings():
        assert block(out, flag), flag
    for flag, _, _ in string_options():
        assert block(out, flag), flag


# doc/configuration.md is left out: it is the help itself (checked against it below)
GENERATED_DOCS = ("doc/configuration.md",)


def doc_files():
    """README.md and the documents under doc/, as paths from the top of the checkout."""
    docs = sorted(os.path.relpath(p, TOP) for p in glob.glob(os.path.join(TOP, "doc", "*.md")))
    return ["README.md"] + docs


def readme_snippets():
    """Code of the README and the written documents: the lines of fenced blocks
    (with continuation lines joined) and inline spans."""
    text = "\n".join(source(p) for p in doc_files() if p not in GENERATED_DOCS)
    snippets = []
    for fenced in re.findall(r"```[a-z]*\n(.*?)```", text, re.S):
        snippets += fenced.replace("\\\n", " ").splitlines()
    prose = re.sub(r"```[a-z]*\n.*?```", "", text, flags=re.S)
    snippets += [s.replace("\n", " ") for s in re.findall(r"`([^`]{1,300})`", prose)]
    return snippets, prose


FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


def readme_flags():
    """{(command, subcommand or None): flags} the README and doc/ show after it."""
    snippets, prose = readme_snippets()
    commands = set(migrate_commands())
    wanted = {}
    for snip in snippets:
        snip = snip.split(" # ")[0]
        for m in re.finditer(r"pgtandem proxy\b(.*)", snip):
            wanted.setdefault(("proxy", None), set()).update(FLAG.findall(m.group(1)))
        for m in re.finditer(r"\bmigrate +(\w+)\b((?:(?!\bmigrate\b|pgtandem).)*)", snip):
            if m.group(1) in commands:
                wanted.setdefault(("migrate", m.group(1)), set()).update(FLAG.findall(m.group(2)))
    # the proxy's flag table: its first column
    for row in re.findall(r"^\| (`--[^|]*)\|", prose, re.M):
        wanted.setdefault(("proxy", None), set()).update(FLAG.findall(row))
    return wanted


def test_every_flag_the_readme_shows_is_in_its_commands_help():
    wanted = readme_flags()
    assert len(wanted.get(("proxy", None), ())) >= 20, wanted
    assert ("migrate", "start") in wanted and ("migrate", "lint") in wanted, wanted
    missing = []
    for (cmd, sub), flags in sorted(wanted.items(), key=str):
        out = run_ok([cmd, sub, "--help"] if sub else [cmd, "--help"])
        missing += ["%s %s %s" % (cmd, sub or "", f) for f in sorted(flags - {"--help"}) if not block(out, f)]
    assert not missing, missing


def test_configuration_md_is_generated_from_the_binary(tmp_path):
    out = tmp_path / "configuration.md"
    with open(out, "w") as f:
        r = subprocess.run([sys.executable, os.path.join(TOP, "doc", "gen_configuration.py"), BIN], stdout=f,
                           stderr=subprocess.PIPE, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    fresh = out.read_text()
    for flag, _, _ in string_options():
        assert flag in fresh, flag
    for name, flag, _ in numeric_settings():
        assert flag in fresh and "config key: " + name in fresh, flag
    assert "`max_app_p99_ms`" in fresh and "`drain_timeout_ms`" in fresh
    for cmd in migrate_commands():
        assert "### `pgtandem migrate %s`" % cmd in fresh, cmd
    if fresh != source("doc/configuration.md"):
        diff = "".join(difflib.unified_diff(source("doc/configuration.md").splitlines(True), fresh.splitlines(True),
                                            "doc/configuration.md", "generated", n=1))
        pytest.fail("doc/configuration.md differs from what the binary's help gives: run `make docs` "
                    "and commit it\n" + diff[:4000])


def test_readme_opens_with_the_two_commands():
    text = source("README.md")
    sections = re.findall(r"^## (.*)$", text, re.M)
    assert sections and sections[0] == "The two commands", sections
    first = text.split("\n## ", 2)[1]
    code = re.search(r"```sh\n(.*?)```", first, re.S).group(1)
    starts = [line.split("#")[0].strip() for line in code.splitlines() if not line.startswith(" ")]
    assert starts == ["make demo", "make test"], code


def test_readme_links_every_document():
    text = source("README.md")
    linked = set(re.findall(r"\]\((doc/[^)#\s]+)\)", text))
    docs = set(os.path.relpath(p, TOP) for p in glob.glob(os.path.join(TOP, "doc", "*")) if os.path.isfile(p))
    assert docs - linked == set(), sorted(docs - linked)


def heading_anchors(text):
    """GitHub's anchors of a Markdown file's headings (outside code fences)."""
    anchors, fence, seen = set(), False, {}
    for line in text.splitlines():
        if line.startswith("```"):
            fence = not fence
        m = None if fence else re.match(r"^#+ (.*)", line)
        if m:
            a = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
            n = seen.get(a, 0)
            seen[a] = n + 1
            anchors.add(a if n == 0 else "%s-%d" % (a, n))
    return anchors


def test_documentation_links_lead_somewhere():
    bad = []
    for path in doc_files():
        text = source(path)
        prose = re.sub(r"```.*?```", "", text, flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", prose):
            if re.match(r"^[a-z]+:", target):
                continue
            file, _, anchor = target.partition("#")
            dest = os.path.normpath(os.path.join(os.path.dirname(path), file)) if file else path
            if not os.path.exists(os.path.join(TOP, dest)):
                bad.append("%s: %s: no such file" % (path, target))
            elif anchor and dest.endswith(".md") and anchor not in heading_anchors(source(dest)):
                bad.append("%s: %s: no such heading in %s" % (path, target, dest))
    assert not bad, bad


def test_proxy_commands_name_the_admin_token():
    for cmd in migrate_commands():
        out = run_ok(["migrate", cmd, "--help"])
        if block(out, "--proxy"):
            assert "PGTANDEM_ADMIN_TOKEN" in out, (cmd, out)
    assert "PGTANDEM_ADMIN_TOKEN" in run_ok(["migrate", "--help"])


def test_unknown_config_key_lists_every_key(tmp_path):
    cfg = tmp_path / "pgtandem.json"
    cfg.write_text('{\n  "upstream": "postgresql://127.0.0.1:1/",\n  "fleet_idd": "a"\n}\n')
    r = run_pgtandem(["proxy", "--config", str(cfg)], timeout=20)
    assert r.returncode == 2, r.stderr
    assert '%s:3:3: "fleet_idd": unknown setting (known: ' % cfg in r.stderr, r.stderr
    known = r.stderr.split("(known: ", 1)[1].rsplit(")", 1)[0].split(", ")
    keys = [k for _, k, _ in string_options() if k] + [n for n, _, _ in numeric_settings()]
    assert "fleet_id" in keys
    assert sorted(set(keys) - set(known)) == [], (keys, known)
    # and each key it lists is one the file takes
    for key in known:
        if key in ("upstream",):
            continue
        one = tmp_path / ("k_%s.json" % key)
        one.write_text('{"upstream": "postgresql://127.0.0.1:1/", "%s": 12345678901234567890}' % key)
        rr = run_pgtandem(["proxy", "--config", str(one)], timeout=20)
        assert "unknown setting" not in rr.stderr, (key, rr.stderr)


def test_unknown_flag_points_at_the_help():
    r = run_pgtandem(["proxy", "--listenn", "127.0.0.1:1"], timeout=20)
    assert r.returncode == 2
    assert "unknown option '--listenn'" in r.stderr and "pgtandem proxy --help" in r.stderr, r.stderr


def read_until(proc, pattern, timeout=20.0):
    """stderr lines until one matches; the match."""
    deadline = time.time() + timeout
    seen = ""
    while time.time() < deadline:
        ready, _, _ = select.select([proc.stderr], [], [], max(0.0, deadline - time.time()))
        if not ready:
            break
        line = proc.stderr.readline()
        if not line:
            break
        seen += line
        m = re.search(pattern, line)
        if m:
            return m
    raise AssertionError("no line matching %r in:\n%s" % (pattern, seen))


def test_port_zero_is_logged_as_bound():
    proc = subprocess.Popen([BIN, "proxy", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--peer-listen",
                             "127.0.0.1:0", "--upstream", "postgresql://127.0.0.1:1/?sslmode=disable"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        m = read_until(proc, r"listening on 127\.0\.0\.1:(\d+).*admin 127\.0\.0\.1:(\d+), peers 127\.0\.0\.1:(\d+)")
        ports = [int(p) for p in m.groups()]
        assert all(p > 0 for p in ports), m.group(0)
        assert len(set(ports)) == 3, m.group(0)
        for p in ports:
            assert port_open(p), (p, m.group(0))
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_admin_off():
    proc = subprocess.Popen([BIN, "proxy", "--listen", "127.0.0.1:0", "--admin", "off",
                             "--upstream", "postgresql://127.0.0.1:1/?sslmode=disable"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        read_until(proc, r"listening on 127\.0\.0\.1:[1-9]\d*.*, admin off,")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


# ---- migrate lint DIR and psql scripts ----

PSQL_SCRIPT = "-- seed data, run with psql\n\\set rows 10\nCREATE TABLE seed (id int);\n" \
              "INSERT INTO seed SELECT generate_series(1, :rows);\n"


def test_readme_lint_example_passes():
    # as doc/migrations.md runs it, from the top of the checkout
    r = subprocess.run([BIN, "migrate", "lint", "config/examples/"], cwd=TOP, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"^lint: note: config/examples/checks_legacy\.sql: skipped: a psql script \(meta-command at "
                     r"line 4", r.stdout, re.M), r.stdout


def test_lint_dir_skips_psql_scripts_by_content(tmp_path):
    # the name says nothing: 0002 is a psql script among migrations
    (tmp_path / "0001_a.sql").write_text("CREATE TABLE a (id int);\n")
    (tmp_path / "0002_seed.sql").write_text(PSQL_SCRIPT)
    (tmp_path / "0003_b.sql").write_text("ALTER TABLE a ADD COLUMN note text;\n")
    r = run_pgtandem(["migrate", "lint", str(tmp_path)], timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0002_seed.sql: skipped: a psql script (meta-command at line 2" in r.stdout, r.stdout
    assert "lint: 2 SQL file(s)" in r.stdout, r.stdout
    j = run_pgtandem(["migrate", "lint", str(tmp_path), "--format", "json"], timeout=60)
    assert j.returncode == 0 and '"skipped"' in j.stdout, j.stdout


def test_lint_dir_still_fails_on_a_broken_migration(tmp_path):
    (tmp_path / "0001_seed.sql").write_text(PSQL_SCRIPT)
    (tmp_path / "0002_bad.sql").write_text("CREATE TABLE a (id int);\nALTER TABLEE a ADD COLUMN b int;\n")
    r = run_pgtandem(["migrate", "lint", str(tmp_path)], timeout=60)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "0002_bad.sql:2:7: syntax error at or near \"TABLEE\"" in r.stderr, r.stderr
    # a backslash inside a function body is SQL, not a meta-command
    (tmp_path / "0002_bad.sql").write_text("CREATE FUNCTION f() RETURNS text LANGUAGE sql AS $$\n"
                                           "\\x$$;\nSELECT 1 FROM;\n")
    r = run_pgtandem(["migrate", "lint", str(tmp_path)], timeout=60)
    assert r.returncode == 2 and "0002_bad.sql:3:" in r.stderr, r.stdout + r.stderr


def test_lint_of_a_psql_script_by_name_still_fails(tmp_path):
    # named explicitly, the file is meant as a migration: the parser's error stands
    (tmp_path / "seed.sql").write_text(PSQL_SCRIPT)
    r = run_pgtandem(["migrate", "lint", str(tmp_path / "seed.sql")], timeout=60)
    assert r.returncode == 2 and "seed.sql:2:1:" in r.stderr, r.stdout + r.stderr
