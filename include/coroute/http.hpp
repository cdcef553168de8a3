#pragma once
// The aliases and the response type every handler uses (see fwd.hpp, response.hpp).

#include <coroute/fwd.hpp>
#include <coroute/response.hpp>
