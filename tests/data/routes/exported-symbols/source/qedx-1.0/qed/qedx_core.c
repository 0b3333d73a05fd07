// SPDX-License-Identifier: GPL-2.0
#include <linux/module.h>

int qedx_core_version(void)
{
	return 1;
}
EXPORT_SYMBOL(qedx_core_version);
MODULE_LICENSE("GPL");
