#include "tools/taskwal_progress.h"

#include <sstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace taskwal::tools {
namespace {

using ::testing::EndsWith;
using ::testing::HasSubstr;
using ::testing::StartsWith;

TEST(ProgressBarTest, DrawsWithCarriageReturnsAndClearsAtTheEnd) {
  std::ostringstream out;
  {
    ProgressBar bar(out, "verify", /*enabled=*/true, /*min_total_bytes=*/100);
    bar.Update(0, 200);
    bar.Update(100, 200);
    EXPECT_TRUE(bar.drawn());
    bar.Update(200, 200);
    bar.Finish();
    EXPECT_FALSE(bar.drawn());
  }
  const std::string s = out.str();
  EXPECT_THAT(s, StartsWith("\rverify ["));
  EXPECT_THAT(s, HasSubstr(" 50%"));
  EXPECT_THAT(s, HasSubstr("100%"));
  EXPECT_THAT(s, HasSubstr("[##########..........]"));
  EXPECT_EQ(s.find('\n'), std::string::npos);
  // The last thing written blanks the line and returns to its start.
  EXPECT_THAT(s, EndsWith("     \r"));
}

TEST(ProgressBarTest, RedrawsOnlyWhenThePercentageChanges) {
  std::ostringstream out;
  ProgressBar bar(out, "dump", true, 0);
  bar.Update(1, 1000);
  const size_t size = out.str().size();
  bar.Update(2, 1000);  // Still 0%.
  EXPECT_EQ(out.str().size(), size);
  bar.Update(20, 1000);
  EXPECT_GT(out.str().size(), size);
}

TEST(ProgressBarTest, SilentWhenDisabled) {
  std::ostringstream out;
  {
    ProgressBar bar(out, "verify", /*enabled=*/false, 0);
    bar.Update(5, 10);
    bar.Finish();
  }
  EXPECT_EQ(out.str(), "");
}

TEST(ProgressBarTest, SilentForSmallTotals) {
  std::ostringstream out;
  {
    ProgressBar bar(out, "verify", true, /*min_total_bytes=*/8 << 20);
    bar.Update(5, 1 << 20);
  }
  EXPECT_EQ(out.str(), "");
}

}  // namespace
}  // namespace taskwal::tools
