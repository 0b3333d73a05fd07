// SPDX-License-Identifier: GPL-2.0
/* A stand-in for a vendor's newer i40e: same module name as Citrix Hypervisor 8.2's in-box one. */
#include <linux/init.h>
#include <linux/module.h>

static int __init i40e_stand_in_init(void)
{
	pr_info("i40e stand-in loaded\n");
	return 0;
}

static void __exit i40e_stand_in_exit(void)
{
}

module_init(i40e_stand_in_init);
module_exit(i40e_stand_in_exit);

MODULE_LICENSE("GPL");
MODULE_VERSION("2.9.22");
