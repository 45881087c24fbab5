/* test_domain.c - unit tests of the pure domain code: field validation, money, the ingest
 * model, batch line splitting and CSV, metric ratios, the status rule and the period reports'
 * accumulator against their definitions. No database. */
#include "retentiond/domain/batch.h"
#include "retentiond/domain/metrics.h"
#include "retentiond/domain/model.h"
#include "retentiond/domain/reports.h"
#include "retentiond/domain/rules.h"

#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

START_TEST(timestamps)
{
    ck_assert_int_eq(rd_timestamp_check("2026-01-05T10:00:00Z"), RD_OK);
    ck_assert_int_eq(rd_timestamp_check("2026-01-05T10:00:00.123456+05:30"), RD_OK);
    ck_assert_int_eq(rd_timestamp_check("2024-02-29"), RD_OK);           /* leap year */
    ck_assert_int_eq(rd_timestamp_check("2023-02-29"), RD_ERR);
    ck_assert_int_eq(rd_timestamp_check("1900-02-29"), RD_ERR);          /* century, not leap */
    ck_assert_int_eq(rd_timestamp_check("2000-02-29"), RD_OK);           /* 400-year leap */
    ck_assert_int_eq(rd_timestamp_check("2026-04-31T00:00:00Z"), RD_ERR);
    ck_assert_int_eq(rd_timestamp_check("2026-01-05T24:00:00Z"), RD_ERR);
    ck_assert_int_eq(rd_timestamp_check("2026-01-05T10:00:00"), RD_ERR); /* no offset */
    ck_assert_int_eq(rd_timestamp_check("2026-1-5"), RD_ERR);
    ck_assert_int_eq(rd_timestamp_check(""), RD_ERR);
}
END_TEST

static char *money(json_t *v, const char **why)
{
    char *m = rd_money_from_json(v, why);
    json_decref(v);
    return m;
}

START_TEST(money_exact)
{
    const char *why = NULL;
    char *m;
    m = money(json_string("49.90"), &why);
    ck_assert_str_eq(m, "49.90");
    free(m);
    m = money(json_real(0.1), &why);   /* a double that reads 0.1 is sent as 0.1 */
    ck_assert_str_eq(m, "0.1");
    free(m);
    m = money(json_real(19.99), &why);
    ck_assert_str_eq(m, "19.99");
    free(m);
    m = money(json_integer(12), &why);
    ck_assert_str_eq(m, "12");
    free(m);
    m = money(json_string("007.50"), &why);
    ck_assert_str_eq(m, "7.50");
    free(m);
    ck_assert_ptr_null(money(json_string("-1"), &why));
    ck_assert_str_eq(why, "must not be negative");
    ck_assert_ptr_null(money(json_real(-0.5), &why));
    ck_assert_ptr_null(money(json_string("1e3"), &why));
    ck_assert_ptr_null(money(json_string("1.2345678"), &why));
    ck_assert_ptr_null(money(json_string("1234567890123456789"), &why));
    ck_assert_ptr_null(money(json_real(1e300), &why));
    ck_assert_ptr_null(money(json_real(0.1234567890123456), &why)); /* 16 digits: refused, not rounded */
    ck_assert_ptr_null(money(json_true(), &why));
    ck_assert_int_lt(rd_money_cmp("9.99", "10"), 0);
    ck_assert_int_eq(rd_money_cmp("10.50", "10.5"), 0);
    ck_assert_int_gt(rd_money_cmp("10.51", "10.5"), 0);
}
END_TEST

static json_t *errs_of(const char *json, const char *currency, int *rc)
{
    json_t *obj = json_loads(json, 0, NULL);
    json_t *errors = json_array();
    rd_order o;
    *rc = rd_order_parse(obj, currency, &o, errors);
    rd_order_free(&o);
    json_decref(obj);
    return errors;
}

static bool has_field(json_t *errors, const char *field)
{
    size_t i;
    json_t *e;
    json_array_foreach(errors, i, e)
        if (strcmp(json_string_value(json_object_get(e, "field")), field) == 0)
            return true;
    return false;
}

