/*
 * clv.c - predictive-CLV numerical core: BG/NBD (purchase counts and churn) and Gamma-Gamma
 * (spend per order) maximum-likelihood fitting and prediction. Pure libc + libm.
 *
 * Why it is built this way:
 *  - Everything is in log space (own log-gamma / digamma, log-sum-exp) so that customers with
 *    hundreds of purchases, ages of thousands of days and order values from cents to 1e7 do not
 *    overflow. Own log-gamma because libm's lgamma writes the global `signgam`, a data race
 *    when several request threads fit at once.
 *  - The fitters rescale the data (time by the mean age, money by the mean order value) and
 *    optimise over log-parameters, so one set of starting points and bounds serves any unit.
 *  - Speed: the log-likelihood is a sum over customers. Identical rows are merged with a
 *    weight, every data-only term is computed once, lgamma/digamma terms are computed once per
 *    distinct x, and log(alpha + time) once per distinct time value, leaving one exp + one
 *    log1p per repeat customer per evaluation. BFGS with analytic gradients then needs a few
 *    dozen evaluations, against hundreds for Nelder-Mead.
 *  - The BG/NBD conditional expectation involves 2F1(r+x, b+x; a+b+x-1; z) divided by (a-1).
 *    The series is rearranged (Euler transformation when a+b > r) so the (a-1) factor cancels
 *    analytically and the terms keep one sign; partial sums are rescaled to stay in range.
 *    When the horizon is long against alpha + T the series needs ~40 (1 + t/(alpha+T)) terms,
 *    so past a budget the same quantity is computed as a 1-D integral over the dropout
 *    probability (tanh-sinh quadrature), which also prices all CLV months in one pass.
 */
#include "retentiond/domain/clv.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------- */
/* Special functions                                                                         */
/* ---------------------------------------------------------------------------------------- */

#define CLV_HALF_LOG_2PI 0.91893853320467274178032973640562
#define CLV_LN10 2.30258509299404568401799145468437
#define CLV_PI 3.14159265358979323846264338327950

/* log Gamma(x) for x > 0: shift x up to >= 10 with the recurrence (one log of the product),
 * then the Stirling series, whose next omitted term is below 1e-14 there. */
static double log_gamma(double x)
{
    double prod = 1.0;
    while (x < 10.0) {
        prod *= x;
        x += 1.0;
    }
    double f = 1.0 / (x * x);
    double series = (1.0 / x) * (1.0 / 12.0 - f * (1.0 / 360.0 - f * (1.0 / 1260.0 - f * (1.0 / 1680.0 - f / 1188.0))));
    return (x - 0.5) * log(x) - x + CLV_HALF_LOG_2PI + series - log(prod);
}

/* digamma(x) for x > 0: same shift-then-asymptotic-series scheme as log_gamma. */
static double digamma(double x)
{
    double acc = 0.0;
    while (x < 10.0) {
        acc -= 1.0 / x;
        x += 1.0;
    }
    double f = 1.0 / (x * x);
    return acc + log(x) - 0.5 / x -
           f * (1.0 / 12.0 - f * (1.0 / 120.0 - f * (1.0 / 252.0 - f * (1.0 / 240.0 - f / 132.0))));
}

/* Term budgets. The exposed 2F1 may take many terms; inside predictions a series that has
 * not converged after CLV_SERIES_BUDGET terms (z close to 1, i.e. horizon >> alpha + T) is
 * abandoned for quadrature, which costs about as much as that many terms. */
#define CLV_SERIES_MAX_TERMS 1000000L
#ifndef CLV_SERIES_BUDGET /* overridable to exercise the quadrature path in tests */
#define CLV_SERIES_BUDGET 4000L
#endif

/*
 * log( sum_{n>=1} P_n ) where P_1 = 1 and P_{n+1} = P_n * (p1+n)(p2+n) z / ((q1+n)(n+1)).
 * Every hypergeometric sum below is reduced to this shape. Preconditions (callers ensure):
 * 0 <= z < 1 and p1+1, p2+1, q1+1 > 0, so every ratio is >= 0 and all terms share a sign.
 * The partial sum is rescaled by 1e-250 whenever it grows past 1e250, so the result is exact
 * in log space even when the sum itself would overflow. Stops when a rigorous bound on the
 * remaining tail is below 1e-17 of the sum: for m >= n each factor (p+m)/(q+m) is monotone
 * in m, so z * max(factor, 1) * max(other factor, 1) bounds all future ratios (checked every
 * 8 terms to keep the loop at one division per term).
 * *truncated is set to 1 if max_terms ran out first.
 */
static double log_series(double p1, double p2, double q1, double z, long max_terms, int *truncated)
{
    double sum = 1.0, term = 1.0, log_scale = 0.0;
    *truncated = 1;
    for (long n = 1; n < max_terms; n++) {
        double dn = (double)n;
        if ((n & 7) == 1) {
            double u1 = (p1 + dn) / (dn + 1.0), u2 = (p2 + dn) / (q1 + dn);
            double v1 = (p1 + dn) / (q1 + dn), v2 = (p2 + dn) / (dn + 1.0);
            double sup = z * fmin(fmax(u1, 1.0) * fmax(u2, 1.0), fmax(v1, 1.0) * fmax(v2, 1.0));
            if (sup < 1.0 && term * sup <= 1e-17 * sum * (1.0 - sup)) {
                *truncated = 0;
                break;
            }
        }
        term *= z * (p1 + dn) * (p2 + dn) / ((q1 + dn) * (dn + 1.0));
        sum += term;
        if (sum > 1e250) {
            sum *= 1e-250;
            term *= 1e-250;
            log_scale += 250.0 * CLV_LN10;
        }
    }
    return log(sum) + log_scale;
}

