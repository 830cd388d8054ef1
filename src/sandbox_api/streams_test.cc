#include "sandbox_api/streams.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

#include "common/ids.h"

namespace warren::sandbox_api {
namespace {

TEST(ParseRangeTest, Forms) {
  int64_t off = -1, len = -1;
  ASSERT_TRUE(ParseRange("bytes=10-19", 100, &off, &len).ok());
  EXPECT_EQ(off, 10);
  EXPECT_EQ(len, 10);
  ASSERT_TRUE(ParseRange("bytes=90-", 100, &off, &len).ok());
  EXPECT_EQ(off, 90);
  EXPECT_EQ(len, 10);
  ASSERT_TRUE(ParseRange("bytes=-5", 100, &off, &len).ok());
  EXPECT_EQ(off, 95);
  EXPECT_EQ(len, 5);
  ASSERT_TRUE(ParseRange("bytes=50-5000", 100, &off, &len).ok());  // clamped
  EXPECT_EQ(len, 50);
  ASSERT_TRUE(ParseRange("bytes=-500", 100, &off, &len).ok());
  EXPECT_EQ(off, 0);
  EXPECT_EQ(len, 100);
  EXPECT_EQ(ParseRange("bytes=100-", 100, &off, &len).code(), Code::kFailedPrecondition);
  EXPECT_EQ(ParseRange("bytes=-0", 100, &off, &len).code(), Code::kFailedPrecondition);
  for (const char* bad : {"items=1-2", "bytes=", "bytes=a-b", "bytes=5-1", "bytes=1-2,4-5", "bytes=--1"})
    EXPECT_EQ(ParseRange(bad, 100, &off, &len).code(), Code::kInvalidArgument) << bad;
}

// Collects frames as the server would.
std::string Drain(EventStream& es, bool* more) {
  std::vector<std::shared_ptr<const std::string>> frames;
  *more = es.Pull(&frames);
  std::string out;
  for (const auto& f : frames) out += *f;
  return out;
}

TEST(EventStreamTest, FramesUtf8CarryAndEnd) {
  EventStream es(1 << 20);
  int wakes = 0;
  es.SetWaker([&] { wakes++; });
  std::string carry;
  // "é" is 0xC3 0xA9: split across two reads it must arrive whole.
  EXPECT_TRUE(es.SendText("stdout", &carry, "ab\xC3"));
  EXPECT_EQ(carry, "\xC3");
  EXPECT_TRUE(es.SendText("stdout", &carry, "\xA9z"));
  EXPECT_TRUE(carry.empty());
  es.Send("exit", Json{{"type", "exit"}, {"exit_code", 0}});
  es.End();
  bool more = true;
  std::string out = Drain(es, &more);
  EXPECT_FALSE(more);
  EXPECT_GE(wakes, 3);
  EXPECT_NE(out.find("event: stdout\ndata: {\"data\":\"ab\",\"type\":\"stdout\"}\n\n"), std::string::npos) << out;
  EXPECT_NE(out.find("\"data\":\"\xC3\xA9z\""), std::string::npos) << out;
  EXPECT_NE(out.find("event: exit\n"), std::string::npos);
}

TEST(EventStreamTest, ProducerWaitsForSlowClientAndStopsWhenItLeaves) {
  EventStream es(1000);
  es.SetWaker([] {});
  std::atomic<int> sent{0};
  std::atomic<bool> refused{false};
  std::thread producer([&] {
    for (int i = 0; i < 100; i++) {
      if (!es.Send("stdout", Json{{"data", std::string(200, 'x')}})) {
        refused = true;
        return;
      }
      sent++;
    }
  });
  // The backlog bound holds the producer back until the client pulls.
  for (int i = 0; i < 30000 && sent.load() < 5; i++) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_LE(sent.load(), 6);
  bool more;
  Drain(es, &more);
  for (int i = 0; i < 30000 && sent.load() < 8; i++) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  EXPECT_GE(sent.load(), 8) << "pulling frees the producer";
  es.OnClose();  // the client went away: the producer is released and refused
  producer.join();
  EXPECT_TRUE(refused.load());
}

class FileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("warren-streams-" + NewId("", 10));
    std::filesystem::create_directories(dir_ + "/sub");
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  sandbox::RootFs Root() {
    auto fs = sandbox::RootFs::Open(dir_);
    EXPECT_TRUE(fs.ok()) << fs.status().ToString();
    return std::move(*fs);
  }
  std::vector<std::string> Names(const std::string& sub) {
    std::vector<std::string> out;
    for (const auto& e : std::filesystem::directory_iterator(dir_ + sub)) out.push_back(e.path().filename());
    return out;
  }
  static FileUpload::Responder Respond(Status* seen, int64_t* bytes) {
    return [seen, bytes](const Status& s, int64_t n) {
      *seen = s;
      *bytes = n;
      return http::HandlerResult{};
    };
  }
  std::string dir_;
};

TEST_F(FileTest, UploadGoesToTempThenRenames) {
  Status seen;
  int64_t bytes = -1;
  auto up = FileUpload::Begin(Root(), "/sub/out.bin", 0640, 1 << 20, Respond(&seen, &bytes));
  ASSERT_TRUE(up.ok()) << up.status().ToString();
  ASSERT_TRUE((*up)->Write("hello ").ok());
  ASSERT_TRUE((*up)->Write("world").ok());
  // Nothing under the final name until the body is complete.
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/sub/out.bin"));
  ASSERT_EQ(Names("/sub").size(), 1u);
  EXPECT_EQ(Names("/sub")[0].rfind(".warren-upload-", 0), 0u);
  (*up)->Finish(Status::Ok());
  EXPECT_TRUE(seen.ok()) << seen.ToString();
  EXPECT_EQ(bytes, 11);
  std::ifstream in(dir_ + "/sub/out.bin");
  std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(content, "hello world");
  struct stat st;
  ASSERT_EQ(stat((dir_ + "/sub/out.bin").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0640u);
  EXPECT_EQ(Names("/sub").size(), 1u) << "temp file renamed, not copied";
}

TEST_F(FileTest, FailedOrAbandonedUploadLeavesNothing) {
  {
    Status seen;
    int64_t bytes;
    auto up = FileUpload::Begin(Root(), "/sub/cut.bin", 0644, 1 << 20, Respond(&seen, &bytes));
    ASSERT_TRUE(up.ok());
    ASSERT_TRUE((*up)->Write("partial").ok());
    (*up)->Finish(Status::Cancelled("client went away"));
    EXPECT_EQ(seen.code(), Code::kCancelled);
  }
  {
    Status seen;
    int64_t bytes;
    auto up = FileUpload::Begin(Root(), "/sub/dropped.bin", 0644, 1 << 20, Respond(&seen, &bytes));
    ASSERT_TRUE(up.ok());
    ASSERT_TRUE((*up)->Write("partial").ok());
  }  // destroyed without Finish
  EXPECT_TRUE(Names("/sub").empty());
  // A missing parent is refused before any byte is taken.
  Status seen;
  int64_t bytes;
  auto up = FileUpload::Begin(Root(), "/nope/x.bin", 0644, 1 << 20, Respond(&seen, &bytes));
  EXPECT_EQ(up.status().code(), Code::kNotFound) << up.status().ToString();
  EXPECT_EQ(FileUpload::Begin(Root(), "/sub/", 0644, 1 << 20, Respond(&seen, &bytes)).status().code(),
            Code::kInvalidArgument);
}

TEST_F(FileTest, DownloadReadsInPiecesWithinTheRange) {
  {
    std::ofstream out(dir_ + "/sub/data");
    for (int i = 0; i < 1000; i++) out << static_cast<char>('a' + i % 26);
  }
  auto fd = Root().OpenRead("/sub/data");
  ASSERT_TRUE(fd.ok());
  FileDownload dl(std::move(*fd), 100, 450);
  std::string all, piece;
  int pieces = 0;
  for (;;) {
    piece.clear();
    auto more = dl.Read(&piece, 128);
    ASSERT_TRUE(more.ok());
    EXPECT_LE(piece.size(), 128u);
    all += piece;
    pieces++;
    if (!*more) break;
  }
  EXPECT_EQ(pieces, 4);
  ASSERT_EQ(all.size(), 450u);
  EXPECT_EQ(all[0], 'a' + 100 % 26);
  EXPECT_EQ(all.back(), 'a' + 549 % 26);
}

}  // namespace
}  // namespace warren::sandbox_api
