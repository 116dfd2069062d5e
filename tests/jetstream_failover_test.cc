// Failover between real processes on a real 3-server NATS cluster: node
// processes (jetstream_node_child) wait for the cluster's lease; the one
// leading runs a load and is killed with SIGKILL, again and again, and a
// standby takes over each time. Afterwards every acknowledged submit and
// completion is there, and no completed task ran again. A leader paused
// with SIGSTOP past its lease, then resumed, acknowledges nothing that is
// lost.

#include <nats/nats.h>
#include <signal.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "taskwal/engine.h"
#include "taskwal/jetstream.h"
#include "tests/child_process.h"
#include "tests/nats_cluster.h"
#include "wire/sharded_engine.h"

namespace taskwal {
namespace {

using test_util::ChildProcess;

constexpr int kLeaseTtlMs = 1000;
// Ends a wait that would otherwise hang the test; never asserted as timing.
constexpr absl::Duration kBound = absl::Seconds(90);

// What the nodes said, in the order the test read it.
struct Oracle {
  std::map<std::string, uint64_t> id_by_key;  // Acknowledged submits.
  // Acknowledged completions: the attempt that completed each task.
  std::map<std::string, uint32_t> completed;
  int runs_after_completion = 0;
  std::vector<std::string> problems;

  void Take(const std::string& node, const std::string& line) {
    const std::vector<std::string> f =
        absl::StrSplit(line, absl::MaxSplits(' ', 2));
    if (f[0] == "S" && f.size() == 3) {
      uint64_t id = 0;
      if (!absl::SimpleAtoi(f[2], &id)) problems.push_back(line);
      auto [it, inserted] = id_by_key.emplace(f[1], id);
      if (!inserted && it->second != id) {
        problems.push_back(absl::StrCat("key ", f[1], " names tasks ",
                                        it->second, " and ", id));
      }
    } else if (f[0] == "R" && f.size() == 3) {
      if (completed.count(f[1]) != 0) {
        ++runs_after_completion;
        problems.push_back(
            absl::StrCat(node, " ran ", f[1], " after it was completed"));
      }
    } else if (f[0] == "C" && f.size() == 3) {
      uint32_t attempt = 0;
      if (!absl::SimpleAtoi(f[2], &attempt)) problems.push_back(line);
      auto [it, inserted] = completed.emplace(f[1], attempt);
      if (!inserted && it->second != attempt) {
        problems.push_back(absl::StrCat(f[1], " completed by attempts ",
                                        it->second, " and ", attempt));
      }
    }
  }
};

// A child process: a node (jetstream_node_child, which runs its own load,
// or taskwal_node, which serves clients) or a client
// (jetstream_client_child).
class Node {
 public:
  Node(std::string name, const std::vector<std::string>& args)
      : name_(std::move(name)) {
    status_ = child_.Start(args);
  }
  const std::string& name() const { return name_; }
  absl::Status status() const { return status_; }
  ChildProcess& child() { return child_; }

  // Reads for a moment; feeds the oracle. Returns false once stdout closed.
  bool Poll(Oracle& oracle, absl::Duration d) {
    const bool open = child_.ReadFor(d);
    for (const std::string& line : child_.TakeLines()) {
      if (line.empty()) continue;
      if (absl::StartsWith(line, "LEADING") || absl::StartsWith(line, "L ")) {
        leading_ = true;
        led_at_ = absl::Now();
        int shard = 0;
        if (absl::StartsWith(line, "LEADING ")) {
          EXPECT_TRUE(absl::SimpleAtoi(line.substr(8), &shard)) << line;
        }
        led_.insert(shard);
      } else if (absl::StartsWith(line, "STOPPED")) {
        leading_ = false;
        int shard = 0;
        if (absl::StartsWith(line, "STOPPED ")) {
          EXPECT_TRUE(absl::SimpleAtoi(line.substr(8), &shard)) << line;
        }
        led_.erase(shard);
      } else if (absl::StartsWith(line, "FAILED ")) {
        int shard = 0;
        EXPECT_TRUE(absl::SimpleAtoi(line.substr(7), &shard)) << line;
        failed_.insert(shard);
      } else if (absl::StartsWith(line, "S ")) {
        ++acks_;
      } else if (absl::StartsWith(line, "D ") || absl::StartsWith(line, "X ")) {
        ended_ = line;
      }
      oracle.Take(name_, line);
    }
    return open;
  }
  bool leading() const { return leading_; }
  bool leads(int shard) const { return led_.count(shard) != 0; }
  bool failed(int shard) const { return failed_.count(shard) != 0; }
  absl::Time led_at() const { return led_at_; }
  int acks() const { return acks_; }
  const std::string& ended() const { return ended_; }

