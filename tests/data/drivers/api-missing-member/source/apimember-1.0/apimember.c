// SPDX-License-Identifier: GPL-2.0
/* apimember: reads a struct member the kernel does not have, like a driver written for another kernel. */
#include <linux/init.h>
#include <linux/module.h>

static int __init apimember_init(void)
{
	return THIS_MODULE->member_that_does_not_exist;
}

static void __exit apimember_exit(void)
{
}

module_init(apimember_init);
module_exit(apimember_exit);

MODULE_LICENSE("GPL");
