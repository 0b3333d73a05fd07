// SPDX-License-Identifier: GPL-2.0
/* apifunc: calls a kernel function that no kernel declares, like a driver written for another kernel. */
#include <linux/init.h>
#include <linux/module.h>

static int __init apifunc_init(void)
{
	return kernel_api_that_does_not_exist();
}

static void __exit apifunc_exit(void)
{
}

module_init(apifunc_init);
module_exit(apifunc_exit);

MODULE_LICENSE("GPL");
