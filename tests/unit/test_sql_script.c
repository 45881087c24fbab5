/* test_sql_script.c - unit tests of the statement splitter `retentiond migrate` sends the schema
 * with (src/store/sql_script.c): where a ';' ends a statement and where it does not. */
#include "retentiond/store/sql_script.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

/* The statements of script, joined by "|". */
static char *split(const char *script)
{
    static char out[4096];
    out[0] = '\0';
    const char *pos = script, *start;
    size_t len;
    while (sql_script_next(&pos, &start, &len)) {
        if (out[0])
            strcat(out, "|");
        strncat(out, start, len);
    }
    return out;
}

START_TEST(plain_statements)
{
    ck_assert_str_eq(split("SELECT 1; SELECT 2;\n\nSELECT 3"), "SELECT 1|SELECT 2|SELECT 3");
    ck_assert_str_eq(split(""), "");
    ck_assert_str_eq(split("  ;; \n -- only a comment\n"), "");
    ck_assert_str_eq(split("SELECT 1;;SELECT 2;"), "SELECT 1|SELECT 2");
}
END_TEST

START_TEST(quotes_hold_semicolons)
{
    ck_assert_str_eq(split("SELECT 'a;b', 'it''s;'; SELECT 2"), "SELECT 'a;b', 'it''s;'|SELECT 2");
    ck_assert_str_eq(split("SELECT \"x;\"\"y\" FROM t; SELECT 2"), "SELECT \"x;\"\"y\" FROM t|SELECT 2");
    ck_assert_str_eq(split("SELECT E'a\\';b'; SELECT 2"), "SELECT E'a\\';b'|SELECT 2");
    /* a backslash in a standard string is an ordinary character */
    ck_assert_str_eq(split("SELECT 'a\\'; SELECT 2"), "SELECT 'a\\'|SELECT 2");
}
END_TEST

START_TEST(dollar_quotes_hold_semicolons)
{
    ck_assert_str_eq(split("CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1; $$; SELECT 2"),
                     "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1; $$|SELECT 2");
    ck_assert_str_eq(split("DO $body$ BEGIN PERFORM $$;$$; END $body$; SELECT 2"),
                     "DO $body$ BEGIN PERFORM $$;$$; END $body$|SELECT 2");
    /* $1 is a parameter, and a $ inside a name opens nothing */
    ck_assert_str_eq(split("SELECT $1, a$b FROM t; SELECT 2"), "SELECT $1, a$b FROM t|SELECT 2");
}
END_TEST

START_TEST(comments_hold_semicolons)
{
    ck_assert_str_eq(split("-- a; comment\nSELECT 1; /* x; /* nested; */ y; */ SELECT 2 -- end;\n"),
                     "SELECT 1|SELECT 2 -- end;");
    ck_assert_str_eq(split("SELECT 1 /* ; */ + 1; SELECT 2"), "SELECT 1 /* ; */ + 1|SELECT 2");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("sql_script");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, plain_statements);
    tcase_add_test(tc, quotes_hold_semicolons);
    tcase_add_test(tc, dollar_quotes_hold_semicolons);
    tcase_add_test(tc, comments_hold_semicolons);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
