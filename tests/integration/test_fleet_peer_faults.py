"""The cutover's hold and release told on the peer port only
(include/online/fleet_direct.h), the database kept as the record and the
fallback, and what a participant does when the peer path fails it
mid-hold. A tap between the coordinator and one participant's peer port
(its registered address points at the tap) forwards the messages and:

- cuts both connections right after the participant's "held" went back:
  the participant reads the hold's row at once, learns the outcome from
  the database and says so in its log;
- drops the release and keeps the connection open: the participant reads
  the hold's row RELEASE_LOOK_MS after its "held" and resumes well inside
  its hold bound;
- swallows the hold request: the coordinator tells the hold through the
  database after HOLD_NOTIFY_AFTER_MS, and the participant acknowledges
  in its row.

Each with a new-release pgbench client on every proxy: 0 client errors,
every proxy released, the contract committed once. (A participant and the
coordinator killed mid-hold: test_fleet.py, on the same peer path.)"""
import socket
import struct
import threading

from support import (assert_each_pgbench_clean, complete_via, make_fleet, NAME, NEW_SCRIPT, pgbench, pgbench_result,
                     scalar, start_migration, status, version_options, wait_for, wait_phase)

HOLD_BOUND_MS = 3200  # the participant's hold bound in these tests (drain 2000 ms + the fleet's margin)


class PeerTap:
    """Listens on 127.0.0.1 and forwards each connection to `target`
    ("host:port"), reading the peer messages (8-byte header: length, code;
    then the text) in both directions. mode: "cut_after_held", "drop_release"
    or "drop_hold"."""

    def __init__(self, target, mode):
        host, port = target.rsplit(":", 1)
        self.target = (host, int(port))
        self.mode = mode
        self.seen = []
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(16)
        self.address = "127.0.0.1:%d" % self.lsock.getsockname()[1]
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopped:
            try:
                client, _ = self.lsock.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            pair = {"closed": False}
            threading.Thread(target=self._pump, args=(client, server, "to", pair), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, "from", pair), daemon=True).start()

    def _close(self, a, b, pair):
        pair["closed"] = True
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def _pump(self, src, dst, direction, pair):
        buf = b""
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            if not data:
                if not pair["closed"]:
                    self._close(src, dst, pair)
                return
            buf += data
            while len(buf) >= 8:
                length, _code = struct.unpack("!II", buf[:8])
                if len(buf) < length:
                    break
                frame, buf = buf[:length], buf[length:]
                text = frame[8:].decode(errors="replace")
                word = text.split(" ", 1)[0]
                self.seen.append((direction, word))
                if direction == "to" and word == "release" and self.mode == "drop_release":
                    continue
                if direction == "to" and word == "hold" and self.mode == "drop_hold":
                    continue
                try:
                    dst.sendall(frame)
                except OSError:
                    return
                if direction == "from" and word == "held" and self.mode == "cut_after_held":
                    self._close(src, dst, pair)
                    return

    def stop(self):
        self.stopped = True
        self.lsock.close()


def fleet_id(proxy):
    return status(proxy)["fleet"]["id"]


def cutover_with_a_tap(cluster, proxy_factory, legacy_db, mode):
    """Three proxies, a tap in front of proxy 0's peer port, a new-release
    pgbench client on each, `complete` through proxy 1; returns (proxies,
    tap, report)."""
    proxies = make_fleet(proxy_factory, cluster, legacy_db)
    tap = PeerTap(status(proxies[0])["peer_address"], mode)
    scalar(cluster, legacy_db, "UPDATE pgtandem.proxies SET peer = '%s' WHERE id = '%s'" % (
        tap.address, fleet_id(proxies[0])))
    start_migration(proxies[2])
    for p in proxies:
        wait_phase(p, "active")
    benches = [pgbench(p, legacy_db, NEW_SCRIPT, 8, "prepared", version_options(), clients=2, jobs=1)
               for p in proxies]
    try:
        wait_for(lambda: all(status(p)["versions"].get(NAME, 0) >= 2 for p in proxies), 30,
                 "new-release sessions on every proxy")
        r, rep = complete_via(proxies[1])
        assert r.returncode == 0 and rep.get("status") == "completed", r.stdout + r.stderr + proxies[1].log()[-3000:]
    finally:
        results = [pgbench_result(proc, path) for proc, path in benches]
        tap.stop()
    assert_each_pgbench_clean(proxies, results)
    for p in proxies:
        wait_phase(p, "completed")
        assert status(p)["paused"] is False
    return proxies, tap, rep


