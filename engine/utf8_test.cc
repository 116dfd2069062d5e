#include "engine/utf8.h"

#include <string>

#include "gtest/gtest.h"
#include "taskwal/task.pb.h"

namespace taskwal::engine {
namespace {

TEST(Utf8Test, WellFormedTextPasses) {
  for (const std::string& s :
       {std::string(), std::string("plain ascii"), std::string("\0", 1),
        std::string("caf\xc3\xa9"), std::string("\xe2\x82\xac"),
        std::string("\xf0\x9f\x98\x80"), std::string("\xef\xbf\xbf"),
        std::string("\xf4\x8f\xbf\xbf"), std::string("\xed\x9f\xbf"),
        std::string("\xee\x80\x80")}) {
    EXPECT_TRUE(IsValidUtf8(s)) << testing::PrintToString(s);
  }
}

// Long strings take the eight-bytes-at-a-time path; a bad byte anywhere
// in them is still found.
TEST(Utf8Test, BadByteAnywhereInALongStringFails) {
  const std::string good = "0123456789abcdef0123456789\xc3\xa9xyz";
  ASSERT_TRUE(IsValidUtf8(good));
  for (size_t i = 0; i < good.size(); ++i) {
    if (i == 26 || i == 27) continue;  // The two bytes of the accent.
    std::string bad = good;
    bad[i] = '\xff';
    EXPECT_FALSE(IsValidUtf8(bad)) << i;
  }
}

TEST(Utf8Test, MalformedTextFails) {
  for (const std::string& s :
       {std::string("\xff"), std::string("\x80"), std::string("a\xbf"),
        std::string("\xc0\x80"), std::string("\xc1\xbf"),  // Overlong.
        std::string("\xe0\x80\x80"), std::string("\xf0\x80\x80\x80"),
        std::string("\xed\xa0\x80"),
        std::string("\xed\xbf\xbf"),  // Surrogates.
        std::string("\xf4\x90\x80\x80"), std::string("\xf5\x80\x80\x80"),
        std::string("\xc3"), std::string("\xe2\x82"),  // Truncated.
        std::string("\xf0\x9f\x98"), std::string("\xc3\x28")}) {
    EXPECT_FALSE(IsValidUtf8(s)) << testing::PrintToString(s);
  }
}

// The rule is protobuf's: every 1-, 2- and 3-byte string, and a sweep of
// 4-byte ones, is accepted exactly when a proto3 string field parses it.
TEST(Utf8Test, AgreesWithProtobuf) {
  auto check = [](const std::string& s) {
    HistoryEntry h;
    std::string wire = "\x2a";  // Field 5 (worker_id), length-delimited.
    wire += static_cast<char>(s.size());
    wire += s;
    const bool parses = h.ParseFromString(wire);
    EXPECT_EQ(IsValidUtf8(s), parses) << testing::PrintToString(s);
  };
  for (int a = 0; a < 256; ++a) {
    check(std::string(1, static_cast<char>(a)));
    for (int b = 0; b < 256; ++b) {
      check(std::string{static_cast<char>(a), static_cast<char>(b)});
      if (a >= 0xe0 && a <= 0xf4) {
        for (int c = 0x70; c < 0xc8; c += 3) {
          check(std::string{static_cast<char>(a), static_cast<char>(b),
                            static_cast<char>(c)});
          check(std::string{static_cast<char>(a), static_cast<char>(b),
                            static_cast<char>(c), '\x80'});
        }
      }
    }
  }
}

}  // namespace
}  // namespace taskwal::engine
