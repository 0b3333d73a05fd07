// SPDX-License-Identifier: GPL-2.0
#include <linux/module.h>

MODULE_INFO(ksrcprobe_kver, KSRCPROBE_KVER);
MODULE_LICENSE("GPL");
