#include "events/client_events.h"

#include <gtest/gtest.h>

#include "events/fields.h"

namespace warren::events {
namespace {

Json J(const char* s) { return Json::parse(s); }

TEST(ClientEvents, ParsesEveryType) {
  auto m = ParseClientEvent(J(R"({"type":"user.message","content":[{"type":"text","text":"hi"}]})"), "e");
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(TypeName(*m), "user.message");
  EXPECT_EQ(std::get<UserMessage>(*m).content[0]["text"], "hi");

  auto i = ParseClientEvent(J(R"({"type":"user.interrupt"})"), "e");
  ASSERT_TRUE(i.ok());
  EXPECT_FALSE(std::get<UserInterrupt>(*i).session_thread_id);

  auto c = ParseClientEvent(J(R"({"type":"user.tool_confirmation","tool_use_id":"sevt_1","result":"deny","deny_message":"no"})"), "e");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_FALSE(std::get<ToolConfirmation>(*c).allow);
  EXPECT_EQ(*std::get<ToolConfirmation>(*c).deny_message, "no");

  auto ct = ParseClientEvent(J(R"({"type":"user.custom_tool_result","custom_tool_use_id":"sevt_2","is_error":true})"), "e");
  ASSERT_TRUE(ct.ok());
  EXPECT_TRUE(std::get<CustomToolResult>(*ct).is_error);
  EXPECT_TRUE(std::get<CustomToolResult>(*ct).content.is_array());

  auto d = ParseClientEvent(J(R"({"type":"user.define_outcome","description":"x","rubric":{"type":"text","content":"r"}})"), "e");
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(std::get<DefineOutcome>(*d).max_iterations, 3);

  auto sm = ParseClientEvent(J(R"({"type":"system.message","content":[{"type":"text","text":"s"}]})"), "e");
  ASSERT_TRUE(sm.ok());
  EXPECT_EQ(TypeName(*sm), "system.message");
}

// The crash of issue 14: null is the SDK's "absent" (`boolean | null`), and
// the typed struct the engine reads has a plain bool.
TEST(ClientEvents, NullIsErrorIsFalse) {
  auto r = ParseClientEvent(J(R"({"type":"user.tool_result","tool_use_id":"sevt_1","is_error":null,"content":null})"), "e");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_FALSE(std::get<ToolResult>(*r).is_error);
  EXPECT_TRUE(std::get<ToolResult>(*r).content.is_array());
}

TEST(ClientEvents, WrongTypesNameTheField) {
  struct Case {
    const char* json;
    const char* message;
  } cases[] = {
      {R"({"type":"user.tool_result","tool_use_id":"s","is_error":"yes"})", "e.is_error: expected a boolean, got string"},
      {R"({"type":"user.tool_result","tool_use_id":5})", "e.tool_use_id: expected a string, got integer"},
      {R"({"type":"user.tool_result"})", "e.tool_use_id: field required"},
      {R"({"type":"user.message","content":"hi"})", "e.content: expected an array of content blocks, got string"},
      {R"({"type":"user.message","content":[{"type":"text","text":1}]})", "e.content[0].text: expected a string, got integer"},
      {R"({"type":"user.message"})", "e.content: field required"},
      {R"({"type":"user.tool_confirmation","tool_use_id":"s","result":"maybe"})", "e.result: must be 'allow' or 'deny'"},
      {R"({"type":"user.define_outcome","description":"d","rubric":{"type":"text","content":"c"},"max_iterations":18446744073709551615})",
       "e.max_iterations: out of range"},
      {R"({"type":"user.define_outcome","description":"d","rubric":[]})", "e.rubric: expected an object, got array"},
      {R"({"type":7})", "e.type: expected a string, got integer"},
      {R"({"type":"agent.message"})", "e.type: unknown or non-sendable event type 'agent.message'"},
      {R"([1,2])", "e: expected an object, got array"},
      {R"({"type":"user.interrupt","extra":1})", "e.extra: unknown field (extra inputs are not permitted)"},
  };
  for (const auto& c : cases) {
    auto r = ParseClientEvent(J(c.json), "e");
    ASSERT_FALSE(r.ok()) << c.json;
    EXPECT_EQ(r.status().code(), Code::kInvalidArgument) << c.json;
    EXPECT_EQ(r.status().message(), c.message) << c.json;
  }
}

TEST(ClientEvents, StoredRowsMayCarryServerFields) {
  Json row = J(R"({"type":"user.tool_result","tool_use_id":"s","is_error":false,"id":"sevt_9","processed_at":null})");
  EXPECT_FALSE(ParseClientEvent(row, "e").ok());
  EXPECT_TRUE(ParseClientEvent(row, "e", Origin::kStored).ok());
  // The schema's fields are still checked on stored rows.
  row["is_error"] = "poison";
  EXPECT_FALSE(ParseClientEvent(row, "e", Origin::kStored).ok());
}

TEST(Fields, TypeOfAndStringFieldNeverThrow) {
  for (const char* s : {"null", "1", "[]", R"({"type":1})", R"({"type":null})", R"("x")"}) {
    EXPECT_EQ(TypeOf(J(s)), "") << s;
    EXPECT_EQ(StringField(J(s), "type"), "") << s;
  }
  EXPECT_EQ(TypeOf(J(R"({"type":"a"})")), "a");
}

}  // namespace
}  // namespace warren::events
