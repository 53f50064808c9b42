/* reactor's C accelerator: see DESIGN.md section 4. */
#define _GNU_SOURCE

/* Bumped whenever the functions below change shape, so reactor/native.py can
 * refuse a stale build instead of calling it with the wrong arguments. */
int reactor_accel_abi_version(void) { return 1; }
