#include "runner/glob.h"

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <set>

namespace warren::runner {
namespace {

bool HasMagic(std::string_view seg) {
  return seg.find_first_of("*?[\\") != std::string_view::npos;
}

struct Entry {
  std::string name;
  unsigned char type;  // DT_*
};

std::vector<Entry> ListDir(const std::string& dir) {
  std::vector<Entry> out;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return out;
  while (dirent* e = readdir(d)) {
    std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    unsigned char type = e->d_type;
    if (type == DT_UNKNOWN) {
      struct stat st;
      std::string full = dir + "/" + name;
      if (lstat(full.c_str(), &st) == 0) {
        type = S_ISDIR(st.st_mode) ? DT_DIR : S_ISREG(st.st_mode) ? DT_REG
               : S_ISLNK(st.st_mode) ? DT_LNK : DT_UNKNOWN;
      }
    }
    out.push_back({std::move(name), type});
  }
  closedir(d);
  std::sort(out.begin(), out.end(), [](const Entry& a, const Entry& b) { return a.name < b.name; });
  return out;
}

class Walker {
 public:
  Walker(std::vector<std::string> segs, size_t max_entries, std::set<std::string>* seen,
         std::vector<std::string>* out, size_t* visited)
      : segs_(std::move(segs)), max_(max_entries), seen_(seen), out_(out), visited_(visited) {}

