#include "sandbox/recipe.h"

#include <cctype>
#include <sstream>

namespace warren::sandbox {
namespace {

std::string Trim(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return std::string(s.substr(b, e - b));
}

std::vector<std::string> Words(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  std::string w;
  while (in >> w) out.push_back(w);
  return out;
}

// Splits on whitespace outside double or single quotes; quotes are removed.
std::vector<std::string> QuotedWords(const std::string& s, bool* ok) {
  std::vector<std::string> out;
  std::string cur;
  bool in_word = false;
  char quote = 0;
  for (char c : s) {
    if (quote) {
      if (c == quote) quote = 0;
      else cur.push_back(c);
      continue;
    }
    if (c == '"' || c == '\'') {
      quote = c;
      in_word = true;
    } else if (std::isspace(static_cast<unsigned char>(c))) {
      if (in_word) out.push_back(cur);
      cur.clear();
      in_word = false;
    } else {
      cur.push_back(c);
      in_word = true;
    }
  }
  if (in_word) out.push_back(cur);
  *ok = quote == 0;
  return out;
}

}  // namespace

std::string_view StepKindName(RecipeStep::Kind k) {
  switch (k) {
    case RecipeStep::Kind::kFrom: return "FROM";
    case RecipeStep::Kind::kRun: return "RUN";
    case RecipeStep::Kind::kCopy: return "COPY";
    case RecipeStep::Kind::kEnv: return "ENV";
    case RecipeStep::Kind::kWorkdir: return "WORKDIR";
    case RecipeStep::Kind::kUser: return "USER";
  }
  return "?";
}

Result<Recipe> ParseRecipe(std::string_view text) {
  Recipe r;
  std::vector<std::pair<int, std::string>> lines;
  {
    std::string cur;
    int start = 0, n = 0;
    size_t pos = 0;
    while (pos <= text.size()) {
      size_t nl = text.find('\n', pos);
      if (nl == std::string_view::npos) nl = text.size();
      std::string line(text.substr(pos, nl - pos));
      pos = nl + 1;
      ++n;
      std::string t = Trim(line);
      if (cur.empty() && (t.empty() || t[0] == '#')) continue;
      if (cur.empty()) start = n;
      if (!t.empty() && t.back() == '\\') {
        t.pop_back();
        cur += t + " ";
        continue;
      }
      cur += t;
      lines.emplace_back(start, Trim(cur));
      cur.clear();
    }
    if (!cur.empty()) lines.emplace_back(start, Trim(cur));
  }
  for (const auto& [lineno, line] : lines) {
    size_t sp = line.find_first_of(" \t");
    std::string instr = line.substr(0, sp);
    for (auto& c : instr) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    std::string rest = sp == std::string::npos ? "" : Trim(line.substr(sp));
    auto err = [&, lineno = lineno](const std::string& m) {
      return Status::InvalidArgument("recipe line " + std::to_string(lineno) + ": " + m);
    };
    RecipeStep step;
    step.line = lineno;
    step.text = rest;
    if (rest.empty()) return err(instr + " needs an argument");
    if (instr == "FROM") {
      if (!r.steps.empty()) return err("FROM must be the first instruction and appear once");
      step.kind = RecipeStep::Kind::kFrom;
      auto words = Words(rest);
      // Only a debian: base takes options (mirror=URL include=a,b).
      if (words.size() != 1 && words[0].rfind("debian:", 0) != 0) return err("FROM takes one base");
    } else {
      if (r.steps.empty()) return err("the recipe must start with FROM");
      if (instr == "RUN") {
        step.kind = RecipeStep::Kind::kRun;
      } else if (instr == "COPY") {
        step.kind = RecipeStep::Kind::kCopy;
        step.args = Words(rest);
        if (step.args.size() < 2) return err("COPY needs at least a source and a destination");
        for (const auto& a : step.args) {
          if (a.rfind("--", 0) == 0) return err("COPY flags are not supported: " + a);
        }
      } else if (instr == "ENV") {
        step.kind = RecipeStep::Kind::kEnv;
        if (rest.find('=') == std::string::npos) {
          auto ws = rest.find_first_of(" \t");
          if (ws == std::string::npos) return err("ENV needs KEY=value or KEY value");
          step.args.push_back(rest.substr(0, ws) + "=" + Trim(rest.substr(ws)));
        } else {
          bool balanced = true;
          for (const auto& w : QuotedWords(rest, &balanced)) {
            size_t eq = w.find('=');
            if (eq == std::string::npos || eq == 0) return err("bad ENV pair: " + w);
            step.args.push_back(w);
          }
          if (!balanced) return err("unbalanced quote in ENV");
        }
      } else if (instr == "WORKDIR") {
        step.kind = RecipeStep::Kind::kWorkdir;
        if (rest[0] != '/') return err("WORKDIR must be absolute");
      } else if (instr == "USER") {
        step.kind = RecipeStep::Kind::kUser;
      } else {
        return err("unsupported instruction " + instr);
      }
    }
    r.steps.push_back(std::move(step));
  }
  if (r.steps.empty()) return Status::InvalidArgument("empty recipe");
  return r;
}

}  // namespace warren::sandbox
