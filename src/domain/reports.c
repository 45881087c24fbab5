/* reports.c - the period reports over the in-memory orders (see reports.h).
 *
 * Each function mirrors its SQL twin statement by statement; the comments name the twin's
 * part. A customer's orders are sorted by time, so each report is one walk over them. */
#include "retentiond/domain/reports.h"

#include "retentiond/util.h"

#include <stdlib.h>
#include <string.h>

typedef __int128 money_sum; /* 1 M orders of up to 10^11 each, in 1/10 000: beyond int64 */

static json_t *money(money_sum v)
{
    return json_real((double)v / RS_MONEY_SCALE);
}

/* ---- summary (rd_metrics_summary, 004) ---- */

/* The sum of the k largest of v[0..n) (reordering v): quickselect, each round keeping the side
 * that holds the boundary and adding up the side wholly above it. */
static money_sum top_sum(money_sum *v, int64_t n, int64_t k)
{
    money_sum sum = 0;
    int64_t lo = 0, hi = n; /* the k largest of v[lo..hi) are still to be added */
    while (k > 0 && hi - lo > k) {
        money_sum a = v[lo], b = v[lo + (hi - lo) / 2], c = v[hi - 1];
        money_sum pivot = a < b ? (b < c ? b : a < c ? c : a) : (a < c ? a : b < c ? c : b);
        /* three-way partition: [lo, gt) > pivot, [gt, eq) == pivot, [eq, hi) < pivot */
        int64_t gt = lo, i = lo, lt = hi;
        while (i < lt) {
            if (v[i] > pivot) {
                money_sum t = v[i]; v[i] = v[gt]; v[gt] = t;
                gt++, i++;
            } else if (v[i] < pivot) {
                lt--;
                money_sum t = v[i]; v[i] = v[lt]; v[lt] = t;
            } else {
                i++;
            }
        }
        int64_t above = gt - lo, equal = lt - gt;
        if (k <= above) {
            hi = gt;
        } else {
            for (int64_t j = lo; j < gt; j++)
                sum += v[j];
            k -= above;
            int64_t take = k < equal ? k : equal;
            sum += (money_sum)pivot * take;
            k -= take;
            lo = k > 0 ? lt : hi; /* the rest, if any, comes from below the pivot */
        }
    }
    for (int64_t j = lo; k > 0 && j < hi; j++, k--)
        sum += v[j];
    return sum;
}

json_t *reports_summary(const rs_shop *shop, const rs_frame *f)
{
    int64_t customers = 0, S = 0, E = 0, N = 0, lost = 0, retained = 0, reactivated = 0;
    int64_t ordering = 0, repeat = 0, returning = 0, orders = 0;
    money_sum revenue = 0, returning_revenue = 0, new_revenue = 0, top20 = 0;
    money_sum *revs = xmalloc(sizeof *revs * (shop->n ? shop->n : 1));

    for (uint32_t i = 0; i < shop->n; i++) {
        const rs_customer *c = &shop->c[i];
        if (c->known && c->since < f->to)
            customers++;
        if (c->known && c->first != RS_NONE && c->first >= f->from && c->first < f->to)
            N++;
        if (!c->n)
            continue;
        /* s, e: an order in the window before from / to; p: the orders in the period */
        bool s = false, e = false;
        int64_t n = 0;
        money_sum rev = 0;
        for (uint32_t k = 0; k < c->n; k++) {
            int64_t t = c->orders[k].t;
            s |= t >= f->from - f->window && t < f->from;
            e |= t >= f->to - f->window && t < f->to;
            if (t >= f->from && t < f->to) {
                n++;
                rev += c->orders[k].v;
            }
        }
        S += s;
        E += e;
        lost += s && !e;
        retained += s && e;
        if (!n)
            continue;
        revs[ordering++] = rev;
        repeat += n >= 2;
        orders += n;
        revenue += rev;
        /* pc: joined to the customers row; is_returning is NULL without a first order */
        if (c->known && c->first != RS_NONE) {
            if (c->first < f->from) {
                returning++;
                returning_revenue += rev;
                reactivated += !s;
            } else {
                new_revenue += rev;
            }
        }
    }
    /* ranked: the top ceil(20 %) revenues (ties do not change the sum) */
    top20 = top_sum(revs, ordering, (ordering + 4) / 5);
    free(revs);

    json_t *d = json_object();
    json_object_set_new(d, "customers", json_integer(customers));
    json_object_set_new(d, "S", json_integer(S));
    json_object_set_new(d, "E", json_integer(E));
    json_object_set_new(d, "N", json_integer(N));
    json_object_set_new(d, "lost", json_integer(lost));
    json_object_set_new(d, "retained", json_integer(retained));
    json_object_set_new(d, "reactivated", json_integer(reactivated));
    json_object_set_new(d, "ordering", json_integer(ordering));
    json_object_set_new(d, "repeat_ordering", json_integer(repeat));
    json_object_set_new(d, "returning", json_integer(returning));
    json_object_set_new(d, "orders", json_integer(orders));
    json_object_set_new(d, "revenue", money(revenue));
    json_object_set_new(d, "returning_revenue", money(returning_revenue));
    json_object_set_new(d, "new_revenue", money(new_revenue));
    json_object_set_new(d, "top20_revenue", money(top20));
    json_object_set(d, "acquisition_spend", f->acquisition_spend);
    json_object_set(d, "retention_spend", f->retention_spend);
    return d;
}

