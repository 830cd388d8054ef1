// Path policy for the file tools (spec section 4.2 "Path policy"), matching
// the TypeScript SDK 1.10.0 `confineToRoot`: resolve against the workdir,
// collapse `..` lexically, follow every symlink including a dangling final
// component, then require the result to lie inside the workdir or one of the
// allowed roots. Write and edit also refuse paths under read-only roots.
//
// PathPolicy is an immutable value; thread-safe. The residual TOCTOU window
// between the check and the operation is the same as the SDK's: the sandbox,
// not this class, is the hard boundary.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace warren::runner {

// path.resolve(base, p) of Node: absolute `p` replaces `base`; the result is
// normalised ("." and ".." collapsed, no duplicate or trailing slashes).
std::string LexicalResolve(std::string_view base, std::string_view p);

// True when `p` equals `root` or lies lexically below it.
bool IsWithin(std::string_view root, std::string_view p);

// Resolves every symlink of the absolute path `abs`, also in components that
// do not exist yet and in a dangling last component. Returns 0 and sets *out,
// or an errno (ELOOP after 40 link hops).
int Canonicalize(const std::string& abs, std::string* out);

// "<file>: no such file or directory" etc., the SDK's fsErrorMessage.
std::string FsErrorMessage(int err, std::string_view file);

class PathPolicy final {
 public:
  PathPolicy(std::string workdir, std::vector<std::string> allowed_roots,
             std::vector<std::string> read_only_roots);

  const std::string& workdir() const { return workdir_; }
  const std::vector<std::string>& allowed_roots() const { return allowed_roots_; }

  // The canonical path `p` names, or false with the tool error text in *error
  // (no "<op>: " prefix, exactly like the SDK).
  bool Resolve(std::string_view p, std::string* out, std::string* error) const;

  // The configured read-only root that contains canonical `target`, or "".
  std::string ReadOnlyRootFor(const std::string& target) const;

 private:
  std::string workdir_;
  std::vector<std::string> allowed_roots_;
  std::vector<std::string> read_only_roots_;
};

}  // namespace warren::runner
