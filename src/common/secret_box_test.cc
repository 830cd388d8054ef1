#include "common/secret_box.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace warren {
namespace {

constexpr const char* kKey = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

TEST(SecretBox, SealsAndOpens) {
  auto box = SecretBox::FromHex(kKey);
  ASSERT_TRUE(box.ok());
  auto sealed = box->Seal("ghp_secret_token", "sesn_1/sesrsc_1");
  ASSERT_TRUE(sealed.ok());
  EXPECT_EQ(sealed->find("ghp_secret_token"), std::string::npos);  // not in clear
  auto opened = box->Open(*sealed, "sesn_1/sesrsc_1");
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  EXPECT_EQ(*opened, "ghp_secret_token");
  // Fresh nonce each time.
  EXPECT_NE(*box->Seal("ghp_secret_token", "sesn_1/sesrsc_1"), *sealed);
}

TEST(SecretBox, RefusesWrongKeyAadOrTampering) {
  auto box = SecretBox::FromHex(kKey);
  auto other = SecretBox::FromHex("ff0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f");
  ASSERT_TRUE(box.ok() && other.ok());
  std::string sealed = *box->Seal("token", "sesn_1/a");
  EXPECT_EQ(other->Open(sealed, "sesn_1/a").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(box->Open(sealed, "sesn_2/a").status().code(), Code::kInvalidArgument);
  std::string flipped = sealed;
  flipped[flipped.size() / 2] ^= 1;
  EXPECT_EQ(box->Open(flipped, "sesn_1/a").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(box->Open("w1short", "sesn_1/a").status().code(), Code::kInvalidArgument);
  EXPECT_FALSE(SecretBox::FromHex("abc").ok());
  EXPECT_FALSE(SecretBox::FromHex(std::string(64, 'z')).ok());
}

TEST(SecretBox, KeyFileIsCreatedPrivateAndReused) {
  char tmpl[] = "/tmp/warren_secretbox_XXXXXX";
  std::string dir = mkdtemp(tmpl);
  std::string path = dir + "/secrets.key";
  auto a = SecretBox::FromKeyFile(path);
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  struct stat st {};
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto b = SecretBox::FromKeyFile(path);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(*b->Open(*a->Seal("x", "aad"), "aad"), "x");  // same key
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace warren
