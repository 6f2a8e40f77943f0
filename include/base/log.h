/* Logging to stderr with timestamps and levels; the level can change at run
 * time (SIGHUP reload). Two formats: text lines for people, or one JSON
 * object per line (time, level, component, msg, migration, session) for a
 * log pipeline. */
#ifndef PGTANDEM_LOG_H
#define PGTANDEM_LOG_H

#include <stddef.h>

enum log_level { LOG_LEVEL_ERROR = 0, LOG_LEVEL_WARN, LOG_LEVEL_INFO, LOG_LEVEL_DEBUG };
enum log_format { LOG_FORMAT_TEXT = 0, LOG_FORMAT_JSON };

void log_set_level(enum log_level level);
enum log_level log_get_level(void);
/* Parses "error" | "warn" | "info" | "debug"; returns 0 on success. */
int log_level_parse(const char *name, enum log_level *out);
void log_set_format(enum log_format format);
/* Parses "text" | "json"; returns 0 on success. */
int log_format_parse(const char *name, enum log_format *out);

/* msg with its control characters escaped (\n, \r, \t, \xHH; C1
 * controls too) into out, cut to cap at an escape's boundary: what every
 * log line's message goes through. */
void log_escape(const char *msg, char *out, size_t cap);

/* One event. file is the caller's source path (__FILE__): its module names
 * the component, unless the message starts with a component's name.
 * migration (NULL: none) and session (0: none) tag the event; when absent
 * they are read from a message that starts "migration NAME" or "session N". */
void log_event(enum log_level level, const char *file, const char *migration, unsigned long long session,
               const char *fmt, ...) __attribute__((format(printf, 5, 6)));

#define log_msg(level, ...) log_event((level), __FILE__, NULL, 0, __VA_ARGS__)
#define log_error(...) log_event(LOG_LEVEL_ERROR, __FILE__, NULL, 0, __VA_ARGS__)
#define log_warn(...) log_event(LOG_LEVEL_WARN, __FILE__, NULL, 0, __VA_ARGS__)
#define log_info(...) log_event(LOG_LEVEL_INFO, __FILE__, NULL, 0, __VA_ARGS__)
#define log_debug(...) do { if (log_get_level() >= LOG_LEVEL_DEBUG) log_event(LOG_LEVEL_DEBUG, __FILE__, NULL, 0, __VA_ARGS__); } while (0)
/* The same about one migration, or one client session. */
#define log_migration(level, name, ...) log_event((level), __FILE__, (name), 0, __VA_ARGS__)
#define log_session(level, id, ...) log_event((level), __FILE__, NULL, (unsigned long long)(id), __VA_ARGS__)

#endif