START_TEST(order_validation_names_every_field)
{
    int rc;
    json_t *e = errs_of("{\"order_id\": 5, \"customer_id\": \"c\", \"placed_at\": \"2026-01-01\", \"total\": \"10\"}",
                        "USD", &rc);
    ck_assert_int_eq(rc, RD_OK);
    ck_assert_int_eq(json_array_size(e), 0);
    json_decref(e);
    e = errs_of("{\"order_id\": \"\", \"placed_at\": \"2026-13-01\", \"total\": -3, \"refunded\": \"x\","
                " \"status\": \"lost\", \"currency\": \"eur\", \"test\": 1}", "USD", &rc);
    ck_assert_int_eq(rc, RD_ERR);
    const char *fields[] = {"order_id", "customer_id", "placed_at", "total", "refunded", "status", "currency", "test"};
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
        ck_assert_msg(has_field(e, fields[i]), "no error for %s", fields[i]);
    json_decref(e);
    e = errs_of("{\"order_id\": \"o\", \"customer_id\": \"c\", \"placed_at\": \"2026-01-01\", \"total\": \"10\","
                " \"refunded\": \"10.01\"}", "USD", &rc);
    ck_assert(has_field(e, "refunded"));
    json_decref(e);
    e = errs_of("{\"order_id\": \"o\", \"customer_id\": \"c\", \"placed_at\": \"2026-01-01\", \"total\": \"10\","
                " \"currency\": \"EUR\"}", "USD", &rc);
    ck_assert(has_field(e, "currency"));
    json_decref(e);
}
END_TEST

START_TEST(batch_lines_across_chunks)
{
    batch_reader b;
    batch_init(&b, "USD", "api");
    const char *data = "{\"kind\":\"event\",\"event_id\":\"e1\",\"customer_id\":\"c\",\"type\":\"visit\","
                       "\"occurred_at\":\"2026-01-01T00:00:00Z\"}\n\n{bad\n"
                       "{\"kind\":\"customer\",\"customer_id\":\"c2\"}";
    /* feed one byte at a time: line boundaries must not depend on chunking */
    for (size_t i = 0; data[i]; i++)
        batch_feed(&b, data + i, 1);
    batch_finish(&b);
    ck_assert_int_eq(b.line_no, 4);
    ck_assert_int_eq(b.set.n_events, 1);
    ck_assert_int_eq(b.set.n_customers, 1);
    ck_assert_int_eq(b.counts.rejected, 1);
    ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(b.rejected, 0), "line")), 3);
    batch_free(&b);
}
END_TEST

START_TEST(batch_csv)
{
    batch_reader b;
    batch_init(&b, "USD", "import");
    b.csv = true;
    b.default_kind = "order";
    const char *csv = "order_id,customer_id,placed_at,total,note\r\n"
                      "1,\"c, with comma\",2026-01-01,\"1,5\",x\r\n"
                      "2,c2,2026-01-02,2.50,\"say \"\"hi\"\"\"\r\n"
                      "3,c3\r\n";
    batch_feed(&b, csv, strlen(csv));
    batch_finish(&b);
    ck_assert_int_eq(b.set.n_orders, 1);            /* row 2 has total "1,5": rejected */
    ck_assert_str_eq(b.set.orders[0].customer_id, "c2");
    ck_assert_int_eq(b.counts.rejected, 2);          /* bad money, short row */
    batch_free(&b);
}
END_TEST

