// `taskwal --nats=URLS --cluster=NAME`: the commands against a cluster on
// NATS JetStream (a real nats-server that the test starts on a free port),
// led by an engine and a JetStreamServer in this process, which the test
// also holds to change and check the state directly.
#include <nats/nats.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "taskwal/engine.h"
#include "taskwal/jetstream.h"
#include "tests/nats_cluster.h"
#include "tools/taskwal_cli.h"
#include "tools/testing_cli.h"
#include "tools/testing_json.h"

namespace taskwal::tools {
namespace {

using ::taskwal::testing::NatsCluster;
using ::taskwal::tools::testing_cli::CliResult;
using ::taskwal::tools::testing_cli::RunTaskwal;
using ::taskwal::tools::testing_cli::Spec;
using ::taskwal::tools::testing_json::JsonValue;
using ::taskwal::tools::testing_json::ParseJson;
using ::testing::HasSubstr;

class TaskwalCliNatsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    absl::StatusOr<std::unique_ptr<NatsCluster>> cluster =
        NatsCluster::Start(1, absl::StrCat(::testing::TempDir(), "/nats"));
    ASSERT_TRUE(cluster.ok()) << cluster.status();
    nats_ = cluster->release();
  }
  static void TearDownTestSuite() {
    delete nats_;
    nats_ = nullptr;
    nats_CloseAndWait(5000);
  }

  void TearDown() override {
    for (auto& engine : engines_) engine->Close().IgnoreError();
    servers_.clear();
    engines_.clear();
  }

  // Leads and serves the cluster `name` of `shards` shards here, one
  // partition each so that ids are 1, 2, 3, ... in each.
  void Serve(const std::string& name, int shards = 1) {
    JetStreamOptions js;
    js.servers = nats_->urls();
    js.cluster = name;
    js.replicas = 1;
    js.shards = shards;
    EngineOptions options;
    options.partitions = 1;
    options.maintenance_interval = absl::ZeroDuration();
    for (int s = 0; s < shards; ++s) {
      const JetStreamOptions shard = JetStreamShard(js, s);
      absl::StatusOr<std::unique_ptr<Engine>> engine =
          OpenJetStreamEngine(options, shard);
      ASSERT_TRUE(engine.ok()) << engine.status();
      absl::StatusOr<std::unique_ptr<JetStreamServer>> server =
          JetStreamServer::Start(engine->get(), shard,
                                 JetStreamServer::Options());
      ASSERT_TRUE(server.ok()) << server.status();
      engines_.push_back(*std::move(engine));
      servers_.push_back(*std::move(server));
    }
  }

  // Runs with --nats and --cluster (and --shards) in front.
  static CliResult RunOn(const std::string& cluster,
                         std::vector<std::string> args, int shards = 0) {
    args.insert(args.begin(), absl::StrCat("--cluster=", cluster));
    args.insert(args.begin(), absl::StrCat("--nats=", nats_->urls()));
    if (shards != 0)
      args.insert(args.begin(), absl::StrCat("--shards=", shards));
    return RunTaskwal(std::move(args));
  }

  static NatsCluster* nats_;
  std::vector<std::unique_ptr<Engine>> engines_;
  std::vector<std::unique_ptr<JetStreamServer>> servers_;
};

NatsCluster* TaskwalCliNatsTest::nats_ = nullptr;

