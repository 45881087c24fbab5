/*
 * clv.h — predictive customer-lifetime-value core: the BG/NBD purchase-count model
 * (Fader, Hardie & Lee 2005, "Counting Your Customers the Easy Way") and the Gamma-Gamma
 * spend model (Fader, Hardie & Lee 2005 note), fitted by maximum likelihood.
 *
 * Pure numerics: no I/O, no allocation visible to the caller, libc + libm only, so the
 * HTTP/DB layers can call it from any thread (every function is reentrant; nothing is global).
 *
 * Conventions shared by every function here:
 *  - Per customer: x = number of REPEAT purchase occasions (occasions - 1), t_x = time from
 *    the first to the last occasion, T = time from the first occasion to the end of the
 *    calibration period. Any time unit works as long as it is used consistently; the
 *    BG/NBD scale parameter alpha is then in that unit.
 *  - Monetary value: mbar = mean value of the repeat occasions (first occasion excluded).
 *  - int-returning functions: 0 = OK, -1 = error.
 *  - Prediction functions never return NaN/Inf for finite arguments: out-of-range inputs are
 *    clamped (x < 0 -> 0 and x rounded to a whole count, T < 0 -> 0, t_x into [0, T], t_x = 0
 *    when x = 0). A model whose parameters are not finite and positive makes them return 0.
 *    Results too large for a double (absurd inputs only) saturate at DBL_MAX.
 */
#ifndef RETENTIOND_DOMAIN_CLV_H
#define RETENTIOND_DOMAIN_CLV_H

#include <stddef.h>

/* One customer's purchase summary: repeat occasions, recency, age (see conventions above). */
typedef struct {
    double x, t_x, T;
} clv_rft;

/* BG/NBD parameters: purchase rate lambda ~ Gamma(shape r, rate alpha); dropout
 * probability after each repeat purchase p ~ Beta(a, b). loglik and iterations are filled
 * by clv_bgnbd_fit (log-likelihood at the optimum, optimiser iterations summed over starts). */
typedef struct {
    double r, alpha, a, b;
    double loglik;
    int iterations;
} clv_bgnbd;

/* Gamma-Gamma parameters: each transaction value z ~ Gamma(shape p, rate nu) and
 * nu ~ Gamma(shape q, rate v) across customers. loglik / iterations as for clv_bgnbd. */
typedef struct {
    double p, q, v;
    double loglik;
    int iterations;
} clv_gg;

/* Smallest data sets the fitters accept (fewer rows -> -1). */
#define CLV_BGNBD_MIN_CUSTOMERS 3
#define CLV_GG_MIN_CUSTOMERS 2

/* BG/NBD log-likelihood summed over the n customers in c (the full likelihood of FHL 2005
 * eq. 6, including the data-only terms, so it is comparable with the published -9582.43).
 * Rows with a non-finite field are skipped; other rows are clamped as in the conventions.
 * Returns -HUGE_VAL if the model parameters are not finite and positive; 0 for n == 0. */
double clv_bgnbd_loglik(const clv_bgnbd *m, const clv_rft *c, size_t n);

/* Maximum-likelihood BG/NBD fit. Optimises over log-parameters (time rescaled by the mean
 * age, so any time unit behaves the same) with BFGS and analytic gradients from several
 * starting points, keeping the best.
 * Returns 0 and fills *out (r, alpha, a, b in the data's time unit, loglik, iterations).
 * Returns -1, leaving *out untouched, when: out or c is NULL; fewer than
 * CLV_BGNBD_MIN_CUSTOMERS usable rows; nobody made a repeat purchase (a, b unidentified);
 * the optimum runs to the parameter bounds (1e-6..1e6 relative to the data scale, i.e. the
 * likelihood diverges); the optimiser does not converge; or the optimum is flat
 * (Hessian not positive definite). Memory: O(n) temporary heap; -1 if allocation fails. */
int clv_bgnbd_fit(const clv_rft *c, size_t n, clv_bgnbd *out);

/* P(customer still alive at T | x, t_x, T) — FHL 2005 eq. 11. Exactly 1 when x == 0
 * (the model lets customers drop out only after a repeat purchase). Always in [0, 1]. */
