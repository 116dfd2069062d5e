#include "wal/crc32c.h"

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace taskwal::wal::crc32c {
namespace {

// Runs every check against both Extend (hardware when available) and the
// portable fallback, so a machine with SSE4.2 still tests the table path.
class Crc32cTest : public ::testing::TestWithParam<bool> {
 protected:
  uint32_t Compute(const void* data, size_t n) const {
    const char* bytes = static_cast<const char*>(data);
    return GetParam() ? ExtendPortable(0, bytes, n) : Value(bytes, n);
  }
  uint32_t ComputeExtend(uint32_t crc, const std::string& s) const {
    return GetParam() ? ExtendPortable(crc, s.data(), s.size())
                      : Extend(crc, s.data(), s.size());
  }
};

INSTANTIATE_TEST_SUITE_P(Paths, Crc32cTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "Portable" : "Default";
                         });

// RFC 3720, appendix B.4.
TEST_P(Crc32cTest, MatchesRfc3720Vectors) {
  uint8_t buf[32];

  std::memset(buf, 0, sizeof(buf));
  EXPECT_EQ(Compute(buf, sizeof(buf)), 0x8a9136aau);

  std::memset(buf, 0xff, sizeof(buf));
  EXPECT_EQ(Compute(buf, sizeof(buf)), 0x62a8ab43u);

  for (int i = 0; i < 32; ++i) buf[i] = static_cast<uint8_t>(i);
  EXPECT_EQ(Compute(buf, sizeof(buf)), 0x46dd794eu);

  for (int i = 0; i < 32; ++i) buf[i] = static_cast<uint8_t>(31 - i);
  EXPECT_EQ(Compute(buf, sizeof(buf)), 0x113fdb5cu);

  const uint8_t iscsi_read_pdu[48] = {
      0x01, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
      0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00,
      0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x18, 0x28, 0x00, 0x00, 0x00,
      0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
  };
  EXPECT_EQ(Compute(iscsi_read_pdu, sizeof(iscsi_read_pdu)), 0xd9963a56u);
}

TEST_P(Crc32cTest, MatchesCheckValue) {
  EXPECT_EQ(Compute("123456789", 9), 0xe3069283u);
}

TEST_P(Crc32cTest, EmptyInputIsZero) {
  EXPECT_EQ(Compute("", 0), 0u);
  EXPECT_EQ(Compute(nullptr, 0), 0u);
}

TEST_P(Crc32cTest, DifferentInputsGiveDifferentValues) {
  EXPECT_NE(Compute("a", 1), Compute("foo", 3));
}

TEST_P(Crc32cTest, ExtendComposes) {
  const std::string whole = "hello world, this is a longer string of bytes";
  const uint32_t expected = Compute(whole.data(), whole.size());
  for (size_t split = 0; split <= whole.size(); ++split) {
    const uint32_t head = ComputeExtend(0, whole.substr(0, split));
    EXPECT_EQ(ComputeExtend(head, whole.substr(split)), expected)
        << "split at " << split;
  }
}

TEST(Crc32cPathsTest, HardwareAndPortableAgreeOnRandomBuffers) {
  std::mt19937 rng(301);
  std::vector<char> buf(1024 + 16);
  for (char& c : buf) c = static_cast<char>(rng());
  // Every length at every start alignment within an 8-byte word, so the
  // hardware path's byte prologue and epilogue are all exercised.
  for (size_t start = 0; start < 8; ++start) {
    for (size_t n = 0; n <= 1024; ++n) {
      const char* p = buf.data() + start;
      ASSERT_EQ(Extend(0, p, n), ExtendPortable(0, p, n))
          << "start " << start << " length " << n;
      ASSERT_EQ(Extend(0xdeadbeefu, p, n), ExtendPortable(0xdeadbeefu, p, n))
          << "start " << start << " length " << n;
    }
  }
}

TEST(Crc32cPathsTest, ReportsAcceleration) {
  // Nothing to assert portably; record which path this machine tested.
  RecordProperty("hardware_accelerated", IsHardwareAccelerated() ? 1 : 0);
#if defined(__x86_64__)
  if (__builtin_cpu_supports("sse4.2")) {
    EXPECT_TRUE(IsHardwareAccelerated());
  }
#endif
}

TEST(Crc32cMaskTest, MaskIsNotIdentityAndUnmaskInvertsIt) {
  const uint32_t crc = Value("foo", 3);
  EXPECT_NE(Mask(crc), crc);
  EXPECT_NE(Mask(Mask(crc)), crc);
  EXPECT_EQ(Unmask(Mask(crc)), crc);
  EXPECT_EQ(Unmask(Unmask(Mask(Mask(crc)))), crc);

  std::mt19937 rng(7);
  for (int i = 0; i < 10000; ++i) {
    const uint32_t x = static_cast<uint32_t>(rng());
    ASSERT_EQ(Unmask(Mask(x)), x);
  }
  EXPECT_EQ(Unmask(Mask(0)), 0u);
  EXPECT_EQ(Unmask(Mask(0xffffffffu)), 0xffffffffu);
}

}  // namespace
}  // namespace taskwal::wal::crc32c
