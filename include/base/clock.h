/* The monotonic clock in milliseconds, and a sleep that finishes its time:
 * the one definition every layer uses for timing statements, backoffs and
 * rates (wall-clock time never measures a duration here). */
#ifndef PGTANDEM_CLOCK_H
#define PGTANDEM_CLOCK_H

double clock_now_ms(void);
/* Sleeps ms milliseconds, resuming after signals. Only for blocking
 * drivers (the CLI, the engine worker thread); never on the event loop. */
void clock_sleep_ms(long ms);

#endif