  // `dir` absolute, `rel` relative prefix ("" or "a/b/").
  bool Walk(const std::string& dir, const std::string& rel, size_t idx) {
    if (idx >= segs_.size()) return true;
    const std::string& seg = segs_[idx];
    bool last = idx + 1 == segs_.size();
    if (seg == "**") {
      if (last) {
        // "x/**" = every file below x.
        std::vector<std::string> rest = {"**", "*"};
        Walker sub(rest, max_, seen_, out_, visited_);
        bool ok = sub.Walk(dir, rel, 0);
        return ok;
      }
      if (!Walk(dir, rel, idx + 1)) return false;
      for (const auto& e : ListDir(dir)) {
        if (!Count()) return false;
        if (e.type != DT_DIR) continue;
        if (e.name[0] == '.' || e.name == "node_modules") continue;
        if (!Walk(dir + "/" + e.name, rel + e.name + "/", idx)) return false;
      }
      return true;
    }
    if (!HasMagic(seg)) {
      std::string child = dir + "/" + seg;
      struct stat st;
      if (last) {
        if (lstat(child.c_str(), &st) == 0 && S_ISREG(st.st_mode)) Add(rel + seg);
        return true;
      }
      if (stat(child.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
        return Walk(child, rel + seg + "/", idx + 1);
      }
      return true;
    }
    for (const auto& e : ListDir(dir)) {
      if (!Count()) return false;
      if (e.name[0] == '.' && seg[0] != '.') continue;
      if (!MatchSegment(seg, e.name)) continue;
      if (last) {
        if (e.type == DT_REG) Add(rel + e.name);
      } else if (e.type == DT_DIR) {
        if (!Walk(dir + "/" + e.name, rel + e.name + "/", idx + 1)) return false;
      }
    }
    return true;
  }

 private:
  bool Count() { return ++*visited_ <= max_; }
  void Add(const std::string& rel) {
    if (seen_->insert(rel).second) out_->push_back(rel);
  }
  std::vector<std::string> segs_;
  size_t max_;
  std::set<std::string>* seen_;
  std::vector<std::string>* out_;
  size_t* visited_;
};

bool MatchClass(std::string_view p, size_t* pi, unsigned char c, bool* ok) {
  // p[*pi] == '['. Returns false if the class is unterminated (literal '[').
  size_t i = *pi + 1;
  bool negate = false;
  if (i < p.size() && (p[i] == '!' || p[i] == '^')) {
    negate = true;
    ++i;
  }
  bool matched = false;
  bool first = true;
  while (i < p.size() && (first || p[i] != ']')) {
    first = false;
    unsigned char lo = static_cast<unsigned char>(p[i]);
    if (lo == '\\' && i + 1 < p.size()) lo = static_cast<unsigned char>(p[++i]);
    unsigned char hi = lo;
    if (i + 2 < p.size() && p[i + 1] == '-' && p[i + 2] != ']') {
      hi = static_cast<unsigned char>(p[i + 2]);
      i += 2;
    }
    if (c >= lo && c <= hi) matched = true;
    ++i;
  }
  if (i >= p.size()) return false;
  *pi = i + 1;
  *ok = matched != negate;
  return true;
}

}  // namespace

std::vector<std::string> ExpandBraces(std::string_view pattern) {
  // Find the first top-level '{' with a matching '}' and a comma inside.
  size_t depth = 0, open = std::string_view::npos;
  for (size_t i = 0; i < pattern.size(); ++i) {
    char c = pattern[i];
    if (c == '\\') {
      ++i;
      continue;
    }
    if (c == '{') {
      if (depth++ == 0) open = i;
    } else if (c == '}' && depth > 0) {
      if (--depth == 0) {
        std::vector<std::string_view> alts;
        size_t start = open + 1, d = 0;
        for (size_t k = open + 1; k < i; ++k) {
          if (pattern[k] == '\\') {
            ++k;
            continue;
          }
          if (pattern[k] == '{') ++d;
          else if (pattern[k] == '}') --d;
          else if (pattern[k] == ',' && d == 0) {
            alts.push_back(pattern.substr(start, k - start));
            start = k + 1;
          }
        }
        alts.push_back(pattern.substr(start, i - start));
        if (alts.size() < 2) continue;
        std::vector<std::string> out;
        std::string prefix(pattern.substr(0, open));
        for (auto alt : alts) {
          for (auto& rest : ExpandBraces(std::string(alt) + std::string(pattern.substr(i + 1)))) {
            out.push_back(prefix + rest);
          }
        }
        return out;
      }
    }
  }
  return {std::string(pattern)};
}

bool MatchSegment(std::string_view p, std::string_view n) {
  size_t pi = 0, ni = 0, star_p = std::string_view::npos, star_n = 0;
  while (ni < n.size()) {
    if (pi < p.size()) {
      char c = p[pi];
      if (c == '*') {
        star_p = pi++;
        star_n = ni;
        continue;
      }
      if (c == '?') {
        ++pi;
        ++ni;
        continue;
      }
      if (c == '[') {
        size_t np = pi;
        bool ok = false;
        if (MatchClass(p, &np, static_cast<unsigned char>(n[ni]), &ok)) {
          if (ok) {
            pi = np;
            ++ni;
            continue;
          }
        } else if (n[ni] == '[') {
          ++pi;
          ++ni;
          continue;
        }
      } else {
        if (c == '\\' && pi + 1 < p.size()) c = p[pi + 1];
        if (c == n[ni]) {
          pi += (p[pi] == '\\' && pi + 1 < p.size()) ? 2 : 1;
          ++ni;
          continue;
        }
      }
    }
    if (star_p != std::string_view::npos) {
      pi = star_p + 1;
      ni = ++star_n;
      continue;
    }
    return false;
  }
  while (pi < p.size() && p[pi] == '*') ++pi;
  return pi == p.size();
}

std::vector<std::string> GlobFiles(const std::string& root, std::string_view pattern,
                                   size_t max_entries) {
  std::vector<std::string> out;
  std::set<std::string> seen;
  size_t visited = 0;
  for (const auto& alt : ExpandBraces(pattern)) {
    std::vector<std::string> segs;
    size_t i = 0;
    while (i <= alt.size()) {
      size_t j = alt.find('/', i);
      if (j == std::string::npos) j = alt.size();
      std::string seg = alt.substr(i, j - i);
      if (!seg.empty() && seg != ".") {
        if (!(seg == "**" && !segs.empty() && segs.back() == "**")) segs.push_back(seg);
      }
      i = j + 1;
    }
    if (segs.empty()) continue;
    Walker w(segs, max_entries, &seen, &out, &visited);
    if (!w.Walk(root, "", 0)) break;
  }
  return out;
}

}  // namespace warren::runner
