/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The state store's innards, shared by store.c (the file, the schema, the
 * grouped commits, the checkpointer) and store-records.c (the tables).
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <sqlite3.h>

#include "pool-services/pool/store.h"

typedef enum store_stmt {
        STMT_PUT_LEASE,
        STMT_DEL_LEASE,
        STMT_PUT_DRAIN,
        STMT_DEL_DRAIN,
        STMT_PUT_POLICY,
        STMT_GET_POLICY,
        STMT_MAX,
} store_stmt;

typedef struct after_commit {
        ps_store_commit_fn fn;
        void *userdata;
} after_commit;

struct ps_store {
        sqlite3 *db;                  /* the loop's connection               */
        char *path;
        const ps_clock *clock;
        sqlite3_stmt *stmt[STMT_MAX];
        int schema_version;
        bool in_tx, frozen;
        struct event *commit_ev;      /* lowest priority, made active        */
        struct event *fallback;       /* the commit's longest wait           */
        int64_t commit_wait_max_ms;
        after_commit *after;
        size_t n_after, cap_after;
        int64_t last_commit_ms;       /* 0: none yet                         */
        uint64_t commits;
        char error[256];
        char *policy_breaker, *policy_storm;   /* ps_store_get_policy()'s  */
        char **held_drains;           /* pools whose stored drain waits     */
        size_t n_held_drains;

        /* The checkpointer: its own connection, woken by the WAL hook. */
        sqlite3 *ckpt_db;
        pthread_t ckpt_thread;
        bool ckpt_started;
        pthread_mutex_t ckpt_lock;
        pthread_cond_t ckpt_cond;
        bool ckpt_want, ckpt_quit;
        uint32_t ckpt_pages;
};

/* Opens the turn's transaction when none is (and schedules its commit).
 * 0 or -EIO; nonzero also when frozen (1: drop the change). */
int ps_store_change_begin(ps_store *s);
/* Records SQLite's message for ps_store_error(); returns -EIO. */
int ps_store_fail(ps_store *s, const char *what);
/* The cached statement (prepared on first use); NULL with the error set. */
sqlite3_stmt *ps_store_stmt(ps_store *s, store_stmt which);
