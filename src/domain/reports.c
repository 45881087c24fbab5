/* reports.c - the period reports as one accumulator over customers (see reports.h).
 *
 * Each report keeps the definitions of SPEC §4 that the plain-SQL oracles of
 * tests/integration/test_metrics_generated.py restate over the raw orders. A customer's
 * orders are sorted by time, so each report is one walk over them. */
#include "retentiond/domain/reports.h"

#include "retentiond/util.h"

#include <stdlib.h>
#include <string.h>

/* Retention per boundary or period index j (0 .. nbounds): a difference array of activity (a
 * run of boundaries adds 1 where it starts and takes it back where it ends) and counts. */
typedef struct {
    int64_t active_diff;    /* customers active at boundary j */
    int64_t returning;      /* ordering in periods j - 1 and j */
    int64_t lost;           /* active at boundary j, not at j + 1 */
    int64_t starts;         /* ordering in period j, not in j - 1 */
    int64_t dormant;        /* ordering in period j - 1, not in j */
    int64_t first;          /* first order in period j */
} series_cell;

struct rs_acc {
    rs_frame f;
    int64_t lo, hi;
    void (*add)(rs_acc *a, const rs_customer *c);   /* NULL: a report without periods */
    void (*finish)(rs_acc *a, rs_result *out);
    /* summary */
    rs_summary sum;
    rs_money *revs; /* each ordering customer's revenue in the period */
    size_t nrevs, caprevs;
    /* retention */
    series_cell *series;
    /* the bounds' slots (see upto) */
    int64_t slot_len, nslots;
    double slot_inverse;
    int *slot_first;
    int64_t *slot_bounds;
    /* cohorts: the triangle of (cohort, periods since) cells, cohort i's row at row[i] */
    int np;
    size_t *row;
    int64_t *size, *active, *last; /* last: members whose last active period is this one */
    rs_money *rev;
    /* a report split by groups: each customer goes to the accumulator of its group */
    int ngroups;
    rs_acc **groups;
    rs_group_fn group_of;
    void *group_ctx;
};

/* The number of bounds at or before x. The bounds' span is cut into slots of an eighth of the
 * shortest period: x's slot (a multiplication) says how many bounds precede it, and x is past
 * one more only in the rare slot that holds a bound (with slots as long as the shortest period,
 * months made that a coin's toss, and its mispredicted branch made a 12-month series cost half
 * as much again as a 130-week one). */
static inline int upto(const rs_acc *a, int64_t x)
{
    const int64_t *b = a->slot_bounds; /* the bounds, then INT64_MAX */
    if (x < b[0])
        return 0;
    double d = (double)(x - b[0]) * a->slot_inverse;
    int64_t s = d < (double)a->nslots ? (int64_t)d : a->nslots - 1;
    s -= s > 0 && b[0] + s * a->slot_len > x; /* rounded up across a slot's start */
    int i = a->slot_first[s];
    while (b[i] <= x)
        i++;
    return i;
}

/* slot_first[s]: the bounds at or before the start of slot s (about 9 slots a period). */
static void slots_make(rs_acc *a)
{
    const int64_t *b = a->f.bounds;
    int n = a->f.nbounds;
    int64_t len = INT64_MAX;
    for (int i = 1; i < n; i++)
        if (b[i] - b[i - 1] < len)
            len = b[i] - b[i - 1];
    a->slot_len = len / 8 > 0 ? len / 8 : 1;
    a->slot_inverse = 1.0 / (double)a->slot_len;
    a->nslots = (b[n - 1] - b[0]) / a->slot_len + 1;
    a->slot_first = xmalloc((size_t)a->nslots * sizeof *a->slot_first);
    a->slot_bounds = xmalloc(((size_t)n + 1) * sizeof *a->slot_bounds);
    memcpy(a->slot_bounds, b, (size_t)n * sizeof *b);
    a->slot_bounds[n] = INT64_MAX;
    for (int64_t s = 0, i = 0; s < a->nslots; s++) {
        while (i < n && b[i] <= b[0] + s * a->slot_len)
            i++;
        a->slot_first[s] = (int)i;
    }
}

static rs_money order_value(const rs_customer *c, uint32_t k)
{
    return c->wide ? c->wide[k] : c->orders[k].v;
}

void reports_fixed_window(rs_frame *f, int64_t *storage)
{
    f->from_window = f->from - f->window;
    f->to_window = f->to - f->window;
    for (int i = 0; i < f->nbounds; i++)
        storage[i] = f->bounds[i] - f->window;
    f->bounds_window = storage;
}

