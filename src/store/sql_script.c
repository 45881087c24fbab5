/* sql_script.c - cuts a SQL script into statements (see sql_script.h), following PostgreSQL's
 * lexical rules for what can hold a ';' that is not a statement's end. */
#include "retentiond/store/sql_script.h"

#include <ctype.h>
#include <stdbool.h>
#include <string.h>

/* Past white space and comments. */
static const char *skip_blank(const char *p)
{
    for (;;) {
        while (isspace((unsigned char)*p))
            p++;
        if (p[0] == '-' && p[1] == '-') {
            while (*p && *p != '\n')
                p++;
        } else if (p[0] == '/' && p[1] == '*') {
            int depth = 0;
            do {
                if (p[0] == '/' && p[1] == '*') {
                    depth++;
                    p += 2;
                } else if (p[0] == '*' && p[1] == '/') {
                    depth--;
                    p += 2;
                } else {
                    p++;
                }
            } while (*p && depth > 0);
        } else {
            return p;
        }
    }
}

/* The length of a dollar quote's opening tag at p ("$$", "$body$"), or 0 when p does not open
 * one ($1 is a parameter). */
static size_t dollar_tag(const char *p)
{
    size_t n = 1;
    if (isdigit((unsigned char)p[1]))
        return 0;
    while (isalnum((unsigned char)p[n]) || p[n] == '_' || (unsigned char)p[n] >= 0x80)
        n++;
    return p[n] == '$' ? n + 1 : 0;
}

static bool ident_char(char c)
{
    return isalnum((unsigned char)c) || c == '_' || c == '$' || (unsigned char)c >= 0x80;
}

int sql_script_next(const char **pos, const char **start, size_t *len)
{
    const char *p = skip_blank(*pos);
    /* an empty statement (";;") is skipped like white space */
    while (*p == ';')
        p = skip_blank(p + 1);
    if (!*p) {
        *pos = p;
        return 0;
    }
    *start = p;
    while (*p && *p != ';') {
        if (*p == '\'') {
            bool backslash = p > *start && (p[-1] == 'E' || p[-1] == 'e') && (p - 1 == *start || !ident_char(p[-2]));
            for (p++; *p; p++) {
                if (backslash && *p == '\\' && p[1]) {
                    p++;
                } else if (*p == '\'') {
                    if (p[1] != '\'')
                        break;
                    p++;
                }
            }
            if (*p)
                p++;
        } else if (*p == '"') {
            for (p++; *p && !(*p == '"' && p[1] != '"'); p++)
                if (*p == '"')
                    p++;
            if (*p)
                p++;
        } else if (*p == '$' && (p == *start || !ident_char(p[-1])) && dollar_tag(p)) {
            size_t n = dollar_tag(p);
            const char *end;
            for (end = p + n; *end && strncmp(end, p, n) != 0; end++)
                ;
            p = *end ? end + n : end;
        } else if ((p[0] == '-' && p[1] == '-') || (p[0] == '/' && p[1] == '*')) {
            p = skip_blank(p);
        } else {
            p++;
        }
    }
    *len = (size_t)(p - *start);
    while (*len > 0 && isspace((unsigned char)(*start)[*len - 1]))
        (*len)--;
    *pos = *p ? p + 1 : p;
    return 1;
}
