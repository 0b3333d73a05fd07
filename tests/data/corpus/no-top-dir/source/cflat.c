// SPDX-License-Identifier: GPL-2.0
/* cflat: a driver whose tarball has no top directory. */
#include <linux/init.h>
#include <linux/module.h>

static int __init cflat_init(void)
{
	return 0;
}

static void __exit cflat_exit(void)
{
}

module_init(cflat_init);
module_exit(cflat_exit);

MODULE_LICENSE("GPL");
