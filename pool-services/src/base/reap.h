/* SPDX-License-Identifier: MIT */
#pragma once

#include <sys/types.h>

struct event_base;

/*
 * Reaps a child that is exiting (it failed before exec, or was sent
 * SIGKILL) without waiting for it on the loop: a child stuck in the
 * kernel -- a GPU driver call does that -- does not die at SIGKILL until
 * it leaves the kernel, and a blocking waitpid() would stall the daemon
 * with it. Its pidfd (taken over and closed once reaped; -1: one is
 * opened here) is watched on the loop, and the child is reaped when it is
 * readable. When no pidfd can be had, a child already gone is reaped and
 * one still running is left as a zombie until the daemon exits: never a
 * blocking wait.
 */
void ps_reap_when_gone(struct event_base *base, pid_t pid, int pidfd);
