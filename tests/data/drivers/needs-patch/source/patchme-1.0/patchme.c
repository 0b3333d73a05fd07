// SPDX-License-Identifier: GPL-2.0
/* patchme: a driver that only builds with patches/fix-build.patch applied. */
#include <linux/init.h>
#include <linux/module.h>

#error "patchme does not build without fix-build.patch"
#define PATCHME_GREETING "patchme: unpatched source"

static int __init patchme_init(void)
{
	pr_info("%s\n", PATCHME_GREETING);
	return 0;
}

static void __exit patchme_exit(void)
{
}

module_init(patchme_init);
module_exit(patchme_exit);

MODULE_LICENSE("GPL");