bool reports_range(const rs_frame *f, int64_t *lo, int64_t *hi)
{
    const int64_t *b = f->bounds;
    switch (f->report) {
    case RS_SUMMARY:
        *lo = f->from_window; /* S counts from's window, [from_window, from); the period and E end at to */
        *hi = f->to;
        return true;
    case RS_RETENTION:
        if (f->nbounds < 3)
            return false;
        /* an order before b[1]'s window is active at no boundary of a period; before b[0] it is in none */
        *lo = b[0] < f->bounds_window[1] ? b[0] : f->bounds_window[1];
        *hi = b[f->nbounds - 1];
        return true;
    case RS_COHORTS:
        if (f->nbounds < 3)
            return false;
        *lo = f->from; /* a member's orders are on or after its first, which is in [from, to) */
        *hi = f->to;
        return true;
    }
    return false;
}

static void summary_add(rs_acc *a, const rs_customer *c);
static void summary_finish(rs_acc *a, rs_result *out);
static void retention_add(rs_acc *a, const rs_customer *c);
static void series_finish(rs_acc *a, rs_result *out);
static void cohorts_add(rs_acc *a, const rs_customer *c);
static void cohorts_finish(rs_acc *a, rs_result *out);

rs_acc *reports_begin(const rs_frame *f)
{
    rs_acc *a = xcalloc(1, sizeof *a);
    a->f = *f;
    if (!reports_range(f, &a->lo, &a->hi))
        a->lo = a->hi = 0;
    int np = f->nbounds >= 3 ? f->nbounds - 2 : 0;
    a->np = np;
    if (f->report == RS_SUMMARY) {
        a->add = summary_add;
        a->finish = summary_finish;
        return a;
    }
    if (!np)
        return a;
    slots_make(a);
    if (f->report == RS_RETENTION) {
        a->add = retention_add;
        a->finish = series_finish;
        a->series = xcalloc((size_t)f->nbounds + 1, sizeof *a->series);
    } else {
        a->add = cohorts_add;
        a->finish = cohorts_finish;
        size_t cells = (size_t)np * ((size_t)np + 1) / 2;
        a->row = xmalloc((size_t)np * sizeof *a->row);
        for (int i = 0, off = 0; i < np; off += np - i, i++)
            a->row[i] = (size_t)off;
        a->size = xcalloc((size_t)np, sizeof *a->size);
        a->active = xcalloc(cells, sizeof *a->active);
        a->last = xcalloc(cells, sizeof *a->last);
        a->rev = xcalloc(cells, sizeof *a->rev);
    }
    return a;
}

/* ---- summary ---- */

static void summary_add(rs_acc *a, const rs_customer *c)
{
    const rs_frame *f = &a->f;
    rs_summary *m = &a->sum;
    if (c->known && c->since != RS_NONE && c->since < f->to)
        m->customers++;
    if (c->known && c->first != RS_NONE && c->first >= f->from && c->first < f->to)
        m->N++;
    /* s, e: an order in the window before from / to; n, rev: the orders in the period */
    bool s = false, e = false;
    int64_t n = 0;
    rs_money rev = 0;
    for (uint32_t k = 0; k < c->n; k++) {
        int64_t t = c->orders[k].t;
        if (t >= f->to)
            break;
        s |= t >= f->from_window && t < f->from;
        e |= t >= f->to_window;
        if (t >= f->from) {
            n++;
            rev += order_value(c, k);
        }
    }
    m->S += s;
    m->E += e;
    m->lost += s && !e;
    m->retained += s && e;
    if (!n)
        return;
    if (a->nrevs == a->caprevs) {
        a->caprevs = a->caprevs ? 2 * a->caprevs : 1024;
        a->revs = xrealloc(a->revs, a->caprevs * sizeof *a->revs);
    }
    a->revs[a->nrevs++] = rev;
    m->ordering++;
    m->repeat_ordering += n >= 2;
    m->orders += n;
    m->revenue += rev;
    /* returning and new need the customers row's first order (none: neither) */
    if (c->known && c->first != RS_NONE) {
        if (c->first < f->from) {
            m->returning++;
            m->returning_revenue += rev;
            m->reactivated += !s;
        } else {
            m->new_revenue += rev;
        }
    }
}

/* The sum of the k largest of v[0..n) (reordering v): quickselect, each round keeping the side
 * that holds the boundary and adding up the side wholly above it. */
