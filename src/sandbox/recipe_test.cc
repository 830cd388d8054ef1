#include "sandbox/recipe.h"

#include <gtest/gtest.h>

namespace warren::sandbox {
namespace {

TEST(RecipeTest, ParsesTheSubset) {
  auto r = ParseRecipe(
      "# comment\n"
      "FROM builtin:minimal\n"
      "ENV A=1 B=\"two words\"\n"
      "ENV C three\n"
      "RUN apt-get update && \\\n"
      "    echo done\n"
      "COPY a b /dst/\n"
      "WORKDIR /srv\n"
      "user sandbox\n");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->steps.size(), 7u);
  EXPECT_EQ(r->steps[0].kind, RecipeStep::Kind::kFrom);
  EXPECT_EQ(r->steps[0].text, "builtin:minimal");
  EXPECT_EQ(r->steps[1].args, (std::vector<std::string>{"A=1", "B=two words"}));
  EXPECT_EQ(r->steps[2].args, (std::vector<std::string>{"C=three"}));
  EXPECT_EQ(r->steps[3].text, "apt-get update &&  echo done");
  EXPECT_EQ(r->steps[3].line, 5);
  EXPECT_EQ(r->steps[4].args, (std::vector<std::string>{"a", "b", "/dst/"}));
  EXPECT_EQ(r->steps[5].kind, RecipeStep::Kind::kWorkdir);
  EXPECT_EQ(r->steps[6].kind, RecipeStep::Kind::kUser);
}

TEST(RecipeTest, RejectsWhatIsNotSupported) {
  EXPECT_FALSE(ParseRecipe("").ok());
  EXPECT_FALSE(ParseRecipe("RUN true\n").ok());                      // no FROM
  EXPECT_FALSE(ParseRecipe("FROM a\nFROM b\n").ok());                // two FROMs
  EXPECT_FALSE(ParseRecipe("FROM a b\n").ok());                      // FROM ... AS
  EXPECT_FALSE(ParseRecipe("FROM scratch\nCMD [\"x\"]\n").ok());     // unsupported
  EXPECT_FALSE(ParseRecipe("FROM scratch\nCOPY onlyone\n").ok());
  EXPECT_FALSE(ParseRecipe("FROM scratch\nCOPY --chown=1 a b\n").ok());
  EXPECT_FALSE(ParseRecipe("FROM scratch\nWORKDIR relative\n").ok());
  EXPECT_FALSE(ParseRecipe("FROM scratch\nENV =x\n").ok());
  auto r = ParseRecipe("FROM scratch\nBOGUS x\n");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("line 2"), std::string::npos);
}

}  // namespace
}  // namespace warren::sandbox
