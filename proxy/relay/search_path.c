/* Reading a client's own search_path from its startup packet (see
 * search_path.h). Options are split as Postgres's pg_split_opts splits
 * them: at whitespace, a backslash keeping the next character. */
#include "search_path.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

/* The next word of `p` unescaped into word; returns where it ended, or
 * NULL when no word is left. A word too long for `cap` is cut (and then
 * names no setting we look for). */
static const char *next_word(const char *p, char *word, size_t cap)
{
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == '\f' || *p == '\v')
        p++;
    if (!*p)
        return NULL;
    size_t n = 0;
    for (; *p && !(*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == '\f' || *p == '\v'); p++) {
        if (*p == '\\' && p[1])
            p++;
        if (n + 1 < cap)
            word[n++] = *p;
    }
    word[n] = '\0';
    return p;
}

/* "search_path=V" (or with '-' for '_', as Postgres reads --name=value):
 * V, else NULL. */
static const char *search_path_value(char *setting)
{
    static const char name[] = "search_path=";
    for (char *c = setting; *c && *c != '='; c++)
        if (*c == '-')
            *c = '_';
    return strncasecmp(setting, name, sizeof name - 1) == 0 ? setting + sizeof name - 1 : NULL;
}

static int put(char *out, size_t cap, const char *value)
{
    if (strlen(value) >= cap)
        return -1;
    memcpy(out, value, strlen(value) + 1);
    return 1;
}

int search_path_from_options(const char *options, char *out, size_t cap)
{
    char word[1100] = {0};
    const char *value;
    int found = 0, expect_setting = 0;
    for (const char *p = options; (p = next_word(p, word, sizeof word));) {
        char *setting = NULL;
        if (expect_setting)
            setting = word;
        else if (!strncmp(word, "--", 2))
            setting = word + 2;
        else if (!strncmp(word, "-c", 2) && word[2])
            setting = word + 2;
        expect_setting = !strcmp(word, "-c");
        if (setting && (value = search_path_value(setting)))
            found = put(out, cap, value);
    }
    return found;
}

int search_path_of_startup(const struct startup_packet *sp, char *out, size_t cap)
{
    const char *param = startup_param(sp, "search_path");
    if (param)
        return put(out, cap, param);
    const char *options = startup_param(sp, "options");
    return options ? search_path_from_options(options, out, cap) : 0;
}
