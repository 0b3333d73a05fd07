// SPDX-License-Identifier: GPL-2.0
/* cmulti_net: the network half of a driver built as two modules in two folders. */
#include <linux/init.h>
#include <linux/module.h>

static int __init cmulti_net_init(void)
{
	return 0;
}

static void __exit cmulti_net_exit(void)
{
}

module_init(cmulti_net_init);
module_exit(cmulti_net_exit);

MODULE_LICENSE("GPL");
