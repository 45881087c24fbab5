/* log.h - leveled logging to stderr, one line per record in logfmt (key=value).
 *
 * rd_log() tests the level before formatting anything, so suppressed debug lines cost one
 * comparison (the Redis serverLog idea). Never pass a key, secret or request body to it. */
#ifndef RETENTIOND_LOG_H
#define RETENTIOND_LOG_H

enum { LOG_DEBUG = 0, LOG_INFO = 1, LOG_WARN = 2, LOG_ERROR = 3 };

extern int log_level;

void log_write(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Parses "debug|info|warn|error"; returns the level or -1. */
int log_level_parse(const char *name);

#define rd_log(level, ...)                                                                     \
    do {                                                                                       \
        if ((level) >= log_level)                                                              \
            log_write((level), __VA_ARGS__);                                                   \
    } while (0)

#endif