static rs_money top_sum(rs_money *v, size_t n, size_t k)
{
    rs_money sum = 0;
    size_t lo = 0, hi = n; /* the k largest of v[lo..hi) are still to be added */
    while (k > 0 && hi - lo > k) {
        rs_money x = v[lo], y = v[lo + (hi - lo) / 2], z = v[hi - 1];
        rs_money pivot = x < y ? (y < z ? y : x < z ? z : x) : (x < z ? x : y < z ? z : y);
        /* three-way partition: [lo, gt) > pivot, [gt, lt) == pivot, [lt, hi) < pivot */
        size_t gt = lo, i = lo, lt = hi;
        while (i < lt) {
            if (v[i] > pivot) {
                rs_money t = v[i]; v[i] = v[gt]; v[gt] = t;
                gt++, i++;
            } else if (v[i] < pivot) {
                lt--;
                rs_money t = v[i]; v[i] = v[lt]; v[lt] = t;
            } else {
                i++;
            }
        }
        size_t above = gt - lo, equal = lt - gt;
        if (k <= above) {
            hi = gt;
        } else {
            for (size_t j = lo; j < gt; j++)
                sum += v[j];
            k -= above;
            size_t take = k < equal ? k : equal;
            sum += pivot * (rs_money)take;
            k -= take;
            lo = k > 0 ? lt : hi; /* the rest, if any, comes from below the pivot */
        }
    }
    for (size_t j = lo; k > 0 && j < hi; j++, k--)
        sum += v[j];
    return sum;
}

/* ---- retention ---- */

/* A customer active at boundaries [from, to), and at neither from - 1 nor to. */
static void active_run(rs_acc *a, int from, int to)
{
    a->series[from].active_diff++;
    a->series[to].active_diff--;
    if (to - 1 >= 1 && to - 1 <= a->np)
        a->series[to - 1].lost++;
}

/* The number of bounds whose window starts at or before t: upto(t + W), moved by the bound or
 * two whose window is an hour longer or shorter (a daylight-saving change inside it). */
static inline int window_upto(const rs_acc *a, int64_t t)
{
    const int64_t *w = a->f.bounds_window;
    int h = upto(a, t + a->f.window), n = a->f.nbounds;
    while (h < n && w[h] <= t)
        h++;
    while (h > 0 && w[h - 1] > t)
        h--;
    return h;
}

/* An order at t makes its customer active at every boundary b with t < b whose window holds t,
 * the boundaries [upto(t), window_upto(t)), and falls in period upto(t) - 1. Along a customer's orders
 * both only grow, so its activity is a few runs of consecutive boundaries, each added to the
 * difference array once. Each period with orders counts as returning (right after another) or
 * as a start, and the period after one with orders, when it has none, as dormant; that part is
 * written without branches (a condition adds 0 or 1), as with weeks whether an order falls in
 * the last period, the next or a later one changes from order to order (the series of 130 weeks
 * took 1.4 times the accumulator's time of 12 months with branches, 1.2 without). Period 0, the
 * one before the first, and period np + 1 are written and not read. */
static void retention_add(rs_acc *a, const rs_customer *c)
{
    const int64_t *b = a->f.bounds;
    if (c->known && c->first != RS_NONE && c->first >= b[1] && c->first < a->hi)
        a->series[upto(a, c->first) - 1].first++;
    bool act = false;
    int act_from = 0, act_to = 0, last = -1;
    for (uint32_t k = 0; k < c->n; k++) {
        int64_t t = c->orders[k].t;
        if (t < a->lo)
            continue;
        if (t >= a->hi)
            break;
        int pn = upto(a, t), h = window_upto(a, t);
        if (h > pn) {
            if (act && pn <= act_to) {
                act_to = h;
            } else {
                if (act)
                    active_run(a, act_from, act_to);
                act = true;
                act_from = pn;
                act_to = h;
            }
        }
        int p = pn - 1;
        if (p < 0)
            continue;
        int other = p != last, after = p == last + 1; /* a period not counted yet; right after the last */
        a->series[p].returning += other & after;
        a->series[p].starts += other & !after;
        a->series[last + 1].dormant += other & !after & (last >= 0);
        last = p;
    }
    if (act)
        active_run(a, act_from, act_to);
    if (last >= 0)
        a->series[last + 1].dormant++;
}

/* ---- cohorts ---- */

static void cohorts_add(rs_acc *a, const rs_customer *c)
{
    const rs_frame *f = &a->f;
    if (!c->known || c->first == RS_NONE || c->first < f->from || c->first >= f->to)
        return;
    /* period i starts at bounds[i + 1]: the period of an instant t >= bounds[1] is upto(t) - 2 */
    int ci = upto(a, c->first) - 2;
    if (ci < 0) /* not possible: first >= from >= bounds[1] */
        return;
    a->size[ci]++;
    size_t row = a->row[ci];
    int prev = -1;
    for (uint32_t k = 0; k < c->n; k++) {
        int64_t t = c->orders[k].t;
        if (t < f->from)
            continue;
        if (t >= f->to)
            break;
        int j = upto(a, t) - 2 - ci;
        if (j < 0) /* before its first (a rollup behind its orders) */
            continue;
        a->active[row + (size_t)j] += j != prev; /* without a branch: periods change often */
        a->rev[row + (size_t)j] += order_value(c, k);
        prev = j;
    }
    if (prev >= 0)
        a->last[row + (size_t)prev]++;
}

/* ---- the accumulator ---- */

