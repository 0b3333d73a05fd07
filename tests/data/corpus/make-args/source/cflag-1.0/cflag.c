// SPDX-License-Identifier: GPL-2.0
/* cflag: a driver that only builds with an extra make variable (make_args = ["CFLAG_VALUE=..."]). */
#include <linux/init.h>
#include <linux/module.h>
#include <linux/stringify.h>

#ifndef CFLAG_VALUE
#error "cflag needs the make variable CFLAG_VALUE"
#endif

static int __init cflag_init(void)
{
	return 0;
}

static void __exit cflag_exit(void)
{
}

module_init(cflag_init);
module_exit(cflag_exit);

MODULE_LICENSE("GPL");
/* modinfo shows the value the module was built with: cflag_value=<n>. */
MODULE_INFO(cflag_value, __stringify(CFLAG_VALUE));
