/* numbers.c - JSON values for numbers PostgreSQL computed, in the replies built with jansson
 * (the profile, the CLV report). Those replies used to be JSON documents written by SQL and
 * read back by jansson; these functions give each number the value that round trip gave it,
 * so the replies keep their bytes: what PostgreSQL prints without a fraction or an exponent
 * is an integer, anything else the nearest double (printed by http_reply_json to 15
 * significant digits), and what JSON has no number for (NaN, Infinity) the string PostgreSQL
 * wrote in its place. */
#include "retentiond/api/api.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

json_t *api_json_float8(double v)
{
    if (isnan(v))
        return json_string("NaN");
    if (isinf(v))
        return json_string(v > 0 ? "Infinity" : "-Infinity");
    /* float8out writes integral values below 1e15 as digits only, larger ones with an exponent */
    if (v == trunc(v) && fabs(v) < 1e15)
        return json_integer((json_int_t)v);
    return json_real(v);
}

json_t *api_json_numeric(const char *text)
{
    if (!text)
        return json_null();
    if (strcmp(text, "NaN") == 0 || strcmp(text, "Infinity") == 0 || strcmp(text, "-Infinity") == 0)
        return json_string(text);
    if (!strchr(text, '.')) {   /* numeric_out never writes an exponent */
        errno = 0;
        long long n = strtoll(text, NULL, 10);
        if (errno == 0)
            return json_integer((json_int_t)n);
        /* beyond 64 bits jansson refused the document (a 500); a double says more */
    }
    double d = strtod(text, NULL);
    return isfinite(d) ? json_real(d) : json_null();
}

json_t *api_json_text(const char *s)
{
    return s ? json_string(s) : json_null();
}
