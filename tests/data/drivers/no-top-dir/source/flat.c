// SPDX-License-Identifier: GPL-2.0
/* flat: a driver whose tarball has no top directory. */
#include <linux/init.h>
#include <linux/module.h>

static int __init flat_init(void)
{
	return 0;
}

static void __exit flat_exit(void)
{
}

module_init(flat_init);
module_exit(flat_exit);

MODULE_LICENSE("GPL");