/* ---- retention (rd_metrics_retention, 008) ---- */

/* PostgreSQL's width_bucket(x, b[1..n]): how many of the sorted bounds are <= x. */
static int bucket(const int64_t *b, int n, int64_t x)
{
    int lo = 0, hi = n;
    while (lo < hi) {
        int m = lo + (hi - lo) / 2;
        if (b[m] <= x)
            lo = m + 1;
        else
            hi = m;
    }
    return lo;
}

json_t *reports_retention(const rs_shop *shop, const rs_frame *f)
{
    int nb = f->nbounds, np = nb - 2;
    json_t *rows = json_array();
    if (np <= 0)
        return rows;
    const int64_t *b = f->bounds; /* b[0] is the SQL's b[1] */
    int64_t lo = b[0] < b[1] - f->window ? b[0] : b[1] - f->window, hi = b[nb - 1];
    /* per period k (1..np): S, E, lost, returning, not active before, dormant, new */
    int64_t(*cnt)[7] = xcalloc((size_t)np + 1, sizeof *cnt);
    enum { S_, E_, LOST, RET, NOT_BEFORE, DORMANT, NEW };

    for (uint32_t i = 0; i < shop->n; i++) {
        const rs_customer *c = &shop->c[i];
        if (c->known && c->first != RS_NONE && c->first >= b[1] && c->first < hi)
            cnt[bucket(b, nb, c->first) - 1][NEW]++;
        uint64_t act = 0, ord = 0;
        bool seen = false;
        int pn = 0, h = 0; /* width_bucket of t and of t + window: they only grow along the orders */
        for (uint32_t k = 0; k < c->n; k++) {
            int64_t t = c->orders[k].t;
            if (t < lo)
                continue;
            if (t >= hi)
                break;
            seen = true;
            while (pn < nb && b[pn] <= t)
                pn++;
            while (h < nb && b[h] <= t + f->window)
                h++;
            if (h > pn)
                act |= ((UINT64_C(1) << (h - pn)) - 1) << pn;
            if (pn >= 1)
                ord |= UINT64_C(1) << (pn - 1);
        }
        if (!seen)
            continue;
        for (int k = 1; k <= np; k++) {
            cnt[k][S_] += (act >> k) & 1;
            cnt[k][E_] += (act >> (k + 1)) & 1;
            cnt[k][LOST] += ((act >> k) & 3) == 1;
            unsigned two = (unsigned)((ord >> (k - 1)) & 3);
            cnt[k][RET] += two == 3;
            cnt[k][NOT_BEFORE] += two == 2;
            cnt[k][DORMANT] += two == 1;
        }
    }
    for (int k = 1; k <= np; k++) {
        json_t *r = json_object();
        json_object_set(r, "period_start", json_array_get(f->bounds_json, (size_t)k));
        json_object_set(r, "period_end", json_array_get(f->bounds_json, (size_t)k + 1));
        json_object_set_new(r, "S", json_integer(cnt[k][S_]));
        json_object_set_new(r, "E", json_integer(cnt[k][E_]));
        json_object_set_new(r, "N", json_integer(cnt[k][NEW]));
        json_object_set_new(r, "lost", json_integer(cnt[k][LOST]));
        json_object_set_new(r, "new", json_integer(cnt[k][NEW]));
        json_object_set_new(r, "returning", json_integer(cnt[k][RET]));
        json_object_set_new(r, "resurrecting", json_integer(cnt[k][NOT_BEFORE] - cnt[k][NEW]));
        json_object_set_new(r, "dormant", json_integer(cnt[k][DORMANT]));
        json_array_append_new(rows, r);
    }
    free(cnt);
    return rows;
}