double clv_bgnbd_p_alive(const clv_bgnbd *m, double x, double t_x, double T);

/* Conditional expected number of purchases in (T, T + t] given (x, t_x, T) — FHL 2005
 * eq. 10. Evaluated through the Gauss 2F1 series, summed in scaled/log space and rearranged
 * so a == 1 is not a singularity; when the series would need more than a few thousand terms
 * (t much longer than alpha + T) an equivalent one-dimensional integral over the dropout
 * probability is used instead (tanh-sinh quadrature). Relative accuracy ~1e-8 or better.
 * t <= 0 or non-finite gives 0; t beyond 1e12 * (alpha + T) is capped there.
 * Always finite and >= 0. */
double clv_bgnbd_expected(const clv_bgnbd *m, double t, double x, double t_x, double T);

/* Unconditional E[X(t)]: expected repeat purchases in (0, t] for a newly acquired customer
 * (FHL 2005 eq. 9). Same numerics and guarantees as clv_bgnbd_expected. */
double clv_bgnbd_expected_uncond(const clv_bgnbd *m, double t);

/* Gamma-Gamma log-likelihood summed over customers with x[i] > 0 and mbar[i] > 0 (others
 * are ignored, as are non-finite rows). Full likelihood including data-only terms.
 * Returns -HUGE_VAL if the model parameters are not finite and positive. */
double clv_gg_loglik(const clv_gg *m, const double *x, const double *mbar, size_t n);

/* Maximum-likelihood Gamma-Gamma fit on the customers with x > 0 and mbar > 0 (values are
 * rescaled by their mean internally, so cents or millions behave the same).
 * Returns 0 and fills *out. Returns -1, leaving *out untouched, when fewer than
 * CLV_GG_MIN_CUSTOMERS usable rows, on divergence to the parameter bounds, on
 * non-convergence, on a flat optimum, or when the fitted q <= 1 (the population mean spend
 * v*p/(q-1) would not exist, so the model cannot price a customer without history). */
int clv_gg_fit(const double *x, const double *mbar, size_t n, clv_gg *out);

/* Conditional expected average transaction value given x repeat purchases with mean mbar:
 * p (v + x mbar) / (p x + q - 1). With x == 0 (or mbar <= 0 / non-finite) it is the
 * population mean v p / (q - 1), or 0 when that mean does not exist (q <= 1). If
 * p x + q - 1 <= 0 (only possible with q < 1) it returns mbar itself. 0 for an invalid
 * model. Always finite and >= 0. */
double clv_gg_expected_value(const clv_gg *m, double x, double mbar);

/* Discounted CLV over horizon_months months with monthly discount rate monthly_discount,
 * for a BG/NBD model whose time unit is days_per_unit days (1 = days, 7 = weeks).
 * Sum over months k = 1..ceil(H) of (E[purchases by end of month k] - E[by end of month k-1])
 * * value / (1 + d)^k, month = 30.4375 days, the last month ending exactly at H when H is
 * fractional; value = clv_gg_expected_value(g, x, mbar). Equivalently
 * P(alive) * value * sum_k disc_k * (E_alive(t_k) - E_alive(t_{k-1})); for long horizons all
 * months are integrated in one quadrature pass (cost ~0.2 ms for 120 months), otherwise
 * it is a series evaluation per month (a few microseconds each).
 * Clamping: H is capped at 1200 months (100 years), H <= 0 gives 0, d < 0 is treated as 0;
 * days_per_unit <= 0 or non-finite gives 0. Always finite and >= 0. */
double clv_predicted(const clv_bgnbd *m, const clv_gg *g, double x, double t_x, double T, double mbar,
                     double horizon_months, double monthly_discount, double days_per_unit);

/* Gauss hypergeometric 2F1(a, b; c; z) for 0 <= z < 1 with a, b, c > 0 (all series terms
 * positive), returned as its natural logarithm so values like 1e300^k do not overflow.
 * Exposed for testing and for other models; returns -1 (and leaves *log_value untouched)
 * outside that domain or if the series does not converge within its term budget. */
int clv_log_hyp2f1(double a, double b, double c, double z, double *log_value);

#endif /* RETENTIOND_DOMAIN_CLV_H */
