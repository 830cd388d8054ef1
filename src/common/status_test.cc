#include "common/status.h"

#include <gtest/gtest.h>

namespace warren {
namespace {

Result<int> Half(int x) {
  if (x % 2) return Status::InvalidArgument("odd");
  return x / 2;
}

Result<int> Quarter(int x) {
  WARREN_ASSIGN_OR_RETURN(int h, Half(x));
  WARREN_ASSIGN_OR_RETURN(int q, Half(h));
  return q;
}

TEST(StatusTest, OkAndErrors) {
  EXPECT_TRUE(Status().ok());
  Status s = Status::NotFound("agent x").WithContext("load");
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), Code::kNotFound);
  EXPECT_EQ(s.message(), "load: agent x");
  EXPECT_EQ(s.ToString(), "NotFound: load: agent x");
  EXPECT_TRUE(Status::Ok().WithContext("x").ok());
}

TEST(StatusTest, ResultPropagates) {
  EXPECT_EQ(*Quarter(8), 2);
  Result<int> r = Quarter(6);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "odd");
  EXPECT_EQ(Quarter(5).status().code(), Code::kInvalidArgument);
}

TEST(StatusTest, FromErrno) {
  Status s = Status::FromErrno(ENOENT, "open /x");
  EXPECT_EQ(s.code(), Code::kIOError);
  EXPECT_EQ(s.message(), "open /x: No such file or directory");
}

}  // namespace
}  // namespace warren
