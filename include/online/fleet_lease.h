/* The fleet lease's arithmetic, apart from the connection that renews it:
 * when the lease runs out, when a fence has lasted too long, how often the
 * heartbeat runs and when it is late. Pure: times are passed in. */
#ifndef PGTANDEM_FLEET_LEASE_H
#define PGTANDEM_FLEET_LEASE_H

#include <stdint.h>

/* A fence that lasts this many leases past its start is not going to lift
 * soon (the database is away, or the heartbeat keeps failing): its
 * sessions are closed with 57P01 rather than held on. */
#define FLEET_FENCE_BOUND_LEASES 2

/* The heartbeat runs four times per lease, between 100 ms and 1 s. */
int fleet_heartbeat_interval_ms(int lease_ms);
/* The relay's lease deadline after a heartbeat sent at sent_us was
 * answered: the lease counts from before the heartbeat was sent, since the
 * database starts counting then. 0 (not fenced) when nothing needs a fence. */
uint64_t fleet_lease_deadline_us(uint64_t sent_us, int lease_ms, int fencing);
/* How long a fence may last before its sessions are closed (0: never). */
uint32_t fleet_fence_bound_ms(int lease_ms);
/* 1 once the lease has run out (deadline 0: no lease, never). */
int fleet_lease_expired(uint64_t now_us, uint64_t deadline_us);
/* 1 once the lease ran out more than bound_ms ago. */
int fleet_fence_overdue(uint64_t now_us, uint64_t deadline_us, uint32_t bound_ms);
/* 1 when a heartbeat sent at sent_us has waited longer than one interval. */
int fleet_heartbeat_late(uint64_t now_us, uint64_t sent_us, int heartbeat_ms);

#endif
