/* rules_table.c - prints the C side's answer to rules that also exist in SQL, one line of
 * input at a time, for tests/integration/test_rules.py to hold against the SQL function on
 * the same rows. Linked against the service's own objects (make build/tools/rules_table).
 *
 *   rules_table status   lines of rd_status's arguments, tab-separated, \N for NULL:
 *                        order_count first_us last_us as_of_us window_days gap_factor p_alive
 *                        p_alive_min (instants in microseconds since 1970 UTC; floats as
 *                        strtod reads them, NaN and Infinity included); prints the status, or
 *                        \N for none.
 *
 * Exits 2 on a line it cannot read, naming it. */
#include "retentiond/domain/rules.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FIELDS 8

/* Splits line at tabs into f[] (at most max); returns how many fields it has, which may be
 * more than max. */
static int split(char *line, char **f, int max)
{
    int n = 0;
    for (char *p = line;; n++) {
        char *tab = strchr(p, '\t');
        if (n < max)
            f[n] = p;
        if (!tab)
            return n + 1;
        *tab = '\0';
        p = tab + 1;
    }
}

static int is_null(const char *s)
{
    return strcmp(s, "\\N") == 0;
}

static int read_int64(const char *s, int64_t *out)
{
    char *end;
    *out = strtoll(s, &end, 10);
    return *s && !*end;
}

static int read_double(const char *s, double *out)
{
    char *end;
    *out = strtod(s, &end);
    return *s && !*end;
}

static int status_line(char *line)
{
    char *f[FIELDS];
    if (split(line, f, FIELDS) != FIELDS)
        return -1;
    rules_status_in in = {0};
    int64_t n, window;
    in.has_first = !is_null(f[1]);
    in.has_last = !is_null(f[2]);
    in.has_p_alive = !is_null(f[6]);
    if (!read_int64(f[0], &n) || (in.has_first && !read_int64(f[1], &in.first_order)) ||
        (in.has_last && !read_int64(f[2], &in.last_order)) || !read_int64(f[3], &in.as_of) ||
        !read_int64(f[4], &window) || !read_double(f[5], &in.gap_factor) ||
        (in.has_p_alive && !read_double(f[6], &in.p_alive)) || !read_double(f[7], &in.p_alive_min))
        return -1;
    in.order_count = (int)n;
    in.window_days = (int)window;
    const char *name = rules_status_name(rules_status(&in));
    puts(name ? name : "\\N");
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 2 || strcmp(argv[1], "status") != 0) {
        fprintf(stderr, "usage: %s status < rows\n", argv[0]);
        return 2;
    }
    char line[1024];
    for (long no = 1; fgets(line, sizeof line, stdin); no++) {
        line[strcspn(line, "\n")] = '\0';
        if (status_line(line) != 0) {
            fprintf(stderr, "rules_table: line %ld is not 8 fields of rd_status's arguments\n", no);
            return 2;
        }
    }
    return 0;
}
