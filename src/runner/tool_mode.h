// `warren-runner tool`: a line-oriented driver for the toolset. Reads JSON
// lines {"name":..., "input":{...}} from `in` and writes one line
// {"is_error":bool,"content":[...]} per call to `out`, all calls sharing one
// Toolset (so bash state persists). Used by the differential test.
#pragma once

#include <cstdio>

#include "runner/tools.h"

namespace warren::runner {

// Returns the process exit code.
int RunToolMode(Toolset* tools, FILE* in, FILE* out);

}  // namespace warren::runner
