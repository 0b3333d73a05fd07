#define PWDINC_FOUND "include/ found through $(PWD)"