int clv_log_hyp2f1(double a, double b, double c, double z, double *log_value)
{
    if (!log_value || !(a > 0) || !(b > 0) || !(c > 0) || !(z >= 0) || !(z < 1) || !isfinite(a) ||
        !isfinite(b) || !isfinite(c))
        return -1;
    if (z == 0.0) {
        *log_value = 0.0;
        return 0;
    }
    int truncated;
    /* 2F1 = 1 + (a b z / c) * sum_{n>=1} P_n with the ratio of log_series. */
    double lt = log(a) + log(b) + log(z) - log(c) + log_series(a, b, c, z, CLV_SERIES_MAX_TERMS, &truncated);
    if (truncated || !isfinite(lt))
        return -1;
    *log_value = lt > 0 ? lt + log1p(exp(-lt)) : log1p(exp(lt));
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Input hygiene                                                                             */
/* ---------------------------------------------------------------------------------------- */

static int pos_finite(double v)
{
    return isfinite(v) && v > 0.0;
}

static int bg_valid(const clv_bgnbd *m)
{
    return m && pos_finite(m->r) && pos_finite(m->alpha) && pos_finite(m->a) && pos_finite(m->b);
}

static int gg_valid(const clv_gg *m)
{
    return m && pos_finite(m->p) && pos_finite(m->q) && pos_finite(m->v);
}

/* Clamp one customer summary into the model's domain; -1 if a field is not finite. */
static int rft_clean(double *x, double *t_x, double *T)
{
    if (!isfinite(*x) || !isfinite(*t_x) || !isfinite(*T))
        return -1;
    /* x counts purchase occasions; a fraction would also make b + x - 1 negative */
    *x = *x < 0.0 ? 0.0 : floor(*x + 0.5);
    if (*T < 0.0)
        *T = 0.0;
    if (*t_x < 0.0)
        *t_x = 0.0;
    if (*t_x > *T)
        *t_x = *T;
    if (*x == 0.0)
        *t_x = 0.0; /* recency is meaningless without a repeat purchase */
    return 0;
}

/* Keep results finite for absurd-but-finite inputs (e.g. values near DBL_MAX). */
static double finite_nonneg(double v)
{
    if (isnan(v) || v < 0.0)
        return 0.0;
    if (v > DBL_MAX)
        return DBL_MAX;
    return v;
}

/* ---------------------------------------------------------------------------------------- */
/* BG/NBD: likelihood and predictions                                                       */
/* ---------------------------------------------------------------------------------------- */

double clv_bgnbd_loglik(const clv_bgnbd *m, const clv_rft *c, size_t n)
{
    if (!bg_valid(m))
        return -HUGE_VAL;
    if (!c)
        return 0.0;
    double r = m->r, al = m->alpha, a = m->a, b = m->b;
    double base = -log_gamma(r) + r * log(al) + log_gamma(a + b) - log_gamma(b);
    double sum = 0.0;
    for (size_t i = 0; i < n; i++) {
        double x = c[i].x, tx = c[i].t_x, T = c[i].T;
        if (rft_clean(&x, &tx, &T) != 0)
            continue;
        /* FHL 2005 eq. 6: A1 + A2 + log(exp(A3) + [x>0] exp(A4)). */
        double l12 = base + log_gamma(r + x) + log_gamma(b + x) - log_gamma(a + b + x);
        double a3 = -(r + x) * log(al + T);
        if (x > 0.0) {
            double a4 = log(a) - log(b + x - 1.0) - (r + x) * log(al + tx);
            double hi = fmax(a3, a4), lo = fmin(a3, a4);
            sum += l12 + hi + log1p(exp(lo - hi));
        } else {
            sum += l12 + a3;
        }
    }
    return sum;
}

double clv_bgnbd_p_alive(const clv_bgnbd *m, double x, double t_x, double T)
{
    if (!bg_valid(m) || rft_clean(&x, &t_x, &T) != 0)
        return 0.0;
    if (x == 0.0)
        return 1.0;
    /* P = 1 / (1 + a/(b+x-1) * ((alpha+T)/(alpha+t_x))^(r+x)), the ratio taken in logs. */
    double lr = log(m->a) - log(m->b + x - 1.0) + (m->r + x) * log1p((T - t_x) / (m->alpha + t_x));
    if (lr > 0.0) {
        double e = exp(-lr);
        return e / (1.0 + e);
    }
    return 1.0 / (1.0 + exp(lr));
}

/*
 * E[repeat purchases in (T, T+t] | alive at T]  =  C/(a-1) * (1 - (1-z)^A 2F1(A, B; C; z))
 * with A = r+x, B = b+x, C = a+b+x-1, z = t/(alpha+T+t)   (FHL 2005 eq. 10 without P(alive)).
 * Both forms below multiply C into the series (C/(C)_n = 1/(C+1)_{n-1}), which keeps C <= 0
 * (possible when x = 0 and a+b < 1) harmless.
 */

/* Euler-transformed form, valid when D = a+b-1-r > -1: (1-z)^A 2F1(A,B;C;z) =
 * (1-z)^(a-1) 2F1(D, a-1; C; z); every term n >= 1 of the latter carries (a-1), so dividing
 * by (a-1) is exact and
 *   E = C (1 - (1-z)^(a-1))/(a-1) - (1-z)^(a-1) D z sum_{n>=1} P_n(D, a-1; C).          */
static double expected_alive_euler(double r, double a, double b, double x, double z, double log1mz, int *truncated)
{
    double am1 = a - 1.0, C = a + b + x - 1.0, D = a + b - 1.0 - r;
    double e1 = am1 == 0.0 ? -log1mz : -expm1(am1 * log1mz) / am1;
    double res = C * e1;
    *truncated = 0;
    if (D != 0.0 && z > 0.0) {
        double lt = am1 * log1mz + log(fabs(D) * z) + log_series(D, am1, C, z, CLV_SERIES_BUDGET, truncated);
        double tail = exp(lt);
        res += D > 0.0 ? -tail : tail;
    }
    return res;
}

/* Direct form for D <= -1 (r >= a+b), where the Euler form's terms would alternate:
 *   E = [C (1 - (1-z)^A) - (1-z)^A A B z sum_{n>=1} P_n(A, B; C)] / (a-1).
 * All terms positive; only a == 1 is singular, handled by the caller. */
static double expected_alive_direct(double r, double a, double b, double x, double z, double log1mz, int *truncated)
{
    double A = r + x, B = b + x, C = a + b + x - 1.0;
    double lt = A * log1mz + log(A * B * z) + log_series(A, B, C, z, CLV_SERIES_BUDGET, truncated);
    return (-C * expm1(A * log1mz) - exp(lt)) / (a - 1.0);
}

/* Distance from a = 1 inside which the direct form is replaced by linear interpolation
 * between its values at 1 -/+ this offset: the bias is O(offset^2) ~ 1e-10 relative, the
 * rounding amplification about C * eps / offset ~ 1e-11 * C. */
#define CLV_A_NEAR_ONE 1e-5

/* Ratio t/(alpha+T) beyond which t is capped: keeps every intermediate finite. */
#define CLV_MAX_HORIZON_RATIO 1e12

/*
 * Quadrature fallback for horizons long against alpha + T. Given alive at T, the posterior
 * of the dropout probability is p ~ Beta(a, B = b+x) and, integrating the purchase rate out,
 *   E = E_p[ g(p) ],   g(p) = (1 - (1 + p u)^-A) / p,   u = t/(alpha+T), A = r+x,
 * which has no singularity anywhere (g(0) = A u). The expectation is taken with tanh-sinh
 * (double-exponential) quadrature: p = 1/(1+exp(-pi sinh s)), so the Beta density's endpoint
 * singularities are absorbed by the map and ln p, ln(1-p) are exact even where p underflows.
 * The step is halved until two levels agree to 1e-10 (the error then is far smaller).
 * g is supplied by the caller so clv_predicted can integrate all months in one pass.
 */
typedef double (*clv_pfun)(double p, void *ctx);

#define QUAD_TMAX 20.0 /* |s| <= 20: ln p down to -7.6e8, enough for a >= 1e-6 */
#define QUAD_MAX_LEVEL 9

static double quad_node(double s, double a, double B, double lbeta, clv_pfun g, void *ctx)
{
    double sh = CLV_PI * sinh(s);
    double e = exp(-fabs(sh));
    double l1 = log1p(e);
    double lp = -(sh < 0.0 ? -sh : 0.0) - l1; /* ln p      = -softplus(-sh) */
    double lq = -(sh > 0.0 ? sh : 0.0) - l1;  /* ln (1-p)  = -softplus(sh)  */
    double w = a * lp + B * lq - lbeta + log(CLV_PI * cosh(s));
    if (w < -745.0)
        return 0.0;
    return exp(w) * g(exp(lp), ctx);
}

/* One side's sum of nodes s = s0, s0 +/- step, ... while they matter. */
static double quad_side(double s0, double step, double a, double B, double lbeta, clv_pfun g, void *ctx,
                        double scale)
{
    double sum = 0.0, prev = HUGE_VAL;
    for (double s = s0; fabs(s) <= QUAD_TMAX; s += step) {
        double f = quad_node(s, a, B, lbeta, g, ctx);
        sum += f;
        /* terms decay double-exponentially once past the bulk: stop when negligible and falling */
        if (fabs(s) > 1.0 && f < prev && f <= 1e-18 * (scale + sum))
            break;
        prev = f;
    }
    return sum;
}

static double beta_expectation(double a, double B, clv_pfun g, void *ctx)
{
    double lbeta = log_gamma(a) + log_gamma(B) - log_gamma(a + B);
    double h = 0.5;
    double sum = quad_node(0.0, a, B, lbeta, g, ctx);
    sum += quad_side(h, h, a, B, lbeta, g, ctx, sum);
    sum += quad_side(-h, -h, a, B, lbeta, g, ctx, sum);
    double est = h * sum;
    for (int level = 1; level <= QUAD_MAX_LEVEL; level++) {
        h *= 0.5;
        double mid = quad_side(h, 2.0 * h, a, B, lbeta, g, ctx, sum) + quad_side(-h, -2.0 * h, a, B, lbeta, g, ctx, sum);
        sum += mid;
        double next = h * sum;
        int done = fabs(next - est) <= 1e-10 * fabs(next);
        est = next;
        if (done && level >= 2)
            break;
    }
    return est;
}

typedef struct {
    double A, u;
} single_ctx;

/* g(p) = (1 - (1+pu)^-A)/p; its Taylor form where p u is tiny (p may have underflowed). */
static double g_single(double p, void *vctx)
{
    const single_ctx *c = vctx;
    double y = p * c->u;
    if ((c->A + 1.0) * y < 1e-7)
        return c->A * c->u * (1.0 - 0.5 * (c->A + 1.0) * y);
    return -expm1(-c->A * log1p(y)) / p;
}

/* Series evaluation of E[purchases in the next u * (alpha+T) | alive], u already capped;
 * *truncated = 1 when the series budget ran out (result then unusable). */
static double expected_alive_series(double r, double a, double b, double x, double u, int *truncated)
{
    double log1mz = -log1p(u); /* log(1 - z), accurate for small and large u alike */
    double z = u / (1.0 + u);
    int trunc2 = 0;
    if (a + b - 1.0 - r > -1.0)
        return expected_alive_euler(r, a, b, x, z, log1mz, truncated);
    if (fabs(a - 1.0) < CLV_A_NEAR_ONE) {
        double lo = expected_alive_direct(r, 1.0 - CLV_A_NEAR_ONE, b, x, z, log1mz, truncated);
        if (*truncated)
            return 0.0;
        double hi = expected_alive_direct(r, 1.0 + CLV_A_NEAR_ONE, b, x, z, log1mz, &trunc2);
        *truncated = trunc2;
        return lo + (hi - lo) * (a - (1.0 - CLV_A_NEAR_ONE)) / (2.0 * CLV_A_NEAR_ONE);
    }
    return expected_alive_direct(r, a, b, x, z, log1mz, truncated);
}

/* E[repeat purchases in (T, T+t] | alive at T] for horizon ratio u = t/(alpha+T). */
static double expected_if_alive_u(double r, double a, double b, double x, double u)
{
    if (!(u > 0.0))
        return 0.0;
    if (!(u <= CLV_MAX_HORIZON_RATIO))
        u = CLV_MAX_HORIZON_RATIO;
    int truncated = 0;
    double e = expected_alive_series(r, a, b, x, u, &truncated);
    if (truncated) {
        single_ctx ctx = {r + x, u};
        e = beta_expectation(a, b + x, g_single, &ctx);
    }
    return finite_nonneg(e);
}

static double expected_if_alive(double r, double alpha, double a, double b, double x, double T, double t)
{
    if (!(t > 0.0))
        return 0.0;
    return expected_if_alive_u(r, a, b, x, t / (alpha + T));
}

double clv_bgnbd_expected(const clv_bgnbd *m, double t, double x, double t_x, double T)
{
    if (!bg_valid(m) || !(t > 0.0) || rft_clean(&x, &t_x, &T) != 0)
        return 0.0;
    double pa = clv_bgnbd_p_alive(m, x, t_x, T);
    return finite_nonneg(pa * expected_if_alive(m->r, m->alpha, m->a, m->b, x, T, t));
}

double clv_bgnbd_expected_uncond(const clv_bgnbd *m, double t)
{
    /* FHL eq. 9 is eq. 10 for a customer with x = 0, T = 0 (alive with certainty). */
    if (!bg_valid(m) || !(t > 0.0))
        return 0.0;
    return expected_if_alive(m->r, m->alpha, m->a, m->b, 0.0, 0.0, t);
}

/* ---------------------------------------------------------------------------------------- */
/* Gamma-Gamma: likelihood and prediction                                                    */
/* ---------------------------------------------------------------------------------------- */

static int gg_row_usable(double x, double mbar)
{
    return isfinite(x) && isfinite(mbar) && x > 0.0 && mbar > 0.0;
}

double clv_gg_loglik(const clv_gg *m, const double *x, const double *mbar, size_t n)
{
    if (!gg_valid(m))
        return -HUGE_VAL;
    if (!x || !mbar)
        return 0.0;
    double p = m->p, q = m->q, v = m->v;
    double base = -log_gamma(q) + q * log(v);
    double sum = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (!gg_row_usable(x[i], mbar[i]))
            continue;
        double px = p * x[i];
        /* Density of the mean of x Gamma(p, nu) values, nu ~ Gamma(q, v) integrated out. */
        sum += base + log_gamma(px + q) - log_gamma(px) + (px - 1.0) * log(mbar[i]) + px * log(x[i]) -
               (px + q) * log(v + x[i] * mbar[i]);
    }
    return sum;
}

