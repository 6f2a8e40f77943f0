/* The fleet lease's arithmetic (see fleet_lease.h); fleet_heartbeat.c applies it. */
#include "fleet_lease.h"

int fleet_heartbeat_interval_ms(int lease_ms)
{
    int quarter = lease_ms / 4;
    return quarter < 100 ? 100 : quarter > 1000 ? 1000 : quarter;
}

uint64_t fleet_lease_deadline_us(uint64_t sent_us, int lease_ms, int fencing)
{
    return fencing ? sent_us + (uint64_t)lease_ms * 1000u : 0;
}

uint32_t fleet_fence_bound_ms(int lease_ms)
{
    return (uint32_t)(FLEET_FENCE_BOUND_LEASES * lease_ms);
}

int fleet_lease_expired(uint64_t now_us, uint64_t deadline_us)
{
    return deadline_us && now_us > deadline_us;
}

int fleet_fence_overdue(uint64_t now_us, uint64_t deadline_us, uint32_t bound_ms)
{
    return deadline_us && bound_ms && now_us > deadline_us + (uint64_t)bound_ms * 1000u;
}

int fleet_heartbeat_late(uint64_t now_us, uint64_t sent_us, int heartbeat_ms)
{
    return now_us > sent_us && now_us - sent_us > (uint64_t)heartbeat_ms * 1000u;
}
