// SPDX-License-Identifier: GPL-2.0
#include <linux/module.h>

#ifndef BASHMK_SHELL_IS_BASH
#error "the Makefile's $(shell ...) did not run under bash"
#endif

MODULE_LICENSE("GPL");