double clv_gg_expected_value(const clv_gg *m, double x, double mbar)
{
    if (!gg_valid(m))
        return 0.0;
    double p = m->p, q = m->q, v = m->v;
    if (!gg_row_usable(x, mbar))
        return q > 1.0 ? finite_nonneg(v * p / (q - 1.0)) : 0.0;
    double den = p * x + q - 1.0;
    if (!(den > 0.0))
        return finite_nonneg(mbar); /* population mean undefined: the customer's own mean */
    /* Credibility-weighted mix of the population mean and the customer's mean, written so
     * that q <= 1 (population mean infinite) still gives the finite posterior mean. */
    return finite_nonneg((p / den) * v + (p * x / den) * mbar);
}

/* ---------------------------------------------------------------------------------------- */
/* CLV                                                                                       */
/* ---------------------------------------------------------------------------------------- */

#define CLV_DAYS_PER_MONTH 30.4375
#define CLV_MAX_MONTHS 1200

/* All months at once for the quadrature path: with e_k = (1 + p u_k)^-A,
 *   g(p) = sum_k disc_k (e_{k-1} - e_k) / p,
 * each difference taken as e_{k-1} * -expm1(-A (log1p(p u_k) - log1p(p u_{k-1}))) so that
 * small increments keep their digits; Taylor form where p u_K is tiny. */
