/* A directory of migrations as one history: loads every *.json file and checks
 * that the `parent` links form a single chain (one root, one head, no missing
 * parent, no duplicate name), then orders it parent-first. */
#include "migration.h"

#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int has_suffix(const char *name, const char *suffix)
{
    size_t n = strlen(name), k = strlen(suffix);
    return n > k && strcmp(name + n - k, suffix) == 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int mig_list_files(const char *dir, const char *suffix, char ***names, size_t *n, char *err, size_t errlen)
{
    size_t cap = 16, count = 0;
    char **list = malloc(cap * sizeof *list);
    DIR *d = list ? opendir(dir) : NULL;
    if (!d) {
        snprintf(err, errlen, "%s: %s", dir, list ? "cannot open directory" : "out of memory");
        free(list);
        return -1;
    }
    int oom = 0;
    struct dirent *e;
    while (!oom && (e = readdir(d)) != NULL) {
        if (!has_suffix(e->d_name, suffix))
            continue;
        if (count == cap) {
            char **grown = realloc(list, 2 * cap * sizeof *list);
            if (!grown) {
                oom = 1;
                break;
            }
            list = grown;
            cap *= 2;
        }
        size_t len = strlen(dir) + strlen(e->d_name) + 2;
        char *path = malloc(len);
        if (!path) {
            oom = 1;
            break;
        }
        snprintf(path, len, "%s%s%s", dir, dir[0] && dir[strlen(dir) - 1] == '/' ? "" : "/", e->d_name);
        list[count++] = path;
    }
    closedir(d);
    if (oom) {
        snprintf(err, errlen, "%s: out of memory", dir);
        while (count)
            free(list[--count]);
        free(list);
        return -1;
    }
    qsort(list, count, sizeof *list, cmp_str);
    *names = list;
    *n = count;
    return 0;
}

void mig_free_names(char **names, size_t n)
{
    for (size_t i = 0; names && i < n; i++)
        free(names[i]);
    free(names);
}

static long find_by_name(struct migration *list, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(list[i].name, name) == 0)
            return (long)i;
    return -1;
}

static int check_links(struct migration *list, size_t n, char *err, size_t errlen)
{
    long root = -1;
    for (size_t i = 0; i < n; i++) {
        long dup = find_by_name(list, i, list[i].name);
        if (dup >= 0) {
            snprintf(err, errlen, "%s: migration name \"%s\" is also used by %s", list[i].file,
                     list[i].name, list[dup].file);
            return -1;
        }
        if (!list[i].parent) {
            if (root >= 0) {
                snprintf(err, errlen, "multiple roots: %s and %s both have no parent",
                         list[root].file, list[i].file);
                return -1;
            }
            root = (long)i;
        } else if (find_by_name(list, n, list[i].parent) < 0) {
            snprintf(err, errlen, "%s: parent \"%s\" of \"%s\" is not in the directory; add it or fix "
                     "\"parent\"", list[i].file, list[i].parent, list[i].name);
            return -1;
        }
        for (size_t j = 0; j < i; j++) {
            int same = (list[j].parent && list[i].parent && strcmp(list[j].parent, list[i].parent) == 0);
            if (same) {
                snprintf(err, errlen, "multiple heads: \"%s\" (%s) and \"%s\" (%s) both have parent \"%s\"; "
                         "re-parent one of them onto the other", list[j].name, list[j].file,
                         list[i].name, list[i].file, list[i].parent);
                return -1;
            }
        }
    }
    if (n > 0 && root < 0) {
        snprintf(err, errlen, "no root migration (one must have \"parent\": null); the chain has a cycle");
        return -1;
    }
    return 0;
}

/* Reorders list parent-first by walking from the root; links are unique, so
 * each step has exactly one child. */
