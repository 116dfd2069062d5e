#ifndef TASKWAL_TOOLS_TESTING_JSON_H_
#define TASKWAL_TOOLS_TESTING_JSON_H_

// A strict little JSON reader (RFC 8259) for tests of --json output.
// Protobuf's google.protobuf.Struct cannot serve: its map field changes
// layout under ThreadSanitizer (map_field.h), which breaks against the
// uninstrumented system libprotobuf in --config=tsan.

#include <cstdlib>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/string_view.h"

namespace taskwal::tools::testing_json {

struct JsonValue {
  enum class Type { kNull, kBool, kNumber, kString, kArray, kObject };
  Type type = Type::kNull;
  bool boolean = false;
  double number = 0;
  std::string string;
  std::vector<JsonValue> array;
  std::vector<std::pair<std::string, JsonValue>> object;  // In order.

  // The member named key of an object; nullptr if absent.
  const JsonValue* Find(absl::string_view key) const {
    for (const auto& [name, value] : object) {
      if (name == key) return &value;
    }
    return nullptr;
  }
};

namespace internal {

class Reader {
 public:
  explicit Reader(absl::string_view text) : text_(text) {}

  std::optional<JsonValue> Document() {
    std::optional<JsonValue> v = Value();
    SkipSpace();
    if (!v.has_value() || pos_ != text_.size()) return std::nullopt;
    return v;
  }

 private:
  void SkipSpace() {
    while (pos_ < text_.size() &&
           (text_[pos_] == ' ' || text_[pos_] == '\n' || text_[pos_] == '\r' ||
            text_[pos_] == '\t')) {
      ++pos_;
    }
  }
  bool Consume(absl::string_view token) {
    if (text_.substr(pos_, token.size()) != token) return false;
    pos_ += token.size();
    return true;
  }

  std::optional<JsonValue> Value() {
    if (++depth_ > 64) return std::nullopt;
    SkipSpace();
    JsonValue v;
    bool ok = true;
    if (pos_ >= text_.size()) {
      ok = false;
    } else if (Consume("null")) {
      // kNull, the default.
    } else if (Consume("true")) {
      v.type = JsonValue::Type::kBool;
      v.boolean = true;
    } else if (Consume("false")) {
      v.type = JsonValue::Type::kBool;
    } else if (text_[pos_] == '"') {
      v.type = JsonValue::Type::kString;
      ok = String(&v.string);
    } else if (text_[pos_] == '[') {
      v.type = JsonValue::Type::kArray;
      ok = Array(&v.array);
    } else if (text_[pos_] == '{') {
      v.type = JsonValue::Type::kObject;
      ok = Object(&v.object);
    } else {
      v.type = JsonValue::Type::kNumber;
      ok = Number(&v.number);
    }
    --depth_;
    if (!ok) return std::nullopt;
    return v;
  }

  bool Number(double* out) {
    const size_t start = pos_;
    if (pos_ < text_.size() && text_[pos_] == '-') ++pos_;
    const size_t digits = pos_;
    while (pos_ < text_.size() && absl::ascii_isdigit(text_[pos_])) ++pos_;
    if (pos_ == digits) return false;
    if (text_[digits] == '0' && pos_ - digits > 1) return false;
    if (pos_ < text_.size() && text_[pos_] == '.') {
      const size_t fraction = ++pos_;
      while (pos_ < text_.size() && absl::ascii_isdigit(text_[pos_])) ++pos_;
      if (pos_ == fraction) return false;
    }
    if (pos_ < text_.size() && (text_[pos_] == 'e' || text_[pos_] == 'E')) {
      ++pos_;
      if (pos_ < text_.size() && (text_[pos_] == '+' || text_[pos_] == '-')) {
        ++pos_;
      }
      const size_t exponent = pos_;
      while (pos_ < text_.size() && absl::ascii_isdigit(text_[pos_])) ++pos_;
      if (pos_ == exponent) return false;
    }
    *out = std::strtod(std::string(text_.substr(start, pos_ - start)).c_str(),
                       nullptr);
    return true;
  }

  bool String(std::string* out) {
    ++pos_;  // The opening quote.
    while (pos_ < text_.size()) {
      const char c = text_[pos_++];
      if (c == '"') return true;
      if (static_cast<unsigned char>(c) < 0x20) return false;
      if (c != '\\') {
        *out += c;
        continue;
      }
      if (pos_ >= text_.size()) return false;
      const char e = text_[pos_++];
      switch (e) {
        case '"':
        case '\\':
        case '/':
          *out += e;
          break;
        case 'b':
          *out += '\b';
          break;
        case 'f':
          *out += '\f';
          break;
        case 'n':
          *out += '\n';
          break;
        case 'r':
          *out += '\r';
          break;
        case 't':
          *out += '\t';
          break;
        case 'u': {
          if (pos_ + 4 > text_.size()) return false;
          unsigned code = 0;
          for (int i = 0; i < 4; ++i) {
            const char h = text_[pos_++];
            if (!absl::ascii_isxdigit(h)) return false;
            code = code * 16 + (absl::ascii_isdigit(h)
                                    ? h - '0'
                                    : absl::ascii_tolower(h) - 'a' + 10);
          }
          // Tests only need ASCII escapes back; keep others as '?'.
          *out += code < 0x80 ? static_cast<char>(code) : '?';
          break;
        }
        default:
          return false;
      }
    }
    return false;
  }

  bool Array(std::vector<JsonValue>* out) {
    ++pos_;
    SkipSpace();
    if (Consume("]")) return true;
    while (true) {
      std::optional<JsonValue> v = Value();
      if (!v.has_value()) return false;
      out->push_back(*std::move(v));
      SkipSpace();
      if (Consume("]")) return true;
      if (!Consume(",")) return false;
    }
  }

  bool Object(std::vector<std::pair<std::string, JsonValue>>* out) {
    ++pos_;
    SkipSpace();
    if (Consume("}")) return true;
    while (true) {
      SkipSpace();
      std::string name;
      if (pos_ >= text_.size() || text_[pos_] != '"' || !String(&name)) {
        return false;
      }
      SkipSpace();
      if (!Consume(":")) return false;
      std::optional<JsonValue> v = Value();
      if (!v.has_value()) return false;
      out->emplace_back(std::move(name), *std::move(v));
      SkipSpace();
      if (Consume("}")) return true;
      if (!Consume(",")) return false;
    }
  }

  const absl::string_view text_;
  size_t pos_ = 0;
  int depth_ = 0;
};

}  // namespace internal

// The document in text (surrounding whitespace allowed); nullopt if text
// is not exactly one JSON value.
inline std::optional<JsonValue> ParseJson(absl::string_view text) {
  return internal::Reader(text).Document();
}

}  // namespace taskwal::tools::testing_json

#endif  // TASKWAL_TOOLS_TESTING_JSON_H_