typedef struct {
    double A;
    const double *u, *disc; /* u[0..months], u[0] = 0; disc[1..months] */
    long months;
} clv_ctx;

static double g_clv(double p, void *vctx)
{
    const clv_ctx *c = vctx;
    double A = c->A;
    if ((A + 1.0) * p * c->u[c->months] < 1e-7) {
        double s = 0.0;
        for (long k = 1; k <= c->months; k++) {
            double du = c->u[k] - c->u[k - 1];
            s += c->disc[k] * du * (1.0 - 0.5 * (A + 1.0) * p * (c->u[k] + c->u[k - 1]));
        }
        return A * s;
    }
    double s = 0.0, e_prev = 1.0, l_prev = 0.0;
    for (long k = 1; k <= c->months; k++) {
        double l = log1p(p * c->u[k]);
        double m = expm1(-A * (l - l_prev));
        s -= c->disc[k] * e_prev * m;
        e_prev *= 1.0 + m;
        l_prev = l;
    }
    return s / p;
}

double clv_predicted(const clv_bgnbd *m, const clv_gg *g, double x, double t_x, double T, double mbar,
                     double horizon_months, double monthly_discount, double days_per_unit)
{
    if (!bg_valid(m) || !gg_valid(g) || !pos_finite(days_per_unit) || !(horizon_months > 0.0) ||
        rft_clean(&x, &t_x, &T) != 0)
        return 0.0;
    double H = horizon_months > CLV_MAX_MONTHS ? (double)CLV_MAX_MONTHS : horizon_months;
    double d = isfinite(monthly_discount) && monthly_discount > 0.0 ? monthly_discount : 0.0;
    double value = clv_gg_expected_value(g, x, mbar);
    double pa = clv_bgnbd_p_alive(m, x, t_x, T);
    if (value == 0.0 || pa == 0.0)
        return 0.0;
    double units_per_month = CLV_DAYS_PER_MONTH / days_per_unit;
    long months = (long)ceil(H);
    /* Month k ends at min(k, H) months; u_k is that time over alpha + T, capped like
     * expected_if_alive does. */
    double u[CLV_MAX_MONTHS + 1], disc[CLV_MAX_MONTHS + 1];
    u[0] = 0.0;
    disc[0] = 1.0;
    for (long k = 1; k <= months; k++) {
        double end = (double)k < H ? (double)k : H;
        u[k] = fmin(end * units_per_month / (m->alpha + T), CLV_MAX_HORIZON_RATIO);
        disc[k] = disc[k - 1] / (1.0 + d);
    }
    /* Series per month when the longest horizon's series converges within budget (shorter
     * horizons converge no slower); otherwise one quadrature pass over all months. */
    double total = 0.0;
    int truncated = 0;
    (void)expected_alive_series(m->r, m->a, m->b, x, u[months], &truncated);
    if (!truncated) {
        double prev = 0.0;
        for (long k = 1; k <= months; k++) {
            double cur = expected_if_alive_u(m->r, m->a, m->b, x, u[k]);
            if (cur > prev) { /* mathematically increasing; guard rounding */
                total += (cur - prev) * disc[k];
                prev = cur;
            }
        }
    } else {
        clv_ctx ctx = {m->r + x, u, disc, months};
        total = beta_expectation(m->a, m->b + x, g_clv, &ctx);
    }
    return finite_nonneg(total * pa * value);
}

/* ---------------------------------------------------------------------------------------- */
/* Optimiser: BFGS on a box, for <= 4 log-parameters                                        */
/* ---------------------------------------------------------------------------------------- */

#define OPT_MAX_DIM 4
#define OPT_GTOL 1e-9       /* projected gradient (objective is per-customer) */
#define OPT_GTOL_LOOSE 1e-5 /* accepted when the line search can no longer resolve progress */
#define OPT_MAX_STEP 2.0    /* largest change of one log-parameter per iteration */
#define OPT_MAX_ITER 400

/* Objective: returns f(th) and writes the gradient; may return a non-finite value. */
typedef double (*opt_fn)(void *ctx, const double *th, double *grad);

typedef struct {
    double f;
    int iterations;
    int converged;
} opt_result;

static double clampd(double v, double lo, double hi)
{
    return v < lo ? lo : (v > hi ? hi : v);
}

static double max_abs_projected(const double *g, const double *th, int k, double lo, double hi)
{
    double m = 0.0;
    for (int i = 0; i < k; i++) {
        if ((th[i] <= lo && g[i] > 0.0) || (th[i] >= hi && g[i] < 0.0))
            continue; /* pushing against an active bound */
        m = fmax(m, fabs(g[i]));
    }
    return m;
}

static void set_identity(double *M, int k)
{
    for (int i = 0; i < k * k; i++)
        M[i] = 0.0;
    for (int i = 0; i < k; i++)
        M[i * k + i] = 1.0;
}

/*
 * Minimise fn over th in [lo, hi]^k, starting from th (overwritten with the best point).
 * Quasi-Newton (inverse-Hessian BFGS) direction, components against an active bound dropped,
 * projected backtracking Armijo line search. Near the optimum the objective's changes drop
 * below rounding before the gradient does, so a step that does not raise f beyond rounding
 * but shrinks the gradient is accepted too.
 */
