// SPDX-License-Identifier: GPL-2.0
/* typo: a plain syntax error, which says nothing about the kernel's API. */
#include <linux/init.h>
#include <linux/module.h>

static int __init typo_init(void)
{
	int answer = (1 + ;
	return answer;
}

static void __exit typo_exit(void)
{
}

module_init(typo_init);
module_exit(typo_exit);

MODULE_LICENSE("GPL");