START_TEST(ratios_null_on_zero)
{
    ck_assert(isnan(metrics_ratio(1, 0)));
    ck_assert(isnan(metrics_ratio(NAN, 2)));
    ck_assert(fabs(metrics_ratio(1, 4) - 0.25) < 1e-12);
    metrics_counts c = {0};
    c.period_days = 31;
    metrics_figures m;
    metrics_summary(&c, &m);
    const double nulls[] = {m.retention_rate, m.churn_rate, m.repeat_purchase_rate, m.purchase_frequency,
                            m.average_order_value, m.customer_value, m.ltv_historical, m.cac};
    for (size_t i = 0; i < sizeof nulls / sizeof nulls[0]; i++)
        ck_assert_msg(isnan(nulls[i]), "figure %zu not null", i);
    /* the seeds' worked example: S 100, N 60, E 150 -> retention 0.9 */
    c = (metrics_counts){.period_days = 31, .S = 100, .E = 150, .N = 60, .lost = 10};
    metrics_summary(&c, &m);
    ck_assert(fabs(m.retention_rate - 0.9) < 1e-12);
    ck_assert(fabs(m.churn_rate - 0.1) < 1e-12);
    /* no churn: lifespan capped and flagged */
    c = (metrics_counts){.period_days = 365, .S = 10, .E = 10, .ordering = 10, .orders = 10, .revenue = 100};
    metrics_summary(&c, &m);
    ck_assert(m.average_lifespan_capped);
    ck_assert(fabs(m.average_lifespan_years - METRICS_MAX_LIFESPAN_YEARS) < 1e-12);
    /* by hand: 10 customer value a year for 10 years; spend 50 for 5 new customers, so cac 10 */
    ck_assert(fabs(m.ltv_historical - 100) < 1e-9);
    c.N = 5, c.has_spend = 1, c.acquisition_spend = 50;
    metrics_summary(&c, &m);
    ck_assert(fabs(m.cac - 10) < 1e-12);
    ck_assert(fabs(m.ltv_to_cac - 10) < 1e-9);
    ck_assert(isnan(m.retention_spend_per_retained_customer)); /* no one retained */
}
END_TEST

/* SPEC §4 status by hand; tests/integration/test_rules.py holds it equal to SQL's rd_status. */
START_TEST(status_by_hand)
{
    const int64_t day = 86400000000LL, as_of = 20000 * day;
    rules_status_in in = {.has_first = true, .has_last = true, .first_order = as_of - 40 * day,
                          .last_order = as_of - 20 * day, .order_count = 3, .as_of = as_of, .window_days = 365,
                          .gap_factor = 1.5, .p_alive_min = 0.5};
    /* gap 10 days, 20 since the last order: more than 1.5 x */
    ck_assert_int_eq(rules_status(&in), CUSTOMER_STATUS_AT_RISK);
    in.gap_factor = 2.0; /* exactly 2 x: not more */
    ck_assert_int_eq(rules_status(&in), CUSTOMER_STATUS_ACTIVE);
    in.has_p_alive = true, in.p_alive = 0.49;
    ck_assert_int_eq(rules_status(&in), CUSTOMER_STATUS_AT_RISK);
    in.p_alive = 0.5;
    ck_assert_int_eq(rules_status(&in), CUSTOMER_STATUS_ACTIVE);
    in.window_days = 20; /* the last order exactly at the window's start is inside it */
    ck_assert_int_eq(rules_status(&in), CUSTOMER_STATUS_ACTIVE);
    in.window_days = 19;
    ck_assert_int_eq(rules_status(&in), CUSTOMER_STATUS_LAPSED);
    ck_assert_str_eq(rules_status_name(CUSTOMER_STATUS_LAPSED), "lapsed");
    in.order_count = 0, in.has_first = in.has_last = false;
    ck_assert_int_eq(rules_status(&in), CUSTOMER_STATUS_NONE);
    ck_assert_ptr_null(rules_status_name(CUSTOMER_STATUS_NONE));
}
END_TEST

/* A summary worked out by hand: period [1000, 2000), window 500 (any unit of time); money in
 * 1/10 000 here (20000 is 2.00), scaled to RS_MONEY_SCALE. */
static rs_customer cust(const char *id, bool known, int64_t first, int n, const int64_t *tv)
{
    rs_customer c = {.id = (char *)id, .known = known, .since = 0, .first = first, .n = (uint32_t)n,
                     .cap = (uint32_t)n, .orders = calloc((size_t)n + 1, sizeof(rs_order))};
    for (int i = 0; i < n; i++)
        c.orders[i] = (rs_order){tv[2 * i], tv[2 * i + 1] * (RS_MONEY_SCALE / 10000)};
    return c;
}