static void bfgs_box(opt_fn fn, void *ctx, int k, double *th, double lo, double hi, opt_result *res)
{
    double g[OPT_MAX_DIM], gn[OPT_MAX_DIM], tn[OPT_MAX_DIM], d[OPT_MAX_DIM], s[OPT_MAX_DIM], y[OPT_MAX_DIM];
    double Hi[OPT_MAX_DIM * OPT_MAX_DIM], hy[OPT_MAX_DIM];
    res->iterations = 0;
    res->converged = 0;
    for (int i = 0; i < k; i++)
        th[i] = clampd(th[i], lo, hi);
    double f = fn(ctx, th, g);
    res->f = f;
    if (!isfinite(f))
        return;
    int fresh = 1, stalled = 0; /* fresh: Hi is the identity (no curvature learnt yet) */
    set_identity(Hi, k);
    for (int it = 0; it < OPT_MAX_ITER; it++) {
        double gmax = max_abs_projected(g, th, k, lo, hi);
        if (gmax < OPT_GTOL)
            break;
        res->iterations++;
        double gd = 0.0;
        for (int i = 0; i < k; i++) {
            int active = (th[i] <= lo && g[i] > 0.0) || (th[i] >= hi && g[i] < 0.0);
            d[i] = 0.0;
            if (!active)
                for (int j = 0; j < k; j++)
                    d[i] -= Hi[i * k + j] * g[j];
            gd += g[i] * d[i];
        }
        if (!(gd < 0.0)) { /* not a descent direction: fall back to steepest descent */
            fresh = 1;
            set_identity(Hi, k);
            gd = 0.0;
            for (int i = 0; i < k; i++) {
                int active = (th[i] <= lo && g[i] > 0.0) || (th[i] >= hi && g[i] < 0.0);
                d[i] = active ? 0.0 : -g[i];
                gd += g[i] * d[i];
            }
        }
        double dmax = 0.0;
        for (int i = 0; i < k; i++)
            dmax = fmax(dmax, fabs(d[i]));
        double step = dmax > OPT_MAX_STEP ? OPT_MAX_STEP / dmax : 1.0;
        if (fresh && dmax > 0.0 && dmax * step > 0.5) /* first steepest step: modest length */
            step = 0.5 / dmax;
        int accepted = 0;
        double fnew = HUGE_VAL;
        for (int ls = 0; ls < 60; ls++) {
            double dec = 0.0, smax = 0.0;
            for (int i = 0; i < k; i++) {
                tn[i] = clampd(th[i] + step * d[i], lo, hi);
                dec += g[i] * (tn[i] - th[i]);
                smax = fmax(smax, fabs(tn[i] - th[i]));
            }
            if (smax == 0.0)
                break;
            fnew = fn(ctx, tn, gn);
            if (isfinite(fnew)) {
                if (fnew <= f + 1e-4 * dec) {
                    accepted = 1;
                    break;
                }
                if (fnew <= f + 16.0 * DBL_EPSILON * fabs(f) &&
                    max_abs_projected(gn, tn, k, lo, hi) < gmax) {
                    accepted = 1;
                    break;
                }
                /* Quadratic model along the ray, confined to [0.1, 0.5] of the step. */
                double denom = 2.0 * (fnew - f - dec);
                double shrink = denom > 0.0 ? -dec / denom : 0.5;
                step *= clampd(shrink, 0.1, 0.5);
            } else {
                step *= 0.1;
            }
        }
        if (!accepted) {
            if (!fresh) {
                fresh = 1; /* stale curvature: retry once with steepest descent */
                set_identity(Hi, k);
                continue;
            }
            stalled = 1;
            break;
        }
        double sy = 0.0, ss = 0.0, yy = 0.0;
        for (int i = 0; i < k; i++) {
            s[i] = tn[i] - th[i];
            y[i] = gn[i] - g[i];
            sy += s[i] * y[i];
            ss += s[i] * s[i];
            yy += y[i] * y[i];
            th[i] = tn[i];
            g[i] = gn[i];
        }
        f = fnew;
        if (sy > 1e-12 * sqrt(ss * yy) && yy > 0.0) {
            if (fresh) { /* scale the identity to the observed curvature before updating */
                for (int i = 0; i < k; i++)
                    Hi[i * k + i] = sy / yy;
            }
            double rho = 1.0 / sy, yhy = 0.0;
            for (int i = 0; i < k; i++) {
                hy[i] = 0.0;
                for (int j = 0; j < k; j++)
                    hy[i] += Hi[i * k + j] * y[j];
                yhy += y[i] * hy[i];
            }
            for (int i = 0; i < k; i++)
                for (int j = 0; j < k; j++)
                    Hi[i * k + j] += -rho * (s[i] * hy[j] + hy[i] * s[j]) + (rho * rho * yhy + rho) * s[i] * s[j];
            fresh = 0;
        }
    }
    res->f = f;
    double gmax = max_abs_projected(g, th, k, lo, hi);
    res->converged = gmax < OPT_GTOL || (stalled && gmax < OPT_GTOL_LOOSE);
}

/* Restart BFGS from its own result (fresh curvature) until it reports convergence, a few
 * times at most; accumulates iterations. */
static void minimise_with_restarts(opt_fn fn, void *ctx, int k, double *th, double lo, double hi, opt_result *res)
{
    int total = 0;
    for (int attempt = 0; attempt < 4; attempt++) {
        bfgs_box(fn, ctx, k, th, lo, hi, res);
        total += res->iterations;
        if (res->converged || !isfinite(res->f))
            break;
    }
    res->iterations = total;
}

/* Is th on (or within a hair of) a bound? Then the likelihood keeps improving outwards. */
static int near_bound(const double *th, int k, double lo, double hi)
{
    for (int i = 0; i < k; i++)
        if (th[i] < lo + 0.01 || th[i] > hi - 0.01)
            return 1;
    return 0;
}

/* Curvature check at the optimum: central differences of the analytic gradient give the
 * Hessian; Cholesky must succeed with pivots not negligible against the diagonal, otherwise
 * the optimum is flat in some direction (parameters not identified by the data). */
static int hessian_ok(opt_fn fn, void *ctx, int k, const double *th)
{
    double H[OPT_MAX_DIM * OPT_MAX_DIM], tp[OPT_MAX_DIM], gp[OPT_MAX_DIM], gm[OPT_MAX_DIM];
    const double h = 1e-5;
    for (int j = 0; j < k; j++) {
        memcpy(tp, th, sizeof(double) * (size_t)k);
        tp[j] = th[j] + h;
        double fp = fn(ctx, tp, gp);
        tp[j] = th[j] - h;
        double fm = fn(ctx, tp, gm);
        if (!isfinite(fp) || !isfinite(fm))
            return 0;
        for (int i = 0; i < k; i++)
            H[i * k + j] = (gp[i] - gm[i]) / (2.0 * h);
    }
    double dmax = 0.0;
    for (int i = 0; i < k; i++) {
        for (int j = 0; j < i; j++) {
            double avg = 0.5 * (H[i * k + j] + H[j * k + i]);
            H[i * k + j] = H[j * k + i] = avg;
        }
        dmax = fmax(dmax, fabs(H[i * k + i]));
    }
    if (!(dmax > 0.0) || !isfinite(dmax))
        return 0;
    for (int j = 0; j < k; j++) { /* in-place Cholesky, lower triangle */
        double piv = H[j * k + j];
        for (int m = 0; m < j; m++)
            piv -= H[j * k + m] * H[j * k + m];
        if (!(piv > 1e-9 * dmax))
            return 0;
        piv = sqrt(piv);
        H[j * k + j] = piv;
        for (int i = j + 1; i < k; i++) {
            double v = H[i * k + j];
            for (int m = 0; m < j; m++)
                v -= H[i * k + m] * H[j * k + m];
            H[i * k + j] = v / piv;
        }
    }
    return 1;
}

