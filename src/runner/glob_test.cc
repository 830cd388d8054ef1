#include "runner/glob.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>

namespace warren::runner {
namespace {

TEST(Glob, Segments) {
  EXPECT_TRUE(MatchSegment("*.go", "a.go"));
  EXPECT_FALSE(MatchSegment("*.go", "a.gox"));
  EXPECT_TRUE(MatchSegment("?op", "top"));
  EXPECT_TRUE(MatchSegment("[st]op", "sop"));
  EXPECT_FALSE(MatchSegment("[!st]op", "sop"));
  EXPECT_TRUE(MatchSegment("[a-c]x", "bx"));
  EXPECT_TRUE(MatchSegment("a\\*", "a*"));
  EXPECT_FALSE(MatchSegment("a\\*", "ab"));
  EXPECT_TRUE(MatchSegment("*a*b*", "xxaybz"));
}

TEST(Glob, Braces) {
  auto v = ExpandBraces("{a,b}/{c,d{e,f}}");
  EXPECT_EQ(v, (std::vector<std::string>{"a/c", "a/de", "a/df", "b/c", "b/de", "b/df"}));
  EXPECT_EQ(ExpandBraces("{a}"), (std::vector<std::string>{"{a}"}));
}

TEST(Glob, WalksLikeNodeFsGlob) {
  char tmpl[] = "/tmp/warren-glob-XXXXXX";
  std::string r = mkdtemp(tmpl);
  for (auto d : {"/a", "/a/b", "/.h", "/node_modules", "/node_modules/m"}) mkdir((r + d).c_str(), 0755);
  for (auto f : {"/x.go", "/a/y.go", "/a/b/z.go", "/.h/h.go", "/node_modules/m/n.go", "/.d.go"}) {
    std::ofstream(r + f) << "x";
  }
  symlink("a", (r + "/la").c_str());
  auto all = GlobFiles(r, "**/*.go", 1000);
  EXPECT_EQ(all, (std::vector<std::string>{"x.go", "a/y.go", "a/b/z.go"}));
  EXPECT_EQ(GlobFiles(r, "la/*.go", 1000), (std::vector<std::string>{"la/y.go"}));
  EXPECT_EQ(GlobFiles(r, ".*.go", 1000), (std::vector<std::string>{".d.go"}));
  EXPECT_EQ(GlobFiles(r, "a/**", 1000), (std::vector<std::string>{"a/y.go", "a/b/z.go"}));
  EXPECT_TRUE(GlobFiles(r, "**/*.go", 2).size() < 3);  // walk cap
  system(("rm -rf " + r).c_str());
}

}  // namespace
}  // namespace warren::runner
