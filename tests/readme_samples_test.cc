// The README's C++ samples compile (the build of this test is the check)
// and the in-memory ones run: see tests/readme_samples.awk.
#include "absl/status/status.h"
#include "gtest/gtest.h"

int ReadmeSampleCount();
absl::Status ReadmeSample2();

namespace {

TEST(ReadmeSamplesTest, SamplesCompileAndTheCrashTestSampleRuns) {
  EXPECT_GE(ReadmeSampleCount(), 2);
  // The crash-recovery sample uses only FaultInjectionEnv: safe to run.
  absl::Status s = ReadmeSample2();
  EXPECT_TRUE(s.ok()) << s;
}

}  // namespace