 private:
  const std::string name_;
  ChildProcess child_;
  absl::Status status_;
  bool leading_ = false;
  std::set<int> led_;     // Shards it leads.
  std::set<int> failed_;  // Shards it gave up on.
  absl::Time led_at_;
  int acks_ = 0;
  std::string ended_;
};

class JetStreamFailoverTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<testing::NatsCluster>> cluster =
        testing::NatsCluster::Start(
            3, absl::StrCat(::testing::TempDir(), "/nats-",
                            ::testing::UnitTest::GetInstance()
                                ->current_test_info()
                                ->name()));
    ASSERT_TRUE(cluster.ok()) << cluster.status();
    cluster_ = *std::move(cluster);
  }
  void TearDown() override {
    nodes_.clear();
    cluster_.reset();
  }

  // A node that runs its own load.
  Node* StartNode(const std::string& cluster) {
    const std::string name = absl::StrCat("node", nodes_.size());
    return Add(name,
               {test_util::RunfilePath("tests/jetstream_node_child"),
                cluster_->urls(), cluster, name, absl::StrCat(kLeaseTtlMs)});
  }

  // The real node program, serving clients.
  Node* StartServingNode(const std::string& cluster, int shards = 1,
                         const std::string& lead = "all") {
    const std::string name = absl::StrCat("node", nodes_.size());
    return Add(
        name,
        {test_util::RunfilePath("tools/taskwal_node"),
         absl::StrCat("--servers=", cluster_->urls()),
         absl::StrCat("--cluster=", cluster), absl::StrCat("--name=", name),
         absl::StrCat("--lease_ttl=", kLeaseTtlMs, "ms"),
         absl::StrCat("--shards=", shards), absl::StrCat("--lead=", lead),
         "--partitions=4", "--snapshot_every=2000"});
  }

  Node* StartClient(const std::string& cluster, int shards = 1) {
    const std::string name = absl::StrCat("client", nodes_.size());
    return Add(name, {test_util::RunfilePath("tests/jetstream_client_child"),
                      cluster_->urls(), cluster, name, absl::StrCat(shards)});
  }

  // The running node that leads `shard`, once one does (nullptr past
  // kBound).
  Node* WaitShardLeader(int shard, Node* except = nullptr) {
    const absl::Time deadline = absl::Now() + kBound;
    while (absl::Now() < deadline) {
      PollAll(absl::Milliseconds(10));
      for (auto& node : nodes_) {
        if (node.get() != except && node->child().running() &&
            node->leads(shard)) {
          return node.get();
        }
      }
    }
    return nullptr;
  }

  Node* Add(const std::string& name, const std::vector<std::string>& args) {
    nodes_.push_back(std::make_unique<Node>(name, args));
    EXPECT_TRUE(nodes_.back()->status().ok()) << nodes_.back()->status();
    return nodes_.back().get();
  }

  int TotalAcks() const {
    int acks = 0;
    for (const auto& node : nodes_) acks += node->acks();
    return acks;
  }

  void PollAll(absl::Duration each) {
    for (auto& node : nodes_) {
      if (node->child().running()) node->Poll(oracle_, each);
    }
  }

  // The running node that leads, once one does (nullptr past kBound).
  Node* WaitLeader(Node* except = nullptr) {
    const absl::Time deadline = absl::Now() + kBound;
    while (absl::Now() < deadline) {
      PollAll(absl::Milliseconds(10));
      for (auto& node : nodes_) {
        if (node.get() != except && node->child().running() &&
            node->leading()) {
          return node.get();
        }
      }
    }
    return nullptr;
  }

  void WaitAcks(Node* node, int acks) {
    const absl::Time deadline = absl::Now() + kBound;
    while (node->acks() < acks && node->ended().empty() &&
           absl::Now() < deadline) {
      PollAll(absl::Milliseconds(10));
    }
  }