static int order_chain(struct migration *list, size_t n)
{
    const char *prev = NULL;
    for (size_t pos = 0; pos < n; pos++) {
        size_t i;
        for (i = pos; i < n; i++) {
            int is_next = prev ? (list[i].parent && strcmp(list[i].parent, prev) == 0) : !list[i].parent;
            if (is_next) {
                struct migration tmp = list[pos];
                list[pos] = list[i];
                list[i] = tmp;
                break;
            }
        }
        if (i == n)
            return -1;
        prev = list[pos].name;
    }
    return 0;
}

int mig_load_dir(const char *dir, struct migration **out, size_t *n, char *err, size_t errlen)
{
    char **names = NULL;
    size_t nnames = 0;
    *out = NULL;
    *n = 0;
    if (mig_list_files(dir, ".json", &names, &nnames, err, errlen) != 0)
        return -1;
    int rc = 0;
    struct migration *list = calloc(nnames ? nnames : 1, sizeof *list);
    size_t loaded = 0;
    for (size_t i = 0; list && i < nnames && rc == 0; i++) {
        rc = mig_load_file(names[i], &list[i], err, errlen);
        loaded = i + 1;
    }
    mig_free_names(names, nnames);
    if (rc == 0 && !list) {
        snprintf(err, errlen, "%s: out of memory", dir);
        rc = -1;
    }
    if (rc == 0 && nnames == 0) {
        snprintf(err, errlen, "%s: no *.json migrations found", dir);
        rc = -1;
    }
    if (rc == 0)
        rc = check_links(list, nnames, err, errlen);
    if (rc != 0) {
        mig_free_list(list, loaded);
        return -1;
    }
    if (order_chain(list, nnames) != 0) {
        snprintf(err, errlen, "%s: the parent links contain a cycle", dir);
        mig_free_list(list, nnames);
        return -1;
    }
    *out = list;
    *n = nnames;
    return 0;
}

char *mig_chain_body(const struct migration *list, size_t n)
{
    json_t *texts = json_array();
    for (size_t i = 0; i < n; i++) /* a converted .sql file keeps its file's checksum (sql_load.h) */
        json_array_append_new(texts, json_pack("{s:s,s:s}", "text", list[i].json, "checksum", list[i].checksum));
    json_t *body = json_pack("{s:o}", "chain", texts);
    char *out = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    return out;
}

int mig_parse_chain(const char *text, size_t len, struct migration **out, size_t *n, char *err, size_t errlen)
{
    *out = NULL;
    *n = 0;
    json_t *root = json_loadb(text, len, 0, NULL);
    json_t *texts = json_object_get(root, "chain");
    if (!json_is_array(texts)) {
        json_decref(root);
        return 0;
    }
    size_t count = json_array_size(texts), loaded = 0;
    struct migration *list = count ? calloc(count, sizeof *list) : NULL;
    int rc = list ? 0 : (snprintf(err, errlen, "\"chain\" must be a non-empty array of migrations"), -1);
    for (size_t i = 0; rc == 0 && i < count; i++) {
        json_t *e = json_array_get(texts, i);
        const char *t = json_string_value(json_object_get(e, "text"));
        const char *sum = json_string_value(json_object_get(e, "checksum"));
        char file[32];
        snprintf(file, sizeof file, "chain[%zu]", i);
        rc = t && sum && strlen(sum) == 64 ? mig_parse(t, strlen(t), file, &list[i], err, errlen)
             : (snprintf(err, errlen, "chain[%zu] must be {\"text\": a migration, \"checksum\": its file's sha256}",
                         i), -1);
        if (rc == 0)
            memcpy(list[i].checksum, sum, 65);
        loaded = i + 1;
    }
    json_decref(root);
    if (rc == 0)
        rc = check_links(list, count, err, errlen);
    if (rc == 0 && order_chain(list, count) != 0)
        rc = (snprintf(err, errlen, "the chain's parent links contain a cycle"), -1);
    if (rc != 0) {
        mig_free_list(list, loaded);
        return -1;
    }
    *out = list;
    *n = count;
    return 1;
}

void mig_free_list(struct migration *list, size_t n)
{
    for (size_t i = 0; list && i < n; i++)
        mig_free(&list[i]);
    free(list);
}
