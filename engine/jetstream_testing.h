#ifndef TASKWAL_ENGINE_JETSTREAM_TESTING_H_
#define TASKWAL_ENGINE_JETSTREAM_TESTING_H_

// Hooks for tests of the JetStream mode; not for production use.

#include <cstdint>

#include "taskwal/jetstream.h"

namespace taskwal::engine::jetstream {

// Pauses (true) or resumes (false) a standby's reading of the stream as a
// lost subscription would: pausing stops the standby's reader thread and
// drops its subscription (with what it had buffered); resuming subscribes
// again from where it had read to. Lets a test purge the stream under a
// standby. REQUIRES: standby came from JetStreamStandby::Start and was not
// promoted; calls alternate, starting with true.
void SetStandbyPausedForTesting(JetStreamStandby& standby, bool paused);

// Whether the standby's reader found that the stream was purged past where
// it had read (it will start again from the newest snapshot when promoted).
bool StandbyFellBehindForTesting(JetStreamStandby& standby);

// While one lives, for every journal of this process: the next
// acknowledgement that arrives is dropped, as if lost on the way, so the
// journal's publisher finds the message unanswered after ack_timeout and
// reads the stream to resync; the next `stale_reads` of those reads see the
// stream `behind` messages shorter than it is, as a stream leader just
// elected and still applying its log reports it. The destructor clears
// what was not used. REQUIRES: at most one at a time.
class LostJournalReplyForTesting {
 public:
  LostJournalReplyForTesting(int stale_reads, uint64_t behind);
  ~LostJournalReplyForTesting();
  // Whether a reply was dropped, and how many stale reads are left.
  bool reply_dropped() const;
  int stale_reads_left() const;
  LostJournalReplyForTesting(const LostJournalReplyForTesting&) = delete;
  LostJournalReplyForTesting& operator=(const LostJournalReplyForTesting&) =
      delete;
};

// While one lives, for every lease of this process: the next `renewals`
// renewals are answered as JetStream refusing them (NATS_ERR) without being
// sent, while the key stays as it was (as when the bucket's stream is
// electing a leader). REQUIRES: at most one at a time.
class RefusedLeaseRenewalsForTesting {
 public:
  explicit RefusedLeaseRenewalsForTesting(int renewals);
  ~RefusedLeaseRenewalsForTesting();
  int left() const;  // Renewals still to refuse.
  RefusedLeaseRenewalsForTesting(const RefusedLeaseRenewalsForTesting&) =
      delete;
  RefusedLeaseRenewalsForTesting& operator=(
      const RefusedLeaseRenewalsForTesting&) = delete;
};

}  // namespace taskwal::engine::jetstream

#endif  // TASKWAL_ENGINE_JETSTREAM_TESTING_H_
