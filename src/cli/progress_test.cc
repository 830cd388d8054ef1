#include "cli/progress.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <string>

namespace warren::cli {
namespace {

// Captures what a Progress writes, through a pipe.
class Capture {
 public:
  Capture() { EXPECT_EQ(pipe2(fds_, O_CLOEXEC | O_NONBLOCK), 0); }
  ~Capture() {
    close(fds_[0]);
    close(fds_[1]);
  }
  int fd() const { return fds_[1]; }
  std::string Take() {
    std::string out;
    char buf[4096];
    ssize_t n;
    while ((n = read(fds_[0], buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
    return out;
  }

 private:
  int fds_[2] = {-1, -1};
};

size_t Count(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (size_t at = s.find(what); at != std::string::npos; at = s.find(what, at + what.size())) n++;
  return n;
}

Progress::Style Pipe() { return {}; }
Progress::Style Terminal(bool color, int columns = 80) {
  Progress::Style s;
  s.tty = true;
  s.color = color;
  s.columns = columns;
  return s;
}

TEST(HumanBytes, Units) {
  EXPECT_EQ(HumanBytes(0), "0 B");
  EXPECT_EQ(HumanBytes(1023), "1023 B");
  EXPECT_EQ(HumanBytes(1536), "1.5 KiB");
  EXPECT_EQ(HumanBytes(40LL << 20), "40.0 MiB");
  EXPECT_EQ(HumanBytes(3LL << 30), "3.0 GiB");
}

TEST(Progress, PipeGetsPlainLinesOnePerTenPercentAndNoEscapes) {
  Capture cap;
  {
    Progress p("archive sbx_1", Progress::Unit::kBytes, 1000, Pipe(), cap.fd());
    for (int i = 0; i <= 1000; i += 7) p.Update(i);
    p.Update(1000);
    p.Log("a log line");
    p.Done("1000 B into 100 B");
  }
  std::string out = cap.Take();
  EXPECT_EQ(out.find('\033'), std::string::npos) << out;
  EXPECT_EQ(out.find('\r'), std::string::npos) << out;
  for (int d = 10; d <= 90; d += 10)
    EXPECT_EQ(Count(out, "archive sbx_1: " + std::to_string(d) + "% ("), 1u) << d << "\n" << out;
  EXPECT_EQ(Count(out, "100%"), 0u) << "the summary line says it";
  EXPECT_NE(out.find("archive sbx_1: 10% (105 B of 1000 B)\n"), std::string::npos) << out;
  EXPECT_NE(out.find("a log line\n"), std::string::npos);
  EXPECT_TRUE(out.ends_with("archive sbx_1: 1000 B into 100 B\n")) << out;
}

TEST(Progress, PipeStepsAreJustTheLoggedLines) {
  Capture cap;
  {
    Progress p("build web", Progress::Unit::kSteps, 0, Pipe(), cap.fd());
    p.SetTotal(3);
    p.Log("[1/3] FROM builtin:minimal");
    p.Update(0, "FROM builtin:minimal");
    p.Log("[2/3] RUN true");
    p.Update(1, "RUN true");
    p.Done("snapshot web built");
    p.Log("after");  // still printed, without a bar
  }
  EXPECT_EQ(cap.Take(), "[1/3] FROM builtin:minimal\n[2/3] RUN true\nbuild web: snapshot web built\nafter\n");
}

TEST(Progress, TerminalRedrawsOneLineAndErasesItAtTheEnd) {
  Capture cap;
  {
    Progress p("copy f", Progress::Unit::kBytes, 4 << 20, Terminal(false), cap.fd());
    p.Update(1 << 20);
    p.Log("between");
    p.Update(4 << 20);
    p.Done();
  }
  std::string out = cap.Take();
  EXPECT_NE(out.find("\r\033[K"), std::string::npos) << out;
  EXPECT_NE(out.find("copy f  ["), std::string::npos) << out;
  EXPECT_NE(out.find("25%  1.0 MiB / 4.0 MiB"), std::string::npos) << out;
  // The log line is printed on a line of its own (bar erased first) and the
  // bar drawn again under it.
  EXPECT_NE(out.find("\r\033[Kbetween\n\r\033[Kcopy f  ["), std::string::npos) << out;
  EXPECT_EQ(out.find("\033[3"), std::string::npos) << "no colour when not asked";
  EXPECT_TRUE(out.ends_with("\r\033[Kcopy f: 4.0 MiB in 0.0 s\n") || out.find("copy f: 4.0 MiB in ") != std::string::npos)
      << out;
  // Nothing is left on the bar's line after the summary.
  EXPECT_EQ(out.substr(out.rfind('\r')), "\r\033[Kcopy f: " + out.substr(out.rfind("copy f: ") + 8));
}

TEST(Progress, ColourOnlyWhenTheStyleSaysSo) {
  Capture cap;
  {
    Progress p("build x", Progress::Unit::kSteps, 2, Terminal(true), cap.fd());
    p.Update(1, "RUN make");
    p.Done("done");
  }
  std::string out = cap.Take();
  EXPECT_NE(out.find("\033[36m"), std::string::npos) << out;
  EXPECT_NE(out.find("\033[32mbuild x:\033[0m done\n"), std::string::npos) << out;
}

TEST(Progress, RenderFitsTheTerminalAndShowsTheStep) {
  Progress p("build a-rather-long-snapshot-name", Progress::Unit::kSteps, 6, Terminal(false), -1);
  p.Update(1, "RUN apt-get install -y git curl build-essential python3 python3-pip nodejs npm");
  for (int cols : {20, 40, 60, 80, 200}) {
    std::string line = p.RenderForTest(cols);
    size_t width = 0;
    for (unsigned char c : line)
      if ((c & 0xC0) != 0x80) width++;
    EXPECT_LE(width, static_cast<size_t>(std::max(cols - 1, 20))) << cols << ": " << line;
    EXPECT_NE(line.find("2/6"), std::string::npos) << line;
  }
  std::string wide = p.RenderForTest(200);
  EXPECT_NE(wide.find("RUN apt-get install -y git curl build-essential python3 python3-pip nodejs npm"), std::string::npos);
  EXPECT_NE(wide.find("[████"), std::string::npos) << wide;
  std::string narrow = p.RenderForTest(80);
  EXPECT_NE(narrow.find("…"), std::string::npos) << "a long detail is cut, not wrapped: " << narrow;
}

TEST(Progress, UnknownTotalShowsTheAmountOnly) {
  Progress p("copy stdin", Progress::Unit::kBytes, 0, Terminal(false), -1);
  p.Update(3 << 20);
  std::string line = p.RenderForTest(80);
  EXPECT_NE(line.find("3.0 MiB"), std::string::npos) << line;
  EXPECT_EQ(line.find('%'), std::string::npos) << line;
}

}  // namespace
}  // namespace warren::cli