static rs_result report_of(const rs_frame *f, rs_customer *c, int n)
{
    rs_acc *acc = reports_begin(f);
    for (int i = 0; i < n; i++)
        reports_add_customer(acc, &c[i]);
    rs_result r;
    reports_finish(acc, &r);
    return r;
}

START_TEST(summary_by_hand)
{
    rs_customer c[14];
    int k = 0;
    c[k++] = cust("A", true, 100, 2, (int64_t[]){600, 10, 1500, 50000});     /* S, E, returning */
    c[k++] = cust("B", true, 1200, 2, (int64_t[]){1200, 30000, 1300, 30000}); /* new, repeat */
    c[k++] = cust("C", true, 100, 1, (int64_t[]){100, 5});                    /* nothing */
    c[k++] = cust("D", true, 700, 2, (int64_t[]){700, 7, 1900, 20000});       /* S, E, returning */
    c[k++] = cust("E", true, 50, 2, (int64_t[]){50, 1, 1950, 20000});         /* E, reactivated */
    c[k++] = cust("F", true, 800, 1, (int64_t[]){800, 3});                    /* S, lost */
    c[k++] = cust("G", true, 1100, 1, (int64_t[]){1100, 20000});              /* new */
    for (int i = 0; i < 6; i++)                                               /* new, first == from */
        c[k++] = cust("H", true, 1000, 1, (int64_t[]){1000, 20000});
    c[k++] = cust("Z", false, RS_NONE, 1, (int64_t[]){1500, 10000}); /* orders before its customer row */
    rs_frame f = {.report = RS_SUMMARY, .from = 1000, .to = 2000, .window = 500};
    reports_fixed_window(&f, NULL);
    rs_result r = report_of(&f, c, k);
    const rs_summary *m = &r.summary;
    ck_assert_int_eq(m->customers, 13);
    ck_assert_int_eq(m->S, 3);
    ck_assert_int_eq(m->E, 4); /* A, D, E and Z: activity is read from the orders alone */
    ck_assert_int_eq(m->N, 8);
    ck_assert_int_eq(m->lost, 1);
    ck_assert_int_eq(m->retained, 2);
    ck_assert_int_eq(m->reactivated, 1);
    ck_assert_int_eq(m->ordering, 12);
    ck_assert_int_eq(m->repeat_ordering, 1);
    ck_assert_int_eq(m->returning, 3);
    ck_assert_int_eq(m->orders, 13);
    ck_assert_double_eq(reports_money_value(m->revenue), 30.0);
    ck_assert_double_eq(reports_money_value(m->returning_revenue), 9.0);
    ck_assert_double_eq(reports_money_value(m->new_revenue), 20.0);
    /* 12 ordering: the top ceil(2.4) = 3 revenues are 6.00, 5.00 and one of eight 2.00s */
    ck_assert_double_eq(reports_money_value(m->top20_revenue), 13.0);
    reports_result_free(&r);
    for (int i = 0; i < k; i++)
        free(c[i].orders);
}
END_TEST

START_TEST(money_as_postgresql_prints_it)
{
    ck_assert_double_eq(reports_money_value(0), 0.0);
    ck_assert_double_eq(reports_money_value(5), 0.000005);
    ck_assert_double_eq(reports_money_value(-1234567), -1.234567);
    ck_assert_double_eq(reports_money_value((rs_money)49900000), 49.9);
    /* beyond 2^53 units: the nearest double to the decimal, as strtod reads "123456789012.345678" */
    rs_money big = (rs_money)123456789012LL * RS_MONEY_SCALE + 345678;
    ck_assert_double_eq(reports_money_value(big), strtod("123456789012.345678", NULL));
    rs_money huge = (rs_money)1000000000000000000LL * RS_MONEY_SCALE * 1000 + 1; /* 10^21 + 10^-6 */
    ck_assert_double_eq(reports_money_value(huge), 1e21);
}
END_TEST

/* ---- the series and the matrix against their definitions, on random shops ---- */

