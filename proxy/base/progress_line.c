/* The backfill status line shared by `migrate start` in direct and --proxy
 * mode, so both show the same thing: rows done / estimated total, percent,
 * rows/s, ETA, batch size and the throttle state. */
#include "progress_line.h"

#include <math.h>
#include <stdio.h>
#include <time.h>

#include "log.h"

#define TTY_INTERVAL_MS 100.0
#define LOG_INTERVAL_MS 2000.0

double progress_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

int progress_rate_known(double rows_per_s)
{
    return isfinite(rows_per_s) && rows_per_s >= 0;
}

const char *progress_rate(char *buf, size_t n, double rows_per_s)
{
    if (progress_rate_known(rows_per_s))
        snprintf(buf, n, "%.0f rows/s", rows_per_s);
    else
        snprintf(buf, n, "? rows/s");
    return buf;
}

const char *progress_eta(char *buf, size_t n, double seconds)
{
    if (seconds < 0 || seconds > 1e7)
        snprintf(buf, n, "?");
    else if (seconds >= 3600)
        snprintf(buf, n, "%dh%02dm", (int)(seconds / 3600), (int)(seconds / 60) % 60);
    else if (seconds >= 60)
        snprintf(buf, n, "%dm%02ds", (int)(seconds / 60), (int)seconds % 60);
    else
        snprintf(buf, n, "%.0fs", seconds);
    return buf;
}

const char *progress_rows(char *buf, size_t n, double rows_done, double estimated, int finished)
{
    if (finished)
        snprintf(buf, n, "%.0f/%.0f rows (100.0%%)", rows_done, rows_done);
    else if (estimated <= 0)
        snprintf(buf, n, "%.0f rows (no estimate of the total)", rows_done);
    else if (rows_done >= estimated)
        snprintf(buf, n, "%.0f rows (more than the %.0f estimated)", rows_done, estimated);
    else
        snprintf(buf, n, "%.0f/%.0f rows (%.1f%%)", rows_done, estimated, 100.0 * rows_done / estimated);
    return buf;
}

int progress_line_due(struct progress_line *p, int finished)
{
    double now = progress_mono_ms();
    double interval = p->tty ? TTY_INTERVAL_MS : LOG_INTERVAL_MS;
    if (!finished && now - p->last_print_ms < interval)
        return 0;
    p->last_print_ms = now;
    return 1;
}

void progress_line_show(struct progress_line *p, const struct progress_sample *s, int finished)
{
    double total = s->est_total > s->rows_done ? s->est_total : s->rows_done;
    /* Not finished never reads 100 %: the estimate can be short of the real count. */
    double pct = finished ? 100.0 : total > 0 ? 100.0 * s->rows_done / total : 0.0;
    if (!finished && pct > 99.9)
        pct = 99.9;
    char eta[32], last[32] = "", rate[48];
    int known = progress_rate_known(s->rows_per_s);
    progress_eta(eta, sizeof eta, finished ? 0 : known && s->rows_per_s > 0 ? s->eta_s : -1);
    if (s->last_batch_ms >= 0)
        snprintf(last, sizeof last, "last %.0fms, ", s->last_batch_ms);
    char line[512];
    snprintf(line, sizeof line, "backfill %s: %.0f/%.0f rows (%.1f%%), %s, ETA %s, batch %.0f rows "
             "(%smax %.0fms), throttle %s%s", s->table, s->rows_done, total, pct,
             progress_rate(rate, sizeof rate, s->rows_per_s), eta, s->batch_rows, last, s->max_batch_ms,
             s->throttle ? s->throttle : "none", finished ? ", done" : "");
    if (!p->tty) {
        log_migration(LOG_LEVEL_INFO, p->migration, "%s", line);
        return;
    }
    fprintf(stderr, "\r\033[K%s", line);
    p->open = 1;
    if (finished)
        progress_line_end(p);
    fflush(stderr);
}

void progress_line_end(struct progress_line *p)
{
    if (p->open) {
        fputc('\n', stderr);
        p->open = 0;
    }
}