  // Kills every node, then opens the engine (of each shard) here and
  // checks the oracle.
  void Verify(const std::string& cluster, int shards = 1) {
    for (auto& node : nodes_) {
      EXPECT_TRUE(node->child().Kill().ok() || !node->ended().empty())
          << node->name();
      node->Poll(oracle_, absl::ZeroDuration());
    }
    for (const std::string& p : oracle_.problems) ADD_FAILURE() << p;
    JetStreamOptions js;
    js.servers = cluster_->urls();
    js.cluster = cluster;
    js.shards = shards;
    EngineOptions options;
    options.maintenance_interval = absl::ZeroDuration();
    std::vector<std::unique_ptr<Engine>> engines;
    for (int s = 0; s < shards; ++s) {
      absl::StatusOr<std::unique_ptr<Engine>> engine =
          OpenJetStreamEngine(options, JetStreamShard(js, s));
      ASSERT_TRUE(engine.ok()) << engine.status();
      engines.push_back(*std::move(engine));
    }
    auto get = [&](const std::string& key) {
      const uint32_t s = wire::ShardOfKey(key, shards);
      absl::StatusOr<Task> task = engines[s]->GetByIdempotencyKey(key);
      if (task.ok() && shards > 1) task->set_id(task->id() * shards + s);
      return task;
    };
    for (const auto& [key, id] : oracle_.id_by_key) {
      absl::StatusOr<Task> task = get(key);
      ASSERT_TRUE(task.ok()) << "acknowledged submit lost: " << key;
      EXPECT_EQ(task->id(), id) << key;
    }
    for (const auto& [key, attempt] : oracle_.completed) {
      absl::StatusOr<Task> task = get(key);
      ASSERT_TRUE(task.ok()) << key;
      EXPECT_EQ(task->status(), COMPLETED)
          << "acknowledged completion lost: " << key;
      // Claimed again after it was completed (whichever process the test
      // happened to read first), the task would count more attempts.
      EXPECT_EQ(task->attempts(), attempt)
          << key << " was claimed again after its completion was acknowledged";
    }
    // Every task held: one per key, in its key's shard, and submitted by
    // a process of this test ("<name>-<worker>-<i>").
    std::set<std::string> names;
    for (const auto& node : nodes_) names.insert(node->name());
    std::set<std::string> keys;
    size_t held = 0;
    for (int s = 0; s < shards; ++s) {
      ListFilter filter;
      filter.limit = 10000;
      do {
        absl::StatusOr<ListPage> page = engines[s]->List(filter);
        ASSERT_TRUE(page.ok()) << page.status();
        for (const Task& task : page->tasks) {
          const std::string& key = task.idempotency_key();
          ++held;
          EXPECT_TRUE(keys.insert(key).second) << "two tasks of key " << key;
          EXPECT_EQ(wire::ShardOfKey(key, shards), static_cast<uint32_t>(s))
              << key << " is in shard " << s;
          EXPECT_EQ(names.count(key.substr(0, key.find('-'))), 1u)
              << "no process of the test submitted " << key;
        }
        filter.after_id = page->next_cursor;
      } while (filter.after_id != 0);
    }
    EXPECT_GE(held, oracle_.id_by_key.size());
    std::printf(
        "%zu acknowledged submits and %zu completions checked, %zu tasks "
        "held\n",
        oracle_.id_by_key.size(), oracle_.completed.size(), held);
  }

  std::unique_ptr<testing::NatsCluster> cluster_;
  std::vector<std::unique_ptr<Node>> nodes_;
  Oracle oracle_;
};