/* ---- cohorts (rd_metrics_cohorts, 008) ---- */

json_t *reports_cohorts(const rs_shop *shop, const rs_frame *f)
{
    json_t *out = json_array();
    int np = f->nbounds - 2;
    if (np <= 0)
        return out;
    const int64_t *starts = f->bounds + 1; /* np period starts; the last period ends at bounds[np + 1] */
    /* per cohort i (its start is starts[i]) and period since k: active members, revenue, and
     * members whose last active period is k */
    size_t cells = (size_t)np * (size_t)np;
    int64_t *size = xcalloc((size_t)np, sizeof *size);
    int64_t *active = xcalloc(cells, sizeof *active), *last = xcalloc(cells, sizeof *last);
    money_sum *rev = xcalloc(cells, sizeof *rev);

    for (uint32_t i = 0; i < shop->n; i++) {
        const rs_customer *c = &shop->c[i];
        if (!c->known || c->first == RS_NONE || c->first < f->from || c->first >= f->to)
            continue;
        int ci = bucket(starts, np, c->first) - 1;
        if (ci < 0) /* not possible: first >= from >= starts[0] */
            continue;
        size[ci]++;
        int prev = -1;
        for (uint32_t k = 0; k < c->n; k++) {
            int64_t t = c->orders[k].t;
            if (t < f->from || t >= f->to)
                continue;
            int j = bucket(starts, np, t) - 1 - ci;
            if (j < 0)
                continue;
            size_t cell = (size_t)ci * (size_t)np + (size_t)j;
            if (j != prev)
                active[cell]++;
            rev[cell] += c->orders[k].v;
            prev = j;
        }
        if (prev >= 0)
            last[(size_t)ci * (size_t)np + (size_t)prev]++;
    }
    for (int ci = 0; ci < np; ci++) {
        if (!size[ci])
            continue;
        double n = (double)size[ci];
        int width = np - ci;
        int64_t on_or_after = 0;
        for (int k = 0; k < width; k++)
            on_or_after += last[(size_t)ci * (size_t)np + (size_t)k];
        money_sum cum = 0;
        json_t *row = json_array();
        for (int k = 0; k < width; k++) {
            size_t cell = (size_t)ci * (size_t)np + (size_t)k;
            cum += rev[cell];
            json_t *x = json_object();
            json_object_set_new(x, "period", json_integer(k));
            json_object_set_new(x, "active", json_integer(active[cell]));
            json_object_set_new(x, "share", json_real((double)active[cell] / n));
            json_object_set_new(x, "revenue", money(rev[cell]));
            json_object_set_new(x, "active_on_or_after", json_integer(on_or_after));
            json_object_set_new(x, "share_on_or_after", json_real((double)on_or_after / n));
            json_object_set_new(x, "cumulative_revenue_per_customer",
                                json_real((double)cum / ((double)RS_MONEY_SCALE * n)));
            json_array_append_new(row, x);
            on_or_after -= last[cell];
        }
        json_array_append_new(out, json_pack("{s:O, s:I, s:o}", "cohort", json_array_get(f->bounds_json, (size_t)ci + 1),
                                             "size", (json_int_t)size[ci], "cells", row));
    }
    free(size);
    free(active);
    free(last);
    free(rev);
    return out;
}
