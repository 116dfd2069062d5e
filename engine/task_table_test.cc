#include "engine/task_table.h"

#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace taskwal::engine {
namespace {

std::unique_ptr<TaskEntry> Entry(uint64_t id, TaskStatus status,
                                 const std::string& type = "",
                                 const std::string& key = "") {
  Task t;
  t.set_id(id);
  t.set_status(status);
  t.set_type(type);
  t.set_idempotency_key(key);
  return TaskEntry::Create(t, 0);
}

class TaskTableTest : public ::testing::Test {
 protected:
  TaskTable table_{3};
};

TEST_F(TaskTableTest, InsertGetErase) {
  EXPECT_TRUE(table_.Insert(Entry(5, PENDING)));
  EXPECT_FALSE(table_.Insert(Entry(5, PENDING)));
  ASSERT_TRUE(table_.GetTask(5).has_value());
  EXPECT_EQ(table_.GetTask(5)->id(), 5u);
  EXPECT_FALSE(table_.GetTask(6).has_value());
  EXPECT_EQ(table_.size(), 1u);
  EXPECT_TRUE(table_.Erase(5));
  EXPECT_FALSE(table_.Erase(5));
  EXPECT_FALSE(table_.Contains(5));
}

TEST_F(TaskTableTest, KeyIndexIsUniqueUntilErased) {
  std::unique_ptr<TaskEntry> first = Entry(1, PENDING, "", "order-1");
  std::unique_ptr<TaskEntry> second = Entry(2, PENDING, "", "order-1");
  EXPECT_TRUE(table_.InsertKey(first.get()));
  EXPECT_FALSE(table_.InsertKey(second.get()));
  EXPECT_EQ(table_.LookupKey("order-1"), 1u);
  EXPECT_FALSE(table_.LookupKey("order-2").has_value());
  EXPECT_TRUE(table_.EraseKey("order-1"));
  EXPECT_FALSE(table_.EraseKey("order-1"));
  EXPECT_FALSE(table_.LookupKey("order-1").has_value());
  EXPECT_TRUE(table_.InsertKey(second.get()));
  EXPECT_EQ(table_.LookupKey("order-1"), 2u);
  EXPECT_TRUE(table_.EraseKey("order-1"));
}

// The index points at keys inside entries; many keys across shards, looked
// up by a copy of the key (not the entry's own bytes), stay findable
// through the index's growth.
TEST_F(TaskTableTest, KeyIndexFindsManyKeysByValue) {
  std::vector<std::unique_ptr<TaskEntry>> entries;
  for (uint64_t id = 1; id <= 5000; ++id) {
    entries.push_back(Entry(id, PENDING, "", "key-" + std::to_string(id)));
    ASSERT_TRUE(table_.InsertKey(entries.back().get()));
  }
  for (uint64_t id = 1; id <= 5000; ++id) {
    ASSERT_EQ(table_.LookupKey("key-" + std::to_string(id)), id);
  }
  for (uint64_t id = 1; id <= 5000; id += 2) {
    ASSERT_TRUE(table_.EraseKey("key-" + std::to_string(id)));
  }
  for (uint64_t id = 1; id <= 5000; ++id) {
    ASSERT_EQ(table_.LookupKey("key-" + std::to_string(id)).has_value(),
              id % 2 == 0);
  }
  for (uint64_t id = 2; id <= 5000; id += 2) {
    table_.EraseKey("key-" + std::to_string(id));
  }
}

TEST_F(TaskTableTest, MutateKeepsStatusIndexInStep) {
  for (uint64_t id = 1; id <= 10; ++id) table_.Insert(Entry(id, PENDING));
  EXPECT_TRUE(table_.Mutate(4, [](TaskEntry& e) { e.state.status = CLAIMED; }));
  EXPECT_FALSE(table_.Mutate(40, [](TaskEntry&) {}));
  EXPECT_EQ(table_.ListIds(CLAIMED, "", 0, 10), std::vector<uint64_t>{4});
  EXPECT_EQ(table_.ListIds(PENDING, "", 0, 100).size(), 9u);
}

TEST_F(TaskTableTest, ListIdsIsOrderedFilteredAndResumable) {
  for (uint64_t id = 1; id <= 20; ++id) {
    table_.Insert(Entry(id, id % 2 ? PENDING : COMPLETED, id % 3 ? "a" : "b"));
  }
  EXPECT_EQ(table_.ListIds(std::nullopt, "", 0, 5),
            (std::vector<uint64_t>{1, 2, 3, 4, 5}));
  EXPECT_EQ(table_.ListIds(std::nullopt, "", 5, 3),
            (std::vector<uint64_t>{6, 7, 8}));
  EXPECT_EQ(table_.ListIds(PENDING, "b", 0, 10),
            (std::vector<uint64_t>{3, 9, 15}));
  EXPECT_TRUE(table_.ListIds(COMPLETED, "", 20, 10).empty());
}

}  // namespace
}  // namespace taskwal::engine
