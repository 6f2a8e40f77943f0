/* GET / on the admin port: the status page, one self-contained HTML
 * document compiled into the binary (see status_page.c). */
#ifndef PGTANDEM_STATUS_PAGE_H
#define PGTANDEM_STATUS_PAGE_H

struct evhttp_request;

/* Sends the page with status code 200, or 401 when the request lacks the
 * token (the same document, which then asks for it). The page holds no
 * data and never the token: its script fetches everything with the token
 * the operator typed, kept in the tab's sessionStorage. */
void status_page_reply(struct evhttp_request *req, int code);

#endif
