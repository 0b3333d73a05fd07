// SPDX-License-Identifier: GPL-2.0
/* cpatch: a driver that only builds with patches/fix-build.patch applied. */
#include <linux/init.h>
#include <linux/module.h>

#error "cpatch does not build without fix-build.patch"
#define CPATCH_STATE "unpatched"

static int __init cpatch_init(void)
{
	return 0;
}

static void __exit cpatch_exit(void)
{
}

module_init(cpatch_init);
module_exit(cpatch_exit);

MODULE_LICENSE("GPL");
MODULE_INFO(cpatch_state, CPATCH_STATE);
