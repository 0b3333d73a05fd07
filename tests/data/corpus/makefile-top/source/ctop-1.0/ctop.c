// SPDX-License-Identifier: GPL-2.0
/* ctop: a driver with its Makefile (obj-m and the usual targets) at the top. */
#include <linux/init.h>
#include <linux/module.h>

static int __init ctop_init(void)
{
	return 0;
}

static void __exit ctop_exit(void)
{
}

module_init(ctop_init);
module_exit(ctop_exit);

MODULE_LICENSE("GPL");
