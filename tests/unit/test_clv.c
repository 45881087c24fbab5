/*
 * test_clv.c - unit tests of the predictive-CLV core (src/domain/clv.c).
 *
 * Expected numbers come from the literature, not from this code: Fader, Hardie & Lee (2005)
 * BG/NBD and Gamma-Gamma results on the CDNOW sample (tests/fixtures/cdnow, see SOURCE.md),
 * plus a few hypergeometric values computed independently with arbitrary-precision
 * arithmetic (mpmath, 40 digits). Parameter recovery is checked on data simulated from the
 * models' own generative stories with a small seeded PRNG, so runs are reproducible.
 *
 * The fixture directory comes from RD_FIXTURES (default "tests/fixtures").
 * Build: gcc -std=c17 -Iinclude src/domain/clv.c tests/unit/test_clv.c $(pkg-config --cflags --libs check) -lm
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */

#include "retentiond/domain/clv.h"

#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---------------------------------------------------------------------------------------- */
/* Fixtures                                                                                  */
/* ---------------------------------------------------------------------------------------- */

/* Published BG/NBD estimates for CDNOW in weeks (FHL 2005), with the extra digits. */
#define PUB_R 0.242593
#define PUB_ALPHA 4.413532
#define PUB_A 0.792886
#define PUB_B 2.425752
#define PUB_LOGLIK (-9582.43)

#define CDNOW_MAX 3000

typedef struct {
    size_t n;
    int id[CDNOW_MAX];
    clv_rft c[CDNOW_MAX];
    double x[CDNOW_MAX], zbar[CDNOW_MAX];
} cdnow_summary;

static const char *fixtures_dir(void)
{
    const char *d = getenv("RD_FIXTURES");
    return d && *d ? d : "tests/fixtures";
}

static FILE *open_fixture(const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/cdnow/%s", fixtures_dir(), name);
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "cannot open fixture %s (set RD_FIXTURES)", path);
    return f;
}

/* ID,x,t_x,T,zbar with CRLF line ends and no final newline: fgets keeps the '\r', which
 * strtod stops at; the last line simply has no terminator. */
static void load_summary(cdnow_summary *s)
{
    FILE *f = open_fixture("cdnow_customers_summary_with_transactions.csv");
    char line[512];
    s->n = 0;
    ck_assert_ptr_nonnull(fgets(line, sizeof line, f)); /* header */
    while (fgets(line, sizeof line, f)) {
        char *p = line, *end;
        double v[5];
        int k;
        for (k = 0; k < 5; k++) {
            v[k] = strtod(p, &end);
            if (end == p)
                break;
            p = end + (*end == ',');
        }
        if (k < 5)
            continue; /* blank trailing line, if any */
        ck_assert_uint_lt(s->n, CDNOW_MAX);
        s->id[s->n] = (int)v[0];
        s->c[s->n] = (clv_rft){v[1], v[2], v[3]};
        s->x[s->n] = v[1];
        s->zbar[s->n] = v[4];
        s->n++;
    }
    fclose(f);
}

static cdnow_summary *summary(void)
{
    static cdnow_summary s;
    if (s.n == 0)
        load_summary(&s);
    return &s;
}

static clv_bgnbd published(void)
{
    clv_bgnbd m = {PUB_R, PUB_ALPHA, PUB_A, PUB_B, 0.0, 0};
    return m;
}

static double elapsed_ms(const struct timespec *a, const struct timespec *b)
{
    return (double)(b->tv_sec - a->tv_sec) * 1e3 + (double)(b->tv_nsec - a->tv_nsec) / 1e6;
}

/* ---------------------------------------------------------------------------------------- */
/* Seeded PRNG and samplers (splitmix64; Marsaglia-Tsang gamma)                              */
/* ---------------------------------------------------------------------------------------- */

typedef struct {
    uint64_t s;
} rng;