TEST_F(TaskwalCliNatsTest, CommandsActThroughTheClustersLeader) {
  Serve("cli");
  Engine& e = *engines_[0];
  ASSERT_EQ(e.Submit(Spec("order-1", "order"))->task_id, 1u);
  ASSERT_EQ(e.Submit(Spec("evil\x1b[2J\xe2\x80\xae", "mail\n"))->task_id, 2u);
  ASSERT_EQ(e.Submit(Spec("order-2", "order", 1))->task_id, 3u);
  absl::StatusOr<ClaimedTask> c = e.Claim(3, "w", absl::Hours(1));
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(e.Fail(c->claim, "card\tdeclined").ok());

  CliResult r = RunOn("cli", {"stats"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_THAT(r.out, HasSubstr("tasks: 3\n"));
  EXPECT_THAT(r.out, HasSubstr("  failed: 1\n"));
  r = RunOn("cli", {"get", "2"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  // Escaped: no control character reaches the terminal.
  EXPECT_THAT(r.out, HasSubstr(R"("evil\x1b[2J\u202e")"));
  EXPECT_THAT(r.out, HasSubstr(R"("mail\n")"));
  r = RunOn("cli", {"--json", "get", "--key=order-2"});
  ASSERT_EQ(r.code, kExitOk) << r.out;
  std::optional<JsonValue> json = ParseJson(r.out);
  ASSERT_TRUE(json.has_value()) << r.out;
  ASSERT_NE(json->Find("status"), nullptr);
  EXPECT_EQ(json->Find("status")->string, "FAILED");
  r = RunOn("cli", {"list", "--status=failed"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_THAT(r.out, HasSubstr("order-2"));
  EXPECT_THAT(r.out, ::testing::Not(HasSubstr("order-1")));

  // Changes go through the leader's engine.
  r = RunOn("cli", {"retry", "3"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_EQ(r.out, "task 3 retried\n");
  EXPECT_EQ(e.Get(3)->status(), PENDING);
  r = RunOn("cli", {"submit", "--key=new", "--type=mail", "--payload=hi"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_EQ(r.out, "task 4 submitted\n");
  EXPECT_EQ(e.Get(4)->payload(), "hi");
  r = RunOn("cli", {"cancel", "4"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_EQ(e.Get(4)->status(), CANCELLED);
  r = RunOn("cli", {"pause", "order"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_EQ(e.PausedTypes()->size(), 1u);
  r = RunOn("cli", {"get", "99"});
  EXPECT_EQ(r.code, kExitFailed);
  EXPECT_THAT(r.err, HasSubstr("NOT_FOUND"));
}

TEST_F(TaskwalCliNatsTest, ShardsAddUpAndMistakesAreRefused) {
  Serve("clishards", 2);
  ASSERT_TRUE(engines_[0]->Submit(Spec("a", "t")).ok());
  ASSERT_TRUE(engines_[1]->Submit(Spec("b", "t")).ok());
  ASSERT_TRUE(engines_[1]->Submit(Spec("c", "t")).ok());
  CliResult r = RunOn("clishards", {"stats"}, 2);
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_THAT(r.out, HasSubstr("tasks: 3\n"));
  // Another shard count, another name: refused before any call.
  r = RunOn("clishards", {"stats"}, 3);
  EXPECT_EQ(r.code, kExitFailed);
  EXPECT_THAT(r.err, HasSubstr("not 3"));
  r = RunOn("clishards", {"stats"});
  EXPECT_EQ(r.code, kExitFailed);
  EXPECT_THAT(r.err, HasSubstr("no taskwal cluster named clishards"));
  r = RunOn("nosuch", {"--json", "stats"});
  EXPECT_EQ(r.code, kExitFailed);
  EXPECT_THAT(r.out, HasSubstr("\"code\":\"NOT_FOUND\""));
  // Usage errors change nothing and send nothing.
  const std::string nats = absl::StrCat("--nats=", nats_->urls());
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{
           {nats, "stats"},
           {"--nats=", "--cluster=x", "stats"},
           {nats, "--cluster=clishards", "--data_dir=/tmp/x", "stats"},
           {nats, "--cluster=clishards", "--server=http://127.0.0.1:1",
            "stats"},
           {nats, "--cluster=clishards", "verify"},
           {nats, "--cluster=clishards", "--token=t", "stats"},
           {nats, "--cluster=clishards", "--shards=0", "stats"},
           {nats, "--cluster=clishards", "--shards=65", "stats"},
           {nats, "--cluster=bad name", "stats"},
           {"--cluster=clishards", "--data_dir=/tmp/x", "stats"},
       }) {
    r = RunTaskwal(args);
    EXPECT_EQ(r.code, kExitUsage) << absl::StrJoin(args, " ") << "\n" << r.err;
  }
  EXPECT_EQ(engines_[0]->Stats()->tasks + engines_[1]->Stats()->tasks, 3u);
}

}  // namespace
}  // namespace taskwal::tools