static uint64_t rnd_state = 88172645463325252ULL;
static int64_t rnd(int64_t n)
{
    rnd_state ^= rnd_state << 13;
    rnd_state ^= rnd_state >> 7;
    rnd_state ^= rnd_state << 17;
    return (int64_t)(rnd_state % (uint64_t)n);
}

static bool ordered_in(const rs_customer *c, int64_t lo, int64_t hi)
{
    for (uint32_t k = 0; k < c->n; k++)
        if (c->orders[k].t >= lo && c->orders[k].t < hi)
            return true;
    return false;
}

/* A shop of n customers with up to 12 orders each over [0, span), bounds of uneven lengths. */
static int random_shop(rs_customer *c, int n, int64_t span)
{
    for (int i = 0; i < n; i++) {
        int m = (int)rnd(13);
        c[i] = (rs_customer){.id = "x", .known = rnd(10) != 0, .first = RS_NONE, .n = (uint32_t)m, .cap = (uint32_t)m,
                             .orders = calloc((size_t)m + 1, sizeof(rs_order))};
        int64_t t = rnd(span);
        for (int k = 0; k < m; k++) {
            c[i].orders[k] = (rs_order){t, rnd(100000) - 1000};
            t += rnd(span / 4 + 1) * (rnd(3) != 0); /* same-instant orders too */
        }
        if (c[i].known && m)
            c[i].first = rnd(8) ? c[i].orders[0].t : c[i].orders[0].t + rnd(50); /* a rollup behind, sometimes */
    }
    return n;
}

START_TEST(series_matches_its_definition)
{
    for (int round = 0; round < 60; round++) {
        int np = 1 + (int)rnd(round < 30 ? 14 : 140), nb = np + 2;
        int64_t b[160];
        b[0] = 1000 + rnd(500);
        for (int i = 1; i < nb; i++)
            b[i] = b[i - 1] + 28 + rnd(4) * (round % 3); /* months, weeks */
        int64_t span = b[nb - 1] + 600, window = 1 + rnd(round % 2 ? 400 : 40);
        rs_customer c[300];
        int n = random_shop(c, 300, span);
        rs_frame f = {.report = RS_RETENTION, .from = b[1] + rnd(10), .to = b[nb - 1] - rnd(5), .window = window,
                      .bounds = b, .nbounds = nb};
        /* every third round a calendar with clock changes: each bound's window a little longer
         * or shorter than `window` (kept in order, as a calendar's are) */
        int64_t w[160];
        reports_fixed_window(&f, w);
        for (int i = 0; round % 3 == 2 && i < nb; i++) {
            w[i] += (int64_t)rnd(7) - 3;
            if (i > 0 && w[i] < w[i - 1])
                w[i] = w[i - 1];
        }
        rs_result r = report_of(&f, c, n);
        ck_assert_int_eq(r.nperiods, np);
        for (int k = 1; k <= np; k++) {
            rs_period want = {0};
            int64_t not_before = 0;
            for (int i = 0; i < n; i++) {
                bool s = ordered_in(&c[i], w[k], b[k]), e = ordered_in(&c[i], w[k + 1], b[k + 1]);
                bool now = ordered_in(&c[i], b[k], b[k + 1]), before = ordered_in(&c[i], b[k - 1], b[k]);
                want.S += s;
                want.E += e;
                want.lost += s && !e;
                want.returning += now && before;
                not_before += now && !before;
                want.dormant += before && !now;
                want.N += c[i].known && c[i].first != RS_NONE && c[i].first >= b[k] && c[i].first < b[k + 1];
            }
            want.resurrecting = not_before - want.N;
            const rs_period *got = &r.periods[k - 1];
            ck_assert_msg(got->S == want.S && got->E == want.E && got->N == want.N && got->lost == want.lost &&
                              got->returning == want.returning && got->resurrecting == want.resurrecting &&
                              got->dormant == want.dormant,
                          "round %d period %d of %d: S %lld/%lld E %lld/%lld N %lld/%lld lost %lld/%lld "
                          "returning %lld/%lld resurrecting %lld/%lld dormant %lld/%lld", round, k, np,
                          (long long)got->S, (long long)want.S, (long long)got->E, (long long)want.E,
                          (long long)got->N, (long long)want.N, (long long)got->lost, (long long)want.lost,
                          (long long)got->returning, (long long)want.returning, (long long)got->resurrecting,
                          (long long)want.resurrecting, (long long)got->dormant, (long long)want.dormant);
        }
        reports_result_free(&r);
        for (int i = 0; i < n; i++)
            free(c[i].orders);
    }
}
END_TEST

