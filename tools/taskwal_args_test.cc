#include "tools/taskwal_args.h"

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace taskwal::tools {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

class ParseArgsTest : public ::testing::Test {
 protected:
  const std::vector<FlagSpec> specs_ = {
      {"data_dir", "DIR", "where"},
      {"json", "", "json output"},
      {"limit", "N", "how many"},
  };
};

TEST_F(ParseArgsTest, ValuesWithEqualsOrSeparateAndBooleans) {
  absl::StatusOr<ParsedArgs> p = ParseArgs(
      {"--data_dir=/d", "list", "-limit", "5", "--json", "x"}, specs_);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->Get("data_dir"), "/d");
  EXPECT_EQ(p->Get("limit"), "5");
  EXPECT_TRUE(p->GetBool("json"));
  EXPECT_THAT(p->positional, ElementsAre("list", "x"));
  EXPECT_EQ(p->Get("missing", "fallback"), "fallback");
  EXPECT_FALSE(p->Has("missing"));
}

TEST_F(ParseArgsTest, StopAtPositionalLeavesTheRestUnparsed) {
  absl::StatusOr<ParsedArgs> p =
      ParseArgs({"--json", "list", "--status=x", "--unknown"}, specs_,
                /*stop_at_positional=*/true);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_TRUE(p->GetBool("json"));
  EXPECT_THAT(p->positional, ElementsAre("list", "--status=x", "--unknown"));
}

TEST_F(ParseArgsTest, DoubleDashEndsFlags) {
  absl::StatusOr<ParsedArgs> p = ParseArgs({"--", "--json", "-5"}, specs_);
  ASSERT_TRUE(p.ok());
  EXPECT_FALSE(p->Has("json"));
  EXPECT_THAT(p->positional, ElementsAre("--json", "-5"));
}

TEST_F(ParseArgsTest, LastOccurrenceWins) {
  absl::StatusOr<ParsedArgs> p =
      ParseArgs({"--limit=1", "--limit=2", "--json=false"}, specs_);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->Get("limit"), "2");
  EXPECT_FALSE(p->GetBool("json"));
  EXPECT_TRUE(p->Has("json"));
}

TEST_F(ParseArgsTest, UnknownFlagIsRejected) {
  absl::StatusOr<ParsedArgs> p = ParseArgs({"--colour=red"}, specs_);
  EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(p.status().message(), HasSubstr("unknown flag --colour"));
}

TEST_F(ParseArgsTest, MissingValueIsRejected) {
  absl::StatusOr<ParsedArgs> p = ParseArgs({"--limit"}, specs_);
  EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(p.status().message(), HasSubstr("--limit needs a value"));
}

TEST_F(ParseArgsTest, BooleanWithOtherValueIsRejected) {
  absl::StatusOr<ParsedArgs> p = ParseArgs({"--json=yes"}, specs_);
  EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ParseNumberTest, AcceptsOnlyPlainIntegers) {
  EXPECT_EQ(*ParseUint64("--n", "42"), 42u);
  EXPECT_FALSE(ParseUint64("--n", "-1").ok());
  EXPECT_FALSE(ParseUint64("--n", "+1").ok());
  EXPECT_FALSE(ParseUint64("--n", "").ok());
  EXPECT_FALSE(ParseUint64("--n", "12abc").ok());
  EXPECT_FALSE(ParseUint64("--n", "99999999999999999999999").ok());
  EXPECT_EQ(*ParseInt64("--n", "-7"), -7);
  EXPECT_THAT(ParseInt64("--priority", "x").status().message(),
              HasSubstr("--priority"));
}

TEST(FlagHelpTest, AlignsDescriptions) {
  EXPECT_EQ(FlagHelp({{"a", "N", "first"}, {"long_name", "", "second"}}),
            "  --a=N        first\n"
            "  --long_name  second\n");
}

}  // namespace
}  // namespace taskwal::tools
