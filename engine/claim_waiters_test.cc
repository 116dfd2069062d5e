#include "engine/claim_waiters.h"

#include <atomic>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace taskwal::engine {
namespace {

// A waiting thread: Add, then Wait until woken (or a long deadline), and
// note whether it was woken.
class WaitingThread {
 public:
  WaitingThread(ClaimWaiters* waiters, absl::string_view type)
      : waiters_(waiters), waiter_(type) {
    waiters_->Add(&waiter_);
    thread_ = std::thread([this] {
      waiters_->Wait(&waiter_, absl::Now() + absl::Seconds(30));
      woken_.Notify();
    });
  }
  ~WaitingThread() {
    thread_.join();
    waiters_->Remove(&waiter_);
  }
  bool WokenWithin(absl::Duration d) {
    return woken_.WaitForNotificationWithTimeout(d);
  }
  ClaimWaiters::Waiter* waiter() { return &waiter_; }

 private:
  ClaimWaiters* const waiters_;
  ClaimWaiters::Waiter waiter_;
  absl::Notification woken_;
  std::thread thread_;
};

TEST(ClaimWaitersTest, OneReadyTaskWakesOneWaiterOfItsType) {
  ClaimWaiters waiters;
  WaitingThread a(&waiters, "x");
  WaitingThread b(&waiters, "x");
  WaitingThread other(&waiters, "y");
  waiters.NotifyReady("x", 1);
  EXPECT_TRUE(a.WokenWithin(absl::Seconds(10)));  // The oldest first.
  EXPECT_FALSE(b.WokenWithin(absl::Milliseconds(100)));
  EXPECT_FALSE(other.WokenWithin(absl::Milliseconds(10)));
  waiters.NotifyReady("x", 1);
  EXPECT_TRUE(b.WokenWithin(absl::Seconds(10)));
  EXPECT_FALSE(other.WokenWithin(absl::Milliseconds(10)));
  waiters.Close();
  EXPECT_TRUE(other.WokenWithin(absl::Seconds(10)));
}

TEST(ClaimWaitersTest, AnyTypeWaiterTakesEveryType) {
  ClaimWaiters waiters;
  WaitingThread typed(&waiters, "x");
  WaitingThread any(&waiters, "");
  waiters.NotifyReady("z", 1);
  EXPECT_TRUE(any.WokenWithin(absl::Seconds(10)));
  EXPECT_FALSE(typed.WokenWithin(absl::Milliseconds(100)));
  waiters.NotifyReadyAnyType(1);
  EXPECT_TRUE(typed.WokenWithin(absl::Seconds(10)));
}

TEST(ClaimWaitersTest, TimekeeperIsTheOldestAndPassesOn) {
  ClaimWaiters waiters;
  ClaimWaiters::Waiter first(""), second("");
  waiters.Add(&first);
  waiters.Add(&second);
  EXPECT_TRUE(waiters.IsTimekeeper(&first));
  EXPECT_FALSE(waiters.IsTimekeeper(&second));
  waiters.Remove(&first);
  EXPECT_TRUE(waiters.IsTimekeeper(&second));
  waiters.Remove(&second);
}

// A waiter that was woken but leaves without looking hands the wake-up to
// the next waiter that wants the same type.
TEST(ClaimWaitersTest, UnusedWakeUpIsPassedOn) {
  ClaimWaiters waiters;
  ClaimWaiters::Waiter leaving("x");
  waiters.Add(&leaving);
  WaitingThread next(&waiters, "x");
  waiters.NotifyReady("x", 1);  // Goes to `leaving`, the oldest.
  EXPECT_FALSE(next.WokenWithin(absl::Milliseconds(100)));
  waiters.Remove(&leaving);
  EXPECT_TRUE(next.WokenWithin(absl::Seconds(10)));
}

TEST(ClaimWaitersTest, WaitReturnsAtItsDeadline) {
  ClaimWaiters waiters;
  ClaimWaiters::Waiter w("");
  waiters.Add(&w);
  const absl::Time start = absl::Now();
  waiters.Wait(&w, start + absl::Milliseconds(20));
  EXPECT_GE(absl::Now(), start + absl::Milliseconds(20));
  waiters.Remove(&w);
}

}  // namespace
}  // namespace taskwal::engine
