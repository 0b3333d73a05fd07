// SPDX-License-Identifier: GPL-2.0
/* csrc: a driver whose Kbuild Makefile sits in src/. */
#include <linux/init.h>
#include <linux/module.h>

static int __init csrc_init(void)
{
	return 0;
}

static void __exit csrc_exit(void)
{
}

module_init(csrc_init);
module_exit(csrc_exit);

MODULE_LICENSE("GPL");