/* Parameter box in log space (relative to the rescaled data): 1e-6 .. 1e6. */
#define CLV_LOG_LO (-13.815510557964274)
#define CLV_LOG_HI (13.815510557964274)

/* ---------------------------------------------------------------------------------------- */
/* BG/NBD fitting                                                                            */
/* ---------------------------------------------------------------------------------------- */

/* Prepared, rescaled, deduplicated data. Rows are sorted by x, so rows sharing x (and hence
 * every lgamma/digamma term) are contiguous; each row refers to its times by index into the
 * table of distinct time values so log(alpha + time) is computed once per distinct value. */
typedef struct {
    size_t nrow, ngroup, ntime;
    double *w;           /* row multiplicity */
    uint32_t *i_T;       /* index of T in times */
    uint32_t *i_tx;      /* index of t_x in times (x > 0 rows) */
    double *gx;          /* per group: x */
    size_t *gstart;      /* per group: first row; gstart[ngroup] = nrow */
    double *gw;          /* per group: total weight */
    double *times;       /* distinct time values (ascending) */
    double *lt, *it;     /* scratch per evaluation: log(alpha+time), 1/(alpha+time) */
    double wtot;
} bg_work;

static int cmp_rft(const void *pa, const void *pb)
{
    const clv_rft *a = pa, *b = pb;
    if (a->x != b->x)
        return a->x < b->x ? -1 : 1;
    if (a->t_x != b->t_x)
        return a->t_x < b->t_x ? -1 : 1;
    if (a->T != b->T)
        return a->T < b->T ? -1 : 1;
    return 0;
}

static int cmp_double(const void *pa, const void *pb)
{
    double a = *(const double *)pa, b = *(const double *)pb;
    return a < b ? -1 : (a > b ? 1 : 0);
}

static uint32_t find_time(const double *times, size_t n, double v)
{
    size_t lo = 0, hi = n; /* times[lo..hi) contains v */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (times[mid] <= v)
            lo = mid;
        else
            hi = mid;
    }
    return (uint32_t)lo;
}

/* Negative mean log-likelihood over log-parameters th = log(r, alpha, a, b) and its gradient.
 * Data-only constants are left out (they do not move the optimum); see bg_full_loglik. */
static double bg_objective(void *ctx, const double *th, double *grad)
{
    const bg_work *wk = ctx;
    double r = exp(th[0]), al = exp(th[1]), a = exp(th[2]), b = exp(th[3]);
    double lal = th[1], la = th[2];
    for (size_t j = 0; j < wk->ntime; j++) {
        double s = al + wk->times[j];
        wk->lt[j] = log(s);
        wk->it[j] = 1.0 / s;
    }
    double lg_r = log_gamma(r), lg_ab = log_gamma(a + b), lg_b = log_gamma(b);
    double ps_r = digamma(r), ps_ab = digamma(a + b), ps_b = digamma(b);
    double ll = 0.0, dr = 0.0, dal = 0.0, da = 0.0, db = 0.0;
    const double *lt = wk->lt, *itv = wk->it;
    for (size_t gi = 0; gi < wk->ngroup; gi++) {
        double x = wk->gx[gi], W = wk->gw[gi];
        double rx = r + x;
        double K = log_gamma(rx) - lg_r + r * lal + lg_ab + log_gamma(b + x) - lg_b - log_gamma(a + b + x);
        double ps_abx = digamma(a + b + x);
        double Kr = digamma(rx) - ps_r + lal;
        double Ka = ps_ab - ps_abx;
        double Kb = ps_ab + digamma(b + x) - ps_b - ps_abx;
        size_t r0 = wk->gstart[gi], r1 = wk->gstart[gi + 1];
        if (x == 0.0) {
            double s_lt = 0.0, s_it = 0.0;
            for (size_t i = r0; i < r1; i++) {
                s_lt += wk->w[i] * lt[wk->i_T[i]];
                s_it += wk->w[i] * itv[wk->i_T[i]];
            }
            ll += W * K - r * s_lt;
            dr += W * Kr - s_lt;
            dal += W * r / al - r * s_it;
            da += W * Ka;
            db += W * Kb;
            continue;
        }
        double c4 = la - log(b + x - 1.0);
        double s_l = 0.0, s_w4 = 0.0, s_lt = 0.0, s_it = 0.0;
        for (size_t i = r0; i < r1; i++) {
            double wi = wk->w[i];
            uint32_t jT = wk->i_T[i], jx = wk->i_tx[i];
            double a3 = -rx * lt[jT];
            double dd = c4 + rx * (lt[jT] - lt[jx]); /* a4 - a3 */
            double e = exp(-fabs(dd));
            double w4 = dd > 0.0 ? 1.0 / (1.0 + e) : e / (1.0 + e); /* share of the "dropped" term */
            s_l += wi * ((dd > 0.0 ? a3 + dd : a3) + log1p(e));
            s_w4 += wi * w4;
            s_lt += wi * (lt[jT] + w4 * (lt[jx] - lt[jT]));
            s_it += wi * (itv[jT] + w4 * (itv[jx] - itv[jT]));
        }
        ll += W * K + s_l;
        dr += W * Kr - s_lt;
        dal += W * r / al - rx * s_it;
        da += W * Ka + s_w4 / a;
        db += W * Kb - s_w4 / (b + x - 1.0);
    }
    double inv = 1.0 / wk->wtot;
    grad[0] = -dr * r * inv;
    grad[1] = -dal * al * inv;
    grad[2] = -da * a * inv;
    grad[3] = -db * b * inv;
    return -ll * inv;
}

static void bg_work_free(bg_work *wk)
{
    free(wk->w);
    free(wk->i_T);
    free(wk->i_tx);
    free(wk->gx);
    free(wk->gstart);
    free(wk->gw);
    free(wk->times);
    free(wk->lt);
    free(wk->it);
}

/* Build the work structure from the usable rows (already clamped and divided by `scale`),
 * which it sorts in place. Returns -1 on allocation failure. */
