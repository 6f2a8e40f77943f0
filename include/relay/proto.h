/* PostgreSQL v3 wire protocol: constants, header-only framing, the startup
 * packet, and the per-session protocol tracker that follows transaction
 * status, COPY and pipelines without ever holding a whole message. */
#ifndef PGTANDEM_PROTO_H
#define PGTANDEM_PROTO_H

#include <stddef.h>
#include <stdint.h>

/* Special request codes in the startup packet's version field. */
#define PROTO_VERSION_3 196608u        /* 3.0: the only version the proxy speaks, to clients and upstream */
#define PROTO_CANCEL_CODE 80877102u    /* CancelRequest */
#define PROTO_SSL_CODE 80877103u       /* SSLRequest */
#define PROTO_GSSENC_CODE 80877104u    /* GSSENCRequest */
#define PROTO_MAX_STARTUP_LEN 10000u   /* body after the length word, as Postgres's MAX_STARTUP_PACKET_LENGTH */
#define PROTO_HEADER_LEN 5u            /* type byte + int32 length */

/* SQLSTATEs we send ourselves (src/backend/utils/errcodes.txt). */
#define SQLSTATE_PROTOCOL_VIOLATION "08P01"
#define SQLSTATE_CONNECTION_FAILURE "08006"
#define SQLSTATE_CANNOT_CONNECT_NOW "57P03"
#define SQLSTATE_ADMIN_SHUTDOWN "57P01"
#define SQLSTATE_FEATURE_NOT_SUPPORTED "0A000"
#define SQLSTATE_INVALID_AUTH_SPEC "28000"
#define SQLSTATE_TOO_MANY_CONNECTIONS "53300"
#define SQLSTATE_QUERY_CANCELED "57014"
#define SQLSTATE_INTERNAL_ERROR "XX000"
#define SQLSTATE_DUPLICATE_PSTATEMENT "42P05"

enum header_result { HEADER_NEED_MORE, HEADER_OK, HEADER_BAD_LENGTH };

struct msg_header {
    uint8_t type;
    uint32_t length; /* as on the wire: includes the 4 length bytes, not the type */
};

/* The largest length a message header can carry (a signed Int32). */
#define PROTO_MAX_LENGTH 0x7fffffffu
/* Reads a regular message header from the first `avail` bytes of `buf`.
 * A length below 4, above max_length or above PROTO_MAX_LENGTH is
 * HEADER_BAD_LENGTH. */
enum header_result proto_read_header(const uint8_t *buf, size_t avail, uint32_t max_length,
                                     struct msg_header *out);

/* ---- startup packet ---- */

#define PROTO_OPTION_PREFIX "_pq_."

struct evbuffer;

/* A parsed startup-phase packet. The v3 parameters stay where they are in
 * the caller's buffer ("key\0value\0...\0"), so a session keeps a few bytes
 * per parameter instead of a table sized for the worst case.
 *
 * A 3.x StartupMessage of any minor version is served at 3.0, as Postgres
 * serves a minor it does not know: `code` reads PROTO_VERSION_3 and
 * `requested` keeps what the client asked for. Protocol options (names
 * starting "_pq_.") are none the proxy knows: they are counted in npq,
 * skipped by startup_next_param and startup_param (so they never reach the
 * upstream or a pool's key) and named in the NegotiateProtocolVersion
 * answer (proto_add_negotiate_version). */
struct startup_packet {
    uint32_t code; /* PROTO_VERSION_3, PROTO_SSL_CODE, PROTO_CANCEL_CODE, ... */
    uint32_t requested;            /* the version word the client sent */
    int nparams;                   /* parameters, "_pq_." options not counted */
    int npq;                       /* "_pq_." protocol options */
    const char *params;            /* first key (parameter or option), validated by the parser */
    /* CancelRequest */
    uint32_t cancel_pid;
    uint32_t cancel_key;
};

/* Reads the length word of a startup-phase packet (no type byte).
 * Returns HEADER_NEED_MORE until 4 bytes are there, HEADER_BAD_LENGTH for a
 * length Postgres refuses (below 8, or a body over PROTO_MAX_STARTUP_LEN). */
enum header_result proto_read_startup_length(const uint8_t *buf, size_t avail, uint32_t *length);

/* Why a startup-phase packet is refused, answered as Postgres's
 * ProcessStartupPacket answers the same bytes: a FATAL ErrorResponse with
 * `sqlstate`, or, for the communication errors Postgres only logs (a bad
 * length, a CancelRequest of the wrong size), nothing at all: the client may
 * not even speak the protocol, and node-postgres takes the silence it gets
 * from Postgres for granted. */
struct startup_refusal {
    const char *sqlstate;   /* NULL: close without a word */
    int old_protocol;       /* a 1.x/2.x client: the error in the pre-3.0 format */
    char message[160];
};

/* Parses a whole startup-phase packet (length word included). On error
 * returns -1 and fills *why. The packet buffer must outlive `out`. */
