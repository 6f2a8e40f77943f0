/* Unit tests for the JSON log format: every line is one JSON object that a
 * parser accepts, whatever bytes the message holds (quotes, backslashes,
 * control characters, text that is not UTF-8, a message longer than the
 * line buffer), with the component, migration and session it concerns. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "unit.h"

#define MAX_LINES 32

static json_t *lines[MAX_LINES];
static int nlines;

/* What emit() writes to stderr (at most 64 KiB), as text. */
static char *captured_text(void (*emit)(void))
{
    fflush(stderr);
    FILE *tmp = tmpfile();
    int saved = dup(STDERR_FILENO);
    dup2(fileno(tmp), STDERR_FILENO);
    emit();
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    static char buf[65536];
    rewind(tmp);
    size_t n = fread(buf, 1, sizeof buf - 1, tmp);
    buf[n] = '\0';
    fclose(tmp);
    return buf;
}

/* Runs emit() with stderr going to a file, then parses each line. */
static void capture(void (*emit)(void))
{
    for (int i = 0; i < nlines; i++)
        json_decref(lines[i]);
    nlines = 0;
    for (char *line = captured_text(emit), *end; *line && nlines < MAX_LINES; line = end) {
        end = strchr(line, '\n');
        end = end ? end + 1 : line + strlen(line);
        lines[nlines++] = json_loadb(line, (size_t)(end - line), 0, NULL);
    }
}

static const char *field(int i, const char *key)
{
    return i < nlines ? json_string_value(json_object_get(lines[i], key)) : NULL;
}

static void emit_awkward(void)
{
    log_info("quote \" backslash \\ newline \n tab \t bell \a del \x7f end");
    log_warn("not UTF-8: \xff\xfe, cut \xe2\x82, overlong \xc0\xaf, surrogate \xed\xa0\x80, ok \xe2\x86\x92");
    char big[4000];
    memset(big, '"', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    log_error("%s", big);
}

static void emit_tagged(void)
{
    log_migration(LOG_LEVEL_INFO, "0003_checks_unify", "cutover committed on attempt %d", 1);
    log_session(LOG_LEVEL_INFO, 42, "session %d (127.0.0.1:5000): closing: bye [57P01]", 42);
    log_info("migration 0004_x: backfill done, 10 rows in 0.1 s");
    log_info("session 7 (1.2.3.4:5): client connection failed: reset");
    log_warn("fleet: a peer went away");
    log_warn("migration state: unreadable");
    log_debug("not shown at info");
}

static void test_every_line_parses(void)
{
    log_set_format(LOG_FORMAT_JSON);
    capture(emit_awkward);
    CHECK("three lines", nlines == 3);
    int all = nlines == 3;
    for (int i = 0; i < nlines; i++)
        all = all && lines[i] != NULL;
    CHECK("every line is a JSON object", all);
    CHECK("quotes come back as they were, control characters escaped",
          field(0, "msg") &&
              !strcmp(field(0, "msg"), "quote \" backslash \\ newline \\n tab \\t bell \\x07 del \\x7f end"));
    CHECK("bytes that are not UTF-8 become U+FFFD, valid ones stay",
          field(1, "msg") && strstr(field(1, "msg"), "\xef\xbf\xbd") && strstr(field(1, "msg"), "\xe2\x86\x92"));
    CHECK("a long message of quotes is cut, still JSON", field(2, "msg") && strlen(field(2, "msg")) >= 2000);
    CHECK("level in lower case", field(0, "level") && !strcmp(field(0, "level"), "info") &&
                                     field(2, "level") && !strcmp(field(2, "level"), "error"));
    const char *t = field(0, "time");
    CHECK("time is RFC 3339 UTC with milliseconds", t && strlen(t) == 24 && t[10] == 'T' && t[19] == '.' &&
                                                        t[23] == 'Z');
    CHECK("component from the module", field(0, "component") && !strcmp(field(0, "component"), "proxy"));
}

static void test_ids_and_components(void)
{
    log_set_format(LOG_FORMAT_JSON);
    capture(emit_tagged);
    CHECK("debug below the level is not written", nlines == 6);
    CHECK("migration given", field(0, "migration") && !strcmp(field(0, "migration"), "0003_checks_unify"));
    CHECK("component named by the message", field(0, "component") && !strcmp(field(0, "component"), "cutover"));
    CHECK("session given", json_integer_value(json_object_get(lines[1], "session")) == 42);
    CHECK("migration read from the message", field(2, "migration") && !strcmp(field(2, "migration"), "0004_x"));
    CHECK("session read from the message", nlines > 3 && json_integer_value(json_object_get(lines[3], "session")) == 7);
    CHECK("fleet component", field(4, "component") && !strcmp(field(4, "component"), "fleet"));
    CHECK("no migration named \"state\"", nlines > 5 && !json_object_get(lines[5], "migration"));
    CHECK("no session when none", !json_object_get(lines[0], "session"));
}

static void test_text_unchanged(void)
{
    log_set_format(LOG_FORMAT_TEXT);
    capture(emit_tagged);
    CHECK("text lines are not JSON", nlines == 6 && lines[0] == NULL);
    enum log_format f;
    CHECK("formats parse", log_format_parse("json", &f) == 0 && f == LOG_FORMAT_JSON &&
                               log_format_parse("TEXT", &f) == 0 && f == LOG_FORMAT_TEXT &&
                               log_format_parse("yaml", &f) != 0);
}

/* What a client can put in a user name, a database or application_name. */
static void emit_forgery(void)
{
    log_info("session 3 (127.0.0.1:1): authentication of user \"%s\" failed",
             "evil\r\n2026-01-01 00:00:00.000 UTC ERROR forged\x1b[2J\x9b\xc2\x9b" "31m\xc3\xa9");
}

static void test_client_text_cannot_forge_lines(void)
{
    log_set_format(LOG_FORMAT_TEXT);
    const char *text = captured_text(emit_forgery);
    const char *nl = strchr(text, '\n');
    CHECK("text: one line, ended by the only newline", nl && nl[1] == '\0' && !strchr(text, '\r'));
    CHECK("text: newline, return, ESC and C1 controls written as escapes, UTF-8 kept",
          strstr(text, "user \"evil\\r\\n2026-01-01 00:00:00.000 UTC ERROR forged\\x1b[2J\x9b\\xc2\\x9b" "31m\xc3\xa9\" failed"));
    CHECK("text: no ESC byte", !strchr(text, 0x1b));
    log_set_format(LOG_FORMAT_JSON);
    capture(emit_forgery);
    CHECK("json: one line", nlines == 1 && lines[0]);
    CHECK("json: the message escaped as in text", field(0, "msg") && strstr(field(0, "msg"), "evil\\r\\n2026-01-01") &&
                                                    strstr(field(0, "msg"), "forged\\x1b[2J") &&
                                                    !strchr(field(0, "msg"), '\n'));
    char small[6];
    log_escape("abc\x1b" "def", small, sizeof small);
    CHECK("cut before an escape, never inside it", !strcmp(small, "abc"));
}

int main(void)
{
    test_client_text_cannot_forge_lines();
    test_every_line_parses();
    test_ids_and_components();
    test_text_unchanged();
    for (int i = 0; i < nlines; i++)
        json_decref(lines[i]);
    return UNIT_RESULT();
}
