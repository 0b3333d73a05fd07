// SPDX-License-Identifier: GPL-2.0
/* kbonly: a driver with a Kbuild file and no Makefile. */
#include <linux/init.h>
#include <linux/module.h>

static int __init kbonly_init(void)
{
	return 0;
}

static void __exit kbonly_exit(void)
{
}

module_init(kbonly_init);
module_exit(kbonly_exit);

MODULE_LICENSE("GPL");