def last_hold(proxy):
    return status(proxy)["fleet"]["last_hold"]


# A participant's heartbeat reads the newest hold's row too: on a loaded
# machine one in flight when the row commits may tell it before the peer
# message does ("learned" is then "database"); the release is what each
# test is about.


def test_a_peer_channel_cut_mid_hold_reads_the_outcome_from_the_database(cluster, proxy_factory, legacy_db):
    proxies, tap, rep = cutover_with_a_tap(cluster, proxy_factory, legacy_db, "cut_after_held")
    assert ("from", "held") in tap.seen, tap.seen
    # proxy 0's "held" reached the coordinator before the cut
    assert rep["steps"]["acks_peer"] >= 1 and rep["steps"]["acks_peer"] + rep["steps"]["acks_database"] == 2, rep
    log = proxies[0].log()
    assert "the coordinator's peer channel closed before its release; reading the hold's row" in log, log[-3000:]
    last = last_hold(proxies[0])
    assert last["released"] == "database" and last["committed"], last
    assert last["held_ms"] < HOLD_BOUND_MS / 2, last
    # proxy 2, untouched, heard everything on the peer port
    assert last_hold(proxies[2])["released"] == "peer", last_hold(proxies[2])


def test_a_lost_release_is_read_from_the_hold_row_well_inside_the_bound(cluster, proxy_factory, legacy_db):
    proxies, tap, rep = cutover_with_a_tap(cluster, proxy_factory, legacy_db, "drop_release")
    assert ("to", "release") in tap.seen, tap.seen
    assert rep["steps"]["acks_peer"] >= 1 and rep["steps"]["acks_peer"] + rep["steps"]["acks_database"] == 2, rep
    # the coordinator closes the channel right after the release it sent:
    # the participant reads the hold's row when its look is due (200 ms
    # after its "held") or at once when it sees the close, whichever first,
    # unless the contract's NOTIFY, the fallback every participant listens
    # to, came before both; either way its log says the database released it
    log = proxies[0].log()
    assert ("no release came on the peer port; the hold's row says the contract committed" in log
            or "the coordinator's peer channel closed before its release; reading the hold's row" in log
            or "released by the database)" in log), log[-3000:]
    last = last_hold(proxies[0])
    assert last["released"] == "database" and last["committed"], last
    assert last["held_ms"] < HOLD_BOUND_MS / 2, last
    assert last_hold(proxies[2])["released"] == "peer", last_hold(proxies[2])
    # one attempt, committed once
    assert scalar(cluster, legacy_db, "SELECT count(*) FROM pgtandem.fleet_holds WHERE committed") == "1"


def test_a_hold_request_lost_on_the_peer_port_is_told_through_the_database(cluster, proxy_factory, legacy_db):
    proxies, tap, rep = cutover_with_a_tap(cluster, proxy_factory, legacy_db, "drop_hold")
    assert ("to", "hold") in tap.seen and ("from", "held") not in tap.seen, tap.seen
    assert rep["steps"]["acks_database"] >= 1 and rep["steps"]["acks_peer"] + rep["steps"]["acks_database"] == 2, rep
    # told by the coordinator's NOTIFY 100 ms after the hold was written, or
    # by proxy 0's own heartbeat when that read the hold's row first (a
    # loaded machine): the database path either way
    told = "telling the fleet through the database" in proxies[1].log()
    assert "telling the hold through the database: ERROR" not in proxies[1].log(), proxies[1].log()[-3000:]
    assert told or "asked for by %s (on the database)" % fleet_id(proxies[1]) in proxies[0].log(), \
        proxies[1].log()[-3000:]
    last = last_hold(proxies[0])
    assert last["learned"] == "database" and last["committed"], last
    assert last["held_ms"] < HOLD_BOUND_MS / 2, last
