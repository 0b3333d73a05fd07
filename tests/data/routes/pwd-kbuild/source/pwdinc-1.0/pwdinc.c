// SPDX-License-Identifier: GPL-2.0
#include <linux/module.h>
#include <pwdinc_defs.h>

MODULE_INFO(pwdinc, PWDINC_FOUND);
MODULE_LICENSE("GPL");
