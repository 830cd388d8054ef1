// Recipes: the documented Dockerfile subset snapshots are built from.
//
//   FROM scratch | builtin:minimal | dir:/abs/path | tar:/abs/file.tar[.gz] | <snapshot name>
//        | debian:<suite>[-slim] [mirror=URL] [include=pkg1,pkg2]   (debootstrap --variant=minbase)
//   RUN <shell command>            (run with /bin/sh -c in a sandbox; network none unless
//                                   the build gives it one: runtime.h BuildOptions)
//   COPY <src>... <dst>            (src relative to the build context; dst in the image)
//   ENV KEY=value [KEY2=value2]    (also "ENV KEY value")
//   WORKDIR /path                  (created if missing)
//   USER name|uid[:gid]
// Lines starting with '#' are comments; a trailing '\' continues a line.
// FROM must come first and appear once. Thread-safety: plain values.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace warren::sandbox {

struct RecipeStep {
  enum class Kind { kFrom, kRun, kCopy, kEnv, kWorkdir, kUser };
  Kind kind;
  std::string text;               // the instruction's argument text, trimmed
  std::vector<std::string> args;  // COPY: sources then dst; ENV: KEY=value pairs
  int line = 0;
};

struct Recipe {
  std::vector<RecipeStep> steps;
};

Result<Recipe> ParseRecipe(std::string_view text);
std::string_view StepKindName(RecipeStep::Kind k);

}  // namespace warren::sandbox