TEST_F(JetStreamFailoverTest, KillingTheLeaderAgainAndAgainLosesNothing) {
  constexpr int kCycles = 8;
  const std::string cluster = "failover";
  StartNode(cluster);
  StartNode(cluster);
  std::vector<absl::Duration> takeovers;
  absl::Time killed_at = absl::InfinitePast();
  for (int cycle = 0; cycle <= kCycles; ++cycle) {
    Node* leader = WaitLeader();
    ASSERT_NE(leader, nullptr) << "no node took over in cycle " << cycle;
    if (cycle > 0) takeovers.push_back(leader->led_at() - killed_at);
    if (cycle == kCycles) break;
    WaitAcks(leader, 50);
    ASSERT_GE(leader->acks(), 50)
        << leader->name() << " ended: " << leader->ended();
    killed_at = absl::Now();
    ASSERT_TRUE(leader->child().Kill().ok()) << leader->name();
    leader->Poll(oracle_, absl::ZeroDuration());
    StartNode(cluster);  // A new standby, so two are always running.
  }
  std::sort(takeovers.begin(), takeovers.end());
  std::printf(
      "takeover after a leader's kill -9, lease ttl %d ms, %zu "
      "cycles: median %s, max %s\n",
      kLeaseTtlMs, takeovers.size(),
      absl::FormatDuration(takeovers[takeovers.size() / 2]).c_str(),
      absl::FormatDuration(takeovers.back()).c_str());
  Verify(cluster);
}

// The real node program serving three client processes, its leader killed
// twenty times: the clients ride it out (their calls wait and try again),
// and every call acknowledged to them is there afterwards.
TEST_F(JetStreamFailoverTest, ClientsRideOutTwentyKillsOfTheLeadingNode) {
  constexpr int kCycles = 20;
  const std::string cluster = "served";
  StartServingNode(cluster);
  StartServingNode(cluster);
  Node* leader = WaitLeader();
  ASSERT_NE(leader, nullptr);
  for (int i = 0; i < 3; ++i) StartClient(cluster);
  std::vector<absl::Duration> takeovers;
  absl::Time killed_at;
  for (int cycle = 0; cycle < kCycles; ++cycle) {
    // Load gets through this leader.
    const int before = TotalAcks();
    const absl::Time deadline = absl::Now() + kBound;
    while (TotalAcks() < before + 30 && absl::Now() < deadline) {
      PollAll(absl::Milliseconds(10));
    }
    ASSERT_GE(TotalAcks(), before + 30) << "no progress in cycle " << cycle;
    killed_at = absl::Now();
    ASSERT_TRUE(leader->child().Kill().ok()) << leader->name();
    StartServingNode(cluster);
    leader = WaitLeader(/*except=*/leader);
    ASSERT_NE(leader, nullptr) << "no node took over in cycle " << cycle;
    takeovers.push_back(leader->led_at() - killed_at);
  }
  // And after the last one.
  const int before = TotalAcks();
  const absl::Time deadline = absl::Now() + kBound;
  while (TotalAcks() < before + 30 && absl::Now() < deadline) {
    PollAll(absl::Milliseconds(10));
  }
  EXPECT_GE(TotalAcks(), before + 30);
  std::sort(takeovers.begin(), takeovers.end());
  std::printf(
      "served cluster: takeover after kill -9 of the leading node, "
      "lease ttl %d ms, %zu cycles: median %s, max %s\n",
      kLeaseTtlMs, takeovers.size(),
      absl::FormatDuration(takeovers[takeovers.size() / 2]).c_str(),
      absl::FormatDuration(takeovers.back()).c_str());
  Verify(cluster);
}

// Two shards led by two different nodes, a third standing by for both:
// killing one shard's leader moves that shard to the standby while the
// other shard's leader goes on; clients of both shards lose nothing.
TEST_F(JetStreamFailoverTest, ShardsAreLedByDifferentNodes) {
  const std::string cluster = "sharded";
  Node* first = StartServingNode(cluster, 2, "0");
  Node* second = StartServingNode(cluster, 2, "1");
  ASSERT_EQ(WaitShardLeader(0), first);
  ASSERT_EQ(WaitShardLeader(1), second);
  Node* standby = StartServingNode(cluster, 2, "all");
  for (int i = 0; i < 2; ++i) StartClient(cluster, 2);
  const absl::Time deadline = absl::Now() + kBound;
  int before = TotalAcks();
  while (TotalAcks() < before + 50 && absl::Now() < deadline) {
    PollAll(absl::Milliseconds(10));
  }
  ASSERT_GE(TotalAcks(), before + 50);
  ASSERT_TRUE(first->child().Kill().ok());
  EXPECT_EQ(WaitShardLeader(0, /*except=*/first), standby);
  EXPECT_TRUE(second->leads(1)) << "shard 1 moved, though its leader lives";
  before = TotalAcks();
  while (TotalAcks() < before + 50 && absl::Now() < deadline) {
    PollAll(absl::Milliseconds(10));
  }
  EXPECT_GE(TotalAcks(), before + 50);
  EXPECT_TRUE(second->leads(1));
  Verify(cluster, 2);
}

