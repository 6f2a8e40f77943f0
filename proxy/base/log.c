/* Logging: one line per event on stderr, either text
 * ("2026-01-02 03:04:05.678 UTC LEVEL msg") or one JSON object per line
 * ({"time", "level", "component", "msg", "migration", "session"}).
 * The level and format are the only process-wide settings outside the server
 * struct, because every module logs and threading a handle through each call
 * would obscure more than it protects. The component comes from the calling
 * module's file name, so no call site has to name it.
 *
 * Messages carry text from clients and servers (user and database names,
 * startup parameters, error texts, SNI names): a newline in a user name
 * would write a forged line, an ESC byte would drive the operator's
 * terminal. So every message is escaped here, once, whatever its call site:
 * control characters (below 0x20, 0x7f, and the C1 controls U+0080..U+009F)
 * become \n, \r, \t or \xHH, in both formats, and a log line is always
 * one line. A backslash is left as it is: it forges nothing. */
#include "log.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>

#define LINE_MAX_BYTES 2048

static enum log_level current_level = LOG_LEVEL_INFO;
static enum log_format current_format = LOG_FORMAT_TEXT;
static const char *const level_names[] = {"ERROR", "WARN", "INFO", "DEBUG"};
static const char *const level_lower[] = {"error", "warn", "info", "debug"};

void log_set_level(enum log_level level) { current_level = level; }
enum log_level log_get_level(void) { return current_level; }
void log_set_format(enum log_format format) { current_format = format; }