START_TEST(matrix_matches_its_definition)
{
    for (int round = 0; round < 40; round++) {
        int np = 1 + (int)rnd(round < 20 ? 14 : 130), nb = np + 2;
        int64_t b[160];
        b[0] = 1000;
        for (int i = 1; i < nb; i++)
            b[i] = b[i - 1] + 28 + rnd(4);
        int64_t from = b[1] + (np > 1 ? rnd(20) : 0), to = b[nb - 2] + 1 + rnd(b[nb - 1] - b[nb - 2]);
        rs_customer c[300];
        int n = random_shop(c, 300, b[nb - 1] + 200);
        rs_frame f = {.report = RS_COHORTS, .from = from, .to = to, .bounds = b, .nbounds = nb};
        int64_t w[160];
        reports_fixed_window(&f, w);
        rs_result r = report_of(&f, c, n);
        int seen = 0;
        for (int ci = 0; ci < np; ci++) {
            int64_t size = 0;
            for (int i = 0; i < n; i++)
                size += c[i].known && c[i].first != RS_NONE && c[i].first >= from && c[i].first < to &&
                        c[i].first >= b[ci + 1] && c[i].first < b[ci + 2];
            if (!size)
                continue;
            ck_assert_int_lt(seen, r.ncohorts);
            const rs_cohort *co = &r.cohorts[seen++];
            ck_assert_int_eq(co->start, ci);
            ck_assert_int_eq(co->size, size);
            ck_assert_int_eq(co->ncells, np - ci);
            rs_money cum = 0;
            for (int k = 0; k < np - ci; k++) {
                int64_t active = 0, later = 0;
                rs_money rev = 0;
                for (int i = 0; i < n; i++) {
                    const rs_customer *x = &c[i];
                    if (!x->known || x->first == RS_NONE || x->first < from || x->first >= to ||
                        x->first < b[ci + 1] || x->first >= b[ci + 2])
                        continue;
                    bool in = false, after = false;
                    for (uint32_t o = 0; o < x->n; o++) {
                        int64_t t = x->orders[o].t;
                        if (t < from || t >= to)
                            continue;
                        in |= t >= b[ci + 1 + k] && t < b[ci + 2 + k];
                        after |= t >= b[ci + 1 + k];
                        if (t >= b[ci + 1 + k] && t < b[ci + 2 + k])
                            rev += x->orders[o].v;
                    }
                    active += in;
                    later += after;
                }
                cum += rev;
                const rs_cell *cell = &co->cells[k];
                ck_assert_int_eq(cell->active, active);
                ck_assert_int_eq(cell->active_on_or_after, later);
                ck_assert(cell->revenue == rev);
                ck_assert_double_eq(cell->share, (double)active / (double)size);
                ck_assert_double_eq(cell->cumulative_revenue_per_customer,
                                    (double)cum / ((double)RS_MONEY_SCALE * (double)size));
            }
        }
        ck_assert_int_eq(seen, r.ncohorts);
        reports_result_free(&r);
        for (int i = 0; i < n; i++)
            free(c[i].orders);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("domain");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, timestamps);
    tcase_add_test(tc, money_exact);
    tcase_add_test(tc, order_validation_names_every_field);
    tcase_add_test(tc, batch_lines_across_chunks);
    tcase_add_test(tc, batch_csv);
    tcase_add_test(tc, ratios_null_on_zero);
    tcase_add_test(tc, status_by_hand);
    tcase_add_test(tc, summary_by_hand);
    tcase_add_test(tc, money_as_postgresql_prints_it);
    tcase_add_test(tc, series_matches_its_definition);
    tcase_add_test(tc, matrix_matches_its_definition);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