// A shard whose stream is damaged stops on its own: the node goes on
// leading its other shards.
TEST_F(JetStreamFailoverTest, AShardThatCannotGoOnStopsAlone) {
  const std::string cluster = "damaged";
  Node* node = StartServingNode(cluster, 2, "all");
  ASSERT_EQ(WaitShardLeader(0), node);
  ASSERT_EQ(WaitShardLeader(1), node);
  // A message on shard 1's stream that names a writer but holds no frame:
  // the leader takes it for another writer's and steps down, then cannot
  // read the stream to stand by again.
  natsConnection* nc = nullptr;
  jsCtx* js = nullptr;
  natsMsg* msg = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  const std::string subject =
      absl::StrCat("taskwal.", cluster, "-1.log.forged");
  ASSERT_EQ(natsConnection_ConnectTo(&nc, cluster_->urls().c_str()), NATS_OK);
  ASSERT_EQ(natsConnection_JetStream(&js, nc, nullptr), NATS_OK);
  ASSERT_EQ(natsMsg_Create(&msg, subject.c_str(), nullptr, "junk", 4), NATS_OK);
  ASSERT_EQ(natsMsgHeader_Set(msg, "Taskwal-Writer", "forged"), NATS_OK);
  EXPECT_EQ(js_PublishMsg(nullptr, js, msg, nullptr, &jerr), NATS_OK);
  natsMsg_Destroy(msg);
  jsCtx_Destroy(js);
  natsConnection_Destroy(nc);

  JetStreamOptions options;
  options.servers = cluster_->urls();
  options.cluster = cluster;
  options.shards = 2;
  options.retry_for = absl::Seconds(2);
  absl::StatusOr<std::unique_ptr<Engine>> client =
      ConnectJetStreamEngine(options);
  ASSERT_TRUE(client.ok()) << client.status();
  // Keys of each shard.
  std::string key[2];
  for (int i = 0; key[0].empty() || key[1].empty(); ++i) {
    const std::string k = absl::StrCat("k", i);
    key[wire::ShardOfKey(k, 2)] = k;
  }
  TaskSpec spec;
  spec.idempotency_key = key[1];
  spec.type = "t";
  EXPECT_FALSE((*client)->Submit(spec).ok());  // Refused: it steps down.
  const absl::Time deadline = absl::Now() + kBound;
  while (!node->failed(1) && absl::Now() < deadline) {
    PollAll(absl::Milliseconds(10));
  }
  ASSERT_TRUE(node->failed(1));
  PollAll(absl::Milliseconds(500));
  EXPECT_TRUE(node->child().running());
  EXPECT_TRUE(node->leads(0));
  spec.idempotency_key = key[0];
  EXPECT_TRUE((*client)->Submit(spec).ok());
}

TEST_F(JetStreamFailoverTest, APausedLeaderComesBackDeposed) {
  const std::string cluster = "paused";
  StartNode(cluster);
  Node* old_leader = WaitLeader();
  ASSERT_NE(old_leader, nullptr);
  StartNode(cluster);
  WaitAcks(old_leader, 50);
  old_leader->child().Signal(SIGSTOP);
  // Its lease runs out; the standby takes over and works.
  Node* new_leader = WaitLeader(/*except=*/old_leader);
  ASSERT_NE(new_leader, nullptr);
  WaitAcks(new_leader, 50);
  old_leader->child().Signal(SIGCONT);
  // It finds out, from its lease or from its first refused append.
  const absl::Time deadline = absl::Now() + kBound;
  while (old_leader->ended().empty() && absl::Now() < deadline) {
    PollAll(absl::Milliseconds(10));
  }
  EXPECT_FALSE(old_leader->ended().empty());
  std::printf("the resumed leader said: %s\n", old_leader->ended().c_str());
  // The new leader was not disturbed.
  const int acks = new_leader->acks();
  WaitAcks(new_leader, acks + 50);
  EXPECT_TRUE(new_leader->ended().empty()) << new_leader->ended();
  Verify(cluster);
}

}  // namespace
}  // namespace taskwal
