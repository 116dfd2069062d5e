#include "wal/coding.h"

#include <cstdint>
#include <string>

#include "gtest/gtest.h"

namespace taskwal::wal {
namespace {

TEST(CodingTest, Fixed16IsLittleEndian) {
  char buf[2];
  EncodeFixed16(buf, 0x0201u);
  EXPECT_EQ(std::string(buf, 2), std::string("\x01\x02", 2));
  EXPECT_EQ(DecodeFixed16(buf), 0x0201u);
}

// Decoding must not sign-extend a byte with its top bit set.
TEST(CodingTest, Fixed16DecodesHighBytesUnsigned) {
  const char buf[2] = {static_cast<char>(0xff), static_cast<char>(0x80)};
  EXPECT_EQ(DecodeFixed16(buf), 0x80ffu);
}

TEST(CodingTest, Fixed16WritesExactlyTwoBytes) {
  char buf[4] = {'a', 'b', 'c', 'd'};
  EncodeFixed16(buf + 1, 0xbeefu);
  EXPECT_EQ(buf[0], 'a');
  EXPECT_EQ(buf[3], 'd');
  EXPECT_EQ(DecodeFixed16(buf + 1), 0xbeefu);
}

TEST(CodingTest, Fixed32IsLittleEndian) {
  std::string buf;
  PutFixed32(&buf, 0x04030201u);
  EXPECT_EQ(buf, std::string("\x01\x02\x03\x04", 4));
  EXPECT_EQ(DecodeFixed32(buf.data()), 0x04030201u);
}

TEST(CodingTest, Fixed64IsLittleEndian) {
  std::string buf;
  PutFixed64(&buf, 0x0807060504030201ull);
  EXPECT_EQ(buf, std::string("\x01\x02\x03\x04\x05\x06\x07\x08", 8));
  EXPECT_EQ(DecodeFixed64(buf.data()), 0x0807060504030201ull);
}

TEST(CodingTest, RoundTripsExtremeValues) {
  for (uint64_t v :
       {uint64_t{0}, uint64_t{1}, uint64_t{0x80}, uint64_t{0xff},
        uint64_t{0xffffffff}, uint64_t{0x8000000000000000}, ~uint64_t{0}}) {
    char buf[8];
    EncodeFixed64(buf, v);
    EXPECT_EQ(DecodeFixed64(buf), v);
    EncodeFixed32(buf, static_cast<uint32_t>(v));
    EXPECT_EQ(DecodeFixed32(buf), static_cast<uint32_t>(v));
    EncodeFixed16(buf, static_cast<uint16_t>(v));
    EXPECT_EQ(DecodeFixed16(buf), static_cast<uint16_t>(v));
  }
}

}  // namespace
}  // namespace taskwal::wal
