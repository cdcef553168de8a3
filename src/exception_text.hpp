#pragma once
// What an escaped exception was, for the log, and whether it is only a cancelled wait.

#include <exception>
#include <string>

namespace coroute::detail {

/// The message of what `e` holds; "unknown exception" when it is not a std::exception.
std::string what_of(std::exception_ptr e);

/// True when `e` is a cancelled wait (a system_error of operation_aborted): a deadline,
/// a client that left, a shutdown; not a bug.
bool is_cancellation(std::exception_ptr e);

} // namespace coroute::detail
