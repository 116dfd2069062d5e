#include "engine/stored_options.h"

#include <string>

#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "taskwal/fault_injection_env.h"
#include "wal/data_dir.h"
#include "wal/format.h"
#include "wal/log_writer.h"
#include "wal/status_matchers.h"

namespace taskwal::engine {
namespace {

using ::taskwal::wal::IsOk;
using ::taskwal::wal::StatusIs;
using ::testing::HasSubstr;

constexpr char kDir[] = "/db";

// Options whose every data option differs from the default.
EngineOptions Owner() {
  EngineOptions o;
  o.max_idempotency_key_bytes = 17;
  o.max_type_bytes = 0;
  o.max_payload_bytes = 5 << 20;
  o.max_result_bytes = 3;
  o.max_error_bytes = 99;
  o.max_worker_id_bytes = 7;
  o.max_batch_size = 12;
  o.max_tasks = 1000;
  o.default_max_attempts = 40;
  o.max_max_attempts = 5000;
  o.default_lease = absl::Seconds(7);
  o.max_lease = absl::Hours(100);
  o.default_retry_policy.set_initial_backoff_micros(5);
  o.default_retry_policy.set_max_backoff_micros(50);
  o.default_retry_policy.set_multiplier(3);
  o.default_retry_policy.set_jitter(0);
  o.max_history_per_task = 1000;
  o.retention = absl::Hours(2);
  return o;
}

void ExpectSameDataOptions(const EngineOptions& a, const EngineOptions& b) {
  EXPECT_EQ(a.max_idempotency_key_bytes, b.max_idempotency_key_bytes);
  EXPECT_EQ(a.max_type_bytes, b.max_type_bytes);
  EXPECT_EQ(a.max_payload_bytes, b.max_payload_bytes);
  EXPECT_EQ(a.max_result_bytes, b.max_result_bytes);
  EXPECT_EQ(a.max_error_bytes, b.max_error_bytes);
  EXPECT_EQ(a.max_worker_id_bytes, b.max_worker_id_bytes);
  EXPECT_EQ(a.max_batch_size, b.max_batch_size);
  EXPECT_EQ(a.max_tasks, b.max_tasks);
  EXPECT_EQ(a.default_max_attempts, b.default_max_attempts);
  EXPECT_EQ(a.max_max_attempts, b.max_max_attempts);
  EXPECT_EQ(a.default_lease, b.default_lease);
  EXPECT_EQ(a.max_lease, b.max_lease);
  EXPECT_EQ(a.default_retry_policy.SerializeAsString(),
            b.default_retry_policy.SerializeAsString());
  EXPECT_EQ(a.max_history_per_task, b.max_history_per_task);
  EXPECT_EQ(a.retention, b.retention);
}

class StoredOptionsTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_THAT(env_.CreateDir(kDir), IsOk()); }
  std::string Path() const {
    return wal::JoinPath(kDir, wal::kOptionsFileName);
  }
  FaultInjectionEnv env_{1};
};

TEST_F(StoredOptionsTest, WithoutAFileTheGivenOptionsStay) {
  EngineOptions o = Owner();
  ASSERT_THAT(ApplyStoredOptions(&env_, kDir, &o), IsOk());
  ExpectSameDataOptions(o, Owner());
}

TEST_F(StoredOptionsTest, EveryDataOptionRoundTripsAndOthersStay) {
  ASSERT_THAT(StoreOptions(&env_, kDir, Owner()), IsOk());
  EngineOptions cli;
  cli.sync_mode = SyncMode::kNone;
  cli.segment_bytes = 8192;
  cli.partitions = 3;
  ASSERT_THAT(ApplyStoredOptions(&env_, kDir, &cli), IsOk());
  ExpectSameDataOptions(cli, Owner());
  // Not data options: the caller's.
  EXPECT_EQ(cli.sync_mode, SyncMode::kNone);
  EXPECT_EQ(cli.segment_bytes, 8192u);
  EXPECT_EQ(cli.partitions, 3u);
}

TEST_F(StoredOptionsTest, StoringTheSameOptionsWritesNothing) {
  ASSERT_THAT(StoreOptions(&env_, kDir, Owner()), IsOk());
  // A write would fail.
  env_.FailNextAppends(1);
  ASSERT_THAT(StoreOptions(&env_, kDir, Owner()), IsOk());
  // Other options replace them, durably, and a failed write leaves the old
  // ones.
  EngineOptions other = Owner();
  other.max_max_attempts = 6000;
  EXPECT_FALSE(StoreOptions(&env_, kDir, other).ok());
  env_.FailNextAppends(0);
  EngineOptions read;
  ASSERT_THAT(ApplyStoredOptions(&env_, kDir, &read), IsOk());
  ExpectSameDataOptions(read, Owner());
  ASSERT_THAT(StoreOptions(&env_, kDir, other), IsOk());
  env_.SimulatePowerLoss(PowerLossMode::kDropUnsynced);
  ASSERT_THAT(ApplyStoredOptions(&env_, kDir, &read), IsOk());
  EXPECT_EQ(read.max_max_attempts, 6000u);
}

TEST_F(StoredOptionsTest, DamagedFileIsDataLossAndTheNextStoreReplacesIt) {
  ASSERT_THAT(StoreOptions(&env_, kDir, Owner()), IsOk());
  std::string contents = *env_.ReadFileToString(Path());
  contents[contents.size() - 3] ^= 0x20;  // In the record's payload.
  {
    auto file = env_.NewWritableFile(Path());
    ASSERT_THAT(file.status(), IsOk());
    ASSERT_THAT((*file)->Append(contents), IsOk());
    ASSERT_THAT((*file)->Close(), IsOk());
  }
  EngineOptions o;
  const EngineOptions defaults;
  EXPECT_THAT(ApplyStoredOptions(&env_, kDir, &o),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("OPTIONS")));
  ExpectSameDataOptions(o, defaults);  // Nothing applied.
  ASSERT_THAT(StoreOptions(&env_, kDir, Owner()), IsOk());
  ASSERT_THAT(ApplyStoredOptions(&env_, kDir, &o), IsOk());
  ExpectSameDataOptions(o, Owner());
}

TEST_F(StoredOptionsTest, AFileOfAnotherKindIsDataLoss) {
  // META's magic where OPTIONS' belongs.
  ASSERT_THAT(wal::WriteFileDurably(&env_, kDir, wal::kOptionsFileName,
                                    wal::EncodeFileHeader(wal::kMetaMagic, 0)),
              IsOk());
  EngineOptions o;
  EXPECT_THAT(ApplyStoredOptions(&env_, kDir, &o),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("OPTIONS")));
}

// A file from a version that stored fewer options sets only those.
TEST_F(StoredOptionsTest, AbsentFieldsLeaveTheCallersValues) {
  StoredOptions partial;
  partial.set_max_max_attempts(5000);
  partial.set_max_type_bytes(0);  // Present although 0.
  EngineOptions o = Owner();
  o.max_max_attempts = 10;
  ApplyStoredOptions(partial, &o);
  EXPECT_EQ(o.max_max_attempts, 5000u);
  EXPECT_EQ(o.max_type_bytes, 0u);
  EXPECT_EQ(o.max_history_per_task, Owner().max_history_per_task);
  EXPECT_EQ(o.retention, Owner().retention);
}

}  // namespace
}  // namespace taskwal::engine
