// SPDX-License-Identifier: GPL-2.0
#include <linux/module.h>
#include "kcompat_generated_defs.h"

#ifndef HAVE_CONFIG_MODULES
#error "kcompat_generated_defs.h does not describe a kernel with modules"
#endif

MODULE_INFO(kcgen_kernel, KCGEN_KERNEL);
MODULE_DESCRIPTION("built with a header generated from the target kernel");
MODULE_LICENSE("GPL");