void reports_add_customer(rs_acc *a, const rs_customer *c)
{
    if (a->groups) {
        int g = a->group_of(a->group_ctx, c);
        if (g >= 0 && g < a->ngroups)
            a = a->groups[g];
        else
            return;
    }
    if (a->add)
        a->add(a, c);
}

rs_acc *reports_begin_groups(const rs_frame *f, int ngroups, rs_group_fn group_of, void *ctx)
{
    rs_acc *a = xcalloc(1, sizeof *a);
    a->f = *f;
    a->ngroups = ngroups;
    a->groups = xcalloc(ngroups > 0 ? (size_t)ngroups : 1, sizeof *a->groups);
    for (int g = 0; g < ngroups; g++)
        a->groups[g] = reports_begin(f);
    a->group_of = group_of;
    a->group_ctx = ctx;
    return a;
}

void reports_finish_groups(rs_acc *a, rs_result *out)
{
    for (int g = 0; g < a->ngroups; g++)
        reports_finish(a->groups[g], &out[g]);
    free(a->groups);
    free(a);
}

static void summary_finish(rs_acc *a, rs_result *out)
{
    out->summary = a->sum;
    /* the top ceil(20 %) revenues (ties do not change the sum) */
    out->summary.top20_revenue = top_sum(a->revs, a->nrevs, (a->nrevs + 4) / 5);
}

static void series_finish(rs_acc *a, rs_result *out)
{
    int np = a->np;
    out->nperiods = np;
    out->periods = xcalloc(np ? (size_t)np : 1, sizeof *out->periods);
    int64_t active = 0;
    for (int k = 0; k <= np; k++) {
        active += a->series[k].active_diff;
        if (k == 0)
            continue;
        const series_cell *s = &a->series[k];
        /* E is the activity at the next boundary: add its difference without moving on */
        out->periods[k - 1] = (rs_period){
            .S = active, .E = active + a->series[k + 1].active_diff, .N = s->first, .lost = s->lost,
            .returning = s->returning, .resurrecting = s->starts - s->first, .dormant = s->dormant};
    }
}

static void cohorts_finish(rs_acc *a, rs_result *out)
{
    int np = a->np, n = 0;
    size_t cells = 0;
    for (int i = 0; i < np; i++)
        if (a->size[i]) {
            n++;
            cells += (size_t)(np - i);
        }
    out->ncohorts = n;
    out->cohorts = xcalloc(n ? (size_t)n : 1, sizeof *out->cohorts);
    out->cells = xcalloc(cells ? cells : 1, sizeof *out->cells);
    rs_cell *cell = out->cells;
    rs_cohort *co = out->cohorts;
    for (int i = 0; i < np; i++) {
        if (!a->size[i])
            continue;
        size_t row = a->row[i];
        int width = np - i;
        double members = (double)a->size[i];
        int64_t on_or_after = 0;
        for (int k = 0; k < width; k++)
            on_or_after += a->last[row + (size_t)k];
        *co = (rs_cohort){.start = i, .size = a->size[i], .ncells = width, .cells = cell};
        rs_money cum = 0;
        for (int k = 0; k < width; k++, cell++) {
            size_t x = row + (size_t)k;
            cum += a->rev[x];
            *cell = (rs_cell){.active = a->active[x], .active_on_or_after = on_or_after, .revenue = a->rev[x],
                              .share = (double)a->active[x] / members,
                              .share_on_or_after = (double)on_or_after / members,
                              .cumulative_revenue_per_customer = (double)cum / ((double)RS_MONEY_SCALE * members)};
            on_or_after -= a->last[x];
        }
        co++;
    }
}

void reports_finish(rs_acc *a, rs_result *out)
{
    memset(out, 0, sizeof *out);
    out->report = a->f.report;
    if (a->finish)
        a->finish(a, out);
    free(a->revs);
    free(a->series);
    free(a->row);
    free(a->slot_first);
    free(a->slot_bounds);
    free(a->size);
    free(a->active);
    free(a->last);
    free(a->rev);
    free(a);
}

void reports_result_free(rs_result *r)
{
    free(r->periods);
    free(r->cohorts);
    free(r->cells);
    memset(r, 0, sizeof *r);
}

double reports_money_value(rs_money v)
{
    /* digits with the decimal point RS_MONEY_DECIMALS from the right, at least one before it */
    char text[64], *p = text + sizeof text;
    unsigned __int128 u = v < 0 ? -(unsigned __int128)v : (unsigned __int128)v;
    *--p = '\0';
    for (int digits = 0; u || digits <= RS_MONEY_DECIMALS; digits++) {
        if (digits == RS_MONEY_DECIMALS)
            *--p = '.';
        *--p = (char)('0' + (int)(u % 10));
        u /= 10;
    }
    if (v < 0)
        *--p = '-';
    return strtod(p, NULL);
}
