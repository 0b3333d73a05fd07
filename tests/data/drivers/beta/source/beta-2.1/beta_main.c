// SPDX-License-Identifier: GPL-2.0
/* beta: the second driver of the two-driver test pack, built from two objects. */
#include <linux/init.h>
#include <linux/module.h>

int beta_answer(void);

static int __init beta_init(void)
{
	pr_info("beta: loaded, answer %d\n", beta_answer());
	return 0;
}

static void __exit beta_exit(void)
{
}

module_init(beta_init);
module_exit(beta_exit);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("Second driver of the two-driver test pack");
