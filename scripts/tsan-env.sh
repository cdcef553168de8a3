# Sourced by the scripts that run the ThreadSanitizer build (scripts/tsan.sh,
# scripts/soak.sh --tsan): the options every TSan run gets unless TSAN_OPTIONS is set.
#   halt_on_error=1          the first report ends the process (exit 66), so nothing hides it
#   second_deadlock_stack=1  a lock-order report shows where both locks were taken
#   history_size=4           512K accesses of each thread's past kept (GCC 12's default, 3,
#                            keeps half), so the older stack of a race still prints under load
#   suppressions             tests/tsan.supp, each line with its reason
export TSAN_OPTIONS=${TSAN_OPTIONS:-suppressions=$root/tests/tsan.supp:halt_on_error=1:second_deadlock_stack=1:history_size=4}
