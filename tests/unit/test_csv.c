/* test_csv.c - unit tests of the replies' CSV writer (src/http/csv.c) against RFC 4180: what
 * is quoted and how, record ends, empty and NULL fields, JSON values as fields. */
#include "retentiond/http/csv.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

static char *record(const char *const *fields, int n)
{
    buf b = {0};
    csv_record(&b, fields, n);
    return buf_steal(&b);
}

START_TEST(plain_fields_are_bare)
{
    const char *f[] = {"c001", "ada@example.com", "12.50", "2026-01-05T10:00:00+00:00", "Zoë Ünal"};
    char *s = record(f, 5);
    ck_assert_str_eq(s, "c001,ada@example.com,12.50,2026-01-05T10:00:00+00:00,Zoë Ünal\r\n");
    free(s);
}
END_TEST

START_TEST(comma_quote_cr_lf_are_quoted)
{
    const char *f[] = {"a,b", "say \"hi\"", "line\nbreak", "cr\rhere", "\"", ",", "crlf\r\n"};
    char *s = record(f, 7);
    ck_assert_str_eq(s, "\"a,b\",\"say \"\"hi\"\"\",\"line\nbreak\",\"cr\rhere\",\"\"\"\",\",\",\"crlf\r\n\"\r\n");
    free(s);
}
END_TEST

START_TEST(empty_and_null_fields)
{
    const char *f[] = {NULL, "", "x", NULL};
    char *s = record(f, 4);
    ck_assert_str_eq(s, "\"\",,x,\r\n"); /* an empty first field is "" so the record stays visible */
    free(s);
    const char *one[] = {NULL};
    s = record(one, 1);
    ck_assert_str_eq(s, "\"\"\r\n");
    free(s);
}
END_TEST

START_TEST(records_follow_each_other)
{
    buf b = {0};
    const char *r1[] = {"a", "b\n"};
    const char *r2[] = {NULL, "c"};
    csv_record(&b, r1, 2);
    csv_record(&b, r2, 2);
    csv_field(&b, "d");
    csv_end_record(&b);
    ck_assert_str_eq(b.data, "a,\"b\n\"\r\n\"\",c\r\nd\r\n");
    buf_free(&b);
}
END_TEST

START_TEST(json_values)
{
    buf b = {0};
    json_t *v[] = {json_string("x,y"), json_integer(42), json_real(0.1), json_real(1), json_null(),
                   json_true(), json_pack("[i,s]", 1, "a")};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        csv_field_json(&b, v[i]);
    csv_end_record(&b);
    ck_assert_str_eq(b.data, "\"x,y\",42,0.1,1.0,,true,\"[1,\"\"a\"\"]\"\r\n");
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        json_decref(v[i]);
    buf_free(&b);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("csv");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, plain_fields_are_bare);
    tcase_add_test(tc, comma_quote_cr_lf_are_quoted);
    tcase_add_test(tc, empty_and_null_fields);
    tcase_add_test(tc, records_follow_each_other);
    tcase_add_test(tc, json_values);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
