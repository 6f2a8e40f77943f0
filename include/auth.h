/* Authentication at the proxy (auth mode "scram"): the proxy verifies the
 * client's SCRAM exchange against the users file, then logs in to the
 * upstream itself, so TLS clients with libpq's defaults (and channel
 * binding to the proxy's certificate) work in front of a TLS upstream. */
#ifndef PGTANDEM_AUTH_H
#define PGTANDEM_AUTH_H

#include <stdint.h>

struct session;
struct auth_state;

enum auth_result { AUTH_CONTINUE, AUTH_DONE, AUTH_FAILED, AUTH_NOT_MINE };

/* Looks the user up and sends AuthenticationSASL. AUTH_FAILED: the session
 * is closing with an ErrorResponse. */
enum auth_result auth_begin_client(struct session *s);
/* One complete client message (type 'p') while the proxy authenticates.
 * AUTH_DONE: the client proved its password; connect upstream next. */
enum auth_result auth_client_message(struct session *s, const uint8_t *msg, uint32_t len);
/* One complete upstream 'R' message while the proxy logs in upstream.
 * AUTH_DONE: AuthenticationOk arrived and the client has been told. */
enum auth_result auth_upstream_message(struct session *s, const uint8_t *msg, uint32_t len);
void auth_free(struct auth_state *a);

#endif