int proto_parse_startup(uint8_t *packet, size_t length, struct startup_packet *out, struct startup_refusal *why);
/* Fills *why as Postgres refuses a protocol version it does not speak
 * (also what a second SSLRequest or GSSENCRequest reads as); returns -1. */
int proto_refuse_protocol(struct startup_refusal *why, uint32_t code);

const char *startup_param(const struct startup_packet *sp, const char *key);
/* Walks the parameters in order: NULL gives the first key; returns the key
 * after `key` (its value in *value), or NULL after the last. Protocol
 * options ("_pq_.") are not parameters and are skipped. */
const char *startup_next_param(const struct startup_packet *sp, const char *key, const char **value);

/* A startup parameter written "value<sep>suffix" (a database named
 * "appdb@v2" by a pooler that passes nothing else on): the packet is
 * rewritten in place to say "value", *length and *sp follow, and the
 * suffix is returned (the caller frees it); NULL, with nothing changed,
 * when there is no separator with text on both sides. */
char *proto_startup_split_param(uint8_t *packet, uint32_t *length, struct startup_packet *sp, const char *key,
                                 char sep);
/* Postgres answers a StartupMessage with a NegotiateProtocolVersion when
 * the client asked for a newer minor version than it serves or for
 * protocol options it does not know; so does the proxy, which serves 3.0
 * and knows no options. */
int proto_needs_negotiation(const struct startup_packet *sp);
/* Appends that NegotiateProtocolVersion ('v'): the newest version served
 * for the major the client asked for (3.0, as the version word Postgres
 * sends, 0x00030000) and the names of the options not recognized. */
void proto_add_negotiate_version(struct evbuffer *out, const struct startup_packet *sp);

/* ---- authentication ---- */

#define AUTH_OK 0
#define AUTH_SASL 10

/* Rewrites the body of an AuthenticationSASL message (after the int32 code)
 * without SCRAM-SHA-256-PLUS: channel binding cannot cross a TLS hop that
 * ends at the proxy. Writes at most `cap` bytes to `out`; returns the new
 * body length or -1 when the list is malformed. */
int proto_sasl_without_plus(const uint8_t *body, size_t len, uint8_t *out, size_t cap);

/* ---- session protocol tracking ---- */

/* What the proxy needs to know to tell a transaction boundary: every Query,
 * Sync and FunctionCall the client sends is answered by one ReadyForQuery,
 * except Syncs the server ignores while in COPY-in mode. */
struct proto_tracker {
    uint32_t pending_rfq;    /* ReadyForQuery messages the server still owes */
    uint32_t syncs_since_execute; /* Syncs sent after the last Execute */
    char tx_status;          /* last ReadyForQuery status: 'I', 'T' or 'E' */
    uint8_t mid_unit;        /* client sent part of an extended-protocol batch */
    uint8_t copy_in;         /* server is in COPY-in mode */
};

void tracker_init(struct proto_tracker *t);
/* Called for every client message the proxy forwards. */
void tracker_client_message(struct proto_tracker *t, uint8_t type);
/* Called for every server message; `status` is the ReadyForQuery byte
 * (ignored for other types). Returns 1 when this message completed a unit
 * (a ReadyForQuery that leaves nothing pending). */
int tracker_server_message(struct proto_tracker *t, uint8_t type, uint8_t status);
/* True when the session sits at a transaction boundary: no transaction
 * open, nothing in flight, not in the middle of a batch or COPY. */
int tracker_at_boundary(const struct proto_tracker *t);
/* True when a message starting now may be held back during a pause without
 * stalling anything the client is already waiting on. */
int tracker_may_hold_next(const struct proto_tracker *t);

/* ---- messages the proxy writes itself ---- */

/* Appends "key\0value<extra>\0" to a StartupMessage's parameters (extra may be NULL). */
void proto_add_startup_param(struct evbuffer *params, const char *key, const char *value, const char *extra);
/* Appends a protocol 3.0 StartupMessage with `params` (emptied) to `out`. */
void proto_add_startup(struct evbuffer *out, struct evbuffer *params);
/* Appends a simple Query message. */
void proto_add_query(struct evbuffer *out, const char *sql);

/* What the proxy asks a backend whose BackendKeyData PID may be an edge's
 * own (Neon's proxy makes one up per connection), and the answer's
 * DataRow: one column, the PID as text. 0 with *pid set, or -1 for any
 * other row. */
#define PROTO_PID_PROBE_SQL "SELECT pg_backend_pid()"
int proto_read_pid_row(const uint8_t *msg, uint32_t len, uint32_t *pid);

/* Formats an ErrorResponse (severity FATAL or ERROR) into `out`, returning
 * its length (0 when `cap` is too small). */
size_t proto_format_error(uint8_t *out, size_t cap, const char *severity, const char *sqlstate,
                          const char *message);
/* The same in the format before protocol 3.0 ('E', "SEVERITY:  message\n",
 * NUL), which Postgres still uses to refuse a 1.x or 2.x client. */
size_t proto_format_old_error(uint8_t *out, size_t cap, const char *severity, const char *message);

static inline uint32_t proto_get_u32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

static inline void proto_put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

#endif
