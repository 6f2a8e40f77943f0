/* Unit tests for the fleet lease's arithmetic (fleet_lease.c): the
 * heartbeat interval, the deadline counted from the heartbeat's sending,
 * the fence bound of two leases, and when a heartbeat is late. */
#include "fleet_lease.h"
#include "unit.h"

static void test_interval(void)
{
    CHECK("interval: a quarter of the lease", fleet_heartbeat_interval_ms(2000) == 500);
    CHECK("interval: at least 100 ms", fleet_heartbeat_interval_ms(200) == 100 && fleet_heartbeat_interval_ms(0) == 100);
    CHECK("interval: at most 1 s", fleet_heartbeat_interval_ms(60000) == 1000);
    CHECK("interval: the edges", fleet_heartbeat_interval_ms(400) == 100 && fleet_heartbeat_interval_ms(4000) == 1000);
}

static void test_deadline(void)
{
    CHECK("deadline: sent + lease", fleet_lease_deadline_us(5000000, 3000, 1) == 8000000);
    CHECK("deadline: none without a migration to fence for", fleet_lease_deadline_us(5000000, 3000, 0) == 0);
    uint64_t d = fleet_lease_deadline_us(1000000, 3000, 1);
    CHECK("expired: not at the deadline", !fleet_lease_expired(d, d));
    CHECK("expired: one microsecond after", fleet_lease_expired(d + 1, d));
    CHECK("expired: never without a lease", !fleet_lease_expired(UINT64_MAX, 0));
}

static void test_fence_bound(void)
{
    CHECK("bound: two leases", fleet_fence_bound_ms(3000) == 6000 && FLEET_FENCE_BOUND_LEASES == 2);
    uint64_t d = 10000000;
    uint32_t bound = fleet_fence_bound_ms(3000);
    CHECK("overdue: not within the bound", !fleet_fence_overdue(d + 6000000, d, bound));
    CHECK("overdue: past the bound", fleet_fence_overdue(d + 6000001, d, bound));
    CHECK("overdue: never with a bound of 0", !fleet_fence_overdue(UINT64_MAX / 2, d, 0));
    CHECK("overdue: never without a lease", !fleet_fence_overdue(UINT64_MAX / 2, 0, bound));
}

static void test_heartbeat_age(void)
{
    CHECK("late: not within one interval", !fleet_heartbeat_late(1500000, 1000000, 500));
    CHECK("late: past one interval", fleet_heartbeat_late(1500001, 1000000, 500));
    CHECK("late: a clock behind the sending is not late", !fleet_heartbeat_late(900000, 1000000, 500));
}

int main(void)
{
    test_interval();
    test_deadline();
    test_fence_bound();
    test_heartbeat_age();
    return UNIT_RESULT();
}
