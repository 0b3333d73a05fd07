// SPDX-License-Identifier: GPL-2.0
#include <linux/module.h>

#if !defined(BNXALT_PROBED) || !defined(KFEATURE_PCI)
#error "build with make -f Makefile.alt: it probes the kernel for the KFEATURE flags"
#endif

MODULE_INFO(bnxalt_flags, "probed");
MODULE_LICENSE("GPL");
