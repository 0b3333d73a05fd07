// SPDX-License-Identifier: GPL-2.0
/* nested: a driver whose Kbuild Makefile sits in src/. */
#include <linux/init.h>
#include <linux/module.h>

static int __init nested_init(void)
{
	return 0;
}

static void __exit nested_exit(void)
{
}

module_init(nested_init);
module_exit(nested_exit);

MODULE_LICENSE("GPL");