int log_level_parse(const char *name, enum log_level *out)
{
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(name, level_lower[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    return -1;
}

int log_format_parse(const char *name, enum log_format *out)
{
    if (strcasecmp(name, "text") == 0)
        *out = LOG_FORMAT_TEXT;
    else if (strcasecmp(name, "json") == 0)
        *out = LOG_FORMAT_JSON;
    else
        return -1;
    return 0;
}

/* ---- component, migration and session of an event ---- */

static const char *const components[] = {"relay", "engine", "fleet", "admin", "cutover", "backfill"};

/* A message that names its component first ("fleet: ...", "cutover of x")
 * knows better than the file it was logged from. */
static const char *component_named_in(const char *msg)
{
    for (size_t i = 0; i < sizeof components / sizeof components[0]; i++) {
        size_t n = strlen(components[i]);
        if (strncmp(msg, components[i], n) == 0 && (msg[n] == ':' || msg[n] == ' '))
            return components[i];
    }
    return NULL;
}

static const char *component_of_file(const char *file)
{
    static const struct {
        const char *module, *component;
    } modules[] = {
        {"cutover", "cutover"}, {"fleet", "fleet"}, {"fleet_lease", "fleet"}, {"backfill", "backfill"},
        {"progress_line", "backfill"}, {"admin", "admin"}, {"admin_migrations", "admin"},
        {"migration_runner", "engine"}, {"engine_worker", "engine"}, {"pgasync", "engine"},
        {"config", "config"}, {"proxy", "proxy"}, {"main", "proxy"},
    };
    static const struct {
        const char *dir, *component;
    } dirs[] = {{"relay/", "relay"}, {"engine/", "engine"}, {"online/", "engine"}, {"admin/", "admin"},
                {"cli/", "cli"}};
    if (!file)
        return "proxy";
    const char *base = strrchr(file, '/');
    base = base ? base + 1 : file;
    size_t len = strcspn(base, ".");
    for (size_t i = 0; i < sizeof modules / sizeof modules[0]; i++)
        if (strlen(modules[i].module) == len && strncmp(base, modules[i].module, len) == 0)
            return modules[i].component;
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++)
        if (strstr(file, dirs[i].dir))
            return dirs[i].component;
    return "proxy";
}

/* "migration NAME: ..." / "migration NAME is ..." names its migration. */
static int migration_named_in(const char *msg, char *out, size_t cap)
{
    static const char prefix[] = "migration ";
    static const char *const not_names[] = {"start", "state", "-"};
    if (strncmp(msg, prefix, sizeof prefix - 1) != 0)
        return 0;
    const char *name = msg + sizeof prefix - 1;
    size_t n = strcspn(name, " :,;()\"");
    if (n == 0 || n >= cap || (name[n] != ':' && name[n] != ' '))
        return 0;
    for (size_t i = 0; i < sizeof not_names / sizeof not_names[0]; i++)
        if (strlen(not_names[i]) == n && strncmp(name, not_names[i], n) == 0)
            return 0;
    memcpy(out, name, n);
    out[n] = '\0';
    return 1;
}

/* "session 42 ..." names its client session. */
static unsigned long long session_named_in(const char *msg)
{
    static const char prefix[] = "session ";
    if (strncmp(msg, prefix, sizeof prefix - 1) != 0 || !isdigit((unsigned char)msg[sizeof prefix - 1]))
        return 0;
    return strtoull(msg + sizeof prefix - 1, NULL, 10);
}

/* ---- escaping ---- */

/* At most four bytes out per byte in ("\x1b"). */
#define ESCAPED_MAX (LINE_MAX_BYTES * 4)

static size_t put_hex(char *out, unsigned char c)
{
    static const char hex[] = "0123456789abcdef";
    out[0] = '\\', out[1] = 'x', out[2] = hex[c >> 4], out[3] = hex[c & 15];
    return 4;
}

void log_escape(const char *msg, char *out, size_t cap)
{
    const unsigned char *p = (const unsigned char *)msg;
    size_t j = 0;
    if (cap == 0)
        return;
    for (; *p; p++) {
        char esc[8];
        size_t n = 0;
        if (*p == '\n' || *p == '\r' || *p == '\t') {
            esc[0] = '\\', esc[1] = *p == '\n' ? 'n' : *p == '\r' ? 'r' : 't';
            n = 2;
        } else if (*p < 0x20 || *p == 0x7f) {
            n = put_hex(esc, *p);
        } else if (*p == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f) { /* a C1 control: CSI (U+009B) drives terminals too */
            n = put_hex(esc, p[0]);
            n += put_hex(esc + n, p[1]);
            p++;
        } else {
            esc[0] = (char)*p;
            n = 1;
        }
        if (j + n >= cap) /* cut before the escape, never inside it */
            break;
        memcpy(out + j, esc, n);
        j += n;
    }
    out[j] = '\0';
}

/* ---- JSON ---- */

/* Room for an escaped message, a migration name, and the rest. */
struct line {
    char buf[ESCAPED_MAX * 2 + 1024];
    size_t len;
};

/* A piece that does not fit is left out whole, never cut inside an escape. */
static void put(struct line *l, const char *s, size_t n)
{
    if (l->len + n + 2 >= sizeof l->buf) /* room for the closing "}\n" */
        return;
    memcpy(l->buf + l->len, s, n);
    l->len += n;
}

static void puts_(struct line *l, const char *s) { put(l, s, strlen(s)); }

/* Length of the valid UTF-8 sequence at s (1 to 4), or 0 when it is not one
 * (overlong forms, surrogates and code points past U+10FFFF included). */
static size_t utf8_len(const unsigned char *s)
{
    unsigned c = s[0];
    size_t n = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 0;
    if (c < 0x80)
        return 1;
    if (n == 0 || c > 0xf4 || c == 0xc0 || c == 0xc1)
        return 0;
    for (size_t i = 1; i < n; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    if ((c == 0xe0 && s[1] < 0xa0) || (c == 0xed && s[1] >= 0xa0) || (c == 0xf0 && s[1] < 0x90) ||
        (c == 0xf4 && s[1] >= 0x90))
        return 0;
    return n;
}

/* A JSON string: quotes, backslashes and control characters escaped, and
 * bytes that are not UTF-8 (a client's text can be anything) as U+FFFD. */
static void put_json_string(struct line *l, const char *s)
{
    puts_(l, "\"");
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        char esc[8];
        size_t n = utf8_len(p);
        if (*p == '"' || *p == '\\') {
            esc[0] = '\\', esc[1] = (char)*p;
            put(l, esc, 2);
        } else if (*p == '\n') {
            puts_(l, "\\n");
        } else if (*p == '\t') {
            puts_(l, "\\t");
        } else if (*p == '\r') {
            puts_(l, "\\r");
        } else if (*p < 0x20 || *p == 0x7f) {
            snprintf(esc, sizeof esc, "\\u%04x", *p);
            puts_(l, esc);
        } else if (n == 0) {
            puts_(l, "\\ufffd");
            n = 1;
        } else {
            put(l, (const char *)p, n);
        }
        p += n ? n : 1;
    }
    puts_(l, "\"");
}

static void write_json(struct tm *tm, int ms, enum log_level level, const char *component, const char *migration,
                       unsigned long long session, const char *msg)
{
    struct line l = {.len = 0};
    char stamp[48];
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", tm);
    char head[96];
    snprintf(head, sizeof head, "{\"time\":\"%s.%03dZ\",\"level\":\"%s\",\"component\":", stamp, ms,
             level_lower[level]);
    puts_(&l, head);
    put_json_string(&l, component);
    if (migration) {
        puts_(&l, ",\"migration\":");
        put_json_string(&l, migration);
    }
    if (session) {
        char id[48];
        snprintf(id, sizeof id, ",\"session\":%llu", session);
        puts_(&l, id);
    }
    puts_(&l, ",\"msg\":");
    put_json_string(&l, msg);
    /* put() keeps room for these */
    memcpy(l.buf + l.len, "}\n", 2);
    l.len += 2;
    fwrite(l.buf, 1, l.len, stderr);
}

void log_event(enum log_level level, const char *file, const char *migration, unsigned long long session,
               const char *fmt, ...)
{
    if (level > current_level)
        return;
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char raw[LINE_MAX_BYTES], msg[ESCAPED_MAX] = {0}; /* zeroed: the analyzer cannot follow log_escape's terminator */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(raw, sizeof raw, fmt, ap);
    va_end(ap);
    log_escape(raw, msg, sizeof msg);
    if (current_format == LOG_FORMAT_TEXT) {
        char stamp[32];
        strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", &tm);
        fprintf(stderr, "%s.%03d UTC %s %s\n", stamp, (int)(tv.tv_usec / 1000), level_names[level], msg);
        return;
    }
    const char *component = component_named_in(msg);
    char named[128];
    if (!migration && migration_named_in(msg, named, sizeof named))
        migration = named;
    if (!session)
        session = session_named_in(msg);
    write_json(&tm, (int)(tv.tv_usec / 1000), level, component ? component : component_of_file(file), migration,
               session, msg);
}