static int bg_work_build(bg_work *wk, clv_rft *rows, size_t n)
{
    memset(wk, 0, sizeof *wk);
    qsort(rows, n, sizeof *rows, cmp_rft);
    size_t nu = 0, ng = 0;
    for (size_t i = 0; i < n; i++) {
        if (i == 0 || cmp_rft(&rows[i], &rows[i - 1]) != 0) {
            nu++;
            if (i == 0 || rows[i].x != rows[i - 1].x)
                ng++;
        }
    }
    wk->w = malloc(nu * sizeof *wk->w);
    wk->i_T = malloc(nu * sizeof *wk->i_T);
    wk->i_tx = malloc(nu * sizeof *wk->i_tx);
    wk->gx = malloc(ng * sizeof *wk->gx);
    wk->gw = malloc(ng * sizeof *wk->gw);
    wk->gstart = malloc((ng + 1) * sizeof *wk->gstart);
    wk->times = malloc(2 * nu * sizeof *wk->times);
    if (!wk->w || !wk->i_T || !wk->i_tx || !wk->gx || !wk->gw || !wk->gstart || !wk->times)
        return -1;
    /* Pass 1: merge rows, gather time values. Rows are written in place at rows[0..nu). */
    size_t u = 0, nt = 0;
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && cmp_rft(&rows[i], &rows[u - 1]) == 0) {
            wk->w[u - 1] += 1.0;
            continue;
        }
        rows[u] = rows[i];
        wk->w[u] = 1.0;
        u++;
    }
    for (size_t i = 0; i < nu; i++) {
        wk->times[nt++] = rows[i].T;
        if (rows[i].x > 0.0)
            wk->times[nt++] = rows[i].t_x;
    }
    qsort(wk->times, nt, sizeof *wk->times, cmp_double);
    size_t nd = 0;
    for (size_t i = 0; i < nt; i++)
        if (nd == 0 || wk->times[i] != wk->times[nd - 1])
            wk->times[nd++] = wk->times[i];
    wk->ntime = nd;
    wk->lt = malloc((nd ? nd : 1) * sizeof *wk->lt);
    wk->it = malloc((nd ? nd : 1) * sizeof *wk->it);
    if (!wk->lt || !wk->it)
        return -1;
    /* Pass 2: indices and x groups. */
    size_t g = 0;
    wk->wtot = 0.0;
    for (size_t i = 0; i < nu; i++) {
        if (i == 0 || rows[i].x != rows[i - 1].x) {
            wk->gx[g] = rows[i].x;
            wk->gstart[g] = i;
            wk->gw[g] = 0.0;
            g++;
        }
        wk->gw[g - 1] += wk->w[i];
        wk->wtot += wk->w[i];
        wk->i_T[i] = find_time(wk->times, nd, rows[i].T);
        wk->i_tx[i] = rows[i].x > 0.0 ? find_time(wk->times, nd, rows[i].t_x) : 0;
    }
    wk->gstart[g] = nu;
    wk->ngroup = ng;
    wk->nrow = nu;
    return 0;
}

