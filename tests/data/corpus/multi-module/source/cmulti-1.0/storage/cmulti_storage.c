// SPDX-License-Identifier: GPL-2.0
/* cmulti_storage: the storage half of a driver built as two modules in two folders. */
#include <linux/init.h>
#include <linux/module.h>

static int __init cmulti_storage_init(void)
{
	return 0;
}

static void __exit cmulti_storage_exit(void)
{
}

module_init(cmulti_storage_init);
module_exit(cmulti_storage_exit);

MODULE_LICENSE("GPL");
