// SPDX-License-Identifier: GPL-2.0
#include <linux/module.h>
#include <linux/stringify.h>

#if !defined(WERROR_A) || !defined(WERROR_B)
#error "EXTRA_CFLAGS did not reach the compiler as two flags"
#endif

static int __init werror_init(void)
{
	int unused_since_gcc_4_8;	/* -Wunused-variable: an error with the driver's -Werror */
	return 0;
}
module_init(werror_init);
MODULE_INFO(werror_flags, __stringify(WERROR_A) "+" __stringify(WERROR_B));
MODULE_LICENSE("GPL");
