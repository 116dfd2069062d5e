#include "engine/task_table.h"

#include <memory>

#include "gtest/gtest.h"

namespace taskwal::engine {
namespace {

std::unique_ptr<TaskEntry> Entry(uint64_t id, TaskStatus status,
                                 const std::string& type = "") {
  auto e = std::make_unique<TaskEntry>();
  e->task.set_id(id);
  e->task.set_status(status);
  e->task.set_type(type);
  return e;
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
  EXPECT_TRUE(table_.InsertKey("order-1", 1));
  EXPECT_FALSE(table_.InsertKey("order-1", 2));
  EXPECT_EQ(table_.LookupKey("order-1"), 1u);
  EXPECT_TRUE(table_.EraseKey("order-1"));
  EXPECT_FALSE(table_.LookupKey("order-1").has_value());
  EXPECT_TRUE(table_.InsertKey("order-1", 2));
}

TEST_F(TaskTableTest, MutateKeepsStatusIndexInStep) {
  for (uint64_t id = 1; id <= 10; ++id) table_.Insert(Entry(id, PENDING));
  EXPECT_TRUE(table_.Mutate(4, [](TaskEntry& e) { e.task.set_status(CLAIMED); }));
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
