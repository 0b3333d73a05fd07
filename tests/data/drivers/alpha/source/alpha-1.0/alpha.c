// SPDX-License-Identifier: GPL-2.0
/* alpha: the first driver of the two-driver test pack. */
#include <linux/init.h>
#include <linux/module.h>

static int __init alpha_init(void)
{
	pr_info("alpha: loaded\n");
	return 0;
}

static void __exit alpha_exit(void)
{
}

module_init(alpha_init);
module_exit(alpha_exit);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("First driver of the two-driver test pack");
MODULE_FIRMWARE("alpha/alpha.fw");
