/* privacy.h - erasure, export and data requests (GDPR Art. 15, 17, 20): sql/privacy.sql and
 * migrations/003_privacy.sql. Each function runs in a transaction of its own. */
#ifndef RETENTIOND_STORE_PRIVACY_H
#define RETENTIOND_STORE_PRIVACY_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>

#define STORE_ERASE_KINDS 16

/* What an erasure removed: rows per kind, in the SQL function's order. */
typedef struct {
    int n;
    struct {
        char kind[32];
        int64_t rows;
    } counts[STORE_ERASE_KINDS];
    int64_t customers; /* the "customers" count: 0 when none of the named customers existed */
} store_erasure;

/* Erases customers ids[0..nids) and orders orders[0..norders) of the tenant, with everything
 * derived from them (rd_erase). by: who asked, for the audit row ("key <id>", "shopify <topic>").
 * in_txn: in the caller's open transaction (a webhook's group), else in one of its own.
 * Returns RD_OK or RD_ERR. */
int store_erase(PGconn *conn, int64_t tenant_id, const char *const *ids, int nids, const char *const *orders,
                int norders, const char *by, bool in_txn, store_erasure *out);

/* Erases all of the tenant's data, keeping the tenant, its keys and secrets (rd_erase_shop). */
int store_erase_shop(PGconn *conn, int64_t tenant_id, const char *by, bool in_txn, store_erasure *out);

/* A result's rows as text, with each column's name and type, for the export document. */
typedef struct {
    int ncols, nrows;
    char **names;
    unsigned *types;  /* PostgreSQL type OIDs */
    char **cells;     /* nrows * ncols; NULL: SQL NULL */
} store_rows;

/* Everything stored about one customer, read in one repeatable-read snapshot. */
typedef struct {
    bool found;
    store_rows record, orders, events, rung_history, prediction;
} store_export;

int store_customer_export(PGconn *conn, int64_t tenant_id, const char *customer_id, store_export *out);
void store_export_free(store_export *e);

/* Records a platform's data request (idempotent by request id). RD_OK or RD_ERR. */
int store_privacy_request_add(PGconn *conn, int64_t tenant_id, const char *platform, const char *request_id,
                              const char *customer_id, const char *const *orders, int norders);

/* The tenant's data requests, newest first, as rows (request_id, platform, customer_id, orders,
 * received_at). */
int store_privacy_requests(PGconn *conn, int64_t tenant_id, store_rows *out);
/* A result's rows into *out (the result stays the caller's). */
void store_rows_take(const PGresult *res, store_rows *out);
void store_rows_free(store_rows *r);

#endif
