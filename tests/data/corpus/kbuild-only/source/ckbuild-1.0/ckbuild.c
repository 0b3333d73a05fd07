// SPDX-License-Identifier: GPL-2.0
/* ckbuild: a driver with a Kbuild file and no Makefile. */
#include <linux/init.h>
#include <linux/module.h>

static int __init ckbuild_init(void)
{
	return 0;
}

static void __exit ckbuild_exit(void)
{
}

module_init(ckbuild_init);
module_exit(ckbuild_exit);

MODULE_LICENSE("GPL");
