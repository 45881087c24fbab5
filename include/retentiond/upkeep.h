/* upkeep.h - the background work of `serve` (src/upkeep.c): the scheduled CLV refit of every
 * tenant every clv_refit_interval seconds, and the upkeep round every upkeep_interval seconds
 * (RFM boundaries, ladder compaction, the rollup sweep, report_changes pruning). An interval
 * of 0 leaves its task off. */
#ifndef RETENTIOND_UPKEEP_H
#define RETENTIOND_UPKEEP_H

/* Starts a thread for each task that is on (a thread that cannot be started is logged and its
 * task stays off). Call once the statements are registered. */
void upkeep_start(void);
/* Wakes both threads and joins them; a task in progress finishes its current tenant first. */
void upkeep_stop(void);

#endif