int clv_bgnbd_fit(const clv_rft *c, size_t n, clv_bgnbd *out)
{
    if (!c || !out || n < CLV_BGNBD_MIN_CUSTOMERS || n > UINT32_MAX / 2)
        return -1;
    clv_rft *rows = malloc(n * sizeof *rows);
    if (!rows)
        return -1;
    size_t nu = 0, nrep = 0;
    double sum_T = 0.0, sum_x = 0.0;
    for (size_t i = 0; i < n; i++) {
        clv_rft v = c[i];
        if (rft_clean(&v.x, &v.t_x, &v.T) != 0)
            continue;
        rows[nu++] = v;
        sum_T += v.T;
        sum_x += v.x;
        nrep += v.x > 0.0;
    }
    if (nu < CLV_BGNBD_MIN_CUSTOMERS || nrep == 0 || !(sum_T > 0.0) || !isfinite(sum_T) || !isfinite(sum_x)) {
        free(rows);
        return -1;
    }
    /* Rescale time so the mean age is 1: alpha's bounds and starting values become unit-free.
     * Under time scaling by s the log-likelihood shifts by -sum(x) log s (see below). */
    double scale = sum_T / (double)nu;
    for (size_t i = 0; i < nu; i++) {
        rows[i].t_x /= scale;
        rows[i].T /= scale;
    }
    bg_work wk;
    int rc = bg_work_build(&wk, rows, nu);
    free(rows);
    if (rc != 0) {
        bg_work_free(&wk);
        return -1;
    }
    /* Starts: a neutral point, and one matched to the observed repeat rate with typical
     * dropout shape; the second guards against a poor basin of the first. */
    double rate = sum_x / sum_T * scale; /* repeat purchases per unit of rescaled time */
    double alpha2 = clampd(0.5 / fmax(rate, 1e-6), 1e-3, 1e3);
    double starts[2][4] = {{0.0, 0.0, 0.0, 0.0}, {log(0.5), log(alpha2), log(0.7), log(2.5)}};
    double best[4] = {0};
    opt_result bres = {HUGE_VAL, 0, 0};
    int iters = 0, have = 0;
    for (int s = 0; s < 2; s++) {
        double th[4];
        memcpy(th, starts[s], sizeof th);
        opt_result res;
        minimise_with_restarts(bg_objective, &wk, 4, th, CLV_LOG_LO, CLV_LOG_HI, &res);
        iters += res.iterations;
        if (isfinite(res.f) && (!have || res.f < bres.f)) {
            bres = res;
            memcpy(best, th, sizeof best);
            have = 1;
        }
    }
    int ok = have && bres.converged && !near_bound(best, 4, CLV_LOG_LO, CLV_LOG_HI) &&
             hessian_ok(bg_objective, &wk, 4, best);
    bg_work_free(&wk);
    if (!ok)
        return -1;
    clv_bgnbd m = {exp(best[0]), exp(best[1]) * scale, exp(best[2]), exp(best[3]), 0.0, iters};
    /* Objective = -LL(rescaled)/n; LL(original) = LL(rescaled) - sum(x) * log(scale). */
    m.loglik = -bres.f * (double)nu - sum_x * log(scale);
    if (!isfinite(m.loglik) || !bg_valid(&m))
        return -1;
    *out = m;
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Gamma-Gamma fitting                                                                       */
/* ---------------------------------------------------------------------------------------- */

typedef struct {
    double x, m;
} gg_row;

/* Rows sorted by x then m, merged with weights; per row the data-only logs are precomputed;
 * per x group the sums of those logs are precomputed. */
typedef struct {
    size_t nrow, ngroup;
    double *w, *xm;            /* row weight, x * m (rescaled m) */
    double *gx, *gw;           /* per group: x, total weight */
    double *g_lxm, *g_lm;      /* per group: sum w log(x m), sum w log m */
    size_t *gstart;
    double wtot;
} gg_work;

static int cmp_gg(const void *pa, const void *pb)
{
    const gg_row *a = pa, *b = pb;
    if (a->x != b->x)
        return a->x < b->x ? -1 : 1;
    if (a->m != b->m)
        return a->m < b->m ? -1 : 1;
    return 0;
}

/* Negative mean GG log-likelihood over th = log(p, q, v), with gradient. Includes the
 * data-only -log m term so the value is the full likelihood of the rescaled data. */
static double gg_objective(void *ctx, const double *th, double *grad)
{
    const gg_work *wk = ctx;
    double p = exp(th[0]), q = exp(th[1]), v = exp(th[2]), lv = th[2];
    double lg_q = log_gamma(q), ps_q = digamma(q);
    double ll = 0.0, dp = 0.0, dq = 0.0, dv = 0.0;
    for (size_t gi = 0; gi < wk->ngroup; gi++) {
        double x = wk->gx[gi], W = wk->gw[gi], px = p * x, pxq = px + q;
        double ps_pxq = digamma(pxq);
        double K = log_gamma(pxq) - log_gamma(px) - lg_q + q * lv;
        double s_L = 0.0, s_inv = 0.0;
        for (size_t i = wk->gstart[gi]; i < wk->gstart[gi + 1]; i++) {
            double den = v + wk->xm[i];
            s_L += wk->w[i] * log(den);
            s_inv += wk->w[i] / den;
        }
        ll += W * K + px * wk->g_lxm[gi] - wk->g_lm[gi] - pxq * s_L;
        dp += W * x * (ps_pxq - digamma(px)) + x * wk->g_lxm[gi] - x * s_L;
        dq += W * (ps_pxq - ps_q + lv) - s_L;
        dv += W * q / v - pxq * s_inv;
    }
    double inv = 1.0 / wk->wtot;
    grad[0] = -dp * p * inv;
    grad[1] = -dq * q * inv;
    grad[2] = -dv * v * inv;
    return -ll * inv;
}

static void gg_work_free(gg_work *wk)
{
    free(wk->w);
    free(wk->xm);
    free(wk->gx);
    free(wk->gw);
    free(wk->g_lxm);
    free(wk->g_lm);
    free(wk->gstart);
}

/* Sort the (rescaled) rows, merge duplicates into weights, group by x and precompute the
 * data-only logs. Returns -1 on allocation failure. */
static int gg_work_build(gg_work *wk, gg_row *rows, size_t n)
{
    memset(wk, 0, sizeof *wk);
    qsort(rows, n, sizeof *rows, cmp_gg);
    size_t nu = 0, ng = 0;
    for (size_t i = 0; i < n; i++) {
        if (i == 0 || cmp_gg(&rows[i], &rows[i - 1]) != 0) {
            nu++;
            if (i == 0 || rows[i].x != rows[i - 1].x)
                ng++;
        }
    }
    wk->w = malloc(nu * sizeof *wk->w);
    wk->xm = malloc(nu * sizeof *wk->xm);
    wk->gx = malloc(ng * sizeof *wk->gx);
    wk->gw = calloc(ng, sizeof *wk->gw);
    wk->g_lxm = calloc(ng, sizeof *wk->g_lxm);
    wk->g_lm = calloc(ng, sizeof *wk->g_lm);
    wk->gstart = malloc((ng + 1) * sizeof *wk->gstart);
    if (!wk->w || !wk->xm || !wk->gx || !wk->gw || !wk->g_lxm || !wk->g_lm || !wk->gstart)
        return -1;
    size_t u = 0, g = 0;
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && cmp_gg(&rows[i], &rows[i - 1]) == 0) {
            wk->w[u - 1] += 1.0;
        } else {
            if (i == 0 || rows[i].x != rows[i - 1].x) {
                wk->gx[g] = rows[i].x;
                wk->gstart[g] = u;
                g++;
            }
            wk->w[u] = 1.0;
            wk->xm[u] = rows[i].x * rows[i].m;
            u++;
        }
        /* per-customer sums (duplicates counted once each, as their weights are) */
        wk->gw[g - 1] += 1.0;
        wk->g_lxm[g - 1] += log(rows[i].x * rows[i].m);
        wk->g_lm[g - 1] += log(rows[i].m);
    }
    wk->gstart[g] = nu;
    wk->ngroup = ng;
    wk->nrow = nu;
    wk->wtot = (double)n;
    return 0;
}

int clv_gg_fit(const double *x, const double *mbar, size_t n, clv_gg *out)
{
    if (!x || !mbar || !out)
        return -1;
    size_t nu = 0;
    for (size_t i = 0; i < n; i++)
        nu += gg_row_usable(x[i], mbar[i]);
    if (nu < CLV_GG_MIN_CUSTOMERS)
        return -1;
    gg_row *rows = malloc(nu * sizeof *rows);
    if (!rows)
        return -1;
    /* Rescale money so the mean order value is 1 (v scales with it; the log-likelihood
     * shifts by -n log s). The mean is accumulated pre-divided so values near DBL_MAX
     * cannot overflow it. */
    double scale = 0.0;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (gg_row_usable(x[i], mbar[i])) {
            rows[k].x = x[i];
            rows[k].m = mbar[i];
            scale += mbar[i] / (double)nu;
            k++;
        }
    if (!pos_finite(scale)) {
        free(rows);
        return -1;
    }
    for (size_t i = 0; i < nu; i++)
        rows[i].m /= scale;
    gg_work wk;
    int rc = gg_work_build(&wk, rows, nu);
    free(rows);
    if (rc != 0) {
        gg_work_free(&wk);
        return -1;
    }

    /* Starts: both with population mean p v/(q-1) equal to the (rescaled) mean of 1. */
    double starts[2][3] = {{0.0, log(2.0), 0.0}, {log(5.0), log(5.0), log(0.8)}};
    double best[3] = {0};
    opt_result bres = {HUGE_VAL, 0, 0};
    int iters = 0, have = 0;
    for (int s = 0; s < 2; s++) {
        double th[3];
        memcpy(th, starts[s], sizeof th);
        opt_result res;
        minimise_with_restarts(gg_objective, &wk, 3, th, CLV_LOG_LO, CLV_LOG_HI, &res);
        iters += res.iterations;
        if (isfinite(res.f) && (!have || res.f < bres.f)) {
            bres = res;
            memcpy(best, th, sizeof best);
            have = 1;
        }
    }
    int ok = have && bres.converged && !near_bound(best, 3, CLV_LOG_LO, CLV_LOG_HI) &&
             hessian_ok(gg_objective, &wk, 3, best);
    double wtot = wk.wtot;
    gg_work_free(&wk);
    if (!ok)
        return -1;
    clv_gg m = {exp(best[0]), exp(best[1]), exp(best[2]) * scale, 0.0, iters};
    m.loglik = -bres.f * wtot - wtot * log(scale);
    if (!gg_valid(&m) || !(m.q > 1.0) || !isfinite(m.loglik))
        return -1;
    *out = m;
    return 0;
}
