"""An upstream that answers like an idle Postgres, for measuring how much
memory a proxy spends per idle client when there are more clients than this
machine can run Postgres backends for (10,000). It speaks just enough of
protocol 3: refuses TLS and GSS encryption ('N'), logs everyone in (trust),
answers a simple Query or an extended-protocol pipeline up to Sync with one
int4 row of 1, and never stores anything. Not a database: it exists only so
that bench/idle_memory.sh measures the proxies, not Postgres.

    /usr/bin/python3 bench/idle_upstream.py PORT
"""
import asyncio
import struct
import sys

SSL_REQUEST, GSS_REQUEST, CANCEL_REQUEST = 80877103, 80877104, 80877102


def msg(kind, payload=b""):
    return kind + struct.pack("!I", len(payload) + 4) + payload


def cstr(s):
    return s.encode() + b"\0"


LOGIN = (msg(b"R", struct.pack("!I", 0))
         + b"".join(msg(b"S", cstr(k) + cstr(v)) for k, v in (
             ("server_version", "15.0"), ("server_encoding", "UTF8"), ("client_encoding", "UTF8"),
             ("DateStyle", "ISO, MDY"), ("integer_datetimes", "on"), ("standard_conforming_strings", "on"),
             ("TimeZone", "UTC"), ("IntervalStyle", "postgres"), ("is_superuser", "off"),
             ("application_name", "")))
         + msg(b"K", struct.pack("!II", 1, 1))
         + msg(b"Z", b"I"))
ROW_DESCRIPTION = msg(b"T", struct.pack("!H", 1) + cstr("?column?") + struct.pack("!IHIhih", 0, 0, 23, 4, -1, 0))
ONE_ROW = msg(b"D", struct.pack("!HI", 1, 1) + b"1")
SELECT_DONE = msg(b"C", cstr("SELECT 1"))
READY = msg(b"Z", b"I")
ANSWERS = {b"P": msg(b"1"), b"B": msg(b"2"), b"D": ROW_DESCRIPTION, b"E": ONE_ROW + SELECT_DONE,
           b"C": msg(b"3"), b"S": READY, b"H": b"", b"Q": ROW_DESCRIPTION + ONE_ROW + SELECT_DONE + READY}


async def startup(reader, writer):
    """Reads startup packets until the StartupMessage; False for a cancel."""
    while True:
        (length,) = struct.unpack("!I", await reader.readexactly(4))
        body = await reader.readexactly(length - 4)
        (code,) = struct.unpack("!I", body[:4])
        if code in (SSL_REQUEST, GSS_REQUEST):
            writer.write(b"N")
            continue
        return code != CANCEL_REQUEST


async def serve(reader, writer):
    try:
        if not await startup(reader, writer):
            return
        writer.write(LOGIN)
        while True:
            kind = await reader.readexactly(1)
            (length,) = struct.unpack("!I", await reader.readexactly(4))
            await reader.readexactly(length - 4)
            if kind == b"X":
                return
            writer.write(ANSWERS.get(kind, b""))
            if kind in (b"S", b"Q", b"H"):
                await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main(port):
    server = await asyncio.start_server(serve, "127.0.0.1", port, backlog=4096)
    print("listening on %d" % port, flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(main(int(sys.argv[1])))
