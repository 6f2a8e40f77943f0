/* The backfill status line that `migrate start` prints in both modes (direct
 * and --proxy), modelled on gh-ost's: rewritten in place on a terminal, a
 * plain log line every few seconds when stderr is not a terminal. */
#ifndef PGTANDEM_PROGRESS_LINE_H
#define PGTANDEM_PROGRESS_LINE_H

#include <stddef.h>

struct progress_line {
    int tty;                /* rewrite one line in place instead of logging */
    int open;               /* a line is on the terminal without its newline */
    double last_print_ms;
    const char *migration;  /* tags the log lines (NULL: none) */
};

struct progress_sample {
    const char *table;
    double rows_done, est_total, rows_per_s;
    double eta_s;           /* < 0: unknown */
    double batch_rows;
    double last_batch_ms;   /* < 0: not known to this caller */
    double max_batch_ms;
    const char *throttle;   /* NULL: none */
};

double progress_mono_ms(void);
/* "1234 rows/s", or "? rows/s" when the number is no measurement (negative,
 * infinite, not a number: counters that restarted, a clock that did not
 * move). Returns buf. */
const char *progress_rate(char *buf, size_t n, double rows_per_s);
/* True when rows_per_s is a rate worth printing. */
int progress_rate_known(double rows_per_s);
/* "42s", "3m05s", "1h02m"; "?" when negative or absurd. Returns buf. */
const char *progress_eta(char *buf, size_t n, double seconds);
/* The row count as `migrate status` shows it: "done/total rows (pct)" with
 * the real total once finished (never above 100 %, never 99.9 % when done),
 * and no percentage once the rows done pass the estimate, which is then
 * known to be wrong. Returns buf. */
const char *progress_rows(char *buf, size_t n, double rows_done, double estimated, int finished);
/* True when a line is due (every 100 ms on a terminal, 2 s otherwise, and
 * always when finished); stamps the time when it says yes. */
int progress_line_due(struct progress_line *p, int finished);
void progress_line_show(struct progress_line *p, const struct progress_sample *s, int finished);
/* Ends a line left open on the terminal, before anything else is printed. */
void progress_line_end(struct progress_line *p);

#endif
