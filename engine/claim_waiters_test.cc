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
  // One of the two "x" waiters (the oldest sleeping one), not both.
  waiters.NotifyReady("x", 1);
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (!a.WokenWithin(absl::ZeroDuration()) &&
         !b.WokenWithin(absl::ZeroDuration()) && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  WaitingThread& first = a.WokenWithin(absl::ZeroDuration()) ? a : b;
  WaitingThread& second = &first == &a ? b : a;
  EXPECT_TRUE(first.WokenWithin(absl::ZeroDuration()));
  EXPECT_FALSE(second.WokenWithin(absl::Milliseconds(100)));
  EXPECT_FALSE(other.WokenWithin(absl::Milliseconds(10)));
  waiters.NotifyReady("x", 1);
  EXPECT_TRUE(second.WokenWithin(absl::Seconds(10)));
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
  waiters.NotifyReady("x", 1);
  EXPECT_TRUE(typed.WokenWithin(absl::Seconds(10)));
}

// A wake-up or a re-plan that reaches a waiter before it sleeps is not
// lost: its next Wait returns at once.
TEST(ClaimWaitersTest, NotificationBeforeWaitIsKept) {
  ClaimWaiters waiters;
  ClaimWaiters::Waiter w("x");
  waiters.Add(&w);
  waiters.NotifyReady("x", 1);
  absl::Time start = absl::Now();
  waiters.Wait(&w, start + absl::Seconds(30));
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
  waiters.NotifyTimekeeper();  // w is the oldest: the timekeeper.
  start = absl::Now();
  waiters.Wait(&w, start + absl::Seconds(30));
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
  waiters.Remove(&w);
}

// When the timekeeper leaves, the next oldest waiter becomes it and is
// told to re-plan (even if it decided how long to sleep before that).
TEST(ClaimWaitersTest, NextTimekeeperIsToldToReplan) {
  ClaimWaiters waiters;
  ClaimWaiters::Waiter first(""), second("");
  waiters.Add(&first);
  waiters.Add(&second);
  EXPECT_FALSE(waiters.IsTimekeeper(&second));
  waiters.Remove(&first);
  const absl::Time start = absl::Now();
  waiters.Wait(&second, start + absl::Seconds(30));
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
  EXPECT_TRUE(waiters.IsTimekeeper(&second));
  waiters.Remove(&second);
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
// the next waiter that wants that task's type (not its own: an any-type
// waiter may leave with a wake-up for a typed task). An anchor waiter stays
// the oldest, so nobody is woken for being the new timekeeper.
TEST(ClaimWaitersTest, UnusedWakeUpIsPassedOn) {
  ClaimWaiters waiters;
  ClaimWaiters::Waiter anchor("z"), leaving("x");
  waiters.Add(&anchor);
  waiters.Add(&leaving);
  waiters.NotifyReady("x", 1);  // Goes to `leaving`, the only taker.
  WaitingThread next(&waiters, "x");
  EXPECT_FALSE(next.WokenWithin(absl::Milliseconds(100)));
  waiters.Remove(&leaving);
  EXPECT_TRUE(next.WokenWithin(absl::Seconds(10)));
  waiters.Remove(&anchor);
}

TEST(ClaimWaitersTest, UnusedWakeUpGoesToAWaiterOfTheTasksType) {
  ClaimWaiters waiters;
  ClaimWaiters::Waiter anchor("z"), leaving("");
  waiters.Add(&anchor);
  waiters.Add(&leaving);
  waiters.NotifyReady("x", 1);  // `leaving` wants any type.
  WaitingThread other_type(&waiters, "y");
  WaitingThread same_type(&waiters, "x");
  waiters.Remove(&leaving);
  EXPECT_TRUE(same_type.WokenWithin(absl::Seconds(10)));
  EXPECT_FALSE(other_type.WokenWithin(absl::Milliseconds(100)));
  waiters.Close();
  waiters.Remove(&anchor);
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
