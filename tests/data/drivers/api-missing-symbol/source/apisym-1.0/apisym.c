// SPDX-License-Identifier: GPL-2.0
/*
 * apisym: declares and calls a function this kernel does not export, like a driver that brings
 * its own prototype for a function an older kernel had. It compiles; linking (modpost) fails.
 */
#include <linux/init.h>
#include <linux/module.h>

int kernel_symbol_that_is_not_exported(void);

static int __init apisym_init(void)
{
	return kernel_symbol_that_is_not_exported();
}

static void __exit apisym_exit(void)
{
}

module_init(apisym_init);
module_exit(apisym_exit);

MODULE_LICENSE("GPL");
