/* The one retry policy of every step that can lose a lock race: the
 * expand's transactions, the contract run by the CLI and the cutover run by
 * the proxy. A statement that gets lock_not_available (55P03) is retried
 * after a delay that doubles from the first one, capped, with jitter so
 * that several engines (or a fleet) do not retry in step. */
#ifndef PGTANDEM_RETRY_H
#define PGTANDEM_RETRY_H

#define RETRY_FIRST_MS 100
#define RETRY_CAP_MS 3000
#define SQLSTATE_LOCK_NOT_AVAILABLE "55P03"

/* The delay before retry number `attempt` (0 = the first retry): between
 * half and one and a half times first_ms * 2^attempt, at most RETRY_CAP_MS
 * before jitter. seed is the caller's rand_r state. */
long retry_delay_ms(long first_ms, int attempt, unsigned int *seed);
/* Whether a statement that failed with sqlstate is worth retrying. */
int retry_worthwhile(const char *sqlstate);

#endif
