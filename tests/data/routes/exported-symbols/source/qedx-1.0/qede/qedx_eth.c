// SPDX-License-Identifier: GPL-2.0
#include <linux/module.h>

int qedx_core_version(void);

static int __init qedx_eth_init(void)
{
	return qedx_core_version() == 1 ? 0 : -EINVAL;
}
module_init(qedx_eth_init);
MODULE_LICENSE("GPL");