static uint64_t rng_next(rng *g)
{
    uint64_t z = (g->s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* Uniform on the open interval (0, 1). */
static double rng_unif(rng *g)
{
    return ((double)(rng_next(g) >> 11) + 0.5) * 0x1.0p-53;
}

static double rng_normal(rng *g)
{
    /* Box-Muller; one of the pair is enough here. */
    double u = rng_unif(g), v = rng_unif(g);
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

/* Gamma(shape k, scale 1). Marsaglia & Tsang (2000) for k >= 1; for k < 1 the usual boost
 * Gamma(k) = Gamma(k+1) * U^(1/k). */
static double rng_gamma(rng *g, double k)
{
    if (k < 1.0) {
        double u = rng_unif(g);
        return rng_gamma(g, k + 1.0) * pow(u, 1.0 / k);
    }
    double d = k - 1.0 / 3.0, c = 1.0 / sqrt(9.0 * d);
    for (;;) {
        double z = rng_normal(g), v = 1.0 + c * z;
        if (v <= 0.0)
            continue;
        v = v * v * v;
        double u = rng_unif(g);
        if (log(u) < 0.5 * z * z + d - d * v + d * log(v))
            return d * v;
    }
}

static double rng_beta(rng *g, double a, double b)
{
    double x = rng_gamma(g, a), y = rng_gamma(g, b);
    return x / (x + y);
}

/* One BG/NBD customer observed for age T: lambda ~ Gamma(r, rate alpha), p ~ Beta(a, b);
 * Poisson purchases at rate lambda; after each repeat purchase, drops out with prob p. */
static clv_rft simulate_bgnbd(rng *g, double r, double alpha, double a, double b, double T)
{
    double lambda = rng_gamma(g, r) / alpha, p = rng_beta(g, a, b);
    clv_rft c = {0.0, 0.0, T};
    double t = 0.0;
    for (;;) {
        t += -log(rng_unif(g)) / lambda;
        if (t > T)
            break;
        c.x += 1.0;
        c.t_x = t;
        if (rng_unif(g) < p)
            break;
    }
    return c;
}

/* ---------------------------------------------------------------------------------------- */
/* 1, 7: CDNOW BG/NBD fit and log-likelihood                                                 */
/* ---------------------------------------------------------------------------------------- */

START_TEST(test_cdnow_bgnbd_fit)
{
    cdnow_summary *s = summary();
    ck_assert_uint_eq(s->n, 2357);
    clv_bgnbd m;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    ck_assert_int_eq(clv_bgnbd_fit(s->c, s->n, &m), 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("CDNOW BG/NBD (weeks): r=%.6f alpha=%.6f a=%.6f b=%.6f loglik=%.4f iterations=%d (%.2f ms)\n", m.r,
           m.alpha, m.a, m.b, m.loglik, m.iterations, elapsed_ms(&t0, &t1));
    /* Published to 3-4 significant figures: within half a unit of the last published digit. */
    ck_assert_double_eq_tol(m.r, 0.243, 0.0005);
    ck_assert_double_eq_tol(m.alpha, 4.414, 0.0005);
    ck_assert_double_eq_tol(m.a, 0.793, 0.0005);
    ck_assert_double_eq_tol(m.b, 2.426, 0.0005);
    /* And the 6-digit values. */
    ck_assert_double_eq_tol(m.r / PUB_R, 1.0, 1e-5);
    ck_assert_double_eq_tol(m.alpha / PUB_ALPHA, 1.0, 1e-5);
    ck_assert_double_eq_tol(m.a / PUB_A, 1.0, 1e-5);
    ck_assert_double_eq_tol(m.b / PUB_B, 1.0, 1e-5);
    ck_assert_double_eq_tol(m.loglik, PUB_LOGLIK, 0.01);
    /* The fitter's fast internal likelihood agrees with the reference one. */
    ck_assert_double_eq_tol(clv_bgnbd_loglik(&m, s->c, s->n), m.loglik, 1e-6);
}
END_TEST

START_TEST(test_cdnow_loglik_at_published)
{
    cdnow_summary *s = summary();
    clv_bgnbd m = published();
    ck_assert_double_eq_tol(clv_bgnbd_loglik(&m, s->c, s->n), PUB_LOGLIK, 0.01);
}
END_TEST

/* Changing the time unit changes alpha by the same factor and the log-likelihood by
 * -sum(x) log(factor); nothing else. Checks the fitter's internal rescaling. */
START_TEST(test_cdnow_bgnbd_fit_in_days)
{
    cdnow_summary *s = summary();
    static clv_rft days[CDNOW_MAX];
    double sum_x = 0.0;
    for (size_t i = 0; i < s->n; i++) {
        days[i] = (clv_rft){s->c[i].x, s->c[i].t_x * 7.0, s->c[i].T * 7.0};
        sum_x += s->c[i].x;
    }
    clv_bgnbd m;
    ck_assert_int_eq(clv_bgnbd_fit(days, s->n, &m), 0);
    ck_assert_double_eq_tol(m.r / PUB_R, 1.0, 1e-5);
    ck_assert_double_eq_tol(m.alpha / (7.0 * PUB_ALPHA), 1.0, 1e-5);
    ck_assert_double_eq_tol(m.a / PUB_A, 1.0, 1e-5);
    ck_assert_double_eq_tol(m.b / PUB_B, 1.0, 1e-5);
    ck_assert_double_eq_tol(m.loglik, PUB_LOGLIK - sum_x * log(7.0), 0.01);
}
END_TEST

/* ---------------------------------------------------------------------------------------- */
/* 2: conditional expectation; hypergeometric values                                        */
/* ---------------------------------------------------------------------------------------- */

START_TEST(test_cdnow_conditional_expected)
{
    clv_bgnbd m = published();
    double e = clv_bgnbd_expected(&m, 39.0, 2.0, 30.43, 38.86);
    printf("CDNOW E[purchases next 39 weeks | x=2, t_x=30.43, T=38.86] = %.6f (published 1.226)\n", e);
    ck_assert_double_eq_tol(e, 1.226, 0.001);
    /* Unconditional E[X(39)] at the published parameters; reference from mpmath. */
    ck_assert_double_eq_tol(clv_bgnbd_expected_uncond(&m, 39.0), 1.1950165244955512, 1e-9);
    /* Same thing two ways: a customer with no history at age 0 is the unconditional case. */
    ck_assert_double_eq_tol(clv_bgnbd_expected(&m, 39.0, 0.0, 0.0, 0.0), clv_bgnbd_expected_uncond(&m, 39.0), 1e-12);
}
END_TEST

START_TEST(test_log_hyp2f1)
{
    /* References: log 2F1 from mpmath at 40 digits. */
    static const struct {
        double a, b, c, z, ref;
    } cases[] = {
        {0.5, 1.5, 2.5, 0.3, 0.1026130407541255045},
        {502.4, 502.4, 502.8, 0.98, 1963.835861126464662}, /* 2F1 itself ~ 1e853 */
        {3.0, 4.0, 1e-3, 0.5, 14.56057865247025187},
        {1e-6, 1e-6, 1e-6, 0.999, 6.907755278982135851e-06},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        double v = 0.0;
        ck_assert_int_eq(clv_log_hyp2f1(cases[i].a, cases[i].b, cases[i].c, cases[i].z, &v), 0);
        ck_assert_double_eq_tol(v, cases[i].ref, 1e-10 * fmax(1.0, fabs(cases[i].ref)));
    }
    double v = 0.0;
    ck_assert_int_eq(clv_log_hyp2f1(1.0, 1.0, 1.0, 0.0, &v), 0);
    ck_assert_double_eq(v, 0.0);
    ck_assert_int_eq(clv_log_hyp2f1(1.0, 1.0, 1.0, 1.0, &v), -1);
    ck_assert_int_eq(clv_log_hyp2f1(-1.0, 1.0, 1.0, 0.5, &v), -1);
    ck_assert_int_eq(clv_log_hyp2f1(1.0, 1.0, 1.0, NAN, &v), -1);
}
END_TEST

/* FHL eq. 10 in the regimes where the code switches method; references from mpmath
 * (50 digits, a == 1 as the limit). */
START_TEST(test_expected_reference)
{
    static const struct {
        double r, alpha, a, b, t, x, t_x, T, ref;
        const char *what;
    } cases[] = {
        {0.5, 10.0, 0.8, 2.5, 3650.0, 0.0, 0.0, 0.0, 13.042823272116032, "new customer, horizon 365 x alpha: quadrature"},
        {3.0, 7.0, 1.0, 0.9, 30.0, 2.0, 150.0, 200.0, 0.21103462447383174, "r > a+b, a == 1: direct series"},
        {3.0, 7.0, 1.0, 0.9, 50000.0, 2.0, 150.0, 200.0, 5.7238048390939043, "r > a+b, a == 1, long: quadrature"},
        {0.24, 4.4, 0.79, 2.4, 365.0, 500.0, 2999.5, 3000.0, 57.962600397450001, "x = 500: Euler series"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        clv_bgnbd m = {cases[i].r, cases[i].alpha, cases[i].a, cases[i].b, 0.0, 0};
        double e = clv_bgnbd_expected(&m, cases[i].t, cases[i].x, cases[i].t_x, cases[i].T);
        ck_assert_msg(fabs(e / cases[i].ref - 1.0) < 1e-8, "%s: %.17g vs %.17g", cases[i].what, e, cases[i].ref);
    }
}
END_TEST

/* P(alive) spot values and the CLV sum's consistency with the expectation. */
START_TEST(test_p_alive_and_clv)
{
    clv_bgnbd m = published();
    ck_assert_double_eq(clv_bgnbd_p_alive(&m, 0.0, 0.0, 38.86), 1.0);
    /* FHL eq. 11 evaluated by hand: 1/(1 + a/(b+1) * ((alpha+38.86)/(alpha+30.43))^(r+2)). */
    double ref = 1.0 / (1.0 + PUB_A / (PUB_B + 1.0) * pow((PUB_ALPHA + 38.86) / (PUB_ALPHA + 30.43), PUB_R + 2.0));
    ck_assert_double_eq_tol(clv_bgnbd_p_alive(&m, 2.0, 30.43, 38.86), ref, 1e-12);

    clv_gg g = {6.25, 3.74, 15.44, 0.0, 0};
    double value = clv_gg_expected_value(&g, 2.0, 30.0);
    ck_assert_double_eq_tol(value, 6.25 * (15.44 + 2.0 * 30.0) / (6.25 * 2.0 + 3.74 - 1.0), 1e-12);
    ck_assert_double_eq_tol(clv_gg_expected_value(&g, 0.0, 0.0), 15.44 * 6.25 / 2.74, 1e-12);
    /* Undiscounted CLV over 12 months = E[purchases in 12*30.4375 days] * value. */
    double clv = clv_predicted(&m, &g, 2.0, 30.43, 38.86, 30.0, 12.0, 0.0, 7.0);
    double e12 = clv_bgnbd_expected(&m, 12.0 * 30.4375 / 7.0, 2.0, 30.43, 38.86);
    ck_assert_double_eq_tol(clv, e12 * value, 1e-9 * clv);
    /* Discounting lowers it; fractional horizons sit between the whole-month neighbours. */
    double disc = clv_predicted(&m, &g, 2.0, 30.43, 38.86, 30.0, 12.0, 0.01, 7.0);
    ck_assert(disc < clv && disc > 0.85 * clv);
    double h115 = clv_predicted(&m, &g, 2.0, 30.43, 38.86, 30.0, 11.5, 0.01, 7.0);
    double h11 = clv_predicted(&m, &g, 2.0, 30.43, 38.86, 30.0, 11.0, 0.01, 7.0);
    ck_assert(h11 < h115 && h115 < disc);
    /* Model in days (alpha * 7) gives the same CLV as the model in weeks. */
    clv_bgnbd md = m;
    md.alpha *= 7.0;
    double clv_days = clv_predicted(&md, &g, 2.0, 30.43 * 7.0, 38.86 * 7.0, 30.0, 12.0, 0.01, 1.0);
    ck_assert_double_eq_tol(clv_days, disc, 1e-9 * disc);
}
END_TEST

/* ---------------------------------------------------------------------------------------- */
/* 3: CDNOW Gamma-Gamma                                                                      */
/* ---------------------------------------------------------------------------------------- */

START_TEST(test_cdnow_gamma_gamma)
{
    cdnow_summary *s = summary();
    size_t repeaters = 0;
    for (size_t i = 0; i < s->n; i++)
        repeaters += s->x[i] > 0.0;
    ck_assert_uint_eq(repeaters, 946);
    clv_gg g;
    ck_assert_int_eq(clv_gg_fit(s->x, s->zbar, s->n, &g), 0);
    double mean = g.v * g.p / (g.q - 1.0);
    printf("CDNOW Gamma-Gamma: p=%.5f q=%.5f v=%.5f mean=%.4f loglik=%.4f iterations=%d\n", g.p, g.q, g.v, mean,
           g.loglik, g.iterations);
    ck_assert_double_eq_tol(g.p, 6.25, 0.01);
    ck_assert_double_eq_tol(g.q, 3.74, 0.01);
    ck_assert_double_eq_tol(g.v, 15.44, 0.01);
    ck_assert_double_eq_tol(mean, 35.17, 0.01);
    ck_assert_double_eq_tol(clv_gg_expected_value(&g, 0.0, 0.0), mean, 1e-9);
    ck_assert_double_eq_tol(clv_gg_loglik(&g, s->x, s->zbar, s->n), g.loglik, 1e-6);

    /* Money scale invariance from cents-level to 1e7-level values: p, q unchanged, v scales. */
    static double scaled[CDNOW_MAX];
    const double factors[] = {1e-3, 1e5};
    for (int k = 0; k < 2; k++) {
        for (size_t i = 0; i < s->n; i++)
            scaled[i] = s->zbar[i] * factors[k];
        clv_gg h;
        ck_assert_int_eq(clv_gg_fit(s->x, scaled, s->n, &h), 0);
        ck_assert_double_eq_tol(h.p / g.p, 1.0, 1e-5);
        ck_assert_double_eq_tol(h.q / g.q, 1.0, 1e-5);
        ck_assert_double_eq_tol(h.v / (g.v * factors[k]), 1.0, 1e-5);
    }
}
END_TEST

/* ---------------------------------------------------------------------------------------- */
/* 4: the summary convention, derived from the raw transactions                             */
/* ---------------------------------------------------------------------------------------- */

static int is_leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* Days since a fixed epoch (proleptic Gregorian); only differences are used. */
static long day_number(long yyyymmdd)
{
    static const int before_month[12] = {0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334};
    int y = (int)(yyyymmdd / 10000), mo = (int)(yyyymmdd / 100 % 100), d = (int)(yyyymmdd % 100);
    long yb = y - 1;
    long n = 365L * yb + yb / 4 - yb / 100 + yb / 400 + before_month[mo - 1] + d;
    if (mo > 2 && is_leap(y))
        n++;
    return n;
}

typedef struct {
    int id;
    long day;
    double value;
} txn;

static int cmp_txn(const void *pa, const void *pb)
{
    const txn *a = pa, *b = pb;
    if (a->id != b->id)
        return a->id < b->id ? -1 : 1;
    return (a->day > b->day) - (a->day < b->day);
}

START_TEST(test_cdnow_summary_from_raw)
{
    FILE *f = open_fixture("CDNOW_sample.txt");
    size_t cap = 8000, n = 0;
    txn *t = malloc(cap * sizeof *t);
    ck_assert_ptr_nonnull(t);
    char line[256];
    const long cal_end = day_number(19970930);
    size_t rows = 0;
    while (fgets(line, sizeof line, f)) {
        long master, sample, date, cds;
        double dollars;
        if (sscanf(line, "%ld %ld %ld %ld %lf", &master, &sample, &date, &cds, &dollars) != 5)
            continue;
        rows++;
        long day = day_number(date);
        if (day > cal_end)
            continue;
        ck_assert_uint_lt(n, cap);
        t[n++] = (txn){(int)sample, day, dollars};
    }
    fclose(f);
    ck_assert_uint_eq(rows, 6919);
    qsort(t, n, sizeof *t, cmp_txn);

    cdnow_summary *s = summary();
    size_t i = 0, customers = 0;
    while (i < n) {
        int id = t[i].id;
        long first = t[i].day, last = first;
        double occasions = 0.0, repeat_value = 0.0;
        while (i < n && t[i].id == id) {
            /* Same customer, same day: one occasion with the values summed. */
            long day = t[i].day;
            double value = 0.0;
            while (i < n && t[i].id == id && t[i].day == day)
                value += t[i++].value;
            if (occasions > 0.0)
                repeat_value += value;
            occasions += 1.0;
            last = day;
        }
        double x = occasions - 1.0;
        double t_x = (double)(last - first) / 7.0, T = (double)(cal_end - first) / 7.0;
        double zbar = x > 0.0 ? repeat_value / x : 0.0;
        /* Summary IDs are the sample ids 1..2357 in order. */
        ck_assert_int_ge(id, 1);
        ck_assert_int_le(id, (int)s->n);
        size_t k = (size_t)id - 1;
        ck_assert_int_eq(s->id[k], id);
        ck_assert_double_eq(s->c[k].x, x);
        ck_assert_double_eq_tol(s->c[k].t_x, t_x, 0.0051); /* CSV rounds to 0.01 weeks */
        ck_assert_double_eq_tol(s->c[k].T, T, 0.0051);
        ck_assert_double_eq_tol(s->zbar[k], zbar, 0.0051);
        customers++;
    }
    ck_assert_uint_eq(customers, s->n);
    free(t);
}
END_TEST

/* ---------------------------------------------------------------------------------------- */
/* 5: parameter recovery on simulated data; fit speed                                        */
/* ---------------------------------------------------------------------------------------- */

static void check_within(const char *name, double got, double want, double rel)
{
    ck_assert_msg(fabs(got / want - 1.0) <= rel, "%s = %g, expected %g within %.0f%%", name, got, want, rel * 100);
}

START_TEST(test_bgnbd_recovery)
{
    const double r = 0.5, alpha = 10.0, a = 0.8, b = 2.5; /* alpha in days: ~1 purchase / 20 days */
    const size_t n = 20000;
    clv_rft *c = malloc(n * sizeof *c);
    ck_assert_ptr_nonnull(c);
    rng g = {12345};
    for (size_t i = 0; i < n; i++)
        c[i] = simulate_bgnbd(&g, r, alpha, a, b, 30.0 + 335.0 * rng_unif(&g));
    clv_bgnbd m;
    ck_assert_int_eq(clv_bgnbd_fit(c, n, &m), 0);
    printf("BG/NBD recovery (true 0.5, 10, 0.8, 2.5): r=%.4f alpha=%.4f a=%.4f b=%.4f\n", m.r, m.alpha, m.a, m.b);
    check_within("r", m.r, r, 0.15);
    check_within("alpha", m.alpha, alpha, 0.15);
    check_within("a", m.a, a, 0.15);
    check_within("b", m.b, b, 0.15);
    free(c);
}
END_TEST

START_TEST(test_gg_recovery)
{
    const double p = 6.0, q = 4.0, v = 15.0;
    const size_t n = 20000;
    double *x = malloc(n * sizeof *x), *mbar = malloc(n * sizeof *mbar);
    ck_assert(x && mbar);
    rng g = {777};
    for (size_t i = 0; i < n; i++) {
        int k = 1 + (int)(rng_unif(&g) * 8.0); /* 1..8 repeat purchases */
        double nu = rng_gamma(&g, q) / v;       /* rate, ~ Gamma(q, rate v) */
        double sum = 0.0;
        for (int j = 0; j < k; j++)
            sum += rng_gamma(&g, p) / nu; /* z ~ Gamma(p, rate nu) */
        x[i] = k;
        mbar[i] = sum / k;
    }
    clv_gg m;
    ck_assert_int_eq(clv_gg_fit(x, mbar, n, &m), 0);
    printf("Gamma-Gamma recovery (true 6, 4, 15): p=%.4f q=%.4f v=%.4f\n", m.p, m.q, m.v);
    check_within("p", m.p, p, 0.15);
    check_within("q", m.q, q, 0.15);
    check_within("v", m.v, v, 0.15);
    free(x);
    free(mbar);
}
END_TEST

/* Speed is reported, not asserted (machines differ). Worst case first: continuous times, so
 * almost no rows merge; then the realistic case of whole days. */
START_TEST(test_fit_speed_100k)
{
    const size_t n = 100000;
    clv_rft *c = malloc(n * sizeof *c);
    ck_assert_ptr_nonnull(c);
    rng g = {2024};
    for (size_t i = 0; i < n; i++)
        c[i] = simulate_bgnbd(&g, 0.5, 10.0, 0.8, 2.5, 30.0 + 700.0 * rng_unif(&g));
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1)
            for (size_t i = 0; i < n; i++) {
                c[i].T = ceil(c[i].T);
                c[i].t_x = floor(c[i].t_x);
            }
        clv_bgnbd m;
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        int rc = clv_bgnbd_fit(c, n, &m);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        ck_assert_int_eq(rc, 0);
        printf("BG/NBD fit, 100k customers, %s: %.1f ms (%d iterations) r=%.3f alpha=%.3f a=%.3f b=%.3f\n",
               pass ? "whole days" : "continuous times", elapsed_ms(&t0, &t1), m.iterations, m.r, m.alpha, m.a, m.b);
    }
    double *x = malloc(n * sizeof *x), *mbar = malloc(n * sizeof *mbar);
    ck_assert(x && mbar);
    for (size_t i = 0; i < n; i++) {
        x[i] = 1 + (int)(rng_unif(&g) * 10.0);
        mbar[i] = rng_gamma(&g, 6.0 * x[i]) / (x[i] * rng_gamma(&g, 4.0) / 15.0);
    }
    clv_gg gm;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    ck_assert_int_eq(clv_gg_fit(x, mbar, n, &gm), 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("Gamma-Gamma fit, 100k customers: %.1f ms (%d iterations)\n", elapsed_ms(&t0, &t1), gm.iterations);
    free(c);
    free(x);
    free(mbar);
}
END_TEST

/* ---------------------------------------------------------------------------------------- */
/* 6: degenerate data and inputs                                                             */
/* ---------------------------------------------------------------------------------------- */

static int finite_params(const clv_bgnbd *m)
{
    return isfinite(m->r) && isfinite(m->alpha) && isfinite(m->a) && isfinite(m->b) && isfinite(m->loglik);
}

/* Every prediction for this model/customer is finite, p_alive in [0,1], expectations >= 0. */
static void check_predictions(const clv_bgnbd *m, const clv_gg *g, double x, double t_x, double T, double mbar)
{
    double pa = clv_bgnbd_p_alive(m, x, t_x, T);
    ck_assert_msg(isfinite(pa) && pa >= 0.0 && pa <= 1.0, "p_alive(%g,%g,%g) = %g", x, t_x, T, pa);
    const double ts[] = {0.0, 1e-9, 1.0, 39.0, 365.0, 3650.0, 1e7, 1e300};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) {
        double e = clv_bgnbd_expected(m, ts[i], x, t_x, T);
        ck_assert_msg(isfinite(e) && e >= 0.0, "expected(t=%g | %g,%g,%g) = %g", ts[i], x, t_x, T, e);
        double u = clv_bgnbd_expected_uncond(m, ts[i]);
        ck_assert_msg(isfinite(u) && u >= 0.0, "expected_uncond(%g) = %g", ts[i], u);
    }
    double v = clv_gg_expected_value(g, x, mbar);
    ck_assert_msg(isfinite(v) && v >= 0.0, "gg value(%g, %g) = %g", x, mbar, v);
    const double horizons[] = {0.0, 0.5, 12.0, 120.0, 1e9};
    for (size_t i = 0; i < sizeof horizons / sizeof horizons[0]; i++) {
        double clv = clv_predicted(m, g, x, t_x, T, mbar, horizons[i], 0.01, 1.0);
        ck_assert_msg(isfinite(clv) && clv >= 0.0, "clv(H=%g | %g,%g,%g,%g) = %g", horizons[i], x, t_x, T, mbar,
                      clv);
    }
}

START_TEST(test_degenerate_fits)
{
    clv_bgnbd m;
    clv_gg g;
    memset(&m, 0, sizeof m);
    memset(&g, 0, sizeof g);

    /* One customer, or none. */
    clv_rft one = {2.0, 10.0, 20.0};
    ck_assert_int_eq(clv_bgnbd_fit(&one, 1, &m), -1);
    ck_assert_int_eq(clv_bgnbd_fit(NULL, 0, &m), -1);
    double gx = 2.0, gm = 30.0;
    ck_assert_int_eq(clv_gg_fit(&gx, &gm, 1, &g), -1);
    ck_assert_int_eq(clv_gg_fit(NULL, NULL, 0, &g), -1);

    /* Nobody repeats: a and b are not identified; -1 or finite, never NaN. */
    clv_rft none[200];
    for (int i = 0; i < 200; i++)
        none[i] = (clv_rft){0.0, 0.0, 10.0 + i};
    clv_bgnbd before = m;
    int rc = clv_bgnbd_fit(none, 200, &m);
    ck_assert(rc == -1 || finite_params(&m));
    if (rc == -1)
        ck_assert_mem_eq(&m, &before, sizeof m); /* untouched on failure */

    /* Everyone repeats (many purchases, recent): no dropout evidence. */
    clv_rft all[300];
    rng gen = {99};
    for (int i = 0; i < 300; i++) {
        double T = 100.0 + 200.0 * rng_unif(&gen);
        all[i] = (clv_rft){1.0 + (double)(int)(10.0 * rng_unif(&gen)), T * (0.95 + 0.05 * rng_unif(&gen)), T};
    }
    rc = clv_bgnbd_fit(all, 300, &m);
    ck_assert(rc == -1 || finite_params(&m));
    printf("everyone-repeats fit: rc=%d\n", rc);

    /* Identical rows: likelihood flat in some direction or diverging. */
    clv_rft same[50];
    for (int i = 0; i < 50; i++)
        same[i] = (clv_rft){1.0, 5.0, 10.0};
    rc = clv_bgnbd_fit(same, 50, &m);
    ck_assert(rc == -1 || finite_params(&m));

    /* All orders on one day: x = 0, t_x = 0 for everyone. */
    clv_rft oneday[20];
    for (int i = 0; i < 20; i++)
        oneday[i] = (clv_rft){0.0, 0.0, 0.0};
    ck_assert_int_eq(clv_bgnbd_fit(oneday, 20, &m), -1);

    /* Non-finite rows are ignored, not propagated. */
    cdnow_summary *s = summary();
    static clv_rft dirty[CDNOW_MAX + 2];
    memcpy(dirty, s->c, s->n * sizeof *dirty);
    dirty[s->n] = (clv_rft){NAN, 1.0, 2.0};
    dirty[s->n + 1] = (clv_rft){1.0, INFINITY, 2.0};
    ck_assert_int_eq(clv_bgnbd_fit(dirty, s->n + 2, &m), 0);
    ck_assert_double_eq_tol(m.r / PUB_R, 1.0, 1e-5);

    /* GG: everybody with the same mean spend -> no spread to estimate; -1 or finite. */
    double xs[40], ms[40];
    for (int i = 0; i < 40; i++) {
        xs[i] = 1.0 + i % 3;
        ms[i] = 25.0;
    }
    rc = clv_gg_fit(xs, ms, 40, &g);
    ck_assert(rc == -1 || (isfinite(g.p) && isfinite(g.q) && isfinite(g.v) && g.q > 1.0));
    /* GG: rows with x == 0 or mbar <= 0 are ignored. */
    for (int i = 0; i < 40; i++)
        xs[i] = 0.0;
    ck_assert_int_eq(clv_gg_fit(xs, ms, 40, &g), -1);
}
END_TEST

START_TEST(test_degenerate_predictions)
{
    clv_bgnbd weeks = published();
    clv_bgnbd days = weeks;
    days.alpha *= 7.0;
    clv_gg g = {6.25, 3.74, 15.44, 0.0, 0};
    const clv_bgnbd *models[] = {&weeks, &days};
    for (int k = 0; k < 2; k++) {
        const clv_bgnbd *m = models[k];
        check_predictions(m, &g, 0.0, 0.0, 38.86, 0.0);       /* one-time buyer */
        check_predictions(m, &g, 0.0, 0.0, 0.0, 0.0);         /* bought today */
        check_predictions(m, &g, 0.0, 0.0, 1e-12, 0.0);       /* T tiny */
        check_predictions(m, &g, 3.0, 20.0, 20.0, 12.0);      /* t_x == T */
        check_predictions(m, &g, 3.0, 0.0, 20.0, 12.0);       /* x > 0 but t_x == 0 */
        check_predictions(m, &g, 500.0, 2990.0, 3000.0, 1e-2); /* heavy buyer, cents */
        check_predictions(m, &g, 500.0, 10.0, 3000.0, 1e7);   /* heavy buyer long gone, huge orders */
        check_predictions(m, &g, 5.0, 30.0, 20.0, 40.0);      /* t_x > T: clamped */
        check_predictions(m, &g, -3.0, -1.0, -5.0, -7.0);     /* nonsense: clamped */
        check_predictions(m, &g, 1e6, 1e6, 1e6, 1e300);       /* absurd but finite */
    }
    ck_assert_double_eq(clv_bgnbd_p_alive(&weeks, 0.0, 0.0, 1000.0), 1.0);
    /* A heavy buyer seen recently is almost surely alive; one long silent almost surely not. */
    ck_assert(clv_bgnbd_p_alive(&days, 500.0, 2999.0, 3000.0) > 0.9);
    ck_assert(clv_bgnbd_p_alive(&days, 500.0, 10.0, 3000.0) < 1e-6);
    ck_assert(clv_bgnbd_expected(&days, 365.0, 500.0, 2999.0, 3000.0) > 10.0);

    /* Sweep awkward parameter values, including a == 1 and r > a + b. */
    const double rs[] = {1e-4, 0.24, 3.0, 80.0}, as[] = {1e-3, 0.5, 1.0, 1.0 + 1e-7, 40.0},
                 bs[] = {1e-3, 0.9, 2.4, 1e4}, alphas[] = {1e-3, 4.4, 1e5};
    for (size_t i = 0; i < 4; i++)
        for (size_t j = 0; j < 5; j++)
            for (size_t l = 0; l < 4; l++)
                for (size_t h = 0; h < 3; h++) {
                    clv_bgnbd m = {rs[i], alphas[h], as[j], bs[l], 0.0, 0};
                    check_predictions(&m, &g, 0.0, 0.0, 50.0, 0.0);
                    check_predictions(&m, &g, 2.0, 30.0, 38.0, 20.0);
                    check_predictions(&m, &g, 400.0, 1.0, 3000.0, 1e7);
                }

    /* q <= 1: population mean does not exist; customers with history still get a value. */
    clv_gg heavy = {2.0, 0.8, 10.0, 0.0, 0};
    ck_assert_double_eq(clv_gg_expected_value(&heavy, 0.0, 0.0), 0.0);
    double v = clv_gg_expected_value(&heavy, 3.0, 20.0);
    ck_assert(isfinite(v) && v > 0.0);
    ck_assert_double_eq_tol(clv_gg_expected_value(&g, 2.0, 1e-2), 6.25 * (15.44 + 0.02) / (12.5 + 2.74), 1e-12);
    ck_assert(isfinite(clv_gg_expected_value(&g, 2.0, 1e7)));

    /* Invalid models give 0 (never NaN). */
    clv_bgnbd bad = {0.0, 1.0, 1.0, 1.0, 0.0, 0};
    ck_assert_double_eq(clv_bgnbd_p_alive(&bad, 1.0, 1.0, 2.0), 0.0);
    ck_assert_double_eq(clv_bgnbd_expected(&bad, 1.0, 1.0, 1.0, 2.0), 0.0);
    ck_assert_double_eq(clv_bgnbd_expected_uncond(NULL, 1.0), 0.0);
    ck_assert(clv_bgnbd_loglik(&bad, &(clv_rft){1, 1, 2}, 1) == -HUGE_VAL);
    clv_gg badg = {NAN, 1.0, 1.0, 0.0, 0};
    ck_assert_double_eq(clv_gg_expected_value(&badg, 1.0, 1.0), 0.0);
    ck_assert_double_eq(clv_predicted(&weeks, &badg, 1.0, 1.0, 2.0, 3.0, 12.0, 0.01, 7.0), 0.0);
    ck_assert_double_eq(clv_predicted(&weeks, &g, 1.0, 1.0, 2.0, 3.0, 12.0, 0.01, 0.0), 0.0);
    ck_assert_double_eq(clv_bgnbd_expected(&weeks, NAN, 1.0, 1.0, 2.0), 0.0);
}
END_TEST

/* ---------------------------------------------------------------------------------------- */

static Suite *clv_suite(void)
{
    Suite *s = suite_create("clv");
    TCase *tc = tcase_create("cdnow");
    tcase_set_timeout(tc, 120); /* sanitizer builds are slow */
    tcase_add_test(tc, test_cdnow_bgnbd_fit);
    tcase_add_test(tc, test_cdnow_loglik_at_published);
    tcase_add_test(tc, test_cdnow_bgnbd_fit_in_days);
    tcase_add_test(tc, test_cdnow_conditional_expected);
    tcase_add_test(tc, test_cdnow_gamma_gamma);
    tcase_add_test(tc, test_cdnow_summary_from_raw);
    suite_add_tcase(s, tc);

    tc = tcase_create("numerics");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_log_hyp2f1);
    tcase_add_test(tc, test_expected_reference);
    tcase_add_test(tc, test_p_alive_and_clv);
    tcase_add_test(tc, test_degenerate_fits);
    tcase_add_test(tc, test_degenerate_predictions);
    suite_add_tcase(s, tc);

    tc = tcase_create("simulated");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_bgnbd_recovery);
    tcase_add_test(tc, test_gg_recovery);
    tcase_add_test(tc, test_fit_speed_100k);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(clv_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
