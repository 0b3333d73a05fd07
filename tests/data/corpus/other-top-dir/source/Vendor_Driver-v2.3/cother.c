// SPDX-License-Identifier: GPL-2.0
/* cother: a driver whose tarball's top directory is not <name>-<version>. */
#include <linux/init.h>
#include <linux/module.h>

static int __init cother_init(void)
{
	return 0;
}

static void __exit cother_exit(void)
{
}

module_init(cother_init);
module_exit(cother_exit);

MODULE_LICENSE("GPL");
