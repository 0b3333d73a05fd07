// SPDX-License-Identifier: GPL-2.0
int beta_answer(void);

int beta_answer(void)
{
	return 42;
}
